! An outside Fortran program of an installed libpasha, built from a clean
! directory with  gfortran consumer.f90 $(pkg-config --cflags --libs pasha-fortran):
! square 0..n-1 into a psh array on threads and on processes, check the sum
! and the versions. Prints the sums; error stop on any mismatch.
module consumer_kernels
  use, intrinsic :: iso_c_binding
  use pasha
  implicit none
contains
  integer(c_int) function square(user_data, worker_id, index, value) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    integer(c_size_t), value :: index
    type(c_ptr), value :: value
    real(c_double), pointer :: out(:)
    call psh_array_pointer(user_data, out)
    out(index + 1) = real(index, c_double)**2
    rc = 0
    if (worker_id < 0) rc = 1  ! value (the index, for a range) is not needed
  end function
end module

program consumer
  use, intrinsic :: iso_c_binding
  use pasha
  use consumer_kernels
  implicit none
  integer(c_size_t), parameter :: n = 1000
  integer(c_int), parameter :: kinds(2) = [PSH_THREADS, PSH_PROCESSES]
  type(c_ptr) :: ctx, a, f
  real(c_double), pointer :: p(:)
  integer(c_int) :: rc
  integer :: k
  if (psh_version_number() /= PSH_MODULE_VERSION_NUMBER) error stop 'module and library versions differ'
  print '(a)', 'libpasha ' // psh_c_string(psh_version()) // ' (Fortran)'
  do k = 1, 2
    rc = psh_context_create(ctx, kinds(k), 2_c_int)
    if (rc == PSH_OK) rc = psh_alloc_f(a, ctx, PSH_FLOAT64, [n])
    if (rc == PSH_OK) rc = psh_functor_range(f, n)
    if (rc == PSH_OK) rc = psh_map(ctx, c_funloc(square), a, f)
    if (rc /= PSH_OK) then
      print '(a)', psh_error_name(rc) // ' (' // psh_error_message() // ')'
      error stop 1
    end if
    call psh_array_pointer(a, p)
    print '(a, i0, a, f0.0)', 'kind ', kinds(k), ': sum ', sum(p)
    if (sum(p) /= real((n - 1) * n * (2 * n - 1) / 6, c_double)) error stop 'wrong sum'
    call psh_functor_destroy(f)
    call psh_array_free(a)
    call psh_context_destroy(ctx)
  end do
end program
