#!/usr/bin/env python3
"""Tests of the Python part of bindcheck.py (the Fortran and Julia parts are
tested in bindings/fortran/test_check_interfaces.py and
bindings/julia/test/test_check_ccalls.py), and of its command line."""
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bindtest import DriftTest  # noqa: E402

PKG = 'bindings/python/src/pasha'


class PythonCheckTest(DriftTest):
    def test_real_package_matches(self):
        out = self.assertClean('python')
        self.assertIn('Python constants', out)

    def test_wrong_mirror_fails(self):
        self.edit(PKG + '/context.py', '_SCHEDULE_CONTEXT = -1', '_SCHEDULE_CONTEXT = -2')
        self.assertCaught('python', '_SCHEDULE_CONTEXT = -2 mirrors PSH_SCHEDULE_CONTEXT, which is -1')

    def test_wrong_dict_mirror_fails(self):
        self.edit(PKG + '/context.py', "'dynamic': 1", "'dynamic': 2")
        self.assertCaught('python', 'SCHEDULE_DYNAMIC = 2 mirrors PSH_SCHEDULE_DYNAMIC')

    def test_wrong_extension_constant_fails(self):
        self.edit(PKG + '/_c/module.c', 'PyModule_AddIntConstant(m, "EKERNEL", PSH_EKERNEL);',
                  'PyModule_AddIntConstant(m, "EKERNEL", PSH_EWORKER);')
        self.assertCaught('python', 'exports PSH_EWORKER as EKERNEL')

    def test_header_constant_changes_fail(self):
        self.edit('include/pasha/pasha.h', 'PSH_SCHEDULE_DYNAMIC = 1,', 'PSH_SCHEDULE_DYNAMIC = 3,')
        self.assertCaught('python', 'mirrors PSH_SCHEDULE_DYNAMIC, which is 3 in the header')

    def test_all_by_default(self):
        rc, out = self.run_check()
        self.assertEqual(rc, 0, out)
        for w in ('Fortran interfaces', 'Julia ccalls', 'Python constants'):
            self.assertIn(w, out)

    def test_header_that_does_not_parse_is_an_error(self):
        self.edit('include/pasha/pasha.h', 'PSH_API size_t psh_functor_length', 'PSH_API size_t psh_functor_length(((')
        rc = subprocess.run([sys.executable, os.path.join(HERE, 'bindcheck.py'), '--root', self.tmp],
                            capture_output=True, text=True)
        self.assertEqual(rc.returncode, 2, rc.stdout + rc.stderr)
        self.assertIn('does not parse', rc.stderr)


if __name__ == '__main__':
    unittest.main()
