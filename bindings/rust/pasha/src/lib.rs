//! Safe Rust bindings to libpasha: apply a closure to every element of a
//! large collection in parallel, on threads or on forked processes, writing
//! results straight into shared memory that every worker and the caller see.
//!
//! ```no_run
//! use pasha::{Context, Kind};
//! let ctx = Context::new(Kind::Threads, 4)?;
//! let mut squares = ctx.alloc::<f64>(&[1000])?;
//! ctx.map_into(0..1000, &mut squares, |_worker, _index, value, out| {
//!     *out = (value * value) as f64;
//!     Ok::<(), std::convert::Infallible>(())
//! })?;
//! assert_eq!(squares[10], 100.0);
//! # Ok::<(), pasha::Error>(())
//! ```
//!
//! # Writing results safely
//!
//! Closures run on several workers at once, so they only get shared (`Fn`)
//! access to what they capture. Results go out through the map itself:
//!
//! * [`Context::map_into`] hands the closure `&mut` to element `index` of an
//!   output [`SharedArray`]; every index is visited exactly once, so these
//!   borrows never alias.
//! * [`Context::map_per_worker`] hands the closure `&mut` to the row of a
//!   per-worker array ([`Context::alloc_per_worker`]) that belongs to the
//!   calling worker; the library never runs two workers with the same id at
//!   once, so these borrows never alias either.
//!
//! Both borrow the output array mutably for the whole map, so nothing else
//! can read or write it meanwhile. The indices a map visits are `0..n` for
//! the `n` that the crate itself passes to libpasha (the source's length);
//! every chunk libpasha hands back is checked against that `n`, and `n`
//! against the output's length, before anything is written.
//! [`Source`] is sealed: only this crate's sources (ranges, slices, `&Vec`,
//! [`SharedArray::along`]) exist, so a source cannot report a length that
//! disagrees with what it hands out.
//!
//! # Speed
//!
//! A map runs the closure inside a block kernel (`psh_map_blocks_ext`): the
//! library hands each worker contiguous chunks of indices, and a
//! trampoline monomorphized for the closure loops over each chunk, so the
//! per-item call is inlined (and vectorized where the closure allows); one
//! `catch_unwind` guards each chunk. How the indices are split is the
//! context's [`Schedule`] ([`Context::builder`]) or the map's
//! ([`MapOptions`], the `*_with` methods): static for even work, dynamic or
//! guided for uneven work.
//!
//! # Processes
//!
//! In a [`Kind::Processes`] context the closure runs in forked children.
//! A child sees the caller's memory as it was when the map started
//! (copy-on-write): it may read everything the closure captures, but only
//! writes into [`SharedArray`]s (through `map_into` / `map_per_worker`)
//! reach the caller; changes to anything else (atomics, `Mutex`es, heap
//! data) are lost with the child. A child must not wait on a lock another
//! thread of the caller held at the fork (it would never be released), and
//! should not print (stdout buffers are not flushed). If a child dies (for
//! instance `std::process::abort`), the map returns an error of kind
//! [`ErrorKind::Worker`] and the context stays usable.
//!
//! Persistent process pools (`psh_context_options.persistent`) are not
//! offered by the safe API: their workers are forked before the map, so
//! they cannot see the closure, which lives on the caller's stack. Use
//! [`sys`] directly, with `user_data_size`, if you need them.
//!
//! # Errors and panics
//!
//! A closure returns `Result<(), E>` with `E: Display`. The first `Err`
//! stops the map and comes back as an [`Error`] of kind
//! [`ErrorKind::Kernel`] whose message names the index and contains the
//! closure's error text (in every kind: a process context passes the text
//! back through shared memory). A panic inside a closure never unwinds into
//! C: it is caught and also reported as `ErrorKind::Kernel`, naming the
//! chunk it happened in. Other workers stop at their next chunk (with the
//! static schedule a worker's whole share is one chunk).
//!
//! # Linking
//!
//! The raw declarations are the `pasha-sys` crate (re-exported as [`sys`]),
//! whose `build.rs` finds libpasha with pkg-config (package `pasha`, else
//! `pasha-uninstalled` from a meson build's `meson-uninstalled/`
//! directory). How a program finds `libpasha.so` at run time (rpath,
//! ldconfig or `LD_LIBRARY_PATH`) is in the crate's README.
#![warn(missing_docs)]

pub use pasha_sys as sys;

use std::ffi::CStr;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut, Range};
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// What went wrong, after the C library's `PSH_E*` status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `PSH_EINVAL`: an argument was invalid.
    Invalid,
    /// `PSH_ENOMEM`: out of memory or out of space in /dev/shm.
    NoMemory,
    /// `PSH_ESYS`: a system call failed.
    System,
    /// `PSH_EKERNEL`: a closure returned `Err` or panicked.
    Kernel,
    /// `PSH_EWORKER`: a worker process died.
    Worker,
    /// `PSH_ECANCELED`: the map was cancelled.
    Canceled,
    /// `PSH_ENOTSUP`: not supported here.
    NotSupported,
    /// Any other status code.
    Other(i32),
}

impl ErrorKind {
    fn from_code(code: c_int) -> ErrorKind {
        match code {
            sys::PSH_EINVAL => ErrorKind::Invalid,
            sys::PSH_ENOMEM => ErrorKind::NoMemory,
            sys::PSH_ESYS => ErrorKind::System,
            sys::PSH_EKERNEL => ErrorKind::Kernel,
            sys::PSH_EWORKER => ErrorKind::Worker,
            sys::PSH_ECANCELED => ErrorKind::Canceled,
            sys::PSH_ENOTSUP => ErrorKind::NotSupported,
            c => ErrorKind::Other(c),
        }
    }
}

/// An error from libpasha: its kind, the raw status code, the message of
/// `psh_last_error()` (plus, for closure errors, the closure's text), and
/// what `psh_last_error_info()` knows as data: which worker, which item,
/// which signal or exit status, which callback. Nothing here is parsed
/// from the message.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    code: i32,
    message: String,
    worker_id: Option<usize>,
    index: Option<usize>,
    signal: Option<i32>,
    exit_status: Option<i32>,
    callback: Option<String>,
}

impl Error {
    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The raw negative `PSH_E*` status code.
    pub fn code(&self) -> i32 {
        self.code
    }
    /// The message, in words.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The worker that failed (or whose process died), if a worker was
    /// involved.
    pub fn worker_id(&self) -> Option<usize> {
        self.worker_id
    }
    /// The item that failed: the exact index when a closure returned `Err`
    /// for it; for a panic, the start of the chunk it happened in; for a
    /// dead worker process, the item it was on. `None` when no item was
    /// involved.
    pub fn index(&self) -> Option<usize> {
        self.index
    }
    /// The signal that ended a worker process (e.g. 6 for SIGABRT).
    pub fn signal(&self) -> Option<i32> {
        self.signal
    }
    /// The exit status of a worker process that exited.
    pub fn exit_status(&self) -> Option<i32> {
        self.exit_status
    }
    /// The libpasha callback that failed, as `psh_error_info.callback`
    /// names it: `"block_kernel"` for the closures of this crate (they run
    /// in block kernels), `"worker_begin"`, `"worker_end"`, ...
    pub fn callback(&self) -> Option<&str> {
        self.callback.as_deref()
    }
    fn last(code: c_int) -> Error {
        let mut info = unsafe { std::mem::zeroed::<sys::psh_error_info>() };
        info.struct_size = std::mem::size_of::<sys::psh_error_info>();
        let text = |p: *const std::os::raw::c_char| {
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        };
        if unsafe { sys::psh_last_error_info(&mut info) } != sys::PSH_OK {
            let message = text(unsafe { sys::psh_last_error() }).unwrap_or_default();
            return Error { message, ..Error::bare(code) };
        }
        Error {
            kind: ErrorKind::from_code(code),
            code,
            message: text(info.message).unwrap_or_default(),
            worker_id: usize::try_from(info.worker_id).ok(),
            index: usize::try_from(info.index).ok(),
            signal: (info.signal != 0).then_some(info.signal),
            exit_status: (info.exit_status >= 0).then_some(info.exit_status),
            callback: text(info.callback),
        }
    }
    fn bare(code: c_int) -> Error {
        Error {
            kind: ErrorKind::from_code(code),
            code,
            message: String::new(),
            worker_id: None,
            index: None,
            signal: None,
            exit_status: None,
            callback: None,
        }
    }
    fn invalid(message: String) -> Error {
        Error { message, ..Error::bare(sys::PSH_EINVAL) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = unsafe { CStr::from_ptr(sys::psh_strerror(self.code)) }.to_string_lossy();
        write!(f, "{}: {}", name, self.message)
    }
}

impl std::error::Error for Error {}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

fn check(code: c_int) -> Result<()> {
    if code == sys::PSH_OK {
        Ok(())
    } else {
        Err(Error::last(code))
    }
}

/// The libpasha version as "MAJOR.MINOR.PATCH".
pub fn version() -> &'static str {
    unsafe { CStr::from_ptr(sys::psh_version()) }.to_str().unwrap_or("")
}

