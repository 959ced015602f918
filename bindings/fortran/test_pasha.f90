! Tests of the Fortran binding: real maps in serial, threads and processes
! contexts, asserting the computed values.
module test_kernels
  use, intrinsic :: iso_c_binding
  use pasha
  implicit none
contains
  !> out(index+1) = index**2; user_data is the output psh array.
  integer(c_int) function square(user_data, worker_id, index, value) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    integer(c_size_t), value :: index
    type(c_ptr), value :: value
    real(c_double), pointer :: out(:)
    call psh_array_pointer(user_data, out)
    out(index + 1) = real(index, c_double)**2
    rc = 0
    if (worker_id < 0 .or. c_associated(value)) rc = 1
  end function

  !> acc(1, worker_id+1) += sum of [begin, end); user_data: a per-worker array.
  integer(c_int) function block_sum(user_data, worker_id, begin, end) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    integer(c_size_t), value :: begin, end
    integer(c_int64_t), pointer :: acc(:,:)
    integer(c_size_t) :: i
    call psh_array_pointer(user_data, acc)
    do i = begin, end - 1
      acc(1, worker_id + 1) = acc(1, worker_id + 1) + int(i, c_int64_t)
    end do
    acc(2, worker_id + 1) = acc(2, worker_id + 1) + int(end - begin, c_int64_t)
    rc = 0
  end function

  !> colsum(index+1) = sum of the column handed as a psh_view.
  integer(c_int) function column_sum(user_data, worker_id, index, value) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    integer(c_size_t), value :: index
    type(c_ptr), value :: value
    type(psh_view), pointer :: view
    integer(c_size_t), pointer :: shape(:)
    integer(c_ptrdiff_t), pointer :: strides(:)
    real(c_double), pointer :: col(:), sums(:)
    rc = 1
    call psh_view_get(value, view, shape, strides)
    if (view%ndim /= 1 .or. view%dtype /= PSH_FLOAT64 .or. strides(1) /= 8) return
    call c_f_pointer(view%data, col, [shape(1)])
    call psh_array_pointer(user_data, sums)
    sums(index + 1) = sum(col)
    rc = 0
    if (worker_id < 0) rc = 1
  end function

  !> Fails at index 13 with code 7.
  integer(c_int) function fail_at_13(user_data, worker_id, index, value) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    integer(c_size_t), value :: index
    type(c_ptr), value :: value
    rc = 0
    if (index == 13 .and. worker_id >= 0 .and. .not. c_associated(value) &
        .and. .not. c_associated(user_data)) rc = 7
  end function

  !> worker_begin: acc(3, worker_id+1) += 1; user_data: the map's per-worker array.
  integer(c_int) function count_begin(user_data, worker_id) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    integer(c_int64_t), pointer :: acc(:,:)
    call psh_array_pointer(user_data, acc)
    acc(3, worker_id + 1) = acc(3, worker_id + 1) + 1
    rc = 0
  end function

  !> worker_end: acc(4, worker_id+1) += 1.
  integer(c_int) function count_end(user_data, worker_id) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    integer(c_int64_t), pointer :: acc(:,:)
    call psh_array_pointer(user_data, acc)
    acc(4, worker_id + 1) = acc(4, worker_id + 1) + 1
    rc = 0
  end function

  !> worker_begin that fails in worker 0.
  integer(c_int) function fail_begin(user_data, worker_id) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    rc = 0
    if (worker_id == 0 .and. c_associated(user_data)) rc = 3
  end function
end module

program test_pasha
  use, intrinsic :: iso_c_binding
  use pasha
  use test_kernels
  implicit none
  integer(c_int) :: kinds(3) = [PSH_SERIAL, PSH_THREADS, PSH_PROCESSES]
  integer :: k
  do k = 1, 3
    call run_kind(kinds(k))
  end do
  call bad_input()
  print '(a)', 'fortran binding: all tests passed'
