#!/usr/bin/env python3
"""Tests of the Julia part of tools/bindcheck/bindcheck.py: drifted copies of
Pasha.jl (and of pasha.h), in a temporary directory, must fail naming the
function, field or constant; the real pair must pass."""
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'tools', 'bindcheck'))
from bindtest import DriftTest, ROOT  # noqa: E402

JL = 'bindings/julia/src/Pasha.jl'
H = 'include/pasha/pasha.h'


class JuliaCheckTest(DriftTest):
    def test_real_binding_matches_header(self):
        out = self.assertClean('julia')
        self.assertIn('Julia ccalls', out)

    def test_wrong_return_type_fails(self):
        self.edit(JL, 'psh_context_num_workers, libpasha), Cint,', 'psh_context_num_workers, libpasha), Csize_t,')
        self.assertCaught('julia', 'psh_context_num_workers returns', 'Csize_t')

    def test_wrong_argument_type_fails(self):
        self.edit(JL, '(Ref{Ptr{Cvoid}}, Csize_t), out, n)', '(Ref{Ptr{Cvoid}}, Cint), out, n)')
        self.assertCaught('julia', 'psh_functor_range argument 2', 'Cint')

    def test_wrong_pointer_depth_fails(self):
        self.edit(JL, 'psh_context_destroy, libpasha), Cvoid, (Ptr{Cvoid},)',
                  'psh_context_destroy, libpasha), Cvoid, (Ptr{Ptr{Cvoid}},)')
        self.assertCaught('julia', 'psh_context_destroy argument 1')

    def test_wrong_argument_count_fails(self):
        self.edit(JL, '(Cint, Cint), kind, num_workers)', '(Cint,), kind, num_workers)')
        self.assertCaught('julia', 'psh_set_default_kind takes 2 arguments in C, the ccall lists 1')

    def test_wrong_number_passed_fails(self):
        self.edit(JL, '(Cint, Cint), kind, num_workers)', '(Cint, Cint), kind)')
        self.assertCaught('julia', 'psh_set_default_kind takes 2 arguments, the ccall passes 1')

    def test_missing_function_fails(self):
        self.edit(JL, 'ccall((:psh_functor_length, libpasha)', 'ccall((:psh_functor_len, libpasha)')
        self.assertCaught('julia', 'psh_functor_len is not declared', 'no ccall wraps psh_functor_length')

    def test_wrong_constant_fails(self):
        self.edit(JL, 'const PSH_EKERNEL = Cint(-4)', 'const PSH_EKERNEL = Cint(-5)')
        self.assertCaught('julia', 'PSH_EKERNEL is -4 in the header, -5 in Julia')

    def test_missing_constant_fails(self):
        self.edit(JL, 'const PSH_ENOTSUP = Cint(-7)\n', '')
        self.assertCaught('julia', 'no constant PSH_ENOTSUP')

    def test_struct_field_type_fails(self):
        self.edit(JL, '    schedule::Cint\n    chunk::Csize_t\n    pin_cpus::Cint',
                  '    schedule::Cint\n    chunk::Cint\n    pin_cpus::Cint')
        self.assertCaught('julia', 'psh_context_options.chunk is', 'psh_context_options.pin_cpus is at offset')

    def test_struct_field_offset_fails(self):
        # The header moves a field (a wider type): the Julia offsets of the
        # fields after it no longer match the C ones.
        self.edit(H, '    int num_workers;        /**< <= 0', '    long long num_workers;  /**< <= 0')
        self.assertCaught('julia', 'psh_context_options.num_workers is', 'psh_context_options.persistent is at '
                          'offset 16 in Julia, 24 in C')

    def test_struct_field_name_fails(self):
        self.edit(JL, '    pin_cpus::Cint', '    pin_cpu::Cint')
        self.assertCaught('julia', 'struct psh_context_options has fields')

    def test_header_change_fails(self):
        self.edit(H, 'void *user_data, size_t n);', 'void *user_data, int n);')
        self.edit(H, 'PSH_API size_t psh_functor_length(const psh_functor *f);',
                  'PSH_API size_t psh_functor_length(const psh_functor *f);\n'
                  'PSH_API int psh_functor_reset(psh_functor *f);')
        self.assertCaught('julia', 'psh_map_blocks argument 4', 'no ccall wraps psh_functor_reset')

    def test_julia_syntax_error_fails(self):
        self.edit(JL, 'const PSH_OK = Cint(0)', 'const PSH_OK = Cint(0')
        self.assertCaught('julia', 'syntax error')

    def test_command_line_exit_status(self):
        checker = os.path.join(ROOT, 'tools', 'bindcheck', 'bindcheck.py')
        ok = subprocess.run([sys.executable, checker, 'julia'], capture_output=True, text=True)
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        self.edit(JL, '(:psh_map_options_init, libpasha), Cvoid,', '(:psh_map_options_init, libpasha), Cint,')
        res = subprocess.run([sys.executable, checker, '--root', self.tmp, 'julia'], capture_output=True, text=True)
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertIn('psh_map_options_init returns', res.stdout)


if __name__ == '__main__':
    unittest.main()
