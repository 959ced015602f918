//! Raw declarations of the libpasha C API (`include/pasha/pasha.h`), one to
//! one: every function, struct, callback type and constant of the header.
//! Everything here is `unsafe` to call; the safe API is the `pasha` crate.
//! See the header for what each function does, who owns what, and the errors
//! it returns.
//!
//! The version constants (`PSH_VERSION_*`) are those of the header this
//! crate mirrors; `psh_version_number()` is the library's at run time.
//!
//! The declarations are checked against the header by this crate's layout
//! test (`tests/layout.rs`, after git2-rs's systest): it compiles a small C
//! program that prints `sizeof`, `_Alignof` and `offsetof` of every struct
//! and the value of every constant, compares them with `size_of`,
//! `align_of` and `offset_of!` here, and compares every prototype and
//! callback type of the header with the declaration here, so that a header
//! change that is not mirrored here fails the test.
//!
//! Linking: `build.rs` finds libpasha with pkg-config (see README.md for how
//! a program finds `libpasha.so` at run time).
#![no_std]
#![allow(non_camel_case_types)]

use core::ffi::{c_char, c_int, c_uint, c_void, CStr};

/// The major version of the header these declarations mirror
/// (`pasha_version.h`).
pub const PSH_VERSION_MAJOR: c_uint = 0;
/// The minor version of the header.
pub const PSH_VERSION_MINOR: c_uint = 2;
/// The patch version of the header.
pub const PSH_VERSION_PATCH: c_uint = 0;
/// `MAJOR * 10000 + MINOR * 100 + PATCH`: compare with
/// `psh_version_number()`, the version of the library loaded at run time.
pub const PSH_VERSION_NUMBER: c_uint = PSH_VERSION_MAJOR * 10000 + PSH_VERSION_MINOR * 100 + PSH_VERSION_PATCH;
/// The header's version as "MAJOR.MINOR.PATCH".
pub const PSH_VERSION_STRING: &CStr = c"0.2.0";

/// Success.
pub const PSH_OK: c_int = 0;
/// An argument was invalid.
pub const PSH_EINVAL: c_int = -1;
/// Out of memory, or out of space in /dev/shm.
pub const PSH_ENOMEM: c_int = -2;
/// A system call failed.
pub const PSH_ESYS: c_int = -3;
/// The kernel (or a functor callback) returned non-zero.
pub const PSH_EKERNEL: c_int = -4;
/// A worker process died.
pub const PSH_EWORKER: c_int = -5;
/// The map was cancelled through its cancel flag.
pub const PSH_ECANCELED: c_int = -6;
/// Not supported in this build or on this platform.
pub const PSH_ENOTSUP: c_int = -7;

/// `psh_kind`: how the workers of a context run.
pub type psh_kind = c_int;
/// In the calling thread.
pub const PSH_SERIAL: psh_kind = 0;
/// A pool of threads.
pub const PSH_THREADS: psh_kind = 1;
/// Forked processes.
pub const PSH_PROCESSES: psh_kind = 2;
/// MPI ranks.
pub const PSH_MPI: psh_kind = 3;

/// `psh_schedule`: how indices are split among workers.
pub type psh_schedule = c_int;
/// In psh_map_options only: the context's schedule.
pub const PSH_SCHEDULE_CONTEXT: psh_schedule = -1;
/// Contiguous equal shares.
pub const PSH_SCHEDULE_STATIC: psh_schedule = 0;
/// Chunks from a shared counter.
pub const PSH_SCHEDULE_DYNAMIC: psh_schedule = 1;
/// Shrinking chunks.
pub const PSH_SCHEDULE_GUIDED: psh_schedule = 2;

/// `psh_dtype`: element types.
pub type psh_dtype = c_int;
/// int8
pub const PSH_INT8: psh_dtype = 0;
/// uint8
pub const PSH_UINT8: psh_dtype = 1;
/// int16
pub const PSH_INT16: psh_dtype = 2;
/// uint16
pub const PSH_UINT16: psh_dtype = 3;
/// int32
pub const PSH_INT32: psh_dtype = 4;
/// uint32
pub const PSH_UINT32: psh_dtype = 5;
/// int64
pub const PSH_INT64: psh_dtype = 6;
/// uint64
pub const PSH_UINT64: psh_dtype = 7;
/// float32
pub const PSH_FLOAT32: psh_dtype = 8;
/// float64
pub const PSH_FLOAT64: psh_dtype = 9;
/// complex64 (two float32)
pub const PSH_COMPLEX64: psh_dtype = 10;
/// complex128 (two float64)
pub const PSH_COMPLEX128: psh_dtype = 11;

/// `psh_order`: memory order.
pub type psh_order = c_int;
/// C for psh_alloc, like's for psh_alloc_like.
pub const PSH_ORDER_DEFAULT: psh_order = 0;
/// Row-major.
pub const PSH_ORDER_C: psh_order = 1;
/// Column-major.
pub const PSH_ORDER_F: psh_order = 2;

