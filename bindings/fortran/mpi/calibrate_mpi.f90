! Calibrate detector frames over MPI ranks, in Fortran: out = (raw - offset)
! * gain, one frame per item, the frames split over the ranks and, in each
! rank, over its threads. The arrays live in one shared buffer per node; a
! gather brings every frame to rank 0, a reduce sums per-worker totals.
! Adapt it: replace make_frame by reading your frame i, calibrate by your
! per-frame work; run it with docs/slurm/pasha-fortran.sbatch.
!
!   mpirun -n 2 ./calibrate_mpi [frames]
module calibrate_kernels
  use, intrinsic :: iso_c_binding
  use pasha
  implicit none
  integer, parameter :: ROWS = 64, COLS = 32
  ! The constants: small, every rank makes its own before the maps (a
  ! PSH_PROCESSES context's workers get a copy when they are forked).
  real(c_float) :: offset(ROWS, COLS), gain(ROWS, COLS)
  ! The psh arrays the kernels write: raw(ROWS, COLS, frames), out likewise,
  ! total(workers): per-worker sums.
  type(c_ptr) :: raw_a, out_a, total_a
contains
  !> Stands in for reading frame i (0-based) from a file.
  integer(c_int) function make_frame(user_data, worker_id, index, value) bind(C) result(rc)
    type(c_ptr), value :: user_data, value
    integer(c_int), value :: worker_id
    integer(c_size_t), value :: index
    real(c_float), pointer :: raw(:, :, :)
    integer :: r, c
    call c_f_pointer(psh_array_data(raw_a), raw, [ROWS, COLS, int(psh_array_size(raw_a)) / (ROWS * COLS)])
    do c = 1, COLS
      do r = 1, ROWS
        raw(r, c, index + 1) = real(mod(int(index) + r + c, 1000), c_float)
      end do
    end do
    rc = 0
    if (c_associated(user_data) .or. c_associated(value) .or. worker_id < 0) rc = 1
  end function

  !> Calibrate frame i and add its sum to this worker's total.
  integer(c_int) function calibrate(user_data, worker_id, index, value) bind(C) result(rc)
    type(c_ptr), value :: user_data, value
    integer(c_int), value :: worker_id
    integer(c_size_t), value :: index
    real(c_float), pointer :: raw(:, :, :), out(:, :, :)
    real(c_double), pointer :: total(:)
    integer :: frames
    frames = int(psh_array_size(raw_a)) / (ROWS * COLS)
    call c_f_pointer(psh_array_data(raw_a), raw, [ROWS, COLS, frames])
    call c_f_pointer(psh_array_data(out_a), out, [ROWS, COLS, frames])
    call psh_array_pointer(total_a, total)
    out(:, :, index + 1) = (raw(:, :, index + 1) - offset) * gain
    total(worker_id + 1) = total(worker_id + 1) + sum(real(out(:, :, index + 1), c_double))
    rc = 0
    if (c_associated(user_data) .or. c_associated(value)) rc = 1
  end function
end module

program calibrate_mpi
  use, intrinsic :: iso_c_binding
  use mpi_f08
  use pasha
  use pasha_mpi
  use calibrate_kernels
  implicit none
  type(c_ptr) :: ctx, range
  integer :: rank, frames, i, r, c, ierr
  character(len=32) :: arg
  real(c_float), pointer :: out(:, :, :)
  real(c_double), pointer :: total(:)
  real(c_double) :: expect, gathered

  call MPI_Init(ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank)
  frames = 100
  if (command_argument_count() > 0) then
    call get_command_argument(1, arg)
    read (arg, *) frames
  end if

  ! Threads inside each rank; 0 workers: the default (PASHA_NUM_WORKERS,
  ! else the CPUs this rank may use).
  call try(psh_context_create_mpi(ctx, MPI_COMM_WORLD, PSH_THREADS, 0_c_int))
  call try(psh_alloc_f(raw_a, ctx, PSH_FLOAT32, [integer(c_size_t) :: ROWS, COLS, frames]))
  call try(psh_alloc_f(out_a, ctx, PSH_FLOAT32, [integer(c_size_t) :: ROWS, COLS, frames]))
  call try(psh_alloc_f(total_a, ctx, PSH_FLOAT64, [integer(c_size_t) ::], per_worker=.true.))
  do c = 1, COLS
    do r = 1, ROWS
      offset(r, c) = real(mod(r + ROWS * (c - 1), 7), c_float)
      gain(r, c) = 1 + 0.5 * real(mod(r + ROWS * (c - 1), 3), c_float)
    end do
  end do

  ! Each rank maps its block of frames: global frame indices.
  call try(psh_functor_range(range, int(frames, c_size_t)))
  call try(psh_map(ctx, c_funloc(make_frame), c_null_ptr, range))
  call try(psh_map(ctx, c_funloc(calibrate), c_null_ptr, range))
  ! Every frame on rank 0 (the last axis is the one split over the ranks),
  ! and the per-worker totals summed there.
  call try(psh_mpi_gather(ctx, out_a, 0_c_int))
  call try(psh_mpi_reduce(ctx, total_a, PSH_OP_SUM, 0_c_int))

  if (rank == 0) then
    call c_f_pointer(psh_array_data(out_a), out, [ROWS, COLS, frames])
    call psh_array_pointer(total_a, total)
    expect = 0
    do i = 0, frames - 1
      do c = 1, COLS
        do r = 1, ROWS
          expect = expect + (real(mod(i + r + c, 1000), c_double) - offset(r, c)) * gain(r, c)
        end do
      end do
    end do
    gathered = sum(real(out, c_double))
    print '(i0, a, i0, a, f0.1, a, f0.1, a, f0.1, a)', frames, ' frames on ', psh_context_num_workers(ctx), &
      ' workers: sum ', sum(total), ' (gathered ', gathered, ', expected ', expect, ')'
    if (abs(sum(total) - expect) > 1e-6 * abs(expect) .or. abs(gathered - expect) > 1e-6 * abs(expect)) then
      write (0, '(a)') 'mismatch'
      call MPI_Abort(MPI_COMM_WORLD, 1)
    end if
  end if

  call psh_functor_destroy(range)
  call psh_array_free(total_a)
  call psh_array_free(out_a)
  call psh_array_free(raw_a)
  call psh_context_destroy(ctx)
  call MPI_Finalize(ierr)

contains

  !> Stop every rank on an error (the library returns it on all of them).
  subroutine try(rc)
    integer(c_int), intent(in) :: rc
    if (rc /= PSH_OK) then
      write (0, '(a, i0, a)') 'rank ', rank, ': ' // psh_error_name(rc) // ': ' // psh_error_message()
      call MPI_Abort(MPI_COMM_WORLD, 1)
    end if
  end subroutine
end program