/// The loaded libpasha's version as `MAJOR * 10000 + MINOR * 100 + PATCH`
/// (`psh_version_number()`, e.g. 200 for 0.2.0); compare with
/// [`sys::PSH_VERSION_NUMBER`], the header's these bindings were made for.
pub fn version_number() -> u32 {
    unsafe { sys::psh_version_number() }
}

/// The default number of workers (`psh_cpu_count()`): `PASHA_NUM_WORKERS`
/// if set, else the smallest of the CPU affinity mask, the cgroup CPU quota
/// (rounded up) and `SLURM_CPUS_PER_TASK`; at least 1. What
/// `Context::new(kind, 0)` uses. Errors: [`ErrorKind::Invalid`] when
/// `PASHA_NUM_WORKERS` or `SLURM_CPUS_PER_TASK` is malformed (named in the
/// message).
pub fn cpu_count() -> Result<usize> {
    let n = unsafe { sys::psh_cpu_count() };
    if n < 0 {
        return Err(Error::last(n));
    }
    Ok(n as usize)
}

/// How the workers of a context run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// In the calling thread, as worker 0.
    Serial,
    /// A pool of threads; the thread that calls a map is worker 0.
    Threads,
    /// Forked processes, one set per map (see the crate docs on what a
    /// child may touch).
    Processes,
    /// MPI ranks (only from contexts made by the MPI part of libpasha).
    Mpi,
}

impl Kind {
    fn raw(self) -> sys::psh_kind {
        match self {
            Kind::Serial => sys::PSH_SERIAL,
            Kind::Threads => sys::PSH_THREADS,
            Kind::Processes => sys::PSH_PROCESSES,
            Kind::Mpi => sys::PSH_MPI,
        }
    }
}

/// A libpasha context: how maps run (kind, number of workers). Cloning
/// takes another reference to the same context.
#[derive(Debug)]
pub struct Context {
    raw: *mut sys::psh_context,
}

// The C context is reference counted and documented thread-safe to share.
unsafe impl Send for Context {}
unsafe impl Sync for Context {}

impl Clone for Context {
    fn clone(&self) -> Context {
        Context { raw: unsafe { sys::psh_context_reference(self.raw) } }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        unsafe { sys::psh_context_destroy(self.raw) }
    }
}

/// Memory order of a [`SharedArray`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Row-major: the last index varies fastest.
    C,
    /// Column-major: the first index varies fastest.
    F,
}

/// Element types a [`SharedArray`] can hold.
///
/// # Safety
/// `DTYPE` must be the libpasha dtype with exactly the layout of `Self`, and
/// all-zero bytes must be a valid `Self` (arrays start zero-filled).
pub unsafe trait Element: Copy + Send + Sync + 'static {
    /// The matching `psh_dtype`.
    const DTYPE: sys::psh_dtype;
}

macro_rules! element {
    ($($t:ty => $d:ident),*) => {$(
        unsafe impl Element for $t { const DTYPE: sys::psh_dtype = sys::$d; }
    )*};
}
element!(i8 => PSH_INT8, u8 => PSH_UINT8, i16 => PSH_INT16, u16 => PSH_UINT16,
         i32 => PSH_INT32, u32 => PSH_UINT32, i64 => PSH_INT64, u64 => PSH_UINT64,
         f32 => PSH_FLOAT32, f64 => PSH_FLOAT64);

/// Plain data: values that may travel from a worker process to the caller
/// as bytes, the results of [`Context::map_collect`] and the accumulators
/// of [`Context::fold`] / [`Context::reduce`] (as `bytemuck::Pod` or a C++
/// trivially copyable type). Implemented for the numbers, `bool`, `char`,
/// `()`, arrays, tuples of up to six and `Option`s of plain data.
///
/// # Safety
/// A copy of the bytes of a `Self` made in one process must be a valid
/// `Self` in another process forked from the same parent: no pointers or
/// references into memory a worker allocates (heap, stack), no handles
/// private to a process. `#[repr(C)]` structs of plain fields qualify:
/// `unsafe impl pasha::Plain for MyStats {}`.
pub unsafe trait Plain: Copy + Send + Sync + 'static {}

macro_rules! plain {
    ($($t:ty),*) => {$( unsafe impl Plain for $t {} )*};
}
plain!(i8, u8, i16, u16, i32, u32, i64, u64, i128, u128, isize, usize, f32, f64, bool, char, ());
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}
unsafe impl<T: Plain> Plain for Option<T> {}
unsafe impl<T: Plain> Plain for std::num::Wrapping<T> {}
macro_rules! plain_tuple {
    ($(($($t:ident),+))*) => {$( unsafe impl<$($t: Plain),+> Plain for ($($t,)+) {} )*};
}
plain_tuple!((A) (A, B) (A, B, C) (A, B, C, D) (A, B, C, D, E) (A, B, C, D, E, F));

/// How a map's indices are split among the workers (`psh_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Worker `w` of `W` gets the contiguous share `[w*n/W, (w+1)*n/W)` in
    /// one chunk: the least overhead, for work that costs the same per item.
    Static,
    /// Workers take chunks of `chunk` items from a shared counter (chunk 0:
    /// the library picks `n / (256 * workers)`, between 1 and 4096): for
    /// uneven work.
    Dynamic,
    /// Like dynamic, with chunks that shrink as the work runs out (never
    /// below `chunk`, default 1).
    Guided,
}

impl Schedule {
    fn raw(self) -> sys::psh_schedule {
        match self {
            Schedule::Static => sys::PSH_SCHEDULE_STATIC,
            Schedule::Dynamic => sys::PSH_SCHEDULE_DYNAMIC,
            Schedule::Guided => sys::PSH_SCHEDULE_GUIDED,
        }
    }
}

/// Options of one map: its schedule and chunk size, overriding the
/// context's. `MapOptions::new()` (or `default()`) keeps the context's.
///
/// ```no_run
/// use pasha::{Context, Kind, MapOptions, Schedule};
/// let ctx = Context::new(Kind::Threads, 2)?;
/// let mut out = ctx.alloc::<f64>(&[10_000])?;
/// let opts = MapOptions::new().schedule(Schedule::Dynamic).chunk(16);
/// ctx.map_into_with(opts, 0..10_000, &mut out, |_w, _i, v, o| {
///     *o = (0..v).map(|k| k as f64).sum(); // item v costs ~v
///     Ok::<(), std::convert::Infallible>(())
/// })?;
/// # Ok::<(), pasha::Error>(())
/// ```
///
/// Per-worker setup and teardown (`psh_map_options.worker_begin` /
/// `worker_end`): `begin(worker)` runs in each worker (its thread or
/// process) once per map before its first item, `end(worker)` once after
/// its last, however many chunks the worker takes, also in a worker that
/// gets no items; an `Err` (or a panic) fails the map with
/// [`ErrorKind::Kernel`] and `callback()` `"worker_begin"` / `"worker_end"`.
///
/// ```no_run
/// use pasha::{Context, Kind, MapOptions};
/// let ctx = Context::new(Kind::Processes, 2)?;
/// let begin = |w: usize| -> Result<(), String> { /* open worker w's file */ Ok(()) };
/// let end = |w: usize| -> Result<(), String> { /* close it */ Ok(()) };
/// let opts = MapOptions::new().worker_begin(&begin).worker_end(&end);
/// ctx.map_with(opts, 0..100, |_w, _i, _v| Ok::<(), String>(()))?;
/// # Ok::<(), pasha::Error>(())
/// ```
#[derive(Clone, Copy, Default)]
pub struct MapOptions<'a> {
    schedule: Option<Schedule>,
    chunk: usize,
    worker_begin: Option<&'a WorkerHook<'a>>,
    worker_end: Option<&'a WorkerHook<'a>>,
}

