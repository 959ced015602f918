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
//! can read or write it meanwhile.
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
//! [`ErrorKind::Kernel`]; on serial and thread contexts its message
//! contains the closure's error text. A panic inside a closure never
//! unwinds into C: it is caught and also reported as `ErrorKind::Kernel`.
//!
//! # Linking
//!
//! `build.rs` finds libpasha with pkg-config (package `pasha`, else
//! `pasha-uninstalled` from a meson build's `meson-uninstalled/` directory)
//! and puts its directory into the rpath of tests and binaries.
#![warn(missing_docs)]

pub mod sys;

use std::ffi::CStr;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, Range};
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Mutex;

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

/// An error from libpasha: its kind, the raw status code and the message
/// of `psh_last_error()` (plus, for closure errors, the closure's text).
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    code: i32,
    message: String,
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
    fn last(code: c_int) -> Error {
        let message = unsafe { CStr::from_ptr(sys::psh_last_error()) }.to_string_lossy().into_owned();
        Error { kind: ErrorKind::from_code(code), code, message }
    }
    fn invalid(message: String) -> Error {
        Error { kind: ErrorKind::Invalid, code: sys::PSH_EINVAL, message }
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

impl Context {
    /// Create a context of `kind` with `workers` workers (0: the default,
    /// `PASHA_NUM_WORKERS` or the number of CPUs; serial always has one).
    pub fn new(kind: Kind, workers: usize) -> Result<Context> {
        let n = c_int::try_from(workers).map_err(|_| Error::invalid(format!("{workers} workers is too many")))?;
        let mut raw = ptr::null_mut();
        check(unsafe { sys::psh_context_create(&mut raw, kind.raw(), n) })?;
        Ok(Context { raw })
    }

    /// The library's default context (fork-per-map processes unless
    /// changed with [`Context::set_default`]); this takes a reference.
    pub fn default_context() -> Result<Context> {
        let raw = unsafe { sys::psh_get_default_context() };
        if raw.is_null() {
            return Err(Error::last(sys::PSH_ESYS));
        }
        Ok(Context { raw: unsafe { sys::psh_context_reference(raw) } })
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
        Ok(SharedArray { raw, _t: PhantomData })
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

    /// Call `f(worker, index, value)` for every item of `source`, split
    /// among the workers, and return when all are done. The first `Err` or
    /// panic stops the map with [`ErrorKind::Kernel`].
    pub fn map<S, F, E>(&self, source: S, f: F) -> Result<()>
    where
        S: Source,
        F: Fn(usize, usize, S::Item) -> std::result::Result<(), E> + Send + Sync,
        E: fmt::Display,
    {
        let functor = source.functor()?;
        let call: Call<'_, S, F, E> = Call { source: &source, f: &f, error: Mutex::new(None), _e: PhantomData };
        let code = unsafe {
            sys::psh_map(self.raw, Some(trampoline::<S, F, E>), &call as *const _ as *mut c_void, functor.0)
        };
        drop(functor);
        finish(code, call.error)
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
        let n = source.len();
        if out.len() < n {
            return Err(Error::invalid(format!("map_into: output has {} elements, the source {} items", out.len(), n)));
        }
        let base = SyncPtr(out.as_mut_ptr());
        self.map(source, move |w, i, v| {
            // Safety: i < n <= out.len(), and each index is visited once, so
            // no two closures hold the same element.
            let slot = unsafe { &mut *base.get().add(i) };
            f(w, i, v, slot)
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
        let workers = self.num_workers();
        if per_worker.shape().first() != Some(&workers) || per_worker.order() != Order::C {
            return Err(Error::invalid(format!(
                "map_per_worker: the array must be C order with a first axis of {} workers, not {:?}",
                workers,
                per_worker.shape()
            )));
        }
        let row = per_worker.len() / workers;
        let base = SyncPtr(per_worker.as_mut_ptr());
        self.map(source, move |w, i, v| {
            // Safety: w < workers and no two workers run with one id at once.
            let slot = unsafe { std::slice::from_raw_parts_mut(base.get().add(w * row), row) };
            f(w, i, v, slot)
        })
    }
}

impl Context {
    /// Call `f(worker, range)` once per contiguous chunk of `0..n`, split as
    /// the context's schedule says (static: one call per worker with its
    /// whole share; empty shares are not called). Errors as [`Context::map`].
    pub fn map_blocks<F, E>(&self, n: usize, f: F) -> Result<()>
    where
        F: Fn(usize, Range<usize>) -> std::result::Result<(), E> + Send + Sync,
        E: fmt::Display,
    {
        let call: BlockCall<'_, F, E> = BlockCall { f: &f, error: Mutex::new(None), _e: PhantomData };
        let code = unsafe {
            sys::psh_map_blocks(self.raw, Some(block_trampoline::<F, E>), &call as *const _ as *mut c_void, n)
        };
        finish(code, call.error)
    }

    /// Like [`Context::map_blocks`] over `0..out.len()`, and also hand the
    /// closure `&mut out[range]`: chunks never overlap, so neither do these.
    pub fn map_blocks_into<T, F, E>(&self, out: &mut SharedArray<T>, f: F) -> Result<()>
    where
        T: Element,
        F: Fn(usize, Range<usize>, &mut [T]) -> std::result::Result<(), E> + Send + Sync,
        E: fmt::Display,
    {
        let n = out.len();
        let base = SyncPtr(out.as_mut_ptr());
        self.map_blocks(n, move |w, r: Range<usize>| {
            if r.start > r.end || r.end > n {
                return Err(format!("chunk {r:?} is outside 0..{n}"));
            }
            // Safety: chunks are disjoint and inside 0..n.
            let chunk = unsafe { std::slice::from_raw_parts_mut(base.get().add(r.start), r.end - r.start) };
            f(w, r, chunk).map_err(|e| e.to_string())
        })
    }
}

struct BlockCall<'a, F, E> {
    f: &'a F,
    error: Mutex<Option<String>>,
    _e: PhantomData<fn() -> E>,
}

unsafe extern "C" fn block_trampoline<F, E>(user_data: *mut c_void, worker: c_int, begin: usize, end: usize) -> c_int
where
    F: Fn(usize, Range<usize>) -> std::result::Result<(), E>,
    E: fmt::Display,
{
    let call = &*(user_data as *const BlockCall<'_, F, E>);
    match catch_unwind(AssertUnwindSafe(|| (call.f)(worker as usize, begin..end))) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            record(&call.error, format!("the closure failed at chunk {begin}..{end}: {e}"));
            1
        }
        Err(panic) => {
            record(&call.error, format!("the closure panicked at chunk {begin}..{end}: {}", panic_text(&panic)));
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

struct SyncPtr<T>(*mut T);
impl<T> SyncPtr<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

struct Call<'a, S, F, E> {
    source: &'a S,
    f: &'a F,
    error: Mutex<Option<String>>,
    _e: PhantomData<fn() -> E>,
}

fn record(error: &Mutex<Option<String>>, message: String) {
    if let Ok(mut slot) = error.lock() {
        slot.get_or_insert(message);
    }
}

unsafe extern "C" fn trampoline<S, F, E>(user_data: *mut c_void, worker: c_int, index: usize, value: *const c_void) -> c_int
where
    S: Source,
    F: Fn(usize, usize, S::Item) -> std::result::Result<(), E>,
    E: fmt::Display,
{
    let call = &*(user_data as *const Call<'_, S, F, E>);
    let run = || (call.f)(worker as usize, index, call.source.item(index, value));
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            record(&call.error, format!("the closure failed at index {index}: {e}"));
            1
        }
        Err(panic) => {
            record(&call.error, format!("the closure panicked at index {index}: {}", panic_text(&panic)));
            2
        }
    }
}

fn finish(code: c_int, error: Mutex<Option<String>>) -> Result<()> {
    match check(code) {
        Ok(()) => Ok(()),
        Err(mut e) => {
            if let Some(text) = error.into_inner().ok().flatten() {
                e.message = format!("{} ({})", e.message, text);
            }
            Err(e)
        }
    }
}

/// An owned functor; destroyed on drop.
#[doc(hidden)]
pub struct Functor(*mut sys::psh_functor);

impl Drop for Functor {
    fn drop(&mut self) {
        unsafe { sys::psh_functor_destroy(self.0) }
    }
}

/// What a map iterates over: a range of integers, a slice, or the
/// sub-arrays of a [`SharedArray`] along an axis ([`SharedArray::along`]).
pub trait Source: Sync {
    /// What the closure gets for one index.
    type Item;
    /// The number of items.
    fn len(&self) -> usize;
    /// Whether there are no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Make the libpasha functor.
    #[doc(hidden)]
    fn functor(&self) -> Result<Functor>;
    /// Turn the functor's value for `index` into the item.
    ///
    /// # Safety
    /// `value` must be what this source's functor handed for `index`.
    #[doc(hidden)]
    unsafe fn item(&self, index: usize, value: *const c_void) -> Self::Item;
}

/// `start..end`: the closure's value is the integer `start + index`.
impl Source for Range<usize> {
    type Item = usize;
    fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }
    fn functor(&self) -> Result<Functor> {
        let mut raw = ptr::null_mut();
        check(unsafe { sys::psh_functor_range(&mut raw, Source::len(self)) })?;
        Ok(Functor(raw))
    }
    unsafe fn item(&self, index: usize, _value: *const c_void) -> usize {
        self.start + index
    }
}

/// A slice: the closure's value is `&slice[index]`.
impl<'s, T: Sync> Source for &'s [T] {
    type Item = &'s T;
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
    fn functor(&self) -> Result<Functor> {
        let mut raw = ptr::null_mut();
        let stride = std::mem::size_of::<T>();
        check(unsafe { sys::psh_functor_sequence(&mut raw, self.as_ptr() as *const c_void, self.len(), stride) })?;
        Ok(Functor(raw))
    }
    unsafe fn item(&self, _index: usize, value: *const c_void) -> &'s T {
        &*(value as *const T)
    }
}

/// A `Vec` by reference, as its slice.
impl<'s, T: Sync> Source for &'s Vec<T> {
    type Item = &'s T;
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn functor(&self) -> Result<Functor> {
        self.as_slice().functor()
    }
    unsafe fn item(&self, _index: usize, value: *const c_void) -> &'s T {
        &*(value as *const T)
    }
}

