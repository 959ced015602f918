! The Fortran MPI binding under mpirun (1, 2, 4 ranks; see meson.build):
! contexts over MPI_COMM_WORLD and a split communicator, maps whose values
! are checked after psh_mpi_gather / psh_mpi_allgather, per-worker sums
! through psh_mpi_reduce, and errors returned on every rank. A failed check
! aborts the whole job.
module test_mpi_kernels
  use, intrinsic :: iso_c_binding
  use pasha
  implicit none
  integer(c_int) :: my_rank = -1
contains
  !> out(i+1) = 3 i + 1 and who(i+1) = this rank; user_data: [out, who].
  integer(c_int) function fill(user_data, worker_id, index, value) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    integer(c_size_t), value :: index
    type(c_ptr), value :: value
    type(c_ptr), pointer :: arrays(:)
    real(c_double), pointer :: out(:)
    integer(c_int32_t), pointer :: who(:)
    call c_f_pointer(user_data, arrays, [2])
    call psh_array_pointer(arrays(1), out)
    call psh_array_pointer(arrays(2), who)
    out(index + 1) = 3 * real(index, c_double) + 1
    who(index + 1) = my_rank
    rc = 0
    if (worker_id < 0 .or. c_associated(value)) rc = 1
  end function

  !> Columns [begin, end) of a (3, m): a(k, j) = k * j (1-based j).
  integer(c_int) function columns(user_data, worker_id, begin, end) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    integer(c_size_t), value :: begin, end
    real(c_double), pointer :: a(:, :)
    integer :: j, k
    call psh_array_pointer(user_data, a)
    do j = int(begin) + 1, int(end)
      do k = 1, 3
        a(k, j) = real(k * j, c_double)
      end do
    end do
    rc = 0
    if (worker_id < 0) rc = 1
  end function

  !> acc(1, worker + 1) += index: per-worker partial sums.
  integer(c_int) function accumulate(user_data, worker_id, index, value) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    integer(c_size_t), value :: index
    type(c_ptr), value :: value
    real(c_double), pointer :: acc(:, :)
    call psh_array_pointer(user_data, acc)
    acc(1, worker_id + 1) = acc(1, worker_id + 1) + real(index, c_double)
    rc = 0
    if (c_associated(value)) rc = 1
  end function
end module

program test_pasha_mpi
  use, intrinsic :: iso_c_binding
  use mpi_f08
  use pasha
  use pasha_mpi
  use test_mpi_kernels
  implicit none
  integer :: rank, nranks, ierr

  call MPI_Init(ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank)
  call MPI_Comm_size(MPI_COMM_WORLD, nranks)
  my_rank = int(rank, c_int)

  call test_create_errors()
  call test_create_ext()
  call test_map_gather(PSH_THREADS)
  call test_map_gather(PSH_PROCESSES)
  call test_columns()
  call test_reduce()
  call test_split_comm()
  if (rank == 0) print '(a, i0, a)', 'test_pasha_mpi: all checks passed on ', nranks, ' ranks'
  call MPI_Finalize(ierr)