/// A per-worker hook of [`MapOptions`]: called with the worker id.
pub type WorkerHook<'a> = dyn Fn(usize) -> std::result::Result<(), String> + Sync + 'a;

impl fmt::Debug for MapOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapOptions")
            .field("schedule", &self.schedule)
            .field("chunk", &self.chunk)
            .field("worker_begin", &self.worker_begin.is_some())
            .field("worker_end", &self.worker_end.is_some())
            .finish()
    }
}

/// Equal: the same schedule and chunk, and the same hooks (by address).
impl PartialEq for MapOptions<'_> {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: Option<&WorkerHook<'_>>, b: Option<&WorkerHook<'_>>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => ptr::addr_eq(a as *const WorkerHook<'_>, b as *const WorkerHook<'_>),
            _ => false,
        };
        self.schedule == other.schedule
            && self.chunk == other.chunk
            && same(self.worker_begin, other.worker_begin)
            && same(self.worker_end, other.worker_end)
    }
}

impl<'a> MapOptions<'a> {
    /// The context's schedule and chunk, no hooks.
    pub fn new() -> MapOptions<'a> {
        MapOptions::default()
    }
    /// Use this schedule for the map.
    pub fn schedule(mut self, schedule: Schedule) -> MapOptions<'a> {
        self.schedule = Some(schedule);
        self
    }
    /// Items per chunk (dynamic) or the smallest chunk (guided); 0: the
    /// context's. The static schedule ignores it here: a worker's share is
    /// one chunk.
    pub fn chunk(mut self, chunk: usize) -> MapOptions<'a> {
        self.chunk = chunk;
        self
    }
    /// Run `hook(worker)` in each worker before its first item.
    pub fn worker_begin<H>(mut self, hook: &'a H) -> MapOptions<'a>
    where
        H: Fn(usize) -> std::result::Result<(), String> + Sync + 'a,
    {
        self.worker_begin = Some(hook);
        self
    }
    /// Run `hook(worker)` in each worker after its last item (also after an
    /// error, when its `worker_begin` succeeded; not in a worker process
    /// that died).
    pub fn worker_end<H>(mut self, hook: &'a H) -> MapOptions<'a>
    where
        H: Fn(usize) -> std::result::Result<(), String> + Sync + 'a,
    {
        self.worker_end = Some(hook);
        self
    }
    fn raw(&self) -> Option<sys::psh_map_options> {
        if self.schedule.is_none() && self.chunk == 0 && self.worker_begin.is_none() && self.worker_end.is_none() {
            return None;
        }
        let mut o = unsafe { std::mem::zeroed::<sys::psh_map_options>() };
        // The size of the struct these bindings declare (hooks included).
        unsafe { sys::psh_map_options_init_size(&mut o, std::mem::size_of::<sys::psh_map_options>()) };
        if let Some(s) = self.schedule {
            o.schedule = s.raw();
        }
        o.chunk = self.chunk;
        Some(o)
    }
}

/// Builds a [`Context`] with a schedule, chunk size and CPU pinning
/// (`psh_context_create_ext`). Made by [`Context::builder`].
#[derive(Debug, Clone, Copy)]
pub struct ContextBuilder {
    kind: Kind,
    workers: usize,
    schedule: Schedule,
    chunk: usize,
    pin_cpus: bool,
}

impl ContextBuilder {
    /// The number of workers (0, the default: `PASHA_NUM_WORKERS` or the
    /// number of CPUs).
    pub fn workers(mut self, workers: usize) -> ContextBuilder {
        self.workers = workers;
        self
    }
    /// The schedule of every map on the context (default static).
    pub fn schedule(mut self, schedule: Schedule) -> ContextBuilder {
        self.schedule = schedule;
        self
    }
    /// The chunk size of every map on the context (0: the library chooses).
    pub fn chunk(mut self, chunk: usize) -> ContextBuilder {
        self.chunk = chunk;
        self
    }
    /// Pin worker `w` to the `w`-th CPU of the affinity mask (threads and
    /// processes; the calling thread is never pinned).
    pub fn pin_cpus(mut self, pin: bool) -> ContextBuilder {
        self.pin_cpus = pin;
        self
    }
    /// Create the context.
    pub fn build(self) -> Result<Context> {
        let n = c_int::try_from(self.workers).map_err(|_| Error::invalid(format!("{} workers is too many", self.workers)))?;
        let mut o = unsafe { std::mem::zeroed::<sys::psh_context_options>() };
        unsafe { sys::psh_context_options_init(&mut o) };
        o.kind = self.kind.raw();
        o.num_workers = n;
        o.schedule = self.schedule.raw();
        o.chunk = self.chunk;
        o.pin_cpus = self.pin_cpus as c_int;
        let mut raw = ptr::null_mut();
        check(unsafe { sys::psh_context_create_ext(&mut raw, &o) })?;
        Ok(Context { raw })
    }
}

impl Context {
    /// Create a context of `kind` with `workers` workers (0: the default,
    /// `PASHA_NUM_WORKERS` or the number of CPUs; serial always has one)
    /// and the static schedule.
    pub fn new(kind: Kind, workers: usize) -> Result<Context> {
        let n = c_int::try_from(workers).map_err(|_| Error::invalid(format!("{workers} workers is too many")))?;
        let mut raw = ptr::null_mut();
        check(unsafe { sys::psh_context_create(&mut raw, kind.raw(), n) })?;
        Ok(Context { raw })
    }

    /// A builder for a context of `kind` with a schedule, chunk size or
    /// pinned workers:
    /// `Context::builder(Kind::Threads).workers(2).schedule(Schedule::Dynamic).build()?`.
    pub fn builder(kind: Kind) -> ContextBuilder {
        ContextBuilder { kind, workers: 0, schedule: Schedule::Static, chunk: 0, pin_cpus: false }
    }

    /// The library's default context (fork-per-map processes unless
    /// changed with [`Context::set_default`]), as an owned reference
    /// (`psh_default_context_ref`): it stays valid even if another thread
    /// changes the default meanwhile.
    pub fn default_context() -> Result<Context> {
        let raw = unsafe { sys::psh_default_context_ref() };
        if raw.is_null() {
            return Err(Error::last(sys::PSH_ESYS));
        }
        Ok(Context { raw })
    }

    /// Make this context the library's default.
    pub fn set_default(&self) -> Result<()> {
        check(unsafe { sys::psh_set_default_context(self.raw) })
    }

    /// The number of workers; worker ids run `0..num_workers()`.
    pub fn num_workers(&self) -> usize {
        unsafe { sys::psh_context_num_workers(self.raw) as usize }
    }

    /// The kind of this context.
    pub fn kind(&self) -> Kind {
        match unsafe { sys::psh_context_kind(self.raw) } {
            sys::PSH_THREADS => Kind::Threads,
            sys::PSH_PROCESSES => Kind::Processes,
            sys::PSH_MPI => Kind::Mpi,
            _ => Kind::Serial,
        }
    }

    /// The schedule of this context's maps (those without their own).
    pub fn schedule(&self) -> Schedule {
        match unsafe { sys::psh_context_schedule(self.raw) } {
            sys::PSH_SCHEDULE_DYNAMIC => Schedule::Dynamic,
            sys::PSH_SCHEDULE_GUIDED => Schedule::Guided,
            _ => Schedule::Static,
        }
    }

    /// The raw context pointer, for calls into [`sys`]; still owned by self.
    pub fn as_raw(&self) -> *mut sys::psh_context {
        self.raw
    }

    fn alloc_raw<T: Element>(&self, shape: &[usize], order: Order, fill: Option<T>, per_worker: bool) -> Result<SharedArray<T>> {
        let ndim = c_int::try_from(shape.len()).map_err(|_| Error::invalid("too many dimensions".into()))?;
        let mut opts = unsafe { std::mem::zeroed::<sys::psh_alloc_options>() };
        unsafe { sys::psh_alloc_options_init(&mut opts) };
        opts.order = match order {
            Order::C => sys::PSH_ORDER_C,
            Order::F => sys::PSH_ORDER_F,
        };
        let fill_value = fill;
        if let Some(v) = fill_value.as_ref() {
            opts.fill = v as *const T as *const c_void;
        }
        opts.per_worker = per_worker as c_int;
        let mut raw = ptr::null_mut();
        check(unsafe { sys::psh_alloc(&mut raw, self.raw, T::DTYPE, ndim, shape.as_ptr(), &opts) })?;
        Ok(SharedArray { raw, axes: OnceLock::new(), _t: PhantomData })
    }

    /// A zero-filled C-order array of `shape` in shared memory.
    pub fn alloc<T: Element>(&self, shape: &[usize]) -> Result<SharedArray<T>> {
        self.alloc_raw(shape, Order::C, None, false)
    }

    /// An array of `shape` in the given memory order, every element `fill`.
    pub fn alloc_with<T: Element>(&self, shape: &[usize], order: Order, fill: T) -> Result<SharedArray<T>> {
        self.alloc_raw(shape, order, Some(fill), false)
    }

    /// A zero-filled C-order array of shape `[num_workers, shape...]`: one
    /// row per worker, for [`Context::map_per_worker`] (e.g. partial sums).
    pub fn alloc_per_worker<T: Element>(&self, shape: &[usize]) -> Result<SharedArray<T>> {
        self.alloc_raw(shape, Order::C, None, true)
    }

    /// Run `body(worker, begin, end)` over chunks of `0..n` as libpasha
    /// hands them out; every chunk is checked to lie inside `0..n` first.
    fn run_blocks<B>(&self, opts: MapOptions, n: usize, body: B) -> Result<()>
    where
        B: Fn(usize, usize, usize) -> std::result::Result<(), Failure> + Sync,
    {
        let sink = ErrorSink::new(self);
        let call = BlockCall { body: &body, n, sink: &sink, begin: opts.worker_begin, end: opts.worker_end };
        let mut raw_opts = opts.raw();
        if let Some(o) = raw_opts.as_mut() {
            o.worker_begin = opts.worker_begin.map(|_| begin_trampoline::<B> as unsafe extern "C" fn(*mut c_void, c_int) -> c_int);
            o.worker_end = opts.worker_end.map(|_| end_trampoline::<B> as unsafe extern "C" fn(*mut c_void, c_int) -> c_int);
        }
        let opts_ptr = raw_opts.as_ref().map_or(ptr::null(), |o| o as *const sys::psh_map_options);
        let code = unsafe {
            sys::psh_map_blocks_ext(self.raw, Some(block_trampoline::<B>), &call as *const _ as *mut c_void, n, opts_ptr)
        };
        match check(code) {
            Ok(()) => Ok(()),
            Err(mut e) => {
                if let Some((worker, failure)) = sink.take() {
                    e.message = format!("{} ({})", e.message, failure.text);
                    // The C library knows the chunk; the closure's item is exact.
                    if failure.index.is_some() && e.worker_id == Some(worker) {
                        e.index = failure.index;
                    }
                }
                Err(e)
            }
        }
    }

    /// Call `f(worker, index, value)` for every item of `source`, split
    /// among the workers, and return when all are done. The first `Err` or
    /// panic stops the map with [`ErrorKind::Kernel`].
    pub fn map<S, F, E>(&self, source: S, f: F) -> Result<()>
    where
        S: Source,
        F: Fn(usize, usize, S::Item) -> std::result::Result<(), E> + Send + Sync,
        E: fmt::Display,
    {
        self.map_with(MapOptions::default(), source, f)
    }

    /// [`Context::map`] with this map's own schedule and chunk.
    pub fn map_with<S, F, E>(&self, opts: MapOptions, source: S, f: F) -> Result<()>
    where
        S: Source,
        F: Fn(usize, usize, S::Item) -> std::result::Result<(), E> + Send + Sync,
        E: fmt::Display,
    {
        let n = source.len();
        self.run_blocks(opts, n, |w, begin, end| {
            // Safety: run_blocks checked begin <= end <= n = source.len().
            unsafe {
                source.for_each_in(begin, end, |i, v| {
                    f(w, i, v).map_err(|e| Failure::at(i, e))
                })
            }
        })
    }

    /// Like [`Context::map`], and also hand the closure `&mut out[index]`.
    /// `out` must have at least as many elements as `source` has items.
    pub fn map_into<S, T, F, E>(&self, source: S, out: &mut SharedArray<T>, f: F) -> Result<()>
    where
        S: Source,
        T: Element,
        F: Fn(usize, usize, S::Item, &mut T) -> std::result::Result<(), E> + Send + Sync,
        E: fmt::Display,
    {
        self.map_into_with(MapOptions::default(), source, out, f)
    }

    /// [`Context::map_into`] with this map's own schedule and chunk.
    pub fn map_into_with<S, T, F, E>(&self, opts: MapOptions, source: S, out: &mut SharedArray<T>, f: F) -> Result<()>
    where
        S: Source,
        T: Element,
        F: Fn(usize, usize, S::Item, &mut T) -> std::result::Result<(), E> + Send + Sync,
        E: fmt::Display,
    {
        let n = source.len();
        let len = out.len();
        if len < n {
            return Err(Error::invalid(format!("map_into: output has {len} elements, the source {n} items")));
        }
        let base = SyncPtr(out.as_mut_ptr());
        self.run_blocks(opts, n, |w, begin, end| {
            let base = base.get();
            // Safety: run_blocks checked begin <= end <= n <= out.len();
            // each index is in exactly one chunk, so no two closures hold
            // the same element.
            unsafe {
                source.for_each_in(begin, end, |i, v| {
                    f(w, i, v, &mut *base.add(i)).map_err(|e| Failure::at(i, e))
                })
            }
        })
    }

    /// Like [`Context::map`], and also hand the closure `&mut` to the row of
    /// `per_worker` (made by [`Context::alloc_per_worker`] on this context)
    /// that belongs to the calling worker.
    pub fn map_per_worker<S, T, F, E>(&self, source: S, per_worker: &mut SharedArray<T>, f: F) -> Result<()>
    where
        S: Source,
        T: Element,
        F: Fn(usize, usize, S::Item, &mut [T]) -> std::result::Result<(), E> + Send + Sync,
        E: fmt::Display,
    {
        self.map_per_worker_with(MapOptions::default(), source, per_worker, f)
    }

    /// [`Context::map_per_worker`] with this map's own schedule and chunk.
    pub fn map_per_worker_with<S, T, F, E>(&self, opts: MapOptions, source: S, per_worker: &mut SharedArray<T>, f: F) -> Result<()>
    where
        S: Source,
        T: Element,
        F: Fn(usize, usize, S::Item, &mut [T]) -> std::result::Result<(), E> + Send + Sync,
        E: fmt::Display,
    {
        let workers = self.num_workers();
        if workers == 0 || per_worker.shape().first() != Some(&workers) || per_worker.order() != Order::C {
            return Err(Error::invalid(format!(
                "map_per_worker: the array must be C order with a first axis of {} workers, not {:?}",
                workers,
                per_worker.shape()
            )));
        }
        let row = per_worker.len() / workers;
        let base = SyncPtr(per_worker.as_mut_ptr());
        let n = source.len();
        self.run_blocks(opts, n, |w, begin, end| {
            if w >= workers {
                return Err(Failure::text(format!("worker id {w} is outside 0..{workers}")));
            }
            // Safety: w < workers, the array has workers rows of `row`
            // elements, and no two workers run with one id at once.
            let slot = unsafe { std::slice::from_raw_parts_mut(base.get().add(w * row), row) };
            // Safety: run_blocks checked begin <= end <= n.
            unsafe {
                source.for_each_in(begin, end, |i, v| {
                    f(w, i, v, &mut *slot).map_err(|e| Failure::at(i, e))
                })
            }
        })
    }

    /// Call `f(worker, range)` once per contiguous chunk of `0..n`, split as
    /// the context's schedule says (static: one call per worker with its
    /// whole share; empty shares are not called). Errors as [`Context::map`].
    pub fn map_blocks<F, E>(&self, n: usize, f: F) -> Result<()>
    where
        F: Fn(usize, Range<usize>) -> std::result::Result<(), E> + Send + Sync,
        E: fmt::Display,
    {
        self.map_blocks_with(MapOptions::default(), n, f)
    }

    /// [`Context::map_blocks`] with this map's own schedule and chunk.
    pub fn map_blocks_with<F, E>(&self, opts: MapOptions, n: usize, f: F) -> Result<()>
    where
        F: Fn(usize, Range<usize>) -> std::result::Result<(), E> + Send + Sync,
        E: fmt::Display,
    {
        self.run_blocks(opts, n, |w, begin, end| {
            f(w, begin..end).map_err(|e| Failure::chunk(begin, end, e))
        })
    }

    /// Like [`Context::map_blocks`] over `0..out.len()`, and also hand the
    /// closure `&mut out[range]`: chunks never overlap, so neither do these.
    pub fn map_blocks_into<T, F, E>(&self, out: &mut SharedArray<T>, f: F) -> Result<()>
    where
        T: Element,
        F: Fn(usize, Range<usize>, &mut [T]) -> std::result::Result<(), E> + Send + Sync,
        E: fmt::Display,
    {
        self.map_blocks_into_with(MapOptions::default(), out, f)
    }

    /// [`Context::map_blocks_into`] with this map's own schedule and chunk.
    pub fn map_blocks_into_with<T, F, E>(&self, opts: MapOptions, out: &mut SharedArray<T>, f: F) -> Result<()>
    where
        T: Element,
        F: Fn(usize, Range<usize>, &mut [T]) -> std::result::Result<(), E> + Send + Sync,
        E: fmt::Display,
    {
        let n = out.len();
        let base = SyncPtr(out.as_mut_ptr());
        self.run_blocks(opts, n, |w, begin, end| {
            // Safety: run_blocks checked begin <= end <= n; chunks are disjoint.
            let chunk = unsafe { std::slice::from_raw_parts_mut(base.get().add(begin), end - begin) };
            f(w, begin..end, chunk).map_err(|e| Failure::chunk(begin, end, e))
        })
    }
    /// Call `f(worker, index, value)` for every item of `source` and return
    /// what it returns, in item order (as rayon's `collect`): `out[index]`
    /// is `f`'s value for `index`, whichever worker computed it. In every
    /// kind: a process context's children write the values into shared
    /// memory, which is copied into the `Vec` once the map is over (hence
    /// `T:` [`Plain`]). The first `Err` or panic stops the map with
    /// [`ErrorKind::Kernel`], and no `Vec` is made.
    ///
    /// ```no_run
    /// use pasha::{Context, Kind};
    /// let ctx = Context::new(Kind::Processes, 4)?;
    /// let squares: Vec<u64> = ctx.map_collect(0..1000, |_w, _i, v| Ok::<_, std::convert::Infallible>((v * v) as u64))?;
    /// assert_eq!(squares[999], 998_001);
    /// # Ok::<(), pasha::Error>(())
    /// ```
    pub fn map_collect<S, T, F, E>(&self, source: S, f: F) -> Result<Vec<T>>
    where
        S: Source,
        T: Plain,
        F: Fn(usize, usize, S::Item) -> std::result::Result<T, E> + Send + Sync,
        E: fmt::Display,
    {
        self.map_collect_with(MapOptions::default(), source, f)
    }

    /// [`Context::map_collect`] with this map's own options.
    pub fn map_collect_with<S, T, F, E>(&self, opts: MapOptions, source: S, f: F) -> Result<Vec<T>>
    where
        S: Source,
        T: Plain,
        F: Fn(usize, usize, S::Item) -> std::result::Result<T, E> + Send + Sync,
        E: fmt::Display,
    {
        self.refuse_mpi("map_collect")?;
        let n = source.len();
        let mut out: Vec<T> = Vec::with_capacity(n);
        // Process workers write into shared memory; the others straight
        // into the Vec's buffer.
        let shared = if self.kind() == Kind::Processes && n > 0 && std::mem::size_of::<T>() > 0 {
            let bytes = n
                .checked_mul(std::mem::size_of::<T>())
                .and_then(|b| b.checked_add(std::mem::align_of::<T>()))
                .ok_or_else(|| Error::invalid(format!("map_collect: {n} results do not fit in memory")))?;
            Some(self.alloc::<u8>(&[bytes])?)
        } else {
            None
        };
        let base = SyncPtr(match &shared {
            Some(a) => align_up(unsafe { sys::psh_array_data(a.raw) } as *mut u8, std::mem::align_of::<T>()) as *mut T,
            None => out.as_mut_ptr(),
        });
        self.run_blocks(opts, n, |w, begin, end| {
            let base = base.get();
            // Safety: run_blocks checked begin <= end <= n, and the buffer
            // holds n values; each index is in exactly one chunk.
            unsafe {
                source.for_each_in(begin, end, |i, v| {
                    base.add(i).write(f(w, i, v).map_err(|e| Failure::at(i, e))?);
                    Ok(())
                })
            }
        })?;
        // Safety: the map succeeded, so every index 0..n was written.
        unsafe {
            if shared.is_some() {
                ptr::copy_nonoverlapping(base.get(), out.as_mut_ptr(), n);
            }
            out.set_len(n);
        }
        Ok(out)
    }

    /// Fold the items of `source` into one value, in the manner of rayon's
    /// `fold().reduce()` and `tbb::parallel_reduce`: each worker starts
    /// from `identity()` (once per map) and folds every item it is handed
    /// into its accumulator with `fold(acc, worker, index, value)`; the
    /// caller then combines the workers' accumulators with `combine`, in
    /// worker order. The accumulators live on separate cache lines (and in
    /// shared memory for processes, hence `A:` [`Plain`]).
    ///
    /// `combine` must be associative, with `identity()` its neutral
    /// element. With the static schedule (worker `w`'s share precedes
    /// `w + 1`'s) that is all; with a dynamic or guided one a worker folds
    /// chunks that are not adjacent, so it must also be commutative.
    /// Errors as [`Context::map`]; an empty source gives `identity()`.
    ///
    /// ```no_run
    /// use pasha::{Context, Kind};
    /// let ctx = Context::new(Kind::Threads, 4)?;
    /// let data: Vec<f64> = (0..1000).map(|i| i as f64).collect();
    /// // (sum, max)
    /// let (sum, max) = ctx.fold(&data, || (0.0, f64::MIN),
    ///     |(s, m), _w, _i, x| Ok::<_, std::convert::Infallible>((s + x, m.max(*x))),
    ///     |(s1, m1), (s2, m2)| (s1 + s2, m1.max(m2)))?;
    /// assert_eq!((sum, max), (499_500.0, 999.0));
    /// # Ok::<(), pasha::Error>(())
    /// ```
    pub fn fold<S, A, I, F, C, E>(&self, source: S, identity: I, fold: F, combine: C) -> Result<A>
    where
        S: Source,
        A: Plain,
        I: Fn() -> A + Send + Sync,
        F: Fn(A, usize, usize, S::Item) -> std::result::Result<A, E> + Send + Sync,
        C: FnMut(A, A) -> A,
        E: fmt::Display,
    {
        self.fold_with(MapOptions::default(), source, identity, fold, combine)
    }

    /// [`Context::fold`] with this map's own options.
    pub fn fold_with<S, A, I, F, C, E>(&self, opts: MapOptions, source: S, identity: I, fold: F, mut combine: C) -> Result<A>
    where
        S: Source,
        A: Plain,
        I: Fn() -> A + Send + Sync,
        F: Fn(A, usize, usize, S::Item) -> std::result::Result<A, E> + Send + Sync,
        C: FnMut(A, A) -> A,
        E: fmt::Display,
    {
        self.refuse_mpi("fold")?;
        let workers = self.num_workers().max(1);
        let slots = Slots::<A>::new(self, workers)?;
        let base = SyncPtr(slots.base);
        let n = source.len();
        self.run_blocks(opts, n, |w, begin, end| {
            if w >= workers {
                return Err(Failure::text(format!("worker id {w} is outside 0..{workers}")));
            }
            // Safety: w < workers; no two workers run with one id at once.
            let slot = unsafe { &mut *base.get().add(w) };
            let mut acc = if slot.set { unsafe { slot.acc.assume_init() } } else { identity() };
            // Safety: run_blocks checked begin <= end <= n.
            let r = unsafe {
                source.for_each_in(begin, end, |i, v| {
                    acc = fold(acc, w, i, v).map_err(|e| Failure::at(i, e))?;
                    Ok(())
                })
            };
            slot.acc = MaybeUninit::new(acc);
            slot.set = true;
            r
        })?;
        let mut total: Option<A> = None;
        for w in 0..workers {
            // Safety: the map is over; the workers' writes are visible.
            let slot = unsafe { &*base.get().add(w) };
            if slot.set {
                let acc = unsafe { slot.acc.assume_init() };
                total = Some(match total {
                    None => acc,
                    Some(t) => combine(t, acc),
                });
            }
        }
        drop(slots);
        Ok(total.unwrap_or_else(identity))
    }

    /// Reduce the items of `source` to one value: `combine` of `identity`
    /// and `f(worker, index, value)` for every item (rayon's
    /// `map().reduce()`). `combine` runs in the workers (each combines its
    /// items into its own accumulator) and in the caller (over the
    /// workers'); it must be associative with `identity` neutral, and also
    /// commutative with a dynamic or guided schedule (see
    /// [`Context::fold`]).
    ///
    /// ```no_run
    /// use pasha::{Context, Kind};
    /// let ctx = Context::new(Kind::Processes, 2)?;
    /// let sum = ctx.reduce(1..101, 0u64, |_w, _i, v| Ok::<_, std::convert::Infallible>(v as u64), |a, b| a + b)?;
    /// assert_eq!(sum, 5050);
    /// # Ok::<(), pasha::Error>(())
    /// ```
    pub fn reduce<S, A, F, C, E>(&self, source: S, identity: A, f: F, combine: C) -> Result<A>
    where
        S: Source,
        A: Plain,
        F: Fn(usize, usize, S::Item) -> std::result::Result<A, E> + Send + Sync,
        C: Fn(A, A) -> A + Send + Sync,
        E: fmt::Display,
    {
        self.reduce_with(MapOptions::default(), source, identity, f, combine)
    }

    /// [`Context::reduce`] with this map's own options.
    pub fn reduce_with<S, A, F, C, E>(&self, opts: MapOptions, source: S, identity: A, f: F, combine: C) -> Result<A>
    where
        S: Source,
        A: Plain,
        F: Fn(usize, usize, S::Item) -> std::result::Result<A, E> + Send + Sync,
        C: Fn(A, A) -> A + Send + Sync,
        E: fmt::Display,
    {
        let combine = &combine;
        self.fold_with(opts, source, || identity, |acc, w, i, v| Ok::<A, E>(combine(acc, f(w, i, v)?)), combine)
    }

    fn refuse_mpi(&self, what: &str) -> Result<()> {
        if self.kind() == Kind::Mpi {
            let message = format!("{what}: not offered on MPI contexts by the safe API (each rank sees only its share)");
            return Err(Error { message, ..Error::bare(sys::PSH_ENOTSUP) });
        }
        Ok(())
    }
}

/// The first address at or after `p` that is a multiple of `align`.
fn align_up(p: *mut u8, align: usize) -> *mut u8 {
    let off = (p as usize).wrapping_neg() & (align - 1);
    p.wrapping_add(off)
}

/// One worker's accumulator of a fold, alone on its cache lines (128
/// bytes: a line and the one the adjacent-line prefetcher pairs with it).
#[repr(C, align(128))]
struct Slot<A> {
    set: bool,
    acc: MaybeUninit<A>,
}

/// The accumulators of a fold: in the caller's heap, or in shared memory
/// for a process context (its children fold into them).
struct Slots<A> {
    base: *mut Slot<A>,
    _local: Vec<Slot<A>>,
    _shared: Option<SharedArray<u8>>,
}

impl<A> Slots<A> {
    fn new(ctx: &Context, workers: usize) -> Result<Slots<A>> {
        if ctx.kind() == Kind::Processes {
            let bytes = std::mem::size_of::<Slot<A>>() * workers + std::mem::align_of::<Slot<A>>();
            let shared = ctx.alloc::<u8>(&[bytes])?; // zero-filled: every `set` is false
            let base = align_up(unsafe { sys::psh_array_data(shared.raw) } as *mut u8, std::mem::align_of::<Slot<A>>());
            return Ok(Slots { base: base as *mut Slot<A>, _local: Vec::new(), _shared: Some(shared) });
        }
        let mut local: Vec<Slot<A>> = (0..workers).map(|_| Slot { set: false, acc: MaybeUninit::uninit() }).collect();
        Ok(Slots { base: local.as_mut_ptr(), _local: local, _shared: None })
    }
}

/// Why a closure's chunk failed: the text, and the index of the item when
/// the closure returned `Err` for one (the C library only knows the
/// chunk's start). Internal to the crate's sources.
#[doc(hidden)]
#[derive(Debug)]
pub struct Failure {
    index: Option<usize>,
    text: String,
}

impl Failure {
    fn at(index: usize, e: impl fmt::Display) -> Failure {
        Failure { index: Some(index), text: format!("the closure failed at index {index}: {e}") }
    }
    fn chunk(begin: usize, end: usize, e: impl fmt::Display) -> Failure {
        Failure { index: None, text: format!("the closure failed at chunk {begin}..{end}: {e}") }
    }
    fn text(text: String) -> Failure {
        Failure { index: None, text }
    }
}

/// Where the first error of a map is written: a mutex in the caller's
/// memory, or (process contexts) a small shared array the children write
/// into, so that the closure's text reaches the caller from any kind.
enum ErrorSink {
    Local(Mutex<Option<(usize, Failure)>>),
    Shared(SharedArray<u8>),
}

const SINK_BYTES: usize = 4096;
const SINK_HEADER: usize = 32;

impl ErrorSink {
    fn new(ctx: &Context) -> ErrorSink {
        if ctx.kind() == Kind::Processes {
            // If even 4 KiB of shared memory cannot be had, the map itself
            // still runs; only the closure's text is lost.
            if let Ok(a) = ctx.alloc::<u8>(&[SINK_BYTES]) {
                return ErrorSink::Shared(a);
            }
        }
        ErrorSink::Local(Mutex::new(None))
    }

    /// Keep worker `worker`'s failure if it is the first one.
    fn record(&self, worker: usize, failure: Failure) {
        match self {
            ErrorSink::Local(m) => {
                if let Ok(mut slot) = m.lock() {
                    slot.get_or_insert((worker, failure));
                }
            }
            ErrorSink::Shared(a) => {
                // Layout: [0..4) a claim flag, [8..16) the text's length,
                // [16..24) the index + 1 (0: none), [24..32) the worker,
                // then the text. The array is 64-byte aligned, zero-filled
                // and SINK_BYTES long.
                let p = unsafe { sys::psh_array_data(a.raw) } as *mut u8;
                let claim = unsafe { &*(p as *const AtomicU32) };
                if claim.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    let message = failure.text;
                    let mut n = message.len().min(SINK_BYTES - SINK_HEADER);
                    while !message.is_char_boundary(n) {
                        n -= 1;
                    }
                    unsafe {
                        ptr::copy_nonoverlapping(message.as_ptr(), p.add(SINK_HEADER), n);
                        (p.add(16) as *mut usize).write(failure.index.map_or(0, |i| i + 1));
                        (p.add(24) as *mut usize).write(worker);
                        (*(p.add(8) as *const AtomicUsize)).store(n, Ordering::Release);
                    }
                }
            }
        }
    }

    /// The first failure and its worker, once the map is over.
    fn take(self) -> Option<(usize, Failure)> {
        match self {
            ErrorSink::Local(m) => m.into_inner().ok().flatten(),
            ErrorSink::Shared(a) => {
                let word = |at: usize| a[at..at + 8].try_into().ok().map(usize::from_ne_bytes);
                let n = word(8)?;
                if a[..4].iter().all(|b| *b == 0) || n > SINK_BYTES - SINK_HEADER {
                    return None;
                }
                let text = String::from_utf8_lossy(&a[SINK_HEADER..SINK_HEADER + n]).into_owned();
                let index = word(16)?.checked_sub(1);
                Some((word(24)?, Failure { index, text }))
            }
        }
    }
}

