! The Fortran binding of libpasha: the whole C API of include/pasha/pasha.h
! through iso_c_binding, plus helpers that give Fortran pointer arrays onto
! psh arrays (allocate them in Fortran order with psh_alloc_f) and turn C
! strings into Fortran strings.
!
! Kernels are bind(C) functions with the psh_kernel interface below; pass
! them with c_funloc. Results must be written into psh arrays: in a
! PSH_PROCESSES context nothing else a kernel writes reaches the caller.
!
! SPDX-License-Identifier: BSD-3-Clause
module pasha
  use, intrinsic :: iso_c_binding
  implicit none
  private :: check_array

  ! The version of libpasha this module belongs to (as pasha_version.h;
  ! tools/check-version.py keeps it equal to meson.build's version).
  integer(c_int), parameter :: PSH_VERSION_MAJOR = 0, PSH_VERSION_MINOR = 2, PSH_VERSION_PATCH = 0
  ! (PSH_VERSION_NUMBER of C would clash with the function psh_version_number:
  ! Fortran names ignore case.)
  integer(c_int), parameter :: PSH_MODULE_VERSION_NUMBER = &
    PSH_VERSION_MAJOR * 10000 + PSH_VERSION_MINOR * 100 + PSH_VERSION_PATCH
  character(len=*), parameter :: PSH_VERSION_STRING = '0.2.0'

  ! Status codes (negative on failure).
  integer(c_int), parameter :: PSH_OK = 0         !< success
  integer(c_int), parameter :: PSH_EINVAL = -1    !< invalid argument
  integer(c_int), parameter :: PSH_ENOMEM = -2    !< out of memory or /dev/shm space
  integer(c_int), parameter :: PSH_ESYS = -3      !< a system call failed
  integer(c_int), parameter :: PSH_EKERNEL = -4   !< a kernel returned non-zero
  integer(c_int), parameter :: PSH_EWORKER = -5   !< a worker process died
  integer(c_int), parameter :: PSH_ECANCELED = -6 !< cancelled by the cancel flag
  integer(c_int), parameter :: PSH_ENOTSUP = -7   !< not supported here

  ! psh_kind: how the workers of a context run.
  integer(c_int), parameter :: PSH_SERIAL = 0, PSH_THREADS = 1, PSH_PROCESSES = 2, PSH_MPI = 3

  ! psh_schedule: how indices are split among the workers.
  integer(c_int), parameter :: PSH_SCHEDULE_CONTEXT = -1, PSH_SCHEDULE_STATIC = 0, &
                               PSH_SCHEDULE_DYNAMIC = 1, PSH_SCHEDULE_GUIDED = 2

  ! psh_dtype: element types.
  integer(c_int), parameter :: PSH_INT8 = 0, PSH_UINT8 = 1, PSH_INT16 = 2, PSH_UINT16 = 3, &
                               PSH_INT32 = 4, PSH_UINT32 = 5, PSH_INT64 = 6, PSH_UINT64 = 7, &
                               PSH_FLOAT32 = 8, PSH_FLOAT64 = 9, PSH_COMPLEX64 = 10, &
                               PSH_COMPLEX128 = 11

  ! psh_order: memory order. Fortran arrays are PSH_ORDER_F.
  integer(c_int), parameter :: PSH_ORDER_DEFAULT = 0, PSH_ORDER_C = 1, PSH_ORDER_F = 2

  ! psh_alloc_options%per_worker: rows 128-byte aligned and at least 128
  ! bytes apart (not contiguous: psh_array_pointer refuses such arrays).
  integer(c_int), parameter :: PSH_PER_WORKER_PADDED = 2

  !> psh_context_options; fill with psh_context_options_init first.
  type, bind(C) :: psh_context_options
    integer(c_size_t) :: struct_size
    integer(c_int) :: kind
    integer(c_int) :: num_workers
    integer(c_int) :: persistent
    integer(c_int) :: schedule
    integer(c_size_t) :: chunk
    integer(c_int) :: pin_cpus
  end type

  !> psh_alloc_options; fill with psh_alloc_options_init first.
  type, bind(C) :: psh_alloc_options
    integer(c_size_t) :: struct_size
    integer(c_int) :: order
    type(c_ptr) :: fill
    integer(c_int) :: per_worker
  end type

  !> psh_view: a sub-array handed to kernels by psh_functor_array.
  type, bind(C) :: psh_view
    type(c_ptr) :: data
    integer(c_int) :: dtype
    integer(c_int) :: ndim
    type(c_ptr) :: shape    !< ndim size_t
    type(c_ptr) :: strides  !< ndim ptrdiff_t, in bytes
  end type

  !> psh_functor_vtable: callbacks of a custom functor (c_funloc of bind(C)
  !> procedures; c_null_funptr for the optional ones).
  type, bind(C) :: psh_functor_vtable
    integer(c_size_t) :: struct_size
    type(c_funptr) :: length
    type(c_funptr) :: get
    type(c_funptr) :: worker_begin
    type(c_funptr) :: worker_end
  end type

  !> psh_map_options; fill with psh_map_options_init_size(opts, c_sizeof(opts))
  !> first (psh_map_options_init fills only the fields of pasha 0.2, up to
  !> user_data_size). worker_begin / worker_end: c_null_funptr or c_funloc of
  !> a bind(C) integer(c_int) function (user_data, worker_id), run in each
  !> worker once per map before its first / after its last item; non-zero
  !> fails the map like a kernel error.
  type, bind(C) :: psh_map_options
    integer(c_size_t) :: struct_size
    integer(c_int) :: schedule
    integer(c_size_t) :: chunk
    type(c_funptr) :: progress
    type(c_ptr) :: progress_data
    type(c_ptr) :: cancel
    integer(c_size_t) :: user_data_size
    type(c_funptr) :: worker_begin
    type(c_funptr) :: worker_end
  end type

  !> psh_error_info: what psh_last_error_info says about this thread's last
  !> failed call, as data. Set struct_size = c_sizeof(info) before the call;
  !> callback and message are C strings (psh_c_string), callback c_null_ptr
  !> when none; index is 0-based, -1: none; worker_id -1: none.
  type, bind(C) :: psh_error_info
    integer(c_size_t) :: struct_size
    integer(c_int) :: code
    integer(c_int) :: worker_id
    integer(c_long_long) :: index
    integer(c_int) :: signal
    integer(c_int) :: exit_status
    type(c_ptr) :: callback
    type(c_ptr) :: message
  end type

  !> Interfaces that kernels and callbacks must match.
  abstract interface
    !> A kernel: called once per index (0-based); return 0, non-zero stops the map.
    integer(c_int) function psh_kernel(user_data, worker_id, index, value) bind(C)
      import :: c_int, c_size_t, c_ptr
      type(c_ptr), value :: user_data
      integer(c_int), value :: worker_id
      integer(c_size_t), value :: index
      type(c_ptr), value :: value
    end function
    !> A block kernel: called once per chunk [begin, end) (0-based, end excluded).
    integer(c_int) function psh_block_kernel(user_data, worker_id, begin, end) bind(C)
      import :: c_int, c_size_t, c_ptr
      type(c_ptr), value :: user_data
      integer(c_int), value :: worker_id
      integer(c_size_t), value :: begin, end
    end function
    !> A progress callback.
    subroutine psh_progress_fn(user_data, done, total) bind(C)
      import :: c_size_t, c_ptr
      type(c_ptr), value :: user_data
      integer(c_size_t), value :: done, total
    end subroutine
  end interface

  interface
    ! 1. Conventions
    type(c_ptr) function psh_strerror(code) bind(C, name='psh_strerror')
      import :: c_ptr, c_int
      integer(c_int), value :: code
    end function
    type(c_ptr) function psh_last_error() bind(C, name='psh_last_error')
      import :: c_ptr
    end function
    integer(c_int) function psh_last_error_info(info) bind(C, name='psh_last_error_info')
      import :: c_int, psh_error_info
      type(psh_error_info), intent(inout) :: info
    end function
    integer(c_int) function psh_cpu_count() bind(C, name='psh_cpu_count')
      import :: c_int
    end function
    type(c_ptr) function psh_version() bind(C, name='psh_version')
      import :: c_ptr
    end function
    ! unsigned in C: Fortran has no unsigned kind; c_int has its size and the
    ! value (MAJOR * 10000 + MINOR * 100 + PATCH) fits.
    integer(c_int) function psh_version_number() bind(C, name='psh_version_number')
      import :: c_int
    end function

    ! 2. Contexts
    integer(c_int) function psh_context_create(out, kind, num_workers) bind(C, name='psh_context_create')
      import :: c_int, c_ptr
      type(c_ptr), intent(out) :: out
      integer(c_int), value :: kind, num_workers
    end function
    type(c_ptr) function psh_context_reference(ctx) bind(C, name='psh_context_reference')
      import :: c_ptr
      type(c_ptr), value :: ctx
    end function
    subroutine psh_context_destroy(ctx) bind(C, name='psh_context_destroy')
      import :: c_ptr
      type(c_ptr), value :: ctx
    end subroutine
    integer(c_int) function psh_context_num_workers(ctx) bind(C, name='psh_context_num_workers')
      import :: c_int, c_ptr
      type(c_ptr), value :: ctx
    end function
    integer(c_int) function psh_context_kind(ctx) bind(C, name='psh_context_kind')
      import :: c_int, c_ptr
      type(c_ptr), value :: ctx
    end function
    type(c_ptr) function psh_get_default_context() bind(C, name='psh_get_default_context')
      import :: c_ptr
    end function
    type(c_ptr) function psh_default_context_ref() bind(C, name='psh_default_context_ref')
      import :: c_ptr
    end function
    integer(c_int) function psh_register_fork_hooks(prepare, parent, child, data) &
        bind(C, name='psh_register_fork_hooks')
      import :: c_int, c_funptr, c_ptr
      type(c_funptr), value :: prepare, parent, child
      type(c_ptr), value :: data
    end function
    integer(c_int) function psh_set_default_context(ctx) bind(C, name='psh_set_default_context')
      import :: c_int, c_ptr
      type(c_ptr), value :: ctx
    end function
    integer(c_int) function psh_set_default_kind(kind, num_workers) bind(C, name='psh_set_default_kind')
      import :: c_int
      integer(c_int), value :: kind, num_workers
    end function
    subroutine psh_context_options_init(opts) bind(C, name='psh_context_options_init')
      import :: psh_context_options
      type(psh_context_options), intent(inout) :: opts
    end subroutine
    integer(c_int) function psh_context_create_ext(out, opts) bind(C, name='psh_context_create_ext')
      import :: c_int, c_ptr, psh_context_options
      type(c_ptr), intent(out) :: out
      type(psh_context_options), intent(in) :: opts
    end function
    integer(c_int) function psh_context_schedule(ctx) bind(C, name='psh_context_schedule')
      import :: c_int, c_ptr
      type(c_ptr), value :: ctx
    end function

    ! 3. Arrays
    subroutine psh_alloc_options_init(opts) bind(C, name='psh_alloc_options_init')
      import :: psh_alloc_options
      type(psh_alloc_options), intent(inout) :: opts
    end subroutine
    !> shape: ndim lengths in the order of the memory layout's dimensions;
    !> pass c_null_ptr via psh_alloc_ptr to use the default options.
    integer(c_int) function psh_alloc(out, ctx, dtype, ndim, shape, opts) bind(C, name='psh_alloc')
      import :: c_int, c_ptr, c_size_t, psh_alloc_options
      type(c_ptr), intent(out) :: out
      type(c_ptr), value :: ctx
      integer(c_int), value :: dtype, ndim
      integer(c_size_t), intent(in) :: shape(*)
      type(psh_alloc_options), intent(in) :: opts
    end function
    integer(c_int) function psh_alloc_like(out, ctx, like, opts) bind(C, name='psh_alloc_like')
      import :: c_int, c_ptr, psh_alloc_options
      type(c_ptr), intent(out) :: out
      type(c_ptr), value :: ctx, like
      type(psh_alloc_options), intent(in) :: opts
    end function
    subroutine psh_array_free(a) bind(C, name='psh_array_free')
      import :: c_ptr
      type(c_ptr), value :: a
    end subroutine
    type(c_ptr) function psh_array_data(a) bind(C, name='psh_array_data')
      import :: c_ptr
      type(c_ptr), value :: a
    end function
    integer(c_int) function psh_array_dtype(a) bind(C, name='psh_array_dtype')
      import :: c_int, c_ptr
      type(c_ptr), value :: a
    end function
    integer(c_int) function psh_array_ndim(a) bind(C, name='psh_array_ndim')
      import :: c_int, c_ptr
      type(c_ptr), value :: a
    end function
    !> Returns a pointer to ndim size_t; see psh_array_shape_f for an array.
    type(c_ptr) function psh_array_shape(a) bind(C, name='psh_array_shape')
      import :: c_ptr
      type(c_ptr), value :: a
    end function
    type(c_ptr) function psh_array_strides(a) bind(C, name='psh_array_strides')
      import :: c_ptr
      type(c_ptr), value :: a
    end function
    integer(c_int) function psh_array_order(a) bind(C, name='psh_array_order')
      import :: c_int, c_ptr
      type(c_ptr), value :: a
    end function
    integer(c_size_t) function psh_array_size(a) bind(C, name='psh_array_size')
      import :: c_size_t, c_ptr
      type(c_ptr), value :: a
    end function
    integer(c_size_t) function psh_array_nbytes(a) bind(C, name='psh_array_nbytes')
      import :: c_size_t, c_ptr
      type(c_ptr), value :: a
    end function
    integer(c_size_t) function psh_dtype_size(dtype) bind(C, name='psh_dtype_size')
      import :: c_size_t, c_int
      integer(c_int), value :: dtype
    end function

    ! 4. Functors
    integer(c_int) function psh_functor_range(out, n) bind(C, name='psh_functor_range')
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), intent(out) :: out
      integer(c_size_t), value :: n
    end function
    integer(c_int) function psh_functor_sequence(out, base, count, stride) bind(C, name='psh_functor_sequence')
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), intent(out) :: out
      type(c_ptr), value :: base
      integer(c_size_t), value :: count, stride
    end function
    integer(c_int) function psh_functor_array(out, a, axis) bind(C, name='psh_functor_array')
      import :: c_int, c_ptr
      type(c_ptr), intent(out) :: out
      type(c_ptr), value :: a
      integer(c_int), value :: axis
    end function
    integer(c_int) function psh_functor_strided(out, data, dtype, ndim, shape, strides, axis) &
        bind(C, name='psh_functor_strided')
      import :: c_int, c_ptr
      type(c_ptr), intent(out) :: out
      type(c_ptr), value :: data
      integer(c_int), value :: dtype, ndim
      type(c_ptr), value :: shape, strides
      integer(c_int), value :: axis
    end function
    integer(c_int) function psh_functor_custom(out, vt, self) bind(C, name='psh_functor_custom')
      import :: c_int, c_ptr, psh_functor_vtable
      type(c_ptr), intent(out) :: out
      type(psh_functor_vtable), intent(in) :: vt
      type(c_ptr), value :: self
    end function
    integer(c_size_t) function psh_functor_length(f) bind(C, name='psh_functor_length')
      import :: c_size_t, c_ptr
      type(c_ptr), value :: f
    end function
    subroutine psh_functor_destroy(f) bind(C, name='psh_functor_destroy')
      import :: c_ptr
      type(c_ptr), value :: f
    end subroutine

    ! 5. Map
    integer(c_int) function psh_map(ctx, kernel, user_data, functor) bind(C, name='psh_map')
      import :: c_int, c_ptr, c_funptr
      type(c_ptr), value :: ctx
      type(c_funptr), value :: kernel
      type(c_ptr), value :: user_data, functor
    end function
    integer(c_int) function psh_map_blocks(ctx, kernel, user_data, n) bind(C, name='psh_map_blocks')
      import :: c_int, c_ptr, c_funptr, c_size_t
      type(c_ptr), value :: ctx
      type(c_funptr), value :: kernel
      type(c_ptr), value :: user_data
      integer(c_size_t), value :: n
    end function
    subroutine psh_map_options_init_size(opts, struct_size) bind(C, name='psh_map_options_init_size')
      import :: psh_map_options, c_size_t
      type(psh_map_options), intent(inout) :: opts
      integer(c_size_t), value :: struct_size
    end subroutine
    subroutine psh_map_options_init(opts) bind(C, name='psh_map_options_init')
      import :: psh_map_options
      type(psh_map_options), intent(inout) :: opts
    end subroutine
    integer(c_int) function psh_map_ext(ctx, kernel, user_data, functor, opts) bind(C, name='psh_map_ext')
      import :: c_int, c_ptr, c_funptr, psh_map_options
      type(c_ptr), value :: ctx
      type(c_funptr), value :: kernel
      type(c_ptr), value :: user_data, functor
      type(psh_map_options), intent(in) :: opts
    end function
    integer(c_int) function psh_map_blocks_ext(ctx, kernel, user_data, n, opts) bind(C, name='psh_map_blocks_ext')
      import :: c_int, c_ptr, c_funptr, c_size_t, psh_map_options
      type(c_ptr), value :: ctx
      type(c_funptr), value :: kernel
      type(c_ptr), value :: user_data
      integer(c_size_t), value :: n
      type(psh_map_options), intent(in) :: opts
    end function
  end interface

  !> Point a Fortran array pointer at the data of a psh array, with the
  !> array's shape (it must be in Fortran order and of the pointer's type
  !> and rank): call psh_array_pointer(a, p).
  interface psh_array_pointer
    module procedure psh_array_pointer_r8_1, psh_array_pointer_r8_2, psh_array_pointer_r8_3
    module procedure psh_array_pointer_r4_1, psh_array_pointer_r4_2
    module procedure psh_array_pointer_i4_1, psh_array_pointer_i4_2
    module procedure psh_array_pointer_i8_1, psh_array_pointer_i8_2
  end interface

