! The quick guide of the original pasha, in Fortran (as examples/quickguide.c):
! allocate an output like the input, map triple_it over the input, check the
! result; in each context kind.
module quickguide_kernels
  use, intrinsic :: iso_c_binding
  use pasha
  implicit none
contains
  !> The kernel: called once per element (index is 0-based), in whichever
  !> worker gets it; value is a 0-d psh_view of inp(index+1), user_data the
  !> output psh array.
  integer(c_int) function triple_it(user_data, worker_id, index, value) bind(C) result(rc)
    type(c_ptr), value :: user_data
    integer(c_int), value :: worker_id
    integer(c_size_t), value :: index
    type(c_ptr), value :: value
    type(psh_view), pointer :: v
    real(c_double), pointer :: x, out(:)
    call c_f_pointer(value, v)
    call c_f_pointer(v%data, x)
    call psh_array_pointer(user_data, out)
    out(index + 1) = 3 * x
    rc = 0
    if (worker_id < 0) rc = 1
  end function
end module

program quickguide
  use, intrinsic :: iso_c_binding
  use pasha
  use quickguide_kernels
  implicit none
  integer(c_int), parameter :: kinds(3) = [PSH_SERIAL, PSH_THREADS, PSH_PROCESSES]
  character(len=9), parameter :: names(3) = [character(len=9) :: 'serial', 'threads', 'processes']
  integer(c_size_t), parameter :: n = 100
  type(c_ptr) :: ctx, inp, outp, f
  real(c_double), pointer :: pin(:), pout(:)
  type(psh_alloc_options) :: like_opts
  integer(c_int) :: rc
  integer :: k, failed
  integer(c_size_t) :: i

  print '(a)', 'libpasha ' // psh_c_string(psh_version())
  failed = 0
  call psh_alloc_options_init(like_opts)
  do k = 1, 3
    rc = psh_context_create(ctx, kinds(k), 0_c_int)
    if (rc == PSH_OK) rc = psh_alloc_f(inp, ctx, PSH_FLOAT64, [n])   ! Fortran order
    if (rc == PSH_OK) then
      call psh_array_pointer(inp, pin)
      pin = [(real(mod(i * 7919_c_size_t, 1000_c_size_t), c_double) / 1000, i = 0_c_size_t, n - 1)]
      rc = psh_alloc_like(outp, ctx, inp, like_opts)
    end if
    if (rc == PSH_OK) rc = psh_functor_array(f, inp, 0_c_int)
    if (rc == PSH_OK) rc = psh_map(ctx, c_funloc(triple_it), outp, f)
    if (rc /= PSH_OK) then
      print '(a)', trim(names(k)) // ': ' // psh_error_name(rc) // ' (' // psh_error_message() // ')'
      error stop 1
    end if
    call psh_array_pointer(outp, pout)
    if (all(abs(pout - 3 * pin) < 1e-12_c_double)) then
      print '(a, 1x, i2, a)', names(k), psh_context_num_workers(ctx), ' workers: True (outp == 3 * inp)'
    else
      print '(a, 1x, i2, a)', names(k), psh_context_num_workers(ctx), ' workers: False'
      failed = 1
    end if
    call psh_functor_destroy(f)
    call psh_array_free(outp)
    call psh_array_free(inp)
    call psh_context_destroy(ctx)
  end do
  if (failed /= 0) error stop 1
end program