struct BlockCall<'a, B> {
    body: &'a B,
    n: usize,
    sink: &'a ErrorSink,
    begin: Option<&'a WorkerHook<'a>>,
    end: Option<&'a WorkerHook<'a>>,
}

/// `psh_map_options.worker_begin` / `worker_end`: the map's user_data is
/// the BlockCall, whose hooks are the MapOptions'.
unsafe extern "C" fn begin_trampoline<B>(user_data: *mut c_void, worker: c_int) -> c_int {
    let call = &*(user_data as *const BlockCall<'_, B>);
    run_hook(call.begin, call.sink, worker, "worker_begin")
}

unsafe extern "C" fn end_trampoline<B>(user_data: *mut c_void, worker: c_int) -> c_int {
    let call = &*(user_data as *const BlockCall<'_, B>);
    run_hook(call.end, call.sink, worker, "worker_end")
}

fn run_hook(hook: Option<&WorkerHook<'_>>, sink: &ErrorSink, worker: c_int, name: &str) -> c_int {
    let (Some(hook), Ok(w)) = (hook, usize::try_from(worker)) else {
        return 0;
    };
    match catch_unwind(AssertUnwindSafe(|| hook(w))) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            sink.record(w, Failure::text(format!("{name} failed in worker {w}: {e}")));
            1
        }
        Err(panic) => {
            sink.record(w, Failure::text(format!("{name} panicked in worker {w}: {}", panic_text(&panic))));
            2
        }
    }
}

