#!/usr/bin/env python3
"""Negative tests of check_ccalls.py: deliberately drifted copies of Pasha.jl
(and of pasha.h) must fail the check, naming the problem; the real pair must
pass. Usage: test_check_ccalls.py [HEADER JULIA_FILE]. Standard library only."""
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..', '..'))
CHECKER = os.path.join(HERE, '..', 'check_ccalls.py')
HEADER = os.path.join(ROOT, 'include', 'pasha', 'pasha.h')
JULIA = os.path.join(HERE, '..', 'src', 'Pasha.jl')
sys.path.insert(0, os.path.dirname(CHECKER))
import check_ccalls  # noqa: E402


def read(path):
    with open(path) as f:
        return f.read()


class CheckerTest(unittest.TestCase):
    def setUp(self):
        self.header = read(HEADER)
        self.julia = read(JULIA)

    def problems(self, header=None, julia=None):
        return check_ccalls.check(header or self.header, julia or self.julia)[0]

    def drifted(self, old, new, header=False):
        text = self.header if header else self.julia
        self.assertEqual(text.count(old), 1, 'the test edit %r must match once' % old)
        text = text.replace(old, new)
        return self.problems(header=text) if header else self.problems(julia=text)

    def assertCaught(self, problems, *words):
        self.assertTrue(problems, 'the drift went unnoticed')
        joined = '\n'.join(problems)
        for w in words:
            self.assertIn(w, joined)

    def test_real_binding_matches_header(self):
        problems, h = check_ccalls.check(self.header, self.julia)
        self.assertEqual(problems, [])
        self.assertGreaterEqual(len(h.functions), 39)
        self.assertEqual(h.constants['PSH_EKERNEL'], -4)
        self.assertEqual(h.functions['psh_map_blocks'][1][3], ('size_t', 0))

    def test_wrong_return_type_fails(self):
        p = self.drifted('psh_context_num_workers, libpasha), Cint,', 'psh_context_num_workers, libpasha), Csize_t,')
        self.assertCaught(p, 'psh_context_num_workers returns', 'Csize_t')

    def test_wrong_argument_type_fails(self):
        p = self.drifted('(Ref{Ptr{Cvoid}}, Csize_t), out, n)', '(Ref{Ptr{Cvoid}}, Cint), out, n)')
        self.assertCaught(p, 'psh_functor_range argument 2', 'Cint')

    def test_wrong_pointer_depth_fails(self):
        p = self.drifted('psh_context_destroy, libpasha), Cvoid, (Ptr{Cvoid},)',
                         'psh_context_destroy, libpasha), Cvoid, (Ptr{Ptr{Cvoid}},)')
        self.assertCaught(p, 'psh_context_destroy argument 1')

    def test_missing_argument_fails(self):
        p = self.drifted('(Cint, Cint), kind, num_workers)', '(Cint,), kind, num_workers)')
        self.assertCaught(p, 'psh_set_default_kind takes 2 arguments')

    def test_unknown_function_fails(self):
        p = self.drifted('ccall((:psh_functor_length, libpasha)', 'ccall((:psh_functor_len, libpasha)')
        self.assertCaught(p, 'psh_functor_len is not declared', 'no ccall wraps psh_functor_length')

    def test_wrong_constant_fails(self):
        p = self.drifted('const PSH_EKERNEL = Cint(-4)', 'const PSH_EKERNEL = Cint(-5)')
        self.assertCaught(p, 'PSH_EKERNEL is -4 in the header, -5 in Julia')

    def test_struct_field_drift_fails(self):
        p = self.drifted('    schedule::Cint\n    chunk::Csize_t\n    pin_cpus::Cint',
                         '    schedule::Cint\n    chunk::Cint\n    pin_cpus::Cint')
        self.assertCaught(p, 'psh_context_options.chunk')

    def test_header_change_fails(self):
        # The binding stays, the header moves on: the check must notice.
        p = self.drifted('void *user_data, size_t n);', 'void *user_data, int n);', header=True)
        self.assertCaught(p, 'psh_map_blocks argument 4')
        p = self.drifted('PSH_API size_t psh_functor_length(const psh_functor *f);',
                         'PSH_API size_t psh_functor_length(const psh_functor *f);\n'
                         'PSH_API int psh_functor_reset(psh_functor *f);', header=True)
        self.assertCaught(p, 'no ccall wraps psh_functor_reset')

    def test_command_line_exit_status(self):
        ok = subprocess.run([sys.executable, CHECKER, HEADER, JULIA], capture_output=True, text=True)
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            bad = os.path.join(tmp, 'Pasha.jl')
            with open(bad, 'w') as f:
                f.write(self.julia.replace('(:psh_map_options_init, libpasha), Cvoid,',
                                           '(:psh_map_options_init, libpasha), Cint,'))
            res = subprocess.run([sys.executable, CHECKER, HEADER, bad], capture_output=True, text=True)
        self.assertEqual(res.returncode, 1, res.stdout)
        self.assertIn('psh_map_options_init returns', res.stdout)


if __name__ == '__main__':
    if len(sys.argv) >= 3:
        HEADER, JULIA = sys.argv[1], sys.argv[2]
        del sys.argv[1:3]
    unittest.main()
