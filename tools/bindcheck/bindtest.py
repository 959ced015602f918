"""Helpers of the bindcheck tests: a copy of the files the checker reads, in a
temporary directory, mutated one edit at a time."""
import io
import os
import shutil
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, HERE)
import bindcheck  # noqa: E402

FILES = ['include/pasha', 'bindings/fortran/pasha.f90', 'bindings/fortran/mpi/pasha_mpi.f90',
         'bindings/fortran/mpi/pasha_mpi_shim.c', 'bindings/julia/src/Pasha.jl', 'bindings/python/src/pasha']


class DriftTest(unittest.TestCase):
    """Each test edits a copy of the tree and runs the checker on it."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='bindtest-')
        for rel in FILES:
            src, dst = os.path.join(ROOT, rel), os.path.join(self.tmp, rel)
            if not os.path.exists(src):
                continue
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.isdir(src):
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__'))
            else:
                shutil.copy(src, dst)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_check(self, *what):
        out = io.StringIO()
        with redirect_stdout(out):
            rc = bindcheck.main(['--root', self.tmp] + list(what))
        return rc, out.getvalue()

    def edit(self, rel, old, new, count=1):
        path = os.path.join(self.tmp, rel)
        with open(path) as f:
            text = f.read()
        self.assertEqual(text.count(old), count, 'the test edit %r must match %s %d time(s)' % (old, rel, count))
        with open(path, 'w') as f:
            f.write(text.replace(old, new))

    def assertCaught(self, what, *words):
        rc, out = self.run_check(what)
        self.assertEqual(rc, 1, 'the drift went unnoticed:\n' + out)
        for w in words:
            self.assertIn(w, out)
        return out

    def assertClean(self, what):
        rc, out = self.run_check(what)
        self.assertEqual(rc, 0, out)
        return out