/// The block kernel libpasha calls: one per chunk, for one closure type, so
/// the closure's loop over the chunk is compiled (and inlined) here.
unsafe extern "C" fn block_trampoline<B>(user_data: *mut c_void, worker: c_int, begin: usize, end: usize) -> c_int
where
    B: Fn(usize, usize, usize) -> std::result::Result<(), Failure>,
{
    let call = &*(user_data as *const BlockCall<'_, B>);
    if worker < 0 || begin > end || end > call.n {
        let text = format!("libpasha handed worker {worker} the chunk {begin}..{end}, outside 0..{}", call.n);
        call.sink.record(worker.max(0) as usize, Failure::text(text));
        return 3;
    }
    match catch_unwind(AssertUnwindSafe(|| (call.body)(worker as usize, begin, end))) {
        Ok(Ok(())) => 0,
        Ok(Err(message)) => {
            call.sink.record(worker as usize, message);
            1
        }
        Err(panic) => {
            let text = format!("the closure panicked in chunk {begin}..{end}: {}", panic_text(&panic));
            call.sink.record(worker as usize, Failure::text(text));
            2
        }
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

#[derive(Clone, Copy)]
struct SyncPtr<T>(*mut T);
impl<T> SyncPtr<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

mod sealed {
    pub trait Sealed {}
}

/// What a map iterates over: a range of integers, a slice or `&Vec`, or the
/// sub-arrays of a [`SharedArray`] along an axis ([`SharedArray::along`]).
///
/// The trait is sealed: it cannot be implemented outside this crate, so a
/// map's length always agrees with the items it hands out (a source with a
/// `len()` larger than what it can hand out could otherwise make safe code
/// read or write out of bounds):
///
/// ```compile_fail,E0277
/// struct Liar;
/// impl pasha::Source for Liar {
///     type Item = usize;
///     fn len(&self) -> usize { 1_000_000 }
///     unsafe fn item(&self, i: usize) -> usize { i }
/// }
/// ```
pub trait Source: sealed::Sealed + Sync {
    /// What the closure gets for one index.
    type Item;
    /// The number of items: a map visits the indices `0..len()`.
    fn len(&self) -> usize;
    /// Whether there are no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The item at `index`.
    ///
    /// # Safety
    /// `index < self.len()`.
    #[doc(hidden)]
    unsafe fn item(&self, index: usize) -> Self::Item;
    /// Call `g(index, item)` for each index of `begin..end` in order, until
    /// it returns `Err`. The sources read what they need into locals first,
    /// so that the loop keeps them in registers (stores through the
    /// closure's output pointer cannot then force reloads), and the loop
    /// can be vectorized.
    ///
    /// # Safety
    /// `begin <= end <= self.len()`.
    #[doc(hidden)]
    #[inline(always)]
    unsafe fn for_each_in<G>(&self, begin: usize, end: usize, mut g: G) -> std::result::Result<(), Failure>
    where
        G: FnMut(usize, Self::Item) -> std::result::Result<(), Failure>,
    {
        for i in begin..end {
            g(i, self.item(i))?;
        }
        Ok(())
    }
}

impl sealed::Sealed for Range<usize> {}
/// `start..end`: the closure's value is the integer `start + index`.
impl Source for Range<usize> {
    type Item = usize;
    fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }
    #[inline(always)]
    unsafe fn item(&self, index: usize) -> usize {
        self.start + index
    }
    #[inline(always)]
    unsafe fn for_each_in<G>(&self, begin: usize, end: usize, mut g: G) -> std::result::Result<(), Failure>
    where
        G: FnMut(usize, usize) -> std::result::Result<(), Failure>,
    {
        let start = self.start;
        for i in begin..end {
            g(i, start + i)?;
        }
        Ok(())
    }
}

impl<T: Sync> sealed::Sealed for &[T] {}
/// A slice: the closure's value is `&slice[index]`.
impl<'s, T: Sync> Source for &'s [T] {
    type Item = &'s T;
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
    #[inline(always)]
    unsafe fn item(&self, index: usize) -> &'s T {
        let s: &'s [T] = self;
        s.get_unchecked(index)
    }
    #[inline(always)]
    unsafe fn for_each_in<G>(&self, begin: usize, end: usize, mut g: G) -> std::result::Result<(), Failure>
    where
        G: FnMut(usize, &'s T) -> std::result::Result<(), Failure>,
    {
        let p = self.as_ptr();
        for i in begin..end {
            g(i, &*p.add(i))?;
        }
        Ok(())
    }
}

impl<T: Sync> sealed::Sealed for &Vec<T> {}
/// A `Vec` by reference, as its slice.
impl<'s, T: Sync> Source for &'s Vec<T> {
    type Item = &'s T;
    fn len(&self) -> usize {
        Vec::len(self)
    }
    #[inline(always)]
    unsafe fn item(&self, index: usize) -> &'s T {
        let s: &'s Vec<T> = self;
        s.get_unchecked(index)
    }
    #[inline(always)]
    unsafe fn for_each_in<G>(&self, begin: usize, end: usize, mut g: G) -> std::result::Result<(), Failure>
    where
        G: FnMut(usize, &'s T) -> std::result::Result<(), Failure>,
    {
        let p = self.as_ptr();
        for i in begin..end {
            g(i, &*p.add(i))?;
        }
        Ok(())
    }
}

/// The shape and element strides of the sub-arrays along one axis.
#[derive(Debug)]
struct AxisViews {
    shape: Vec<usize>,
    strides: Vec<isize>,
    /// The stride along the axis itself, in elements.
    step: isize,
}

/// An n-dimensional array in POSIX shared memory, visible to every worker
/// (threads and forked processes) at the same address. Derefs to `[T]` over
/// all its elements in memory order; freed on drop.
pub struct SharedArray<T: Element> {
    raw: *mut sys::psh_array,
    /// The views along each axis, made by the first `along` (they live as
    /// long as the array, so the `View`s that borrow them can too).
    axes: OnceLock<Vec<AxisViews>>,
    _t: PhantomData<T>,
}

unsafe impl<T: Element> Send for SharedArray<T> {}
unsafe impl<T: Element> Sync for SharedArray<T> {}

impl<T: Element> SharedArray<T> {
    /// The lengths of the dimensions.
    pub fn shape(&self) -> &[usize] {
        let n = self.ndim();
        if n == 0 {
            return &[];
        }
        unsafe { std::slice::from_raw_parts(sys::psh_array_shape(self.raw), n) }
    }
    /// The strides in bytes, one per dimension.
    pub fn strides(&self) -> &[isize] {
        let n = self.ndim();
        if n == 0 {
            return &[];
        }
        unsafe { std::slice::from_raw_parts(sys::psh_array_strides(self.raw), n) }
    }
    /// The strides in elements, one per dimension.
    pub fn element_strides(&self) -> Vec<isize> {
        let size = std::mem::size_of::<T>() as isize;
        self.strides().iter().map(|s| s / size).collect()
    }
    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        unsafe { sys::psh_array_ndim(self.raw) as usize }
    }
    /// The memory order the array was made in.
    pub fn order(&self) -> Order {
        if unsafe { sys::psh_array_order(self.raw) } == sys::PSH_ORDER_F {
            Order::F
        } else {
            Order::C
        }
    }
    /// The element at a multi-dimensional index, or None out of bounds.
    pub fn get(&self, index: &[usize]) -> Option<&T> {
        let off = self.offset(index)?;
        Some(&self[off])
    }
    /// The element at a multi-dimensional index, mutably.
    pub fn get_mut(&mut self, index: &[usize]) -> Option<&mut T> {
        let off = self.offset(index)?;
        Some(&mut self[off])
    }
    fn offset(&self, index: &[usize]) -> Option<usize> {
        if index.len() != self.ndim() || index.iter().zip(self.shape()).any(|(i, n)| i >= n) {
            return None;
        }
        let s = self.element_strides();
        Some(index.iter().zip(&s).map(|(i, s)| *i as isize * s).sum::<isize>() as usize)
    }
    /// The sub-arrays along `axis` (negative counts from the end), as a map
    /// [`Source`] whose items are [`View`]s.
    pub fn along(&self, axis: isize) -> Result<Along<'_, T>> {
        let nd = self.ndim() as isize;
        let ax = if axis < 0 { axis + nd } else { axis };
        if nd == 0 || ax < 0 || ax >= nd {
            return Err(Error::invalid(format!("axis {axis} is out of range for {nd} dimensions")));
        }
        let axes = self.axes.get_or_init(|| {
            let strides = self.element_strides();
            (0..self.ndim())
                .map(|a| {
                    let mut shape = self.shape().to_vec();
                    let mut s = strides.clone();
                    shape.remove(a);
                    let step = s.remove(a);
                    AxisViews { shape, strides: s, step }
                })
                .collect()
        });
        let views = &axes[ax as usize];
        let data = SyncPtr(unsafe { sys::psh_array_data(self.raw) } as *mut T);
        Ok(Along { data, len: self.shape()[ax as usize], views, _a: PhantomData })
    }
    /// The raw array pointer, for calls into [`sys`]; still owned by self.
    pub fn as_raw(&self) -> *mut sys::psh_array {
        self.raw
    }
}