/// An n-dimensional array in POSIX shared memory, visible to every worker
/// (threads and forked processes) at the same address. Derefs to `[T]` over
/// all its elements in memory order; freed on drop.
pub struct SharedArray<T: Element> {
    raw: *mut sys::psh_array,
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
        let ax = ax as usize;
        let size = std::mem::size_of::<T>() as isize;
        let mut shape = self.shape().to_vec();
        let mut strides: Vec<isize> = self.strides().iter().map(|s| s / size).collect();
        shape.remove(ax);
        strides.remove(ax);
        Ok(Along { array: self, axis: ax as c_int, shape, strides })
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
    array: &'s SharedArray<T>,
    axis: c_int,
    shape: Vec<usize>,
    strides: Vec<isize>,
}

/// One read-only sub-array, as handed to a map's closure. It is valid for
/// the duration of the closure call only (it is neither `Send` nor `Sync`,
/// so it cannot be stored anywhere the map's other workers could see).
#[derive(Clone, Copy)]
pub struct View<'a, T> {
    data: *const T,
    shape: *const usize,
    strides: *const isize,
    ndim: usize,
    _t: PhantomData<&'a T>,
}

impl<'a, T: Copy> View<'a, T> {
    /// The lengths of its dimensions (the source's, minus the axis).
    pub fn shape(&self) -> &[usize] {
        unsafe { std::slice::from_raw_parts(self.shape, self.ndim) }
    }
    /// Its strides in elements.
    pub fn strides(&self) -> &[isize] {
        unsafe { std::slice::from_raw_parts(self.strides, self.ndim) }
    }
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }
    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The element at a multi-dimensional index, or None out of bounds.
    pub fn get(&self, index: &[usize]) -> Option<T> {
        if index.len() != self.ndim || index.iter().zip(self.shape()).any(|(i, n)| i >= n) {
            return None;
        }
        let off: isize = index.iter().zip(self.strides()).map(|(i, s)| *i as isize * s).sum();
        Some(unsafe { *self.data.offset(off) })
    }
    /// The elements, in C order (last index fastest).
    pub fn to_vec(&self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len());
        let mut idx = vec![0usize; self.ndim];
        for _ in 0..self.len() {
            out.push(self.get(&idx).expect("index in bounds"));
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < self.shape()[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out
    }
}

impl<'s, T: Element> Source for Along<'s, T> {
    type Item = View<'s, T>;
    fn len(&self) -> usize {
        self.array.shape()[self.axis as usize]
    }
    fn functor(&self) -> Result<Functor> {
        let mut raw = ptr::null_mut();
        check(unsafe { sys::psh_functor_array(&mut raw, self.array.raw, self.axis) })?;
        Ok(Functor(raw))
    }
    unsafe fn item(&self, _index: usize, value: *const c_void) -> View<'s, T> {
        let view = &*(value as *const sys::psh_view);
        View { data: view.data as *const T, shape: self.shape.as_ptr(), strides: self.strides.as_ptr(), ndim: self.shape.len(), _t: PhantomData }
    }
}
