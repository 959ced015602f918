#!/usr/bin/env python3
"""Negative tests of check_interfaces.py: drifted copies of pasha.f90 must
fail, the real one must pass. Standard library only."""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check_interfaces  # noqa: E402

HEADER = os.path.join(HERE, '..', '..', 'include', 'pasha', 'pasha.h')
FORTRAN = os.path.join(HERE, 'pasha.f90')


class InterfaceCheckTest(unittest.TestCase):
    def setUp(self):
        with open(HEADER) as f:
            self.header = f.read()
        with open(FORTRAN) as f:
            self.fortran = f.read()

    def drifted(self, old, new):
        self.assertIn(old, self.fortran)
        problems, _ = check_interfaces.check(self.header, self.fortran.replace(old, new, 1))
        self.assertTrue(problems, 'the drift went unnoticed')
        return '\n'.join(problems)

    def test_real_module_matches(self):
        problems, n = check_interfaces.check(self.header, self.fortran)
        self.assertEqual(problems, [])
        self.assertGreaterEqual(n, 39)

    def test_wrong_argument_kind_fails(self):
        p = self.drifted('      integer(c_size_t), value :: n\n    end function\n'
                         '    integer(c_int) function psh_functor_sequence',
                         '      integer(c_int), value :: n\n    end function\n'
                         '    integer(c_int) function psh_functor_sequence')
        self.assertIn('psh_functor_range argument 2', p)

    def test_missing_interface_fails(self):
        self.assertIn('no interface for psh_map_blocks_ext',
                      self.drifted("name='psh_map_blocks_ext'", "name='psh_map_blockz_ext'"))

    def test_wrong_constant_fails(self):
        self.assertIn('PSH_EWORKER is -5', self.drifted('PSH_EWORKER = -5', 'PSH_EWORKER = -6'))

    def test_wrong_result_fails(self):
        self.assertIn('psh_array_data returns',
                      self.drifted('    type(c_ptr) function psh_array_data(a)',
                                   '    integer(c_int) function psh_array_data(a)'))

    def test_by_value_pointer_to_pointer_fails(self):
        p = self.drifted("bind(C, name='psh_context_create')\n      import :: c_int, c_ptr\n"
                         "      type(c_ptr), intent(out) :: out",
                         "bind(C, name='psh_context_create')\n      import :: c_int, c_ptr\n"
                         "      type(c_ptr), value :: out")
        self.assertIn('psh_context_create argument 1', p)


if __name__ == '__main__':
    unittest.main()