impl<T: Element> Deref for SharedArray<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        let n = unsafe { sys::psh_array_size(self.raw) };
        let p = unsafe { sys::psh_array_data(self.raw) } as *const T;
        if n == 0 || p.is_null() {
            return &[];
        }
        unsafe { std::slice::from_raw_parts(p, n) }
    }
}

impl<T: Element> DerefMut for SharedArray<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        let n = unsafe { sys::psh_array_size(self.raw) };
        let p = unsafe { sys::psh_array_data(self.raw) } as *mut T;
        if n == 0 || p.is_null() {
            return &mut [];
        }
        unsafe { std::slice::from_raw_parts_mut(p, n) }
    }
}

impl<T: Element + fmt::Debug> fmt::Debug for SharedArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArray").field("shape", &self.shape()).field("data", &&self[..]).finish()
    }
}

impl<T: Element> Drop for SharedArray<T> {
    fn drop(&mut self) {
        unsafe { sys::psh_array_free(self.raw) }
    }
}

/// The sub-arrays of a [`SharedArray`] along one axis; a map [`Source`]
/// whose items are [`View`]s. Made by [`SharedArray::along`].
pub struct Along<'s, T: Element> {
    data: SyncPtr<T>,
    len: usize,
    views: &'s AxisViews,
    _a: PhantomData<&'s SharedArray<T>>,
}