contains

  !> A C string (const char *) as a Fortran string.
  function psh_c_string(p) result(s)
    type(c_ptr), intent(in) :: p
    character(len=:), allocatable :: s
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n
    if (.not. c_associated(p)) then
      s = ''
      return
    end if
    ! The library's strings are short; 65536 bounds the scan.
    call c_f_pointer(p, chars, [65536])
    n = 0
    do while (n < 65536)
      if (chars(n + 1) == c_null_char) exit
      n = n + 1
    end do
    allocate(character(len=n) :: s)
    do i = 1, n
      s(i:i) = chars(i)
    end do
  end function

  !> psh_last_error() as a Fortran string.
  function psh_error_message() result(s)
    character(len=:), allocatable :: s
    s = psh_c_string(psh_last_error())
  end function

  !> psh_strerror(code) as a Fortran string.
  function psh_error_name(code) result(s)
    integer(c_int), intent(in) :: code
    character(len=:), allocatable :: s
    s = psh_c_string(psh_strerror(code))
  end function

  !> Allocate a psh array in Fortran order with the shape of a Fortran
  !> array, e.g. psh_alloc_f(a, ctx, PSH_FLOAT64, [nx, ny]) with nx, ny
  !> integer(c_size_t) (shapes are size_t in C: no 32-bit limit). per_worker
  !> (optional, default .false.) adds a last axis of num_workers, to be
  !> indexed by worker_id + 1. ctx may be c_null_ptr (the default context).
  integer(c_int) function psh_alloc_f(out, ctx, dtype, shape, per_worker) result(rc)
    type(c_ptr), intent(out) :: out
    type(c_ptr), intent(in) :: ctx
    integer(c_int), intent(in) :: dtype
    integer(c_size_t), intent(in) :: shape(:)
    logical, intent(in), optional :: per_worker
    type(psh_alloc_options) :: opts
    integer(c_size_t) :: cshape(max(1, size(shape)))
    call psh_alloc_options_init(opts)
    opts%order = PSH_ORDER_F
    if (present(per_worker)) then
      if (per_worker) opts%per_worker = 1
    end if
    if (any(shape < 0)) then
      out = c_null_ptr
      rc = PSH_EINVAL
      return
    end if
    cshape(1:size(shape)) = shape
    rc = psh_alloc(out, ctx, dtype, int(size(shape), c_int), cshape, opts)
  end function

  !> The shape of a psh array as an integer(c_size_t) Fortran array.
  function psh_array_shape_f(a) result(shape)
    type(c_ptr), intent(in) :: a
    integer(c_size_t), allocatable :: shape(:)
    integer(c_size_t), pointer :: s(:)
    integer :: n
    n = psh_array_ndim(a)
    allocate(shape(n))
    if (n == 0) return
    call c_f_pointer(psh_array_shape(a), s, [n])
    shape = s
  end function

  !> The shape and byte strides of a psh_view handed to a kernel.
  subroutine psh_view_get(value, view, shape, strides)
    type(c_ptr), intent(in) :: value
    type(psh_view), pointer, intent(out) :: view
    integer(c_size_t), pointer, intent(out) :: shape(:)
    integer(c_ptrdiff_t), pointer, intent(out) :: strides(:)
    call c_f_pointer(value, view)
    call c_f_pointer(view%shape, shape, [max(0, view%ndim)])
    call c_f_pointer(view%strides, strides, [max(0, view%ndim)])
  end subroutine

  logical function check_array(a, dtype, rank)
    type(c_ptr), intent(in) :: a
    integer(c_int), intent(in) :: dtype
    integer, intent(in) :: rank
    integer(c_int) :: adtype, andim, aorder
    integer(c_size_t), pointer :: sh(:)
    integer(c_ptrdiff_t), pointer :: st(:)
    integer(c_ptrdiff_t) :: want
    integer :: i
    check_array = .false.
    if (.not. c_associated(a)) return
    adtype = psh_array_dtype(a)
    andim = psh_array_ndim(a)
    aorder = psh_array_order(a)
    if (adtype /= dtype .or. andim /= rank) return
    if (rank > 1 .and. aorder /= PSH_ORDER_F) return
    ! One contiguous run only (padded per-worker rows are not).
    if (rank > 0) then
      call c_f_pointer(psh_array_shape(a), sh, [rank])
      call c_f_pointer(psh_array_strides(a), st, [rank])
      want = int(psh_dtype_size(dtype), c_ptrdiff_t)
      do i = 1, rank
        if (sh(i) == 0) exit
        if (sh(i) /= 1 .and. st(i) /= want) return
        want = want * int(sh(i), c_ptrdiff_t)
      end do
    end if
    check_array = .true.
  end function

  ! psh_array_pointer(a, p) for each type and rank; p is nullified when
  ! a's dtype, rank or (rank > 1) order do not match, or its elements are
  ! not contiguous (PSH_PER_WORKER_PADDED).

  subroutine psh_array_pointer_r8_1(a, p)
    type(c_ptr), intent(in) :: a
    real(c_double), pointer, intent(out) :: p(:)
    if (.not. check_array(a, PSH_FLOAT64, 1)) then
      nullify(p)
      return
    end if
    call c_f_pointer(psh_array_data(a), p, psh_array_shape_f(a))
  end subroutine

  subroutine psh_array_pointer_r8_2(a, p)
    type(c_ptr), intent(in) :: a
    real(c_double), pointer, intent(out) :: p(:,:)
    if (.not. check_array(a, PSH_FLOAT64, 2)) then
      nullify(p)
      return
    end if
    call c_f_pointer(psh_array_data(a), p, psh_array_shape_f(a))
  end subroutine

  subroutine psh_array_pointer_r8_3(a, p)
    type(c_ptr), intent(in) :: a
    real(c_double), pointer, intent(out) :: p(:,:,:)
    if (.not. check_array(a, PSH_FLOAT64, 3)) then
      nullify(p)
      return
    end if
    call c_f_pointer(psh_array_data(a), p, psh_array_shape_f(a))
  end subroutine

  subroutine psh_array_pointer_r4_1(a, p)
    type(c_ptr), intent(in) :: a
    real(c_float), pointer, intent(out) :: p(:)
    if (.not. check_array(a, PSH_FLOAT32, 1)) then
      nullify(p)
      return
    end if
    call c_f_pointer(psh_array_data(a), p, psh_array_shape_f(a))
  end subroutine

  subroutine psh_array_pointer_r4_2(a, p)
    type(c_ptr), intent(in) :: a
    real(c_float), pointer, intent(out) :: p(:,:)
    if (.not. check_array(a, PSH_FLOAT32, 2)) then
      nullify(p)
      return
    end if
    call c_f_pointer(psh_array_data(a), p, psh_array_shape_f(a))
  end subroutine

  subroutine psh_array_pointer_i4_1(a, p)
    type(c_ptr), intent(in) :: a
    integer(c_int32_t), pointer, intent(out) :: p(:)
    if (.not. check_array(a, PSH_INT32, 1)) then
      nullify(p)
      return
    end if
    call c_f_pointer(psh_array_data(a), p, psh_array_shape_f(a))
  end subroutine

  subroutine psh_array_pointer_i4_2(a, p)
    type(c_ptr), intent(in) :: a
    integer(c_int32_t), pointer, intent(out) :: p(:,:)
    if (.not. check_array(a, PSH_INT32, 2)) then
      nullify(p)
      return
    end if
    call c_f_pointer(psh_array_data(a), p, psh_array_shape_f(a))
  end subroutine

  subroutine psh_array_pointer_i8_1(a, p)
    type(c_ptr), intent(in) :: a
    integer(c_int64_t), pointer, intent(out) :: p(:)
    if (.not. check_array(a, PSH_INT64, 1)) then
      nullify(p)
      return
    end if
    call c_f_pointer(psh_array_data(a), p, psh_array_shape_f(a))
  end subroutine

  subroutine psh_array_pointer_i8_2(a, p)
    type(c_ptr), intent(in) :: a
    integer(c_int64_t), pointer, intent(out) :: p(:,:)
    if (.not. check_array(a, PSH_INT64, 2)) then
      nullify(p)
      return
    end if
    call c_f_pointer(psh_array_data(a), p, psh_array_shape_f(a))
  end subroutine
end module pasha