/// `psh_alloc_options.per_worker` value: per-worker rows 128-byte aligned
/// with a gap of at least 128 bytes (not contiguous: index with the strides).
pub const PSH_PER_WORKER_PADDED: c_int = 2;

/// Opaque context.
#[repr(C)]
pub struct psh_context {
    _private: [u8; 0],
}
/// Opaque shared-memory array.
#[repr(C)]
pub struct psh_array {
    _private: [u8; 0],
}
/// Opaque functor.
#[repr(C)]
pub struct psh_functor {
    _private: [u8; 0],
}

/// `psh_context_options`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct psh_context_options {
    /// Set by psh_context_options_init.
    pub struct_size: usize,
    /// Kind of context.
    pub kind: psh_kind,
    /// Number of workers, <= 0 for the default.
    pub num_workers: c_int,
    /// PSH_PROCESSES: fork once at creation.
    pub persistent: c_int,
    /// Schedule.
    pub schedule: psh_schedule,
    /// Chunk size, 0: the library chooses.
    pub chunk: usize,
    /// Pin workers to CPUs.
    pub pin_cpus: c_int,
}

/// `psh_alloc_options`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct psh_alloc_options {
    /// Set by psh_alloc_options_init.
    pub struct_size: usize,
    /// Memory order.
    pub order: psh_order,
    /// NULL, or one element copied into every element.
    pub fill: *const c_void,
    /// Add a worker axis.
    pub per_worker: c_int,
}

/// `psh_view`: a sub-array handed to kernels.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct psh_view {
    /// First element.
    pub data: *mut c_void,
    /// Element type.
    pub dtype: psh_dtype,
    /// Number of dimensions.
    pub ndim: c_int,
    /// ndim lengths.
    pub shape: *const usize,
    /// ndim byte strides.
    pub strides: *const isize,
}

/// `psh_functor_vtable`: callbacks of a custom functor.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct psh_functor_vtable {
    /// sizeof(psh_functor_vtable).
    pub struct_size: usize,
    /// Number of items.
    pub length: Option<unsafe extern "C" fn(*mut c_void) -> usize>,
    /// Value for an index.
    pub get: Option<unsafe extern "C" fn(*mut c_void, usize, *mut *const c_void) -> c_int>,
    /// Optional worker start hook.
    pub worker_begin: Option<unsafe extern "C" fn(*mut c_void, c_int) -> c_int>,
    /// Optional worker end hook.
    pub worker_end: Option<unsafe extern "C" fn(*mut c_void, c_int)>,
}

/// `psh_kernel`.
pub type psh_kernel = Option<unsafe extern "C" fn(*mut c_void, c_int, usize, *const c_void) -> c_int>;
/// `psh_block_kernel`.
pub type psh_block_kernel = Option<unsafe extern "C" fn(*mut c_void, c_int, usize, usize) -> c_int>;
/// `psh_progress_fn`.
pub type psh_progress_fn = Option<unsafe extern "C" fn(*mut c_void, usize, usize)>;

/// `psh_fork_hook`: run around the forks libpasha makes for its workers.
pub type psh_fork_hook = Option<unsafe extern "C" fn(*mut c_void)>;

/// `psh_map_options`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct psh_map_options {
    /// Set by psh_map_options_init.
    pub struct_size: usize,
    /// Schedule of this map.
    pub schedule: psh_schedule,
    /// Chunk size, 0: the context's.
    pub chunk: usize,
    /// Progress callback.
    pub progress: psh_progress_fn,
    /// Passed to progress.
    pub progress_data: *mut c_void,
    /// Cancel flag.
    pub cancel: *const c_int,
    /// Persistent pools: bytes of user_data to copy.
    pub user_data_size: usize,
}