/// One read-only sub-array, as handed to a map's closure; it borrows the
/// array it comes from.
#[derive(Clone, Copy)]
pub struct View<'a, T> {
    data: *const T,
    shape: &'a [usize],
    strides: &'a [isize],
}

impl<'a, T: Copy> View<'a, T> {
    /// The lengths of its dimensions (the source's, minus the axis).
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }
    /// Its strides in elements.
    pub fn strides(&self) -> &'a [isize] {
        self.strides
    }
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The element at a multi-dimensional index, or None out of bounds.
    pub fn get(&self, index: &[usize]) -> Option<T> {
        if index.len() != self.shape.len() || index.iter().zip(self.shape).any(|(i, n)| i >= n) {
            return None;
        }
        let off: isize = index.iter().zip(self.strides).map(|(i, s)| *i as isize * s).sum();
        // Safety: the index is inside the view, which is inside its array.
        Some(unsafe { *self.data.offset(off) })
    }
    /// The elements, in C order (last index fastest).
    pub fn to_vec(&self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len());
        let mut idx = vec![0usize; self.shape.len()];
        for _ in 0..self.len() {
            out.push(self.get(&idx).expect("index in bounds"));
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < self.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out
    }
}

impl<T: Element> sealed::Sealed for Along<'_, T> {}
impl<'s, T: Element> Source for Along<'s, T> {
    type Item = View<'s, T>;
    fn len(&self) -> usize {
        self.len
    }
    #[inline(always)]
    unsafe fn item(&self, index: usize) -> View<'s, T> {
        let views: &'s AxisViews = self.views;
        View { data: self.data.get().offset(index as isize * views.step), shape: &views.shape, strides: &views.strides }
    }
    #[inline(always)]
    unsafe fn for_each_in<G>(&self, begin: usize, end: usize, mut g: G) -> std::result::Result<(), Failure>
    where
        G: FnMut(usize, View<'s, T>) -> std::result::Result<(), Failure>,
    {
        let views: &'s AxisViews = self.views;
        let (data, step) = (self.data.get() as *const T, views.step);
        for i in begin..end {
            g(i, View { data: data.offset(i as isize * step), shape: &views.shape, strides: &views.strides })?;
        }
        Ok(())
    }
}
