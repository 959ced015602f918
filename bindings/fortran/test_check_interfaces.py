#!/usr/bin/env python3
"""Tests of the Fortran part of tools/bindcheck/bindcheck.py: drifted copies
of pasha.f90 and pasha_mpi.f90 (and of the headers), in a temporary
directory, must fail naming the function or constant; the real ones pass."""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'tools', 'bindcheck'))
from bindtest import DriftTest  # noqa: E402

F = 'bindings/fortran/pasha.f90'
FM = 'bindings/fortran/mpi/pasha_mpi.f90'


class FortranCheckTest(DriftTest):
    def test_real_modules_match(self):
        out = self.assertClean('fortran')
        self.assertIn('Fortran MPI interfaces', out)

    def test_wrong_argument_kind_fails(self):
        self.edit(F, '      integer(c_size_t), value :: n\n    end function\n'
                  '    integer(c_int) function psh_functor_sequence',
                  '      integer(c_int), value :: n\n    end function\n'
                  '    integer(c_int) function psh_functor_sequence')
        self.assertCaught('fortran', 'psh_functor_range argument 2')

    def test_missing_interface_fails(self):
        self.edit(F, "name='psh_map_blocks_ext'", "name='psh_map_blockz_ext'")
        self.assertCaught('fortran', 'no interface for psh_map_blocks_ext', 'psh_map_blockz_ext is not declared')

    def test_wrong_argument_count_fails(self):
        self.edit(F, "psh_set_default_kind(kind, num_workers)", "psh_set_default_kind(kind)")
        self.assertCaught('fortran', 'psh_set_default_kind takes 2 arguments in C, 1 in Fortran')

    def test_wrong_constant_fails(self):
        self.edit(F, 'PSH_EWORKER = -5', 'PSH_EWORKER = -6')
        self.assertCaught('fortran', 'PSH_EWORKER is -5 in the header, -6 in Fortran')

    def test_wrong_result_fails(self):
        self.edit(F, '    type(c_ptr) function psh_array_data(a)', '    integer(c_int) function psh_array_data(a)')
        self.assertCaught('fortran', 'psh_array_data returns')

    def test_by_value_pointer_to_pointer_fails(self):
        self.edit(F, "bind(C, name='psh_context_create')\n      import :: c_int, c_ptr\n"
                  "      type(c_ptr), intent(out) :: out",
                  "bind(C, name='psh_context_create')\n      import :: c_int, c_ptr\n"
                  "      type(c_ptr), value :: out")
        self.assertCaught('fortran', 'psh_context_create argument 1')

    def test_type_field_kind_fails(self):
        self.edit(F, '    integer(c_int) :: worker_id\n    integer(c_long_long) :: index',
                  '    integer(c_int) :: worker_id\n    integer(c_int) :: index')
        self.assertCaught('fortran', 'psh_error_info%index is', 'psh_error_info%signal is at offset 20 in Fortran, 24 in C')

    def test_type_field_offset_fails(self):
        # The header widens a field: the Fortran offsets after it drift.
        self.edit('include/pasha/pasha.h', '    int worker_id;           /**< -1: no worker involved */',
                  '    long long worker_id;     /**< -1: no worker involved */')
        self.assertCaught('fortran', 'psh_error_info%worker_id is', 'psh_error_info%index is at offset 16 in Fortran, 24 in C')

    def test_type_missing_field_fails(self):
        self.edit(F, '    type(c_ptr) :: progress_data\n', '')
        self.assertCaught('fortran', 'type psh_map_options has fields')

    def test_mpi_module_drift_fails(self):
        self.edit(FM, "function psh_mpi_gather(ctx, a, root)", "function psh_mpi_gather(ctx, a)")
        self.assertCaught('fortran', 'psh_mpi_gather takes 3 arguments in C, 2 in Fortran')

    def test_mpi_shim_drift_fails(self):
        # The shim's C prototype is parsed too.
        self.edit('bindings/fortran/mpi/pasha_mpi_shim.c', 'MPI_Fint comm, int local_kind',
                  'MPI_Fint comm, size_t local_kind', count=2)
        self.assertCaught('fortran', 'psh_fortran_context_create_mpi argument 3')

    def test_header_change_fails(self):
        self.edit('include/pasha/pasha.h', 'PSH_API size_t psh_functor_length(const psh_functor *f);',
                  'PSH_API size_t psh_functor_length(const psh_functor *f);\n'
                  'PSH_API int psh_functor_reset(psh_functor *f);')
        self.assertCaught('fortran', 'no interface for psh_functor_reset')


if __name__ == '__main__':
    unittest.main()
