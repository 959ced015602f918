! The Fortran driver of the MPI behaviour suite (tests/mpi/behaviours.txt:
! the cases and their expected outcomes; the C and Python drivers run the
! same ones), through the modules pasha and pasha_mpi. Usage, under
! mpirun on any number of ranks:
!
!   behaviours_f SPEC [CASE...]
!
! Every rank runs every case of SPEC (or the named ones) in order. A case
! makes its collective calls on every rank whatever its checks find (a
! failed check is recorded, never an early return) and sets what it saw:
! 'ok', or the error (EKERNEL, ...) prefixed by 'remote-' when it is
! another rank's. The driver compares that with the spec, the ranks agree
! on the result and rank 0 prints one line per case. alarm() (libc)
! guards every case. Exit status 1 when any case failed on any rank.
module behaviours_state
  use, intrinsic :: iso_c_binding
  implicit none
  integer(c_int) :: my_rank = -1
  ! What the kernels write and read: set before each map (forked
  ! workers see them as they were at the map).
  real(c_double), pointer :: g_out(:) => null()
  integer(c_int32_t), pointer :: g_who(:) => null(), g_rank(:) => null()
  integer(c_size_t) :: g_fail_at = huge(0_c_size_t)
  integer :: g_how = 0            ! 0: return 42 at g_fail_at, 1: SIGKILL
  logical :: g_set_cancel = .false.
  integer(c_int) :: g_slow_us = 0
  integer(c_int), target, volatile :: g_cancel = 0
  integer(c_long_long), volatile :: g_calls(0:255) = 0  ! per worker (threads only)

  interface
    integer(c_int) function c_raise(sig) bind(C, name='raise')
      import :: c_int
      integer(c_int), value :: sig
    end function
    integer(c_int) function c_usleep(us) bind(C, name='usleep')
      import :: c_int
      integer(c_int), value :: us
    end function
    integer(c_int) function c_alarm(s) bind(C, name='alarm')
      import :: c_int
      integer(c_int), value :: s
    end function
    integer(c_int) function c_setenv(name, value, overwrite) bind(C, name='setenv')
      import :: c_int, c_char
      character(kind=c_char), intent(in) :: name(*), value(*)
      integer(c_int), value :: overwrite
    end function
    integer(c_int) function c_unsetenv(name) bind(C, name='unsetenv')
      import :: c_int, c_char
      character(kind=c_char), intent(in) :: name(*)
    end function
  end interface

contains

  integer(c_int) function fill(user_data, worker_id, index, value) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    integer(c_size_t), value :: index
    type(c_ptr), value :: value
    integer(c_int) :: ignored
    rc = 0
    if (worker_id >= 0 .and. worker_id <= 255) g_calls(worker_id) = g_calls(worker_id) + 1
    if (g_set_cancel) g_cancel = 1
    if (index == g_fail_at) then
      if (g_how == 1) ignored = c_raise(9_c_int)
      rc = 42
      return
    end if
    if (g_slow_us > 0) ignored = c_usleep(g_slow_us)
    if (associated(g_out)) g_out(index + 1) = 3 * real(index, c_double) + 1
    if (associated(g_who)) g_who(index + 1) = worker_id
    if (associated(g_rank)) g_rank(index + 1) = my_rank
    if (c_associated(user_data) .or. c_associated(value)) rc = 1
  end function

  !> acc(1, worker + 1) += index, acc(2, worker + 1) += 1.
  integer(c_int) function accumulate(user_data, worker_id, index, value) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    integer(c_size_t), value :: index
    type(c_ptr), value :: value
    real(c_double), pointer :: acc(:, :)
    call c_f_pointer(user_data, acc, [2, 256])
    acc(1, worker_id + 1) = acc(1, worker_id + 1) + real(index, c_double)
    acc(2, worker_id + 1) = acc(2, worker_id + 1) + 1
    rc = 0
    if (c_associated(value)) rc = 1
  end function
end module

