! The Fortran binding of libpasha's MPI context (include/pasha/pasha_mpi.h)
! on the mpi_f08 module: psh_context_create_mpi takes a type(MPI_Comm)
! (converted with MPI_Comm_f2c in a small C shim, pasha_mpi_shim.c), the
! others are the C functions as they are. Built with -Dmpi=enabled and a
! Fortran compiler whose MPI has mpi_f08.
!
! As in C, every call here, psh_alloc/psh_alloc_f and psh_array_free of
! arrays of an MPI context, the maps on it and psh_context_destroy are
! collective: every rank calls them in the same order with the same sizes.
! An error on one rank (bad arguments, a cancel flag, a failed kernel) is
! returned on every rank, its message prefixed by "rank N: ".
!
! SPDX-License-Identifier: BSD-3-Clause
module pasha_mpi
  use, intrinsic :: iso_c_binding
  use mpi_f08, only : MPI_Comm
  use pasha
  implicit none

  ! Element-wise operations of psh_mpi_reduce.
  integer(c_int), parameter :: PSH_OP_SUM = 0, PSH_OP_MIN = 1, PSH_OP_MAX = 2

  interface
    integer(c_int) function psh_fortran_context_create_mpi(out, comm, local_kind, local_workers) &
        bind(C, name='psh_fortran_context_create_mpi')
      import :: c_ptr, c_int
      type(c_ptr), intent(out) :: out
      integer(c_int), value :: comm, local_kind, local_workers
    end function
    integer(c_int) function psh_fortran_context_create_mpi_ext(out, comm, local) &
        bind(C, name='psh_fortran_context_create_mpi_ext')
      import :: c_ptr, c_int, psh_context_options
      type(c_ptr), intent(out) :: out
      integer(c_int), value :: comm
      type(psh_context_options), intent(in) :: local
    end function

    !> This rank in the context's communicator (-1 for a context that is
    !> not PSH_MPI) and the number of ranks (0 then).
    integer(c_int) function psh_mpi_rank(ctx) bind(C, name='psh_mpi_rank')
      import :: c_ptr, c_int
      type(c_ptr), value :: ctx
    end function
    integer(c_int) function psh_mpi_size(ctx) bind(C, name='psh_mpi_size')
      import :: c_ptr, c_int
      type(c_ptr), value :: ctx
    end function

    !> The whole array on root after a map in which each rank wrote its
    !> block of the slowest axis (the LAST axis of a Fortran-order array):
    !> root is a 0-based rank. Collective.
    integer(c_int) function psh_mpi_gather(ctx, a, root) bind(C, name='psh_mpi_gather')
      import :: c_ptr, c_int
      type(c_ptr), value :: ctx, a
      integer(c_int), value :: root
    end function

    !> psh_mpi_gather with the whole array on every rank.
    integer(c_int) function psh_mpi_allgather(ctx, a) bind(C, name='psh_mpi_allgather')
      import :: c_ptr, c_int
      type(c_ptr), value :: ctx, a
    end function

    !> Element-wise op (PSH_OP_SUM, _MIN, _MAX) over the ranks into a on
    !> root, e.g. of per_worker accumulators. Collective.
    integer(c_int) function psh_mpi_reduce(ctx, a, op, root) bind(C, name='psh_mpi_reduce')
      import :: c_ptr, c_int
      type(c_ptr), value :: ctx, a
      integer(c_int), value :: op, root
    end function
  end interface

contains

  !> Make an MPI context over the ranks of comm (collective over comm; the
  !> library duplicates it). Each rank maps its block of every map with a
  !> local context of local_kind (PSH_SERIAL, PSH_THREADS, PSH_PROCESSES)
  !> and local_workers workers (<= 0: the default). Free it with
  !> psh_context_destroy before MPI_Finalize. Returns PSH_OK or an error
  !> code (PSH_EINVAL: MPI not initialized, MPI_COMM_NULL, a bad kind).
  integer(c_int) function psh_context_create_mpi(ctx, comm, local_kind, local_workers) result(rc)
    type(c_ptr), intent(out) :: ctx
    type(MPI_Comm), intent(in) :: comm
    integer(c_int), intent(in) :: local_kind, local_workers
    rc = psh_fortran_context_create_mpi(ctx, int(comm%MPI_VAL, c_int), local_kind, local_workers)
  end function

  !> psh_context_create_mpi with every option of each rank's local
  !> context (psh_context_options, filled by psh_context_options_init:
  !> kind, num_workers, schedule, chunk, pin_cpus); the MPI context's maps
  !> use its schedule and chunk. PSH_EINVAL also for persistent = 1.
  integer(c_int) function psh_context_create_mpi_ext(ctx, comm, local) result(rc)
    type(c_ptr), intent(out) :: ctx
    type(MPI_Comm), intent(in) :: comm
    type(psh_context_options), intent(in) :: local
    rc = psh_fortran_context_create_mpi_ext(ctx, int(comm%MPI_VAL, c_int), local)
  end function

end module pasha_mpi