extern "C" {
    /// See pasha.h.
    pub fn psh_strerror(code: c_int) -> *const c_char;
    /// See pasha.h.
    pub fn psh_last_error() -> *const c_char;
    /// See pasha.h.
    pub fn psh_version() -> *const c_char;
    /// See pasha.h: the loaded library's version as
    /// `MAJOR * 10000 + MINOR * 100 + PATCH`.
    pub fn psh_version_number() -> c_uint;
    /// See pasha.h.
    pub fn psh_context_create(out: *mut *mut psh_context, kind: psh_kind, num_workers: c_int) -> c_int;
    /// See pasha.h.
    pub fn psh_context_reference(ctx: *mut psh_context) -> *mut psh_context;
    /// See pasha.h.
    pub fn psh_context_destroy(ctx: *mut psh_context);
    /// See pasha.h.
    pub fn psh_context_num_workers(ctx: *const psh_context) -> c_int;
    /// See pasha.h.
    pub fn psh_context_kind(ctx: *const psh_context) -> psh_kind;
    /// See pasha.h.
    pub fn psh_get_default_context() -> *mut psh_context;
    /// See pasha.h: an owned reference to the default context (drop it with
    /// `psh_context_destroy`); NULL if it could not be made.
    pub fn psh_default_context_ref() -> *mut psh_context;
    /// See pasha.h.
    pub fn psh_set_default_context(ctx: *mut psh_context) -> c_int;
    /// See pasha.h.
    pub fn psh_set_default_kind(kind: psh_kind, num_workers: c_int) -> c_int;
    /// See pasha.h.
    pub fn psh_context_options_init(opts: *mut psh_context_options);
    /// See pasha.h.
    pub fn psh_context_create_ext(out: *mut *mut psh_context, opts: *const psh_context_options) -> c_int;
    /// See pasha.h.
    pub fn psh_context_schedule(ctx: *const psh_context) -> psh_schedule;
    /// See pasha.h.
    pub fn psh_alloc_options_init(opts: *mut psh_alloc_options);
    /// See pasha.h.
    pub fn psh_alloc(
        out: *mut *mut psh_array,
        ctx: *mut psh_context,
        dtype: psh_dtype,
        ndim: c_int,
        shape: *const usize,
        opts: *const psh_alloc_options,
    ) -> c_int;
    /// See pasha.h.
    pub fn psh_alloc_like(
        out: *mut *mut psh_array,
        ctx: *mut psh_context,
        like: *const psh_array,
        opts: *const psh_alloc_options,
    ) -> c_int;
    /// See pasha.h.
    pub fn psh_array_free(a: *mut psh_array);
    /// See pasha.h.
    pub fn psh_array_data(a: *const psh_array) -> *mut c_void;
    /// See pasha.h.
    pub fn psh_array_dtype(a: *const psh_array) -> psh_dtype;
    /// See pasha.h.
    pub fn psh_array_ndim(a: *const psh_array) -> c_int;
    /// See pasha.h.
    pub fn psh_array_shape(a: *const psh_array) -> *const usize;
    /// See pasha.h.
    pub fn psh_array_strides(a: *const psh_array) -> *const isize;
    /// See pasha.h.
    pub fn psh_array_order(a: *const psh_array) -> psh_order;
    /// See pasha.h.
    pub fn psh_array_size(a: *const psh_array) -> usize;
    /// See pasha.h.
    pub fn psh_array_nbytes(a: *const psh_array) -> usize;
    /// See pasha.h.
    pub fn psh_dtype_size(dtype: psh_dtype) -> usize;
    /// See pasha.h.
    pub fn psh_functor_range(out: *mut *mut psh_functor, n: usize) -> c_int;
    /// See pasha.h.
    pub fn psh_functor_sequence(out: *mut *mut psh_functor, base: *const c_void, count: usize, stride: usize) -> c_int;
    /// See pasha.h.
    pub fn psh_functor_array(out: *mut *mut psh_functor, a: *const psh_array, axis: c_int) -> c_int;
    /// See pasha.h.
    pub fn psh_functor_strided(
        out: *mut *mut psh_functor,
        data: *const c_void,
        dtype: psh_dtype,
        ndim: c_int,
        shape: *const usize,
        strides: *const isize,
        axis: c_int,
    ) -> c_int;
    /// See pasha.h.
    pub fn psh_functor_custom(out: *mut *mut psh_functor, vt: *const psh_functor_vtable, self_: *mut c_void) -> c_int;
    /// See pasha.h.
    pub fn psh_functor_length(f: *const psh_functor) -> usize;
    /// See pasha.h.
    pub fn psh_functor_destroy(f: *mut psh_functor);
    /// See pasha.h.
    pub fn psh_map(ctx: *mut psh_context, kernel: psh_kernel, user_data: *mut c_void, functor: *mut psh_functor) -> c_int;
    /// See pasha.h.
    pub fn psh_map_blocks(ctx: *mut psh_context, kernel: psh_block_kernel, user_data: *mut c_void, n: usize) -> c_int;
    /// See pasha.h.
    pub fn psh_map_options_init(opts: *mut psh_map_options);
    /// See pasha.h.
    pub fn psh_map_ext(
        ctx: *mut psh_context,
        kernel: psh_kernel,
        user_data: *mut c_void,
        functor: *mut psh_functor,
        opts: *const psh_map_options,
    ) -> c_int;
    /// See pasha.h.
    pub fn psh_map_blocks_ext(
        ctx: *mut psh_context,
        kernel: psh_block_kernel,
        user_data: *mut c_void,
        n: usize,
        opts: *const psh_map_options,
    ) -> c_int;
    /// See pasha.h: hooks run around every fork libpasha makes for a worker
    /// process (prepare, parent, child; any may be NULL, not all three).
    pub fn psh_register_fork_hooks(
        prepare: psh_fork_hook,
        parent: psh_fork_hook,
        child: psh_fork_hook,
        data: *mut c_void,
    ) -> c_int;
}