contains
  subroutine expect(cond, what)
    logical, intent(in) :: cond
    character(len=*), intent(in) :: what
    if (.not. cond) then
      print '(a)', 'FAILED: ' // what // ' (last error: ' // psh_error_message() // ')'
      error stop 1
    end if
  end subroutine

  subroutine run_kind(kind)
    integer(c_int), intent(in) :: kind
    type(c_ptr) :: ctx, out, acc, mat, sums, f
    real(c_double), pointer :: pout(:), pmat(:,:), psums(:)
    integer(c_int64_t), pointer :: pacc(:,:)
    integer :: i, j, nw
    integer(c_int) :: rc
    type(psh_error_info) :: info
    type(psh_map_options) :: mopts
    type(c_ptr) :: hooks
    integer(c_int64_t), pointer :: phooks(:,:)
    character(len=2) :: tag
    write (tag, '(i2)') kind

    call expect(psh_context_create(ctx, kind, 3_c_int) == PSH_OK, 'create'//tag)
    nw = psh_context_num_workers(ctx)
    call expect(psh_context_kind(ctx) == kind, 'kind'//tag)
    if (kind == PSH_SERIAL) then
      call expect(nw == 1, 'serial has one worker')
    else
      call expect(nw == 3, 'three workers'//tag)
    end if

    ! psh_map over a range, results in a Fortran pointer array.
    call expect(psh_alloc_f(out, ctx, PSH_FLOAT64, [1000_c_size_t]) == PSH_OK, 'alloc out'//tag)
    call expect(psh_functor_range(f, 1000_c_size_t) == PSH_OK, 'range'//tag)
    call expect(psh_functor_length(f) == 1000, 'functor length'//tag)
    rc = psh_map(ctx, c_funloc(square), out, f)
    call expect(rc == PSH_OK, 'map square'//tag)
    call psh_functor_destroy(f)
    call psh_array_pointer(out, pout)
    call expect(associated(pout), 'pointer onto out'//tag)
    call expect(size(pout) == 1000, 'size of out'//tag)
    do i = 1, 1000
      ! Whole numbers, exact in double: a difference below 0.5 means equal.
      call expect(abs(pout(i) - real(i - 1, c_double)**2) < 0.5_c_double, 'square value'//tag)
    end do

    ! psh_map_blocks into a per-worker array (worker axis last in F order).
    call expect(psh_alloc_f(acc, ctx, PSH_INT64, [2_c_size_t], per_worker=.true.) == PSH_OK, 'alloc acc'//tag)
    call expect(all(psh_array_shape_f(acc) == [2_c_size_t, int(nw, c_size_t)]), 'per-worker shape'//tag)
    call expect(psh_map_blocks(ctx, c_funloc(block_sum), acc, 10000_c_size_t) == PSH_OK, 'blocks'//tag)
    call psh_array_pointer(acc, pacc)
    call expect(sum(pacc(1, :)) == 9999_c_int64_t * 10000_c_int64_t / 2, 'block sum'//tag)
    call expect(sum(pacc(2, :)) == 10000, 'block count'//tag)

    ! worker_begin / worker_end: once per worker per map, also under a
    ! dynamic schedule that hands a worker several chunks.
    call expect(psh_alloc_f(hooks, ctx, PSH_INT64, [4_c_size_t], per_worker=.true.) == PSH_OK, 'alloc hooks'//tag)
    call psh_map_options_init_size(mopts, c_sizeof(mopts))
    call expect(.not. c_associated(mopts%worker_begin), 'init_size clears worker_begin'//tag)
    mopts%schedule = PSH_SCHEDULE_DYNAMIC
    mopts%chunk = 100
    mopts%worker_begin = c_funloc(count_begin)
    mopts%worker_end = c_funloc(count_end)
    call expect(psh_map_blocks_ext(ctx, c_funloc(block_sum), hooks, 10000_c_size_t, mopts) == PSH_OK, &
                'map with hooks'//tag)
    call psh_array_pointer(hooks, phooks)
    call expect(sum(phooks(1, :)) == 9999_c_int64_t * 10000_c_int64_t / 2, 'hooks: block sum'//tag)
    call expect(all(phooks(3, :) == 1) .and. all(phooks(4, :) == 1), 'worker_begin/end once per worker'//tag)
    mopts%worker_begin = c_funloc(fail_begin)
    rc = psh_map_blocks_ext(ctx, c_funloc(block_sum), hooks, 10000_c_size_t, mopts)
    call expect(rc == PSH_EKERNEL, 'failing worker_begin is PSH_EKERNEL'//tag)
    info%struct_size = c_sizeof(info)
    call expect(psh_last_error_info(info) == PSH_OK, 'info after worker_begin'//tag)
    call expect(psh_c_string(info%callback) == 'worker_begin' .and. info%worker_id == 0, &
                'info: worker_begin of worker 0'//tag)
    call psh_array_free(hooks)

    ! psh_functor_array over the columns of a 2-D Fortran-order array:
    ! axis 1 (0-based) of shape [4, 5] hands 5 contiguous columns of 4.
    call expect(psh_alloc_f(mat, ctx, PSH_FLOAT64, [4_c_size_t, 5_c_size_t]) == PSH_OK, 'alloc mat'//tag)
    call psh_array_pointer(mat, pmat)
    call expect(associated(pmat), 'pointer onto mat'//tag)
    do j = 1, 5
      do i = 1, 4
        pmat(i, j) = real(10 * j + i, c_double)
      end do
    end do
    call expect(psh_alloc_f(sums, ctx, PSH_FLOAT64, [5_c_size_t]) == PSH_OK, 'alloc sums'//tag)
    call expect(psh_functor_array(f, mat, 1_c_int) == PSH_OK, 'functor array'//tag)
    call expect(psh_map(ctx, c_funloc(column_sum), sums, f) == PSH_OK, 'map columns'//tag)
    call psh_functor_destroy(f)
    call psh_array_pointer(sums, psums)
    do j = 1, 5
      call expect(abs(psums(j) - real(40 * j + 10, c_double)) < 0.5_c_double, 'column sum'//tag)
    end do

    ! A kernel's non-zero return is PSH_EKERNEL, naming the index.
    call expect(psh_functor_range(f, 100_c_size_t) == PSH_OK, 'range 100'//tag)
    rc = psh_map(ctx, c_funloc(fail_at_13), c_null_ptr, f)
    call expect(rc == PSH_EKERNEL, 'kernel error is PSH_EKERNEL'//tag)
    call expect(index(psh_error_message(), '13') > 0, 'message names index 13'//tag)
    ! The same as data: psh_last_error_info.
    info%struct_size = c_sizeof(info)
    call expect(psh_last_error_info(info) == PSH_OK, 'psh_last_error_info'//tag)
    call expect(info%code == PSH_EKERNEL, 'info code'//tag)
    call expect(info%index == 13_c_long_long, 'info index 13'//tag)
    ! static split of 100 items over nw workers: item 13 is worker 13*nw/100
    call expect(info%worker_id == 13 * nw / 100, 'info worker'//tag)
    call expect(info%signal == 0 .and. info%exit_status == -1, 'info no signal'//tag)
    call expect(psh_c_string(info%callback) == 'kernel', 'info callback kernel'//tag)
    call expect(psh_c_string(info%message) == psh_error_message(), 'info message'//tag)
    call expect(index(psh_error_name(rc), 'PSH_EKERNEL') == 1, 'strerror'//tag)
    call psh_functor_destroy(f)

    call psh_array_free(out)
    call psh_array_free(acc)
    call psh_array_free(mat)
    call psh_array_free(sums)
    call psh_context_destroy(ctx)
  end subroutine

  subroutine bad_input()
    type(c_ptr) :: a, ctx
    type(psh_error_info) :: info
    real(c_double), pointer :: p2(:,:)
    integer(c_size_t), allocatable :: big(:)
    type(psh_alloc_options) :: opts
    allocate(big(40))
    big = 1
    call expect(psh_alloc_f(a, c_null_ptr, PSH_FLOAT64, big) == PSH_EINVAL, 'ndim 40 is EINVAL')
    call expect(index(psh_error_message(), 'ndim') > 0, 'message says ndim')
    call expect(psh_alloc_f(a, c_null_ptr, PSH_FLOAT64, [-1_c_size_t]) == PSH_EINVAL, 'negative length')
    call expect(psh_context_create(ctx, 99_c_int, 1_c_int) == PSH_EINVAL, 'unknown kind')
    info%struct_size = c_sizeof(info)
    call expect(psh_last_error_info(info) == PSH_OK, 'psh_last_error_info after EINVAL')
    call expect(info%code == PSH_EINVAL .and. info%worker_id == -1 .and. info%index == -1_c_long_long, &
                'info of an invalid argument: no worker, no index')
    call expect(.not. c_associated(info%callback), 'info of an invalid argument: no callback')
    info%struct_size = 0
    call expect(psh_last_error_info(info) == PSH_EINVAL, 'psh_last_error_info refuses struct_size 0')
    ! psh_cpu_count: the default worker count (PASHA_NUM_WORKERS when set,
    ! as the test runs it).
    call expect(psh_cpu_count() >= 1, 'psh_cpu_count >= 1')
    call expect(psh_context_create(ctx, PSH_THREADS, 0_c_int) == PSH_OK, 'default threads context')
    call expect(psh_context_num_workers(ctx) == psh_cpu_count(), 'default workers == psh_cpu_count')
    call psh_context_destroy(ctx)
    ! A pointer of the wrong rank is not associated.
    call expect(psh_alloc_f(a, c_null_ptr, PSH_FLOAT64, [3_c_size_t]) == PSH_OK, 'alloc 1-d')
    call psh_array_pointer(a, p2)
    call expect(.not. associated(p2), 'wrong rank gives a null pointer')
    call psh_array_free(a)
    ! Padded per-worker rows are not one run: no pointer onto them.
    call expect(psh_context_create(ctx, PSH_THREADS, 2_c_int) == PSH_OK, 'threads context')
    call psh_alloc_options_init(opts)
    opts%order = PSH_ORDER_F
    opts%per_worker = PSH_PER_WORKER_PADDED
    call expect(psh_alloc(a, ctx, PSH_FLOAT64, 1_c_int, [3_c_size_t], opts) == PSH_OK, 'alloc padded')
    call expect(all(psh_array_shape_f(a) == [3_c_size_t, 2_c_size_t]), 'padded shape')
    call psh_array_pointer(a, p2)
    call expect(.not. associated(p2), 'padded rows give a null pointer')
    call psh_array_free(a)
    opts%per_worker = 1
    call expect(psh_alloc(a, ctx, PSH_FLOAT64, 1_c_int, [3_c_size_t], opts) == PSH_OK, 'alloc per_worker')
    call psh_array_pointer(a, p2)
    call expect(associated(p2), 'back-to-back rows give a pointer')
    call psh_array_free(a)
    call psh_context_destroy(ctx)
    call expect(len(psh_c_string(psh_version())) >= 5, 'version')
    ! The module's version constants agree with the library loaded.
    call expect(psh_version_number() == PSH_MODULE_VERSION_NUMBER, 'psh_version_number == PSH_MODULE_VERSION_NUMBER')
    call expect(psh_c_string(psh_version()) == PSH_VERSION_STRING, 'psh_version == PSH_VERSION_STRING')
    ! Shapes are c_size_t: a length past 2**31 survives the round trip
    ! (an empty array, since the other axis is 0; a default integer would
    ! have wrapped to a negative length).
    call expect(psh_alloc_f(a, c_null_ptr, PSH_FLOAT64, [3000000000_c_size_t, 0_c_size_t]) == PSH_OK, &
                'alloc 3e9 x 0')
    call expect(all(psh_array_shape_f(a) == [3000000000_c_size_t, 0_c_size_t]), 'shape past 2**31')
    call expect(psh_array_size(a) == 0, 'size of 3e9 x 0 is 0')
    call psh_array_free(a)
  end subroutine
end program
