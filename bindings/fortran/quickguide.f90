! The quick guide in Fortran: squares of 1..n computed on worker processes,
! written straight into a shared Fortran array.
module quickguide_kernels
  use, intrinsic :: iso_c_binding
  use pasha
  implicit none
contains
  !> The kernel: index is 0-based; user_data is the output psh array.
  integer(c_int) function square(user_data, worker_id, index, value) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    integer(c_size_t), value :: index
    type(c_ptr), value :: value
    real(c_double), pointer :: out(:)
    call psh_array_pointer(user_data, out)
    out(index + 1) = real(index + 1, c_double)**2
    rc = 0
    if (worker_id < 0 .or. c_associated(value)) rc = 1
  end function
end module

program quickguide
  use, intrinsic :: iso_c_binding
  use pasha
  use quickguide_kernels
  implicit none
  integer, parameter :: n = 1000000
  type(c_ptr) :: ctx, out, f
  real(c_double), pointer :: squares(:)
  integer(c_int) :: rc

  rc = psh_context_create(ctx, PSH_PROCESSES, 4_c_int)         ! or PSH_THREADS, PSH_SERIAL
  if (rc /= PSH_OK) error stop 'psh_context_create failed'
  rc = psh_alloc_f(out, ctx, PSH_FLOAT64, [n])                 ! shared, Fortran order
  if (rc == PSH_OK) rc = psh_functor_range(f, int(n, c_size_t))
  if (rc == PSH_OK) rc = psh_map(ctx, c_funloc(square), out, f)
  if (rc /= PSH_OK) then
    print '(a)', psh_error_name(rc) // ': ' // psh_error_message()
    error stop 1
  end if
  call psh_array_pointer(out, squares)
  print '(a, i0, a, es22.15)', 'sum of squares of 1..', n, ' = ', sum(squares)
  call psh_functor_destroy(f)
  call psh_array_free(out)
  call psh_context_destroy(ctx)
end program