contains

  subroutine check(cond, what)
    logical, intent(in) :: cond
    character(len=*), intent(in) :: what
    if (.not. cond) then
      write (0, '(a, i0, a)') 'rank ', rank, ': check failed: ' // what // ' (last error: ' // &
        psh_error_message() // ')'
      call MPI_Abort(MPI_COMM_WORLD, 1)
    end if
  end subroutine

  !> The 0-based rank that a map over n items gives item i (contiguous blocks).
  integer function owner(n, i)
    integer, intent(in) :: n, i
    integer :: q, r, big
    q = n / nranks
    r = mod(n, nranks)
    big = r * (q + 1)
    if (i < big) then
      owner = i / (q + 1)
    else
      owner = r + (i - big) / q
    end if
  end function

  subroutine test_create_errors()
    type(c_ptr) :: ctx
    integer(c_int) :: rc
    character(len=16) :: want
    rc = psh_context_create_mpi(ctx, MPI_COMM_NULL, PSH_THREADS, 1_c_int)
    call check(rc == PSH_EINVAL, 'MPI_COMM_NULL is refused')
    call check(index(psh_error_message(), 'MPI_COMM_NULL') > 0, 'the message names MPI_COMM_NULL')
    ! a bad kind on the last rank only: the same error on every rank
    if (rank == nranks - 1) then
      rc = psh_context_create_mpi(ctx, MPI_COMM_WORLD, 9_c_int, 1_c_int)
    else
      rc = psh_context_create_mpi(ctx, MPI_COMM_WORLD, PSH_SERIAL, 1_c_int)
    end if
    call check(rc == PSH_EINVAL, 'a bad kind on one rank fails every rank')
    write (want, '(a, i0, a)') 'rank ', nranks - 1, ':'
    call check(index(psh_error_message(), trim(want)) > 0, 'the message names the failing rank')
    call check(psh_mpi_rank(c_null_ptr) == -1, 'rank of no context')
    call check(psh_mpi_size(c_null_ptr) == 0, 'size of no context')
  end subroutine

  ! psh_context_create_mpi_ext: the local options reach the local context,
  ! whose schedule the MPI context's maps take.
  subroutine test_create_ext()
    type(c_ptr) :: ctx
    type(psh_context_options) :: lo
    call psh_context_options_init(lo)
    lo%kind = PSH_PROCESSES
    lo%persistent = 1
    call check(psh_context_create_mpi_ext(ctx, MPI_COMM_WORLD, lo) == PSH_EINVAL, 'a persistent local pool is refused')
    call check(index(psh_error_message(), 'persistent') > 0, 'the message says persistent')
    call psh_context_options_init(lo)
    lo%kind = PSH_THREADS
    lo%num_workers = 2
    lo%schedule = PSH_SCHEDULE_DYNAMIC
    lo%chunk = 1
    call check(psh_context_create_mpi_ext(ctx, MPI_COMM_WORLD, lo) == PSH_OK, 'psh_context_create_mpi_ext')
    call check(psh_context_num_workers(ctx) == 2 * nranks, 'two workers per rank')
    call check(psh_context_schedule(ctx) == PSH_SCHEDULE_DYNAMIC, 'the local schedule is the context''s')
    call psh_context_destroy(ctx)
  end subroutine

  subroutine test_map_gather(kind)
    integer(c_int), intent(in) :: kind
    integer, parameter :: n = 1003
    type(c_ptr) :: ctx, f
    type(c_ptr), target :: arrays(2)
    real(c_double), pointer :: out(:)
    integer(c_int32_t), pointer :: who(:)
    integer(c_int) :: rc
    integer :: i, root
    rc = psh_context_create_mpi(ctx, MPI_COMM_WORLD, kind, 2_c_int)
    call check(rc == PSH_OK, 'psh_context_create_mpi')
    call check(psh_context_kind(ctx) == PSH_MPI, 'the kind is PSH_MPI')
    call check(psh_mpi_rank(ctx) == rank, 'psh_mpi_rank is the MPI rank')
    call check(psh_mpi_size(ctx) == nranks, 'psh_mpi_size is the MPI size')
    call check(psh_context_num_workers(ctx) == 2 * nranks, 'two workers per rank')
    call check(psh_alloc_f(arrays(1), ctx, PSH_FLOAT64, [integer(c_size_t) :: n]) == PSH_OK, 'alloc out')
    call check(psh_alloc_f(arrays(2), ctx, PSH_INT32, [integer(c_size_t) :: n]) == PSH_OK, 'alloc who')
    call check(psh_functor_range(f, int(n, c_size_t)) == PSH_OK, 'range')
    call check(psh_map(ctx, c_funloc(fill), c_loc(arrays), f) == PSH_OK, 'map fill')
    root = nranks - 1
    call check(psh_mpi_gather(ctx, arrays(1), int(root, c_int)) == PSH_OK, 'gather out')
    call check(psh_mpi_gather(ctx, arrays(2), int(root, c_int)) == PSH_OK, 'gather who')
    call psh_array_pointer(arrays(1), out)
    call psh_array_pointer(arrays(2), who)
    if (rank == root) then
      do i = 0, n - 1
        call check(abs(out(i + 1) - (3 * real(i, c_double) + 1)) < 0.5_c_double, 'gathered value')
        call check(who(i + 1) == owner(n, i), 'item written by its block''s rank')
      end do
    end if
    call check(psh_mpi_allgather(ctx, arrays(1)) == PSH_OK, 'allgather out')
    do i = 0, n - 1
      call check(abs(out(i + 1) - (3 * real(i, c_double) + 1)) < 0.5_c_double, 'allgathered value')
    end do
    ! a bad root on the last rank only: PSH_EINVAL on every rank
    if (rank == nranks - 1) then
      rc = psh_mpi_gather(ctx, arrays(1), int(nranks, c_int))
    else
      rc = psh_mpi_gather(ctx, arrays(1), 0_c_int)
    end if
    call check(rc == PSH_EINVAL, 'a bad root on one rank fails every rank')
    call check(index(psh_error_message(), 'root') > 0, 'the message says root')
    call psh_functor_destroy(f)
    call MPI_Barrier(MPI_COMM_WORLD)  ! every rank has read the node's buffer
    call psh_array_free(arrays(2))
    call psh_array_free(arrays(1))
    call psh_context_destroy(ctx)
  end subroutine

  !> A (3, m) Fortran-order array: the ranks split its last axis.
  subroutine test_columns()
    integer, parameter :: m = 77
    type(c_ptr) :: ctx, a
    real(c_double), pointer :: p(:, :)
    integer :: j, k
    call check(psh_context_create_mpi(ctx, MPI_COMM_WORLD, PSH_THREADS, 3_c_int) == PSH_OK, 'create')
    call check(psh_alloc_f(a, ctx, PSH_FLOAT64, [integer(c_size_t) :: 3, m]) == PSH_OK, 'alloc (3, m)')
    call check(psh_map_blocks(ctx, c_funloc(columns), a, int(m, c_size_t)) == PSH_OK, 'map_blocks')
    call check(psh_mpi_allgather(ctx, a) == PSH_OK, 'allgather (3, m)')
    call psh_array_pointer(a, p)
    do j = 1, m
      do k = 1, 3
        call check(abs(p(k, j) - real(k * j, c_double)) < 0.5_c_double, 'column value')
      end do
    end do
    call MPI_Barrier(MPI_COMM_WORLD)
    call psh_array_free(a)
    call psh_context_destroy(ctx)
  end subroutine

  !> Per-worker partial sums of 0..n-1, reduced over the ranks.
  subroutine test_reduce()
    integer, parameter :: n = 5000
    type(c_ptr) :: ctx, acc, f
    real(c_double), pointer :: p(:, :)
    integer(c_int) :: rc
    call check(psh_context_create_mpi(ctx, MPI_COMM_WORLD, PSH_THREADS, 2_c_int) == PSH_OK, 'create')
    call check(psh_alloc_f(acc, ctx, PSH_FLOAT64, [integer(c_size_t) :: 1], per_worker=.true.) == PSH_OK, 'alloc per_worker')
    call check(all(psh_array_shape_f(acc) == [1, 2 * nranks]), 'per_worker shape (1, workers)')
    call check(psh_functor_range(f, int(n, c_size_t)) == PSH_OK, 'range')
    call check(psh_map(ctx, c_funloc(accumulate), acc, f) == PSH_OK, 'map accumulate')
    call check(psh_mpi_reduce(ctx, acc, PSH_OP_SUM, 0_c_int) == PSH_OK, 'reduce')
    call psh_array_pointer(acc, p)
    if (rank == 0) call check(abs(sum(p(1, :)) - real(n, c_double) * (n - 1) / 2) < 0.5_c_double, 'the sum of 0..n-1')
    ! an unknown op: PSH_EINVAL on every rank, none hangs
    rc = psh_mpi_reduce(ctx, acc, 7_c_int, 0_c_int)
    call check(rc == PSH_EINVAL, 'unknown op')
    call check(index(psh_error_message(), 'op') > 0, 'the message says op')
    call psh_functor_destroy(f)
    call MPI_Barrier(MPI_COMM_WORLD)
    call psh_array_free(acc)
    call psh_context_destroy(ctx)
  end subroutine

  !> A context over half the ranks (even / odd), made from a type(MPI_Comm)
  !> that the caller frees right away (the library keeps its own copy).
  subroutine test_split_comm()
    type(MPI_Comm) :: sub
    type(c_ptr) :: ctx, acc, f
    real(c_double), pointer :: p(:, :)
    integer :: sub_rank, sub_size, n
    call MPI_Comm_split(MPI_COMM_WORLD, mod(rank, 2), rank, sub)
    call MPI_Comm_rank(sub, sub_rank)
    call MPI_Comm_size(sub, sub_size)
    call check(psh_context_create_mpi(ctx, sub, PSH_SERIAL, 1_c_int) == PSH_OK, 'create on a split comm')
    call MPI_Comm_free(sub)
    call check(psh_mpi_rank(ctx) == sub_rank, 'rank in the split comm')
    call check(psh_mpi_size(ctx) == sub_size, 'size of the split comm')
    call check(psh_context_num_workers(ctx) == sub_size, 'one worker per rank')
    n = 10 * sub_size + 3
    call check(psh_alloc_f(acc, ctx, PSH_FLOAT64, [integer(c_size_t) :: 1], per_worker=.true.) == PSH_OK, 'alloc')
    call check(psh_functor_range(f, int(n, c_size_t)) == PSH_OK, 'range')
    call check(psh_map(ctx, c_funloc(accumulate), acc, f) == PSH_OK, 'map on the split comm')
    call check(psh_mpi_reduce(ctx, acc, PSH_OP_SUM, 0_c_int) == PSH_OK, 'reduce on the split comm')
    call psh_array_pointer(acc, p)
    if (sub_rank == 0) call check(abs(sum(p(1, :)) - real(n, c_double) * (n - 1) / 2) < 0.5_c_double, 'sum on the split comm')
    call psh_functor_destroy(f)
    call MPI_Barrier(MPI_COMM_WORLD)
    call psh_array_free(acc)
    call psh_context_destroy(ctx)
  end subroutine

end program