program behaviours_f
  use, intrinsic :: iso_c_binding
  use mpi_f08
  use pasha
  use pasha_mpi
  use behaviours_state
  implicit none
  integer :: rank, nranks, last, ierr
  character(len=600) :: failure
  character(len=64) :: seen
  character(len=4096) :: spec_path
  character(len=64) :: names(128), fail_ons(128), failings(128), others(128), arg
  integer :: min_ranks(128), na(128), ns, k, a, nargs, passed, failed, skipped, bad, any_bad
  logical :: wanted, known, fails_here
  character(len=64) :: want

  call MPI_Init(ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank)
  call MPI_Comm_size(MPI_COMM_WORLD, nranks)
  my_rank = int(rank, c_int)
  last = nranks - 1
  nargs = command_argument_count()
  if (nargs < 1) then
    if (rank == 0) write (0, '(a)') 'usage: behaviours_f SPEC [CASE...]'
    call MPI_Abort(MPI_COMM_WORLD, 2)
  end if
  call get_command_argument(1, spec_path)
  call read_spec()
  passed = 0
  failed = 0
  skipped = 0
  do k = 1, ns
    wanted = nargs == 1
    do a = 2, nargs
      call get_command_argument(a, arg)
      if (trim(arg) == trim(names(k))) wanted = .true.
    end do
    if (.not. wanted) cycle
    if (na(k) == 1 .or. nranks < min_ranks(k)) then
      if (rank == 0) then
        if (na(k) == 1) then
          print '(a, i0, a, a24, a)', 'behaviours-fortran ', nranks, ' ranks: ', names(k), ' not applicable (spec)'
        else
          print '(a, i0, a, a24, a)', 'behaviours-fortran ', nranks, ' ranks: ', names(k), ' skipped (needs more ranks)'
        end if
      end if
      skipped = skipped + 1
      cycle
    end if
    failure = ''
    seen = ''
    known = .true.
    ierr = c_alarm(120_c_int)  ! a hung rank dies, and mpirun ends the job
    select case (trim(names(k)))
    case ('map-results')
      call map_results(PSH_THREADS)
    case ('map-results-processes')
      call map_results(PSH_PROCESSES)
    case ('map-fewer-items')
      call map_fewer_items()
    case ('map-empty')
      call map_empty()
    case ('gather')
      call gather_case()
    case ('reduce-sum')
      call reduce_sum()
    case ('reduce-min-max')
      call reduce_min_max()
    case ('kernel-error')
      call failure_case(PSH_THREADS, 0)
    case ('kernel-error-processes')
      call failure_case(PSH_PROCESSES, 0)
    case ('worker-killed')
      call failure_case(PSH_PROCESSES, 1)
    case ('cancel-during-map')
      call cancel_during_map()
    case ('cancel-before-map')
      call cancel_before_map()
    case ('node-size-malformed')
      call env_case('PASHA_MPI_NODE_SIZE', 'abc', 'abc', 2, .true., 0, "PASHA_MPI_NODE_SIZE='abc'")
    case ('node-size-negative')
      call env_case('PASHA_MPI_NODE_SIZE', '-1', '-1', 2, .true., 0, "PASHA_MPI_NODE_SIZE='-1'")
    case ('node-size-out-of-range')
      call env_case('PASHA_MPI_NODE_SIZE', '99999999999', '99999999999', 2, .true., 0, &
                    "PASHA_MPI_NODE_SIZE='99999999999'")
    case ('node-size-zero')
      call env_case('PASHA_MPI_NODE_SIZE', '0', '0', 2, .true., 0, '')
    case ('node-size-one-rank')
      call env_case('PASHA_MPI_NODE_SIZE', '<keep>', '2x', 2, rank == last, last, "PASHA_MPI_NODE_SIZE='2x'")
    case ('node-size-differs')
      call env_case('PASHA_MPI_NODE_SIZE', '2', '1', 2, .true., -1, 'different PASHA_MPI_NODE_SIZE values (1 to 2)')
    case ('num-workers-malformed')
      call env_case('PASHA_NUM_WORKERS', 'two', 'two', 0, .true., 0, "PASHA_NUM_WORKERS='two'")
    case ('num-workers-zero')
      call env_case('PASHA_NUM_WORKERS', '0', '0', 0, .true., 0, "PASHA_NUM_WORKERS='0'")
    case ('num-workers-one-rank')
      call env_case('PASHA_NUM_WORKERS', '2', '3x', 0, rank == last, last, "PASHA_NUM_WORKERS='3x'")
    case default
      known = .false.
    end select
    ierr = c_alarm(0_c_int)
    if (.not. known) then
      if (rank == 0) print '(a, i0, a, a24, a)', 'behaviours-fortran ', nranks, ' ranks: ', names(k), &
        ' FAIL (no such case in this driver)'
      failed = failed + 1
      cycle
    end if
    fails_here = trim(fail_ons(k)) == 'all' .or. (trim(fail_ons(k)) == 'last' .and. rank == last)
    if (trim(fail_ons(k)) == 'none' .or. fails_here) then
      want = failings(k)
    else
      want = others(k)
    end if
    bad = 0
    if (trim(seen) /= trim(want)) then
      bad = 1
      if (len_trim(failure) > 0) then
        failure = 'saw ' // trim(seen) // ', the spec says ' // trim(want) // '; ' // trim(failure)
      else
        failure = 'saw ' // trim(seen) // ', the spec says ' // trim(want)
      end if
    else if (len_trim(failure) > 0) then
      bad = 1
    end if
    if (bad == 1) write (0, '(a, i0, a, a, a, i0, a, a)') 'behaviours-fortran ', nranks, ' ranks: ', &
      trim(names(k)), ': rank ', rank, ': ', trim(failure)
    call MPI_Allreduce(bad, any_bad, 1, MPI_INTEGER, MPI_MAX, MPI_COMM_WORLD)
    if (rank == 0) then
      if (any_bad == 1) then
        print '(a, i0, a, a24, a)', 'behaviours-fortran ', nranks, ' ranks: ', names(k), ' FAIL'
      else
        print '(a, i0, a, a24, a)', 'behaviours-fortran ', nranks, ' ranks: ', names(k), ' ok'
      end if
    end if
    if (any_bad == 1) then
      failed = failed + 1
    else
      passed = passed + 1
    end if
  end do
  if (rank == 0) print '(a, i0, a, i0, a, i0, a, i0, a)', 'behaviours-fortran ', nranks, ' ranks: ', passed, &
    ' passed, ', failed, ' failed, ', skipped, ' skipped'
  call MPI_Finalize(ierr)
  if (failed > 0) stop 1

contains

  subroutine read_spec()
    integer :: u, ios, i
    character(len=2048) :: line
    character(len=64) :: w1, w2, w3
    ns = 0
    na = 0
    open (newunit=u, file=trim(spec_path), status='old', action='read', iostat=ios)
    if (ios /= 0) then
      write (0, '(a)') 'behaviours_f: cannot open ' // trim(spec_path)
      call MPI_Abort(MPI_COMM_WORLD, 2)
    end if
    do
      read (u, '(a)', iostat=ios) line
      if (ios /= 0) exit
      line = adjustl(line)
      if (len_trim(line) == 0 .or. line(1:1) == '#') cycle
      if (line(1:3) == 'na ' .or. line(1:4) == 'gap ') then
        read (line, *) w1, w2, w3
        if (trim(w2) == 'fortran') then
          do i = 1, ns
            if (trim(names(i)) == trim(w3) .and. trim(w1) == 'na') na(i) = 1
          end do
        end if
        cycle
      end if
      ns = ns + 1
      read (line, *, iostat=ios) names(ns), fail_ons(ns), failings(ns), others(ns), min_ranks(ns)
      if (ios /= 0) then
        write (0, '(a)') 'behaviours_f: a malformed line: ' // trim(line)
        call MPI_Abort(MPI_COMM_WORLD, 2)
      end if
    end do
    close (u)
  end subroutine

  subroutine chk(cond, what)
    logical, intent(in) :: cond
    character(len=*), intent(in) :: what
    if (.not. cond .and. len_trim(failure) == 0) failure = what // ' (last error: ' // psh_error_message() // ')'
  end subroutine

  !> What this rank saw: 'ok', the error, or 'remote-' + the error; an
  !> error must name rank `named` ("rank N: "; -1: none).
  subroutine outcome(rc, named, own)
    integer(c_int), intent(in) :: rc
    integer, intent(in) :: named
    logical, intent(in) :: own
    character(len=24) :: tag, name
    if (rc == PSH_OK) then
      seen = 'ok'
      return
    end if
    if (named >= 0) then
      write (tag, '(a, i0, a)') 'rank ', named, ': '
      call chk(index(psh_error_message(), trim(tag) // ' ') > 0, 'the error names rank ' // trim(tag))
    end if
    select case (rc)
    case (PSH_EINVAL)
      name = 'EINVAL'
    case (PSH_EKERNEL)
      name = 'EKERNEL'
    case (PSH_EWORKER)
      name = 'EWORKER'
    case (PSH_ECANCELED)
      name = 'ECANCELED'
    case default
      write (name, '(a, i0)') 'E', rc
    end select
    if (own) then
      seen = name
    else
      seen = 'remote-' // name
    end if
  end subroutine

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

  subroutine block_of(n, r, lo, hi)
    integer, intent(in) :: n, r
    integer, intent(out) :: lo, hi
    lo = r * (n / nranks) + min(r, mod(n, nranks))
    hi = lo + n / nranks
    if (r < mod(n, nranks)) hi = hi + 1
  end subroutine

  !> A map of n items over ctx (local_workers per rank); every value,
  !> writer rank and worker id checked on every rank after an allgather.
  subroutine map_and_check(ctx, n, local_workers, every_worker)
    type(c_ptr), intent(in) :: ctx
    integer, intent(in) :: n, local_workers
    logical, intent(in) :: every_worker
    type(c_ptr) :: out, who, rk, f
    integer :: i, r
    logical :: used(0:255)
    call chk(psh_alloc_f(out, ctx, PSH_FLOAT64, [integer(c_size_t) :: n]) == PSH_OK, 'alloc out')
    call chk(psh_alloc_f(who, ctx, PSH_INT32, [integer(c_size_t) :: n]) == PSH_OK, 'alloc who')
    call chk(psh_alloc_f(rk, ctx, PSH_INT32, [integer(c_size_t) :: n]) == PSH_OK, 'alloc rank')
    call psh_array_pointer(out, g_out)
    call psh_array_pointer(who, g_who)
    call psh_array_pointer(rk, g_rank)
    g_who = -1
    g_rank = -1
    g_fail_at = huge(0_c_size_t)
    g_set_cancel = .false.
    g_slow_us = 0
    call MPI_Barrier(MPI_COMM_WORLD)  ! the node's ranks share these buffers
    call chk(psh_functor_range(f, int(n, c_size_t)) == PSH_OK, 'range')
    call chk(psh_map(ctx, c_funloc(fill), c_null_ptr, f) == PSH_OK, 'map')
    call chk(psh_mpi_allgather(ctx, out) == PSH_OK, 'allgather out')
    call chk(psh_mpi_allgather(ctx, who) == PSH_OK, 'allgather who')
    call chk(psh_mpi_allgather(ctx, rk) == PSH_OK, 'allgather rank')
    used = .false.
    do i = 0, n - 1
      r = owner(n, i)
      call chk(abs(g_out(i + 1) - (3 * real(i, c_double) + 1)) < 0.5_c_double, 'a mapped value')
      call chk(g_rank(i + 1) == r, 'index written by its block''s rank')
      call chk(g_who(i + 1) >= r * local_workers .and. g_who(i + 1) < (r + 1) * local_workers, &
               'worker id in its rank''s range')
      if (g_who(i + 1) >= 0 .and. g_who(i + 1) <= 255) used(g_who(i + 1)) = .true.
    end do
    if (every_worker) call chk(all(used(0:min(255, nranks * local_workers - 1))), 'every worker ran')
    call psh_functor_destroy(f)
    call MPI_Barrier(MPI_COMM_WORLD)
    nullify (g_out, g_who, g_rank)
    call psh_array_free(out)
    call psh_array_free(who)
    call psh_array_free(rk)
  end subroutine

  subroutine map_results(kind)
    integer(c_int), intent(in) :: kind
    type(c_ptr) :: ctx
    call chk(psh_context_create_mpi(ctx, MPI_COMM_WORLD, kind, 2_c_int) == PSH_OK, 'create')
    call chk(psh_context_num_workers(ctx) == 2 * nranks, 'two workers per rank')
    call map_and_check(ctx, 1001, 2, .true.)
    call psh_context_destroy(ctx)
    seen = 'ok'
  end subroutine

  subroutine map_fewer_items()
    type(c_ptr) :: ctx
    call chk(psh_context_create_mpi(ctx, MPI_COMM_WORLD, PSH_THREADS, 2_c_int) == PSH_OK, 'create')
    call map_and_check(ctx, 2 * nranks - 1, 2, .false.)
    call psh_context_destroy(ctx)
    seen = 'ok'
  end subroutine

  subroutine map_empty()
    type(c_ptr) :: ctx, f
    integer(c_int) :: rc
    call chk(psh_context_create_mpi(ctx, MPI_COMM_WORLD, PSH_THREADS, 2_c_int) == PSH_OK, 'create')
    g_calls = 0
    g_fail_at = huge(0_c_size_t)
    call chk(psh_functor_range(f, 0_c_size_t) == PSH_OK, 'range 0')
    rc = psh_map(ctx, c_funloc(fill), c_null_ptr, f)
    call chk(sum(g_calls) == 0, 'no kernel call for 0 items')
    call psh_functor_destroy(f)
    call map_and_check(ctx, 37, 2, .false.)
    call psh_context_destroy(ctx)
    call outcome(rc, -1, .true.)
  end subroutine

  subroutine gather_case()
    integer, parameter :: n = 999
    type(c_ptr) :: ctx, out, rk, f
    integer :: i
    call chk(psh_context_create_mpi(ctx, MPI_COMM_WORLD, PSH_THREADS, 2_c_int) == PSH_OK, 'create')
    call chk(psh_alloc_f(out, ctx, PSH_FLOAT64, [integer(c_size_t) :: n]) == PSH_OK, 'alloc out')
    call chk(psh_alloc_f(rk, ctx, PSH_INT32, [integer(c_size_t) :: n]) == PSH_OK, 'alloc rank')
    call psh_array_pointer(out, g_out)
    call psh_array_pointer(rk, g_rank)
    g_fail_at = huge(0_c_size_t)
    call chk(psh_functor_range(f, int(n, c_size_t)) == PSH_OK, 'range')
    call chk(psh_map(ctx, c_funloc(fill), c_null_ptr, f) == PSH_OK, 'map')
    call chk(psh_mpi_gather(ctx, out, int(last, c_int)) == PSH_OK, 'gather out')
    call chk(psh_mpi_gather(ctx, rk, int(last, c_int)) == PSH_OK, 'gather rank')
    if (rank == last) then
      do i = 0, n - 1
        call chk(abs(g_out(i + 1) - (3 * real(i, c_double) + 1)) < 0.5_c_double, 'a gathered value')
        call chk(g_rank(i + 1) == owner(n, i), 'a gathered writer rank')
      end do
    end if
    call psh_functor_destroy(f)
    call MPI_Barrier(MPI_COMM_WORLD)
    nullify (g_out, g_rank)
    call psh_array_free(out)
    call psh_array_free(rk)
    call psh_context_destroy(ctx)
    seen = 'ok'
  end subroutine

  subroutine reduce_sum()
    integer, parameter :: n = 5000
    type(c_ptr) :: ctx, acc, f
    real(c_double), pointer :: p(:, :)
    call chk(psh_context_create_mpi(ctx, MPI_COMM_WORLD, PSH_THREADS, 2_c_int) == PSH_OK, 'create')
    call chk(psh_alloc_f(acc, ctx, PSH_FLOAT64, [integer(c_size_t) :: 2], per_worker=.true.) == PSH_OK, &
             'alloc per_worker')
    call chk(psh_functor_range(f, int(n, c_size_t)) == PSH_OK, 'range')
    call chk(psh_map(ctx, c_funloc(accumulate), psh_array_data(acc), f) == PSH_OK, 'map')
    call chk(psh_mpi_reduce(ctx, acc, PSH_OP_SUM, 0_c_int) == PSH_OK, 'reduce')
    call psh_array_pointer(acc, p)
    if (rank == 0) then
      call chk(abs(sum(p(1, :)) - real(n, c_double) * (n - 1) / 2) < 0.5_c_double, 'the sum of 0..n-1')
      call chk(abs(sum(p(2, :)) - real(n, c_double)) < 0.5_c_double, 'n items counted')
    end if
    call psh_functor_destroy(f)
    call MPI_Barrier(MPI_COMM_WORLD)
    call psh_array_free(acc)
    call psh_context_destroy(ctx)
    seen = 'ok'
  end subroutine

  integer function minmax_value(j, r)
    integer, intent(in) :: j, r
    minmax_value = mod(j * 7 + r * 13, 29) - 10
  end function

  subroutine reduce_min_max()
    integer, parameter :: n = 64
    type(c_ptr) :: ctx, local, mn, mx
    integer(c_int32_t), pointer :: pmn(:), pmx(:)
    integer :: j, r, root, lo, hi
    call chk(psh_context_create_mpi(ctx, MPI_COMM_WORLD, PSH_THREADS, 2_c_int) == PSH_OK, 'create')
    call chk(psh_context_create(local, PSH_SERIAL, 1_c_int) == PSH_OK, 'local context')
    call chk(psh_alloc_f(mn, local, PSH_INT32, [integer(c_size_t) :: n]) == PSH_OK, 'alloc min')
    call chk(psh_alloc_f(mx, local, PSH_INT32, [integer(c_size_t) :: n]) == PSH_OK, 'alloc max')
    call psh_array_pointer(mn, pmn)
    call psh_array_pointer(mx, pmx)
    do j = 0, n - 1
      pmn(j + 1) = minmax_value(j, rank)
      pmx(j + 1) = pmn(j + 1)
    end do
    root = nranks / 2
    call chk(psh_mpi_reduce(ctx, mn, PSH_OP_MIN, int(root, c_int)) == PSH_OK, 'reduce min')
    call chk(psh_mpi_reduce(ctx, mx, PSH_OP_MAX, int(root, c_int)) == PSH_OK, 'reduce max')
    if (rank == root) then
      do j = 0, n - 1
        lo = huge(0)
        hi = -huge(0)
        do r = 0, nranks - 1
          lo = min(lo, minmax_value(j, r))
          hi = max(hi, minmax_value(j, r))
        end do
        call chk(pmn(j + 1) == lo, 'the element-wise minimum')
        call chk(pmx(j + 1) == hi, 'the element-wise maximum')
      end do
    end if
    call psh_array_free(mn)
    call psh_array_free(mx)
    call psh_context_destroy(local)
    call psh_context_destroy(ctx)
    seen = 'ok'
  end subroutine

  !> A failure at the middle of the last rank's block of 400 items; how:
  !> 0 the kernel returns 42, 1 the worker is killed.
  subroutine failure_case(kind, how)
    integer(c_int), intent(in) :: kind
    integer, intent(in) :: how
    integer, parameter :: n = 400
    type(c_ptr) :: ctx, out, f
    type(psh_error_info) :: info
    integer(c_int) :: rc
    integer :: lo, hi, at, i
    character(len=:), allocatable :: text
    character(len=64) :: expect
    call chk(psh_context_create_mpi(ctx, MPI_COMM_WORLD, kind, 2_c_int) == PSH_OK, 'create')
    call block_of(n, last, lo, hi)
    at = lo + (hi - lo) / 2
    call chk(psh_alloc_f(out, ctx, PSH_FLOAT64, [integer(c_size_t) :: n]) == PSH_OK, 'alloc')
    call psh_array_pointer(out, g_out)
    g_how = how
    g_fail_at = huge(0_c_size_t)
    if (rank == last) g_fail_at = int(at, c_size_t)
    call chk(psh_functor_range(f, int(n, c_size_t)) == PSH_OK, 'range')
    rc = psh_map(ctx, c_funloc(fill), c_null_ptr, f)
    text = psh_error_message()
    info%struct_size = c_sizeof(info)
    call chk(psh_last_error_info(info) == PSH_OK, 'psh_last_error_info')
    call chk(info%code == rc, 'the info''s code is the map''s')
    call chk(psh_c_string(info%message) == text, 'the info''s message is psh_last_error()')
    call outcome(rc, last, rank == last)
    if (how == 0) then
      write (expect, '(a, i0)') 'returned 42 at index ', at
    else
      call chk(index(text, 'signal 9') > 0, 'the error names signal 9')
      write (expect, '(a, i0)') 'index ', at
    end if
    call chk(index(text, trim(expect)) > 0, 'the error says ' // trim(expect))
    ! the context maps again, every index right
    g_fail_at = huge(0_c_size_t)
    g_how = 0
    call MPI_Barrier(MPI_COMM_WORLD)
    g_out = 0
    call MPI_Barrier(MPI_COMM_WORLD)
    call chk(psh_map(ctx, c_funloc(fill), c_null_ptr, f) == PSH_OK, 'the map after the failure')
    call chk(psh_mpi_allgather(ctx, out) == PSH_OK, 'allgather')
    do i = 0, n - 1
      call chk(abs(g_out(i + 1) - (3 * real(i, c_double) + 1)) < 0.5_c_double, 'a value after the failure')
    end do
    call psh_functor_destroy(f)
    call MPI_Barrier(MPI_COMM_WORLD)
    nullify (g_out)
    call psh_array_free(out)
    call psh_context_destroy(ctx)
  end subroutine

  !> The last rank's kernel sets the map's cancel flag at its first item;
  !> the others' items take 1 ms (1.6 s for a block on two threads).
  subroutine cancel_during_map()
    integer, parameter :: per_rank = 3200
    type(c_ptr) :: ctx, f
    type(psh_map_options) :: o
    integer(c_int) :: rc
    call chk(psh_context_create_mpi(ctx, MPI_COMM_WORLD, PSH_THREADS, 2_c_int) == PSH_OK, 'create')
    call chk(psh_functor_range(f, int(per_rank * nranks, c_size_t)) == PSH_OK, 'range')
    call psh_map_options_init_size(o, c_sizeof(o))
    g_cancel = 0
    g_calls = 0
    g_fail_at = huge(0_c_size_t)
    g_set_cancel = rank == last
    g_slow_us = 1000
    if (rank == last) then
      g_slow_us = 0
      o%cancel = c_loc(g_cancel)
    end if
    rc = psh_map_ext(ctx, c_funloc(fill), c_null_ptr, f, o)
    g_set_cancel = .false.
    g_slow_us = 0
    call outcome(rc, last, rank == last)
    call chk(index(psh_error_message(), 'cancelled') > 0, 'the error says cancelled')
    call chk(sum(g_calls) < per_rank / 2, 'every rank stopped early')
    call map_and_check(ctx, 301, 2, .false.)
    call psh_functor_destroy(f)
    call psh_context_destroy(ctx)
  end subroutine

  subroutine cancel_before_map()
    type(c_ptr) :: ctx, f
    type(psh_map_options) :: o
    integer(c_int) :: rc
    call chk(psh_context_create_mpi(ctx, MPI_COMM_WORLD, PSH_THREADS, 2_c_int) == PSH_OK, 'create')
    call chk(psh_functor_range(f, 500_c_size_t) == PSH_OK, 'range')
    call psh_map_options_init_size(o, c_sizeof(o))
    g_cancel = 1
    g_calls = 0
    g_fail_at = huge(0_c_size_t)
    if (rank == last) o%cancel = c_loc(g_cancel)
    rc = psh_map_ext(ctx, c_funloc(fill), c_null_ptr, f, o)
    call outcome(rc, last, rank == last)
    call chk(index(psh_error_message(), 'cancel') > 0, 'the error says cancel')
    call chk(sum(g_calls) == 0, 'no rank ran an item')
    g_cancel = 0
    call map_and_check(ctx, 301, 2, .false.)
    call psh_functor_destroy(f)
    call psh_context_destroy(ctx)
  end subroutine

  !> A context made with `var` set to value_last on the last rank and to
  !> value_others elsewhere ('<keep>': as it is), restored afterwards;
  !> local_workers 0: the default. A context made is checked with a map.
  subroutine env_case(var, value_others, value_last, local_workers, own, named, mention)
    character(len=*), intent(in) :: var, value_others, value_last, mention
    integer, intent(in) :: local_workers, named
    logical, intent(in) :: own
    character(len=256) :: old
    integer :: length, status
    integer(c_int) :: rc
    type(c_ptr) :: ctx
    character(len=:), allocatable :: text
    call get_environment_variable(var, old, length, status)
    if (rank == last) then
      rc = c_setenv(var // c_null_char, value_last // c_null_char, 1_c_int)
    else if (value_others /= '<keep>') then
      rc = c_setenv(var // c_null_char, value_others // c_null_char, 1_c_int)
    end if
    ctx = c_null_ptr
    rc = psh_context_create_mpi(ctx, MPI_COMM_WORLD, PSH_THREADS, int(local_workers, c_int))
    text = psh_error_message()
    if (status == 0) then
      status = c_setenv(var // c_null_char, trim(old) // c_null_char, 1_c_int)
    else
      status = c_unsetenv(var // c_null_char)
    end if
    if (rc == PSH_OK) then
      seen = 'ok'
      if (local_workers > 0) then
        call map_and_check(ctx, 203, local_workers, .false.)
      else
        call map_and_check(ctx, 203, psh_context_num_workers(ctx) / nranks, .false.)
      end if
      call psh_context_destroy(ctx)
    else
      call chk(.not. c_associated(ctx), 'no context on failure')
      call outcome(rc, named, own)
      call chk(index(text, mention) > 0, 'the error names ' // mention)
    end if
  end subroutine

end program
