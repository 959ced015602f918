/*
 * libpasha's C++17 API: RAII handles over the C ABI of pasha.h, kernels
 * written as lambdas, errors as exceptions. Header-only: nothing C++ crosses
 * the library's boundary, so any C++17 (or later) compiler works with the
 * one libpasha.so, and pkg-config's flags are all it needs.
 *
 *   #include <pasha/pasha.hpp>
 *
 *   pasha::context t(pasha::kind::threads, 4);
 *   auto x = pasha::alloc<double>(t, {1000});
 *   double *px = x.data();
 *   pasha::map(t, x.size(), [=](int, std::size_t i) { px[i] = 3.0 * i; });
 *
 * Read pasha.h for what the library does; this file says only what the C++
 * layer adds. In brief:
 *
 *   - pasha::context  a reference to a psh_context (copies share it)
 *   - pasha::array<T> a move-only psh_array of elements T (RAII)
 *   - pasha::map / pasha::map_blocks  run a lambda over [0, n), over the
 *                     sub-arrays of a pasha::array along an axis (typed
 *                     pasha::view), or over a contiguous range
 *   - pasha::error    thrown for every status other than PSH_OK
 *
 * Kernels. A kernel is called through one trampoline per block of indices
 * (psh_map_blocks_ext), which loops over the block and calls the lambda:
 * the per-item call is inlined, there is no indirect call per item. The
 * lambda is called as a const object, by several workers at once: it must
 * not change its own captures (no `mutable` state).
 *
 * The closure rule (every kind, checked at compile time). A context's kind
 * is known only at run time, and a persistent pool runs the kernel in
 * processes that were forked before the map was called: they cannot see the
 * caller's stack or heap. So the closure is COPIED into memory the workers
 * share, and it must be trivially copyable and at most
 * pasha::max_closure_size bytes (static_asserts say so, and a closure that
 * cannot be copied, e.g. one holding a std::vector or a pasha::array by
 * value, does not compile). Code meant to run on any kind captures BY VALUE
 * only plain values and pointers into psh arrays (x.data()). Capturing by
 * reference ([&]) compiles and is fine in serial, threads and fork-per-map
 * processes contexts (which see the caller's memory), but not in a
 * persistent pool: see context_options::persistent.
 *
 * Exceptions from a kernel stop the map early, as a non-zero return does in
 * C, and leave the context usable:
 *   - serial and threads contexts: the very exception is rethrown in the
 *     caller (the first one, when several workers throw);
 *   - processes contexts (fork per map and persistent) and MPI contexts: the
 *     caller gets pasha::error with code() == PSH_EKERNEL, a what() that
 *     contains the original what() text and the type, and as data
 *     worker_id(), index() (the very item that threw; a block map: the
 *     block's first item) and callback() ("kernel" for pasha::map,
 *     "block_kernel" for map_blocks and reduce). A worker process that
 *     dies is pasha::error(PSH_EWORKER) with worker_id(), index() (the
 *     first item of the block it was on: pasha::map hands the library
 *     blocks), signal() or exit_status().
 * No exception ever crosses the C library: the trampolines catch them.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef PASHA_PASHA_HPP
#define PASHA_PASHA_HPP

#include <cxxabi.h>
#include <sys/mman.h>

#include <atomic>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "pasha.h"

namespace pasha {

/* ---------------------------------------------------------------------- */
/* Errors                                                                 */
/* ---------------------------------------------------------------------- */

/** Thrown for every status other than PSH_OK. code() is the PSH_E* code;
 *  what() is psh_strerror(code) followed by the detail (psh_last_error()
 *  of the failed call), e.g. "PSH_EINVAL: invalid argument: psh_alloc:
 *  ndim 40 is out of range 0..32". What the library knows about a failed
 *  map comes as data (psh_last_error_info, never read from the text):
 *  which worker, which item, which signal or exit status, which callback. */
class error : public std::runtime_error {
public:
    /** code with the calling thread's psh_last_error() as the detail and
     *  the fields of its psh_last_error_info (when that describes code). */
    explicit error(int code) : error(code, std::string(psh_last_error()), last_info(code)) {}
    /** code with the given detail instead of psh_last_error(); no worker,
     *  item, signal or callback. */
    error(int code, const std::string &detail) : error(code, detail, none(code)) {}
    /** code and detail with the fields of info (its code and message are
     *  not used). */
    error(int code, const std::string &detail, const psh_error_info &info)
        : std::runtime_error(format(code, detail)), code_(code), worker_id_(info.worker_id), index_(info.index),
          signal_(info.signal), exit_status_(info.exit_status), has_callback_(info.callback != nullptr),
          callback_(info.callback ? info.callback : "")
    {
    }
    /** The PSH_E* status code (negative). */
    int code() const noexcept { return code_; }
    /** The worker the failure happened in; -1: no worker involved. */
    int worker_id() const noexcept { return worker_id_; }
    /** The item that failed (a block map: the block's first item; a dead
     *  worker: the first item of its block); -1: none. */
    long long index() const noexcept { return index_; }
    /** The signal that ended a worker process; 0: none. */
    int signal() const noexcept { return signal_; }
    /** The exit status of a worker process that exited; -1: none. */
    int exit_status() const noexcept { return exit_status_; }
    /** The callback that failed: "kernel" (pasha::map's lambda),
     *  "block_kernel" (map_blocks, reduce), "worker_begin", "worker_end",
     *  "progress", ... (psh_last_error_info); nullptr: none. */
    const char *callback() const noexcept { return has_callback_ ? callback_.c_str() : nullptr; }

    /** psh_last_error_info of the calling thread, its fields reset to
     *  their "none" values when it does not describe code. */
    static psh_error_info last_info(int code) noexcept
    {
        psh_error_info info = none(code);
        psh_error_info got;
        std::memset(&got, 0, sizeof got);
        got.struct_size = sizeof got;
        if (psh_last_error_info(&got) == PSH_OK && got.code == code) info = got;
        return info;
    }

private:
    static psh_error_info none(int code) noexcept
    {
        psh_error_info info;
        std::memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        info.code = code;
        info.worker_id = -1;
        info.index = -1;
        info.exit_status = -1;
        return info;
    }
    static std::string format(int code, const std::string &detail)
    {
        std::string s = psh_strerror(code);
        if (!detail.empty()) s += ": " + detail;
        return s;
    }
    int code_;
    int worker_id_;
    long long index_;
    int signal_;
    int exit_status_;
    bool has_callback_;
    std::string callback_;
};

namespace detail {
inline void check(int rc)
{
    if (rc != PSH_OK) throw error(rc);
}
}  // namespace detail

/** The library's version, "MAJOR.MINOR.PATCH". */
inline const char *version() noexcept { return psh_version(); }

/* ---------------------------------------------------------------------- */
/* Contexts                                                               */
/* ---------------------------------------------------------------------- */

/** How the workers of a context run (psh_kind). */
enum class kind : int {
    serial = PSH_SERIAL,
    threads = PSH_THREADS,
    processes = PSH_PROCESSES,
    mpi = PSH_MPI  // made by pasha::mpi::context (pasha_mpi.hpp)
};

/** Everything about a context: the members of psh_context_options. */
struct context_options {
    pasha::kind kind = pasha::kind::processes;  ///< how the workers run
    int num_workers = 0;  ///< <= 0: the default (PASHA_NUM_WORKERS, else the CPUs)
    /** kind::processes: fork the workers once, when the context is made,
     *  and reuse them for every map (a pool that survives crashing
     *  workers). The workers see psh arrays live, whenever they were
     *  made; everything else (the caller's stack, heap, later writes to
     *  globals) as a snapshot taken when the context was made.
     *
     *  What that means for a lambda: pasha::map copies the closure into
     *  memory the pool shares before each map (psh_map_options::
     *  user_data_size), so the captures themselves arrive intact. They must
     *  be plain values and pointers into psh arrays; a reference capture
     *  ([&]) or a pointer to the caller's stack or heap reaches the workers
     *  as an address whose contents they do not share. A closure that is
     *  not trivially copyable, or larger than pasha::max_closure_size, does
     *  not compile. A worked example:
     *
     *      pasha::context_options o;
     *      o.kind = pasha::kind::processes;
     *      o.num_workers = 4;
     *      o.persistent = true;
     *      pasha::context pool(o);
     *
     *      auto x = pasha::alloc<double>(pool, {n});  // psh arrays: seen live
     *      auto y = pasha::alloc<double>(pool, {n});
     *      const double *px = x.data();              // copy the pointers and
     *      double *py = y.data();                    // the values into locals
     *      double a = 2.5;                           // and capture those by
     *      pasha::map(pool, n, [=](int, std::size_t i) {   // value: [=]
     *          py[i] = a * px[i] + py[i];
     *      });
     *
     *      std::vector<double> v(n);
     *      // WRONG: v lives in the caller's heap, made after the pool:
     *      // pasha::map(pool, n, [p = v.data()](int, std::size_t i) { p[i] = 1; });
     *      // WRONG: [&] captures the addresses of px, py and a on the stack:
     *      // pasha::map(pool, n, [&](int, std::size_t i) { py[i] = a * px[i]; });
     *      // DOES NOT COMPILE: a std::vector captured by value
     *      // pasha::map(pool, n, [v](int, std::size_t i) { (void)v; });
     */
    bool persistent = false;
    psh_schedule schedule = PSH_SCHEDULE_STATIC;  ///< how [0, n) is split
    std::size_t chunk = 0;  ///< items per chunk (dynamic/guided); 0: the library's
    bool pin_cpus = false;  ///< pin worker w to the w-th CPU of the affinity mask
};

class context;

namespace detail {
/* Where a kernel running in a worker process leaves the what() text of its
 * exception: one page of shared memory per context. state: 0 empty, 1 being
 * written, 2 written. */
struct shm_error {
    int state;
    long long item;  // the item that threw; -1: not known (a block map)
    char text[4080];
};
static_assert(sizeof(shm_error) <= 4096, "one page");

/* What the C++ layer keeps per context, shared by its copies. */
struct context_state {
    std::mutex mutex;  // guards err during a map (try_lock only: never blocks)
    shm_error *err = nullptr;
    psh_array *err_array = nullptr;  // err's psh array (processes contexts)
    bool err_mapped = false;         // err is an mmap'ed page (MPI contexts)
    context_state() = default;
    context_state(const context_state &) = delete;
    context_state &operator=(const context_state &) = delete;
    ~context_state()
    {
        if (err_array) psh_array_free(err_array);
        if (err_mapped) munmap(err, sizeof(shm_error));
    }
};
psh_context *checked(const context &ctx);
context_state *state_of(const context &ctx) noexcept;
}  // namespace detail

/** A reference to a psh_context. Copies refer to the same context (each
 *  holds a reference of its own); the context goes when the last one does.
 *  A moved-from context is empty: using it throws pasha::error
 *  (PSH_EINVAL) instead of silently falling back to the default context. */
class context {
public:
    /** A context of kind k with num_workers workers (<= 0: the default). */
    explicit context(pasha::kind k, int num_workers = 0)
    {
        psh_context *c = nullptr;
        detail::check(psh_context_create(&c, static_cast<psh_kind>(k), num_workers));
        reset(c);
    }
    /** A context from options (persistent pools, schedules, pinning). */
    explicit context(const context_options &o)
    {
        psh_context_options co;
        psh_context_options_init(&co);
        co.kind = static_cast<psh_kind>(o.kind);
        co.num_workers = o.num_workers;
        co.persistent = o.persistent ? 1 : 0;
        co.schedule = o.schedule;
        co.chunk = o.chunk;
        co.pin_cpus = o.pin_cpus ? 1 : 0;
        psh_context *c = nullptr;
        detail::check(psh_context_create_ext(&c, &co));
        reset(c);
    }
    /** Take over one reference the caller owns (NULL: an empty context). */
    static context adopt(psh_context *c)
    {
        context r;
        r.reset(c);
        return r;
    }
    /** Take a new reference to c; the caller keeps its own. */
    static context borrow(psh_context *c) { return adopt(psh_context_reference(c)); }
    /** A reference to the library's default context (psh_default_context_ref). */
    static context default_context()
    {
        psh_context *c = psh_default_context_ref();
        if (!c) throw error(PSH_ESYS);
        return adopt(c);
    }

    /** Another reference to o's context (psh_context_reference). */
    context(const context &o) : ctx_(psh_context_reference(o.ctx_)), state_(o.state_) {}
    /** Take over o's reference; o is left empty. */
    context(context &&o) noexcept : ctx_(o.ctx_), state_(std::move(o.state_)) { o.ctx_ = nullptr; }
    /** Refer to o's context instead (drops this one's reference). */
    context &operator=(context o) noexcept
    {
        std::swap(ctx_, o.ctx_);
        std::swap(state_, o.state_);
        return *this;
    }
    ~context()
    {
        state_.reset();  // frees the error page while the context is alive
        psh_context_destroy(ctx_);
    }

    /** The psh_context (NULL when empty); still owned by this object. */
    psh_context *get() const noexcept { return ctx_; }
    /** Give up the reference without dropping it. */
    psh_context *release() noexcept
    {
        state_.reset();
        psh_context *c = ctx_;
        ctx_ = nullptr;
        return c;
    }
    /** False when empty (moved from or released). */
    explicit operator bool() const noexcept { return ctx_ != nullptr; }
    /** The number of workers; worker ids run 0 .. num_workers() - 1. */
    int num_workers() const noexcept { return psh_context_num_workers(ctx_); }
    /** How the workers run (kind::mpi for pasha::mpi::context). */
    pasha::kind kind() const noexcept { return static_cast<pasha::kind>(psh_context_kind(ctx_)); }
    /** The context's schedule (psh_context_schedule). */
    psh_schedule schedule() const noexcept { return psh_context_schedule(ctx_); }

    /** Make this context the library's default (psh_set_default_context). */
    void make_default() const { detail::check(psh_set_default_context(detail::checked(*this))); }

private:
    context() = default;
    void reset(psh_context *c)
    {
        ctx_ = c;
        state_ = c ? std::make_shared<detail::context_state>() : nullptr;
    }
    friend detail::context_state *detail::state_of(const context &) noexcept;
    psh_context *ctx_ = nullptr;
    std::shared_ptr<detail::context_state> state_;
};

namespace detail {
inline context_state *state_of(const context &c) noexcept { return c.state_.get(); }
inline psh_context *checked(const context &ctx)
{
    if (!ctx.get()) throw error(PSH_EINVAL, "an empty (moved-from) pasha::context");
    return ctx.get();
}
}  // namespace detail

/* ---------------------------------------------------------------------- */
/* Arrays                                                                 */
/* ---------------------------------------------------------------------- */

namespace detail {
template <class T, class = void>
struct dtype_traits {
    static constexpr bool ok = false;
};
template <class T>
struct dtype_traits<T, std::enable_if_t<std::is_integral<T>::value && !std::is_same<T, bool>::value>> {
    static constexpr bool ok = true;
    static constexpr psh_dtype value =
        sizeof(T) == 1   ? (std::is_signed<T>::value ? PSH_INT8 : PSH_UINT8)
        : sizeof(T) == 2 ? (std::is_signed<T>::value ? PSH_INT16 : PSH_UINT16)
        : sizeof(T) == 4 ? (std::is_signed<T>::value ? PSH_INT32 : PSH_UINT32)
                         : (std::is_signed<T>::value ? PSH_INT64 : PSH_UINT64);
};
template <class V, psh_dtype D>
struct dtype_is {
    static constexpr bool ok = true;
    static constexpr psh_dtype value = D;
};
template <>
struct dtype_traits<float> : dtype_is<float, PSH_FLOAT32> {};
template <>
struct dtype_traits<double> : dtype_is<double, PSH_FLOAT64> {};
template <>
struct dtype_traits<std::complex<float>> : dtype_is<std::complex<float>, PSH_COMPLEX64> {};
template <>
struct dtype_traits<std::complex<double>> : dtype_is<std::complex<double>, PSH_COMPLEX128> {};
}  // namespace detail

/** The psh_dtype of element type T (static_asserts that there is one):
 *  the integers of 8..64 bits, float, double, std::complex<float/double>. */
template <class T>
constexpr psh_dtype dtype_of()
{
    static_assert(detail::dtype_traits<std::remove_cv_t<T>>::ok,
                  "pasha: no psh_dtype for this element type (integers, float, double, std::complex<float/double>)");
    return detail::dtype_traits<std::remove_cv_t<T>>::value;
}

/** Memory order of a new array (psh_order). */
enum class order : int {
    c = PSH_ORDER_C,  ///< row-major (the default of alloc)
    f = PSH_ORDER_F   ///< column-major
};

/** alloc option: add an axis of length num_workers of the context, first in
 *  C order, last in F order, to be indexed by worker_id. */
struct per_worker_t {
    explicit constexpr per_worker_t() = default;
};
inline constexpr per_worker_t per_worker{};

/** alloc option: every element set to value (converted to the element type)
 *  instead of zero. */
template <class U>
struct fill_value {
    U value;  ///< the value of every element
};
template <class U>
constexpr fill_value<U> fill(U value)
{
    return fill_value<U>{value};
}

/** A read-only sequence of n values (an array's shape or strides). */
template <class V>
class values_view {
public:
    /** The n values at p (not copied). */
    constexpr values_view(const V *p, int n) noexcept : p_(p), n_(n) {}
    /** Value i (0 <= i < size()). */
    constexpr V operator[](int i) const noexcept { return p_[i]; }
    /** The number of values. */
    constexpr std::size_t size() const noexcept { return static_cast<std::size_t>(n_); }
    /** The first value. */
    constexpr const V *begin() const noexcept { return p_; }
    /** Past the last value. */
    constexpr const V *end() const noexcept { return p_ + n_; }
    /** The values. */
    constexpr const V *data() const noexcept { return p_; }
    /** A copy of the values. */
    std::vector<V> to_vector() const { return std::vector<V>(p_, p_ + n_); }

private:
    const V *p_;
    int n_;
};

/** A psh_array of elements T: move-only, freed by its destructor. The
 *  memory is shared by every worker of every context, at the same address
 *  in each: pointers into it (data()) are what kernels should capture. */
template <class T>
class array {
    static_assert(detail::dtype_traits<std::remove_cv_t<T>>::ok,
                  "pasha::array: no psh_dtype for this element type (integers, float, double, "
                  "std::complex<float/double>)");

public:
    using value_type = T;          ///< the element type
    using size_type = std::size_t; ///< the type of sizes and indices

    /** An empty array (owns nothing). */
    array() noexcept = default;
    /** True when a's elements are one run in its order (axes of length 1
     *  aside), as psh_alloc makes them unless per_worker is
     *  PSH_PER_WORKER_PADDED. */
    static bool contiguous(const psh_array *a) noexcept
    {
        int n = psh_array_ndim(a);
        bool f = psh_array_order(a) == PSH_ORDER_F;
        std::ptrdiff_t want = static_cast<std::ptrdiff_t>(sizeof(T));
        for (int k = 0; k < n; ++k) {
            int d = f ? k : n - 1 - k;
            std::size_t len = psh_array_shape(a)[d];
            if (len == 0) return true;
            if (len != 1 && psh_array_strides(a)[d] != want) return false;
            want *= static_cast<std::ptrdiff_t>(len);
        }
        return true;
    }
    /** Take over a psh_array the caller owns; throws pasha::error
     *  (PSH_EINVAL) if its dtype is not T's or its elements are not
     *  contiguous (PSH_PER_WORKER_PADDED rows: array indexes data()[0..size)
     *  and cannot skip the gaps); then a is left to the caller. */
    static array adopt(psh_array *a)
    {
        if (a && psh_array_dtype(a) != dtype_of<T>())
            throw error(PSH_EINVAL, "pasha::array::adopt: the psh_array's dtype is not the element type's");
        if (a && !contiguous(a))
            throw error(PSH_EINVAL, "pasha::array::adopt: the psh_array is not contiguous (padded per-worker rows)");
        array r;
        r.reset(a);
        return r;
    }
    array(const array &) = delete;
    array &operator=(const array &) = delete;
    /** Take over o's array; o is left empty. */
    array(array &&o) noexcept : a_(o.a_), data_(o.data_), size_(o.size_)
    {
        o.a_ = nullptr;
        o.data_ = nullptr;
        o.size_ = 0;
    }
    /** Free this array's memory and take over o's; o is left empty. */
    array &operator=(array &&o) noexcept
    {
        if (this != &o) {
            psh_array_free(a_);
            a_ = o.a_;
            data_ = o.data_;
            size_ = o.size_;
            o.a_ = nullptr;
            o.data_ = nullptr;
            o.size_ = 0;
        }
        return *this;
    }
    ~array() { psh_array_free(a_); }

    /** The psh_array (NULL when empty); still owned by this object. */
    psh_array *get() const noexcept { return a_; }
    /** Give up ownership: the caller frees it with psh_array_free. */
    psh_array *release() noexcept
    {
        psh_array *a = a_;
        a_ = nullptr;
        data_ = nullptr;
        size_ = 0;
        return a;
    }
    /** False when empty (default-made, moved from or released). */
    explicit operator bool() const noexcept { return a_ != nullptr; }

    /** The first element: shared by every worker, at the same address. */
    T *data() const noexcept { return data_; }
    /** The number of elements. */
    std::size_t size() const noexcept { return size_; }
    /** True when there are no elements. */
    bool empty() const noexcept { return size_ == 0; }
    /** The size of the data in bytes. */
    std::size_t nbytes() const noexcept { return psh_array_nbytes(a_); }
    /** The number of dimensions. */
    int ndim() const noexcept { return psh_array_ndim(a_); }
    /** The length of each dimension. */
    values_view<std::size_t> shape() const noexcept { return {psh_array_shape(a_), ndim()}; }
    /** Strides in BYTES, as psh_array_strides. */
    values_view<std::ptrdiff_t> strides() const noexcept { return {psh_array_strides(a_), ndim()}; }
    /** The memory order the array was made in. */
    pasha::order order() const noexcept { return static_cast<pasha::order>(psh_array_order(a_)); }

    /** Flat element i, in memory order. */
    T &operator[](std::size_t i) const noexcept { return data_[i]; }
    /** The element at a multi-index, one index per dimension (any order). */
    template <class... I>
    T &operator()(I... idx) const noexcept
    {
        const std::ptrdiff_t *st = psh_array_strides(a_);
        std::ptrdiff_t off = 0;
        int d = 0;
        ((off += static_cast<std::ptrdiff_t>(idx) * st[d++]), ...);
        (void)d;
        (void)st;
        return *reinterpret_cast<T *>(reinterpret_cast<char *>(data_) + off);
    }
    /** The first element, for range-for over all elements in memory order. */
    T *begin() const noexcept { return data_; }
    /** Past the last element. */
    T *end() const noexcept { return data_ + size_; }

private:
    void reset(psh_array *a) noexcept
    {
        a_ = a;
        data_ = static_cast<T *>(psh_array_data(a));
        size_ = psh_array_size(a);
    }
    psh_array *a_ = nullptr;
    T *data_ = nullptr;
    std::size_t size_ = 0;
};

namespace detail {
template <class T>
struct alloc_builder {
    psh_alloc_options o;
    T fill_v{};
    alloc_builder() { psh_alloc_options_init(&o); }
    void apply(per_worker_t) { o.per_worker = 1; }
    void apply(pasha::order ord) { o.order = static_cast<psh_order>(ord); }
    template <class U>
    void apply(const fill_value<U> &f)
    {
        fill_v = static_cast<T>(f.value);
        o.fill = &fill_v;
    }
};

template <class T, class... Opts>
array<T> alloc_shape(const context &ctx, const std::size_t *shape, std::size_t ndim, const Opts &...opts)
{
    alloc_builder<T> b;
    (b.apply(opts), ...);
    if (ndim > 1024) throw error(PSH_EINVAL, "pasha::alloc: ndim " + std::to_string(ndim) + " is out of range 0..32");
    psh_array *a = nullptr;
    check(psh_alloc(&a, checked(ctx), pasha::dtype_of<T>(), static_cast<int>(ndim), shape, &b.o));
    return array<T>::adopt(a);
}
}  // namespace detail

/** A zero-filled array of the given shape, C order, in shared memory.
 *  Options, in any order: pasha::per_worker, pasha::order::f,
 *  pasha::fill(value). Throws pasha::error (PSH_EINVAL, PSH_ENOMEM, ...). */
template <class T, class... Opts>
array<T> alloc(const context &ctx, std::initializer_list<std::size_t> shape, const Opts &...opts)
{
    return detail::alloc_shape<T>(ctx, shape.begin(), shape.size(), opts...);
}

/** The same with the shape in a container (std::vector, std::array). */
template <class T, class Shape, class... Opts,
          class = decltype(std::data(std::declval<const Shape &>()), std::size(std::declval<const Shape &>()))>
array<T> alloc(const context &ctx, const Shape &shape, const Opts &...opts)
{
    std::vector<std::size_t> s(std::begin(shape), std::end(shape));
    return detail::alloc_shape<T>(ctx, s.data(), s.size(), opts...);
}

/** An array with like's shape and order (order and per_worker options as
 *  for alloc), of elements U (default: like's element type). */
template <class U = void, class T, class... Opts>
auto alloc_like(const context &ctx, const array<T> &like, const Opts &...opts)
    -> array<std::conditional_t<std::is_void<U>::value, T, U>>
{
    using R = std::conditional_t<std::is_void<U>::value, T, U>;
    if (!like) throw error(PSH_EINVAL, "pasha::alloc_like: an empty array");
    detail::alloc_builder<R> b;
    (b.apply(opts), ...);
    psh_array *a = nullptr;
    if (std::is_same<R, T>::value) {
        detail::check(psh_alloc_like(&a, detail::checked(ctx), like.get(), &b.o));
    } else {
        if (b.o.order == PSH_ORDER_DEFAULT) b.o.order = psh_array_order(like.get());
        detail::check(psh_alloc(&a, detail::checked(ctx), dtype_of<R>(), like.ndim(), psh_array_shape(like.get()), &b.o));
    }
    return array<R>::adopt(a);
}

/* ---------------------------------------------------------------------- */
/* Views: what a map over an array's axis hands the kernel                */
/* ---------------------------------------------------------------------- */

/** A typed, mdspan-like view of a sub-array: rank() dimensions, extents,
 *  strides (in elements) and the element at a multi-index. Valid during the
 *  kernel call. A 0-d view (a map over a 1-d array) is one element: v(). */
template <class T>
class view {
public:
    using element_type = T;  ///< the element type
    /** A view of rank dimensions at data (the arrays are not copied). */
    view(T *data, int rank, const std::size_t *extents, const std::ptrdiff_t *strides) noexcept
        : data_(data), rank_(rank), extents_(extents), strides_(strides)
    {
    }
    /** The first element of the view (index 0 in every dimension). */
    T *data() const noexcept { return data_; }
    /** data(), under std::mdspan's name. */
    T *data_handle() const noexcept { return data_; }
    /** The number of dimensions. */
    int rank() const noexcept { return rank_; }
    /** rank(), under pasha::array's name. */
    int ndim() const noexcept { return rank_; }
    /** The length of dimension d. */
    std::size_t extent(int d) const noexcept { return extents_[d]; }
    /** Stride of dimension d in elements. */
    std::ptrdiff_t stride(int d) const noexcept { return strides_[d]; }
    /** The number of elements (the product of the extents). */
    std::size_t size() const noexcept
    {
        std::size_t s = 1;
        for (int d = 0; d < rank_; ++d) s *= extents_[d];
        return s;
    }
    /** True when the elements are contiguous in C order (data()[0..size())). */
    bool is_contiguous() const noexcept
    {
        std::ptrdiff_t want = 1;
        for (int d = rank_ - 1; d >= 0; --d) {
            if (extents_[d] != 1 && strides_[d] != want) return false;
            want *= static_cast<std::ptrdiff_t>(extents_[d]);
        }
        return true;
    }
    /** The element at a multi-index: rank() indices (none for a 0-d view). */
    template <class... I>
    T &operator()(I... idx) const noexcept
    {
        std::ptrdiff_t off = 0;
        int d = 0;
        ((off += static_cast<std::ptrdiff_t>(idx) * strides_[d++]), ...);
        (void)d;
        return data_[off];
    }
    /** Element i of a 1-d view. */
    T &operator[](std::size_t i) const noexcept { return data_[static_cast<std::ptrdiff_t>(i) * strides_[0]]; }

private:
    T *data_;
    int rank_;
    const std::size_t *extents_;
    const std::ptrdiff_t *strides_;
};

/* ---------------------------------------------------------------------- */
/* Map                                                                    */
/* ---------------------------------------------------------------------- */

/** The largest closure (plus what the map adds, a few hundred bytes for an
 *  axis map) that can be copied to a persistent pool: psh_map_options::
 *  user_data_size's limit. */
inline constexpr std::size_t max_closure_size = 65536;

static_assert(sizeof(std::atomic<int>) == sizeof(int) && alignof(std::atomic<int>) == alignof(int),
              "pasha: std::atomic<int> must be laid out as int to serve as psh_map_options::cancel");
#if defined(__cpp_lib_atomic_is_always_lock_free)
static_assert(std::atomic<int>::is_always_lock_free, "pasha: std::atomic<int> must be lock-free");
#endif

/** Options of one map, e.g. pasha::map(ctx, n, f, {PSH_SCHEDULE_DYNAMIC, 1000})
 *  for a dynamic schedule in chunks of 1000 items. */
struct map_options {
    /** The context's schedule and chunk, no progress callback, no cancel flag. */
    map_options() = default;
    /** Schedule s in chunks of c items (0: the context's chunk). */
    map_options(psh_schedule s, std::size_t c = 0) : schedule(s), chunk(c) {}
    psh_schedule schedule = PSH_SCHEDULE_CONTEXT;  ///< PSH_SCHEDULE_CONTEXT: the context's
    std::size_t chunk = 0;                         ///< 0: the context's
    /** Called from the calling thread, about 10 times a second, with the
     *  items done and the total, and once at the end of a successful map.
     *  If it throws, the map is cancelled (when no cancel flag is given
     *  and the context is not an MPI context; else it runs to its end) and
     *  the exception is rethrown. */
    std::function<void(std::size_t done, std::size_t total)> progress;
    /** A flag another thread (or a signal handler) sets non-zero to end the
     *  map with pasha::error(PSH_ECANCELED); the library reads it with
     *  relaxed loads. nullptr: none. */
    const std::atomic<int> *cancel = nullptr;
    /** Called in each worker (its thread or process) once per map, before
     *  its first item / after its last one (also after an error), with the
     *  worker's id (psh_map_options::worker_begin / worker_end): per-worker
     *  setup of thread_local or process-local state. Plain function
     *  pointers (a captureless lambda converts), so that a persistent
     *  pool's workers can call them. A throw fails the map like a kernel's
     *  (callback() "worker_begin" / "worker_end"). nullptr: none. */
    void (*worker_begin)(int worker_id) = nullptr;
    void (*worker_end)(int worker_id) = nullptr;  ///< see worker_begin
};

namespace detail {

/* The first exception of a serial or threads map, rethrown in the caller. */
struct exception_slot {
    std::atomic<int> taken{0};
    std::exception_ptr p;
    void store() noexcept
    {
        if (taken.exchange(1, std::memory_order_acq_rel) == 0) p = std::current_exception();
    }
};

/* The item a lambda threw at, set by the item adapters as the exception
 * passes (SIZE_MAX: not known, e.g. a block map). Per thread: a worker
 * process or thread runs one block at a time. */
inline std::size_t &failed_item() noexcept
{
    static thread_local std::size_t item = SIZE_MAX;
    return item;
}

/* Run the loop of an item adapter; if an item throws, remember which. */
template <class Body>
inline void items_loop(std::size_t begin, std::size_t end, Body body)
{
    std::size_t i = begin;
    try {
        for (; i < end; ++i) body(i);
    } catch (...) {
        failed_item() = i;
        throw;
    }
}

/* Record the exception being handled (call in a catch block) on the error
 * page: "type: what() at index i (worker w)", or "in items [b, e)" when the
 * item is not known. The first one wins. */
inline void record(shm_error *e, int worker_id, std::size_t begin, std::size_t end) noexcept
{
    std::size_t item = failed_item();
    failed_item() = SIZE_MAX;
    if (!e) return;
    int expected = 0;
    if (!__atomic_compare_exchange_n(&e->state, &expected, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) return;
    const char *type = nullptr;
    char *demangled = nullptr;
    if (std::type_info *t = abi::__cxa_current_exception_type()) {
        int status = 0;
        demangled = abi::__cxa_demangle(t->name(), nullptr, nullptr, &status);
        type = status == 0 && demangled ? demangled : t->name();
    }
    const char *what = nullptr;
    try {
        throw;
    } catch (const std::exception &x) {
        what = x.what();
    } catch (...) {
    }
    char where[96];
    if (begin == SIZE_MAX)
        std::snprintf(where, sizeof where, "(worker %d)", worker_id);
    else if (item != SIZE_MAX)
        std::snprintf(where, sizeof where, "at index %zu (worker %d)", item, worker_id);
    else
        std::snprintf(where, sizeof where, "in items [%zu, %zu) (worker %d)", begin, end, worker_id);
    std::snprintf(e->text, sizeof e->text, "%s%s%s %s", type ? type : "an exception of unknown type",
                  what ? ": " : "", what ? what : "", where);
    e->item = item != SIZE_MAX ? static_cast<long long>(item) : -1;
    std::free(demangled);
    __atomic_store_n(&e->state, 2, __ATOMIC_RELEASE);
}

/* The error page of a processes or MPI context, made on first use: a psh
 * array for processes contexts (a persistent pool sees psh arrays live), an
 * anonymous shared page for MPI contexts (their local workers are threads or
 * processes forked per map; psh_alloc would be collective there). NULL when
 * another thread holds it or it could not be made: the map then reports the
 * exception without its text. */
inline shm_error *acquire_error_page(psh_context *c, context_state *s, std::unique_lock<std::mutex> &lock) noexcept
{
    if (!s) return nullptr;
    lock = std::unique_lock<std::mutex>(s->mutex, std::try_to_lock);
    if (!lock.owns_lock()) return nullptr;
    if (!s->err) {
        if (psh_context_kind(c) == PSH_PROCESSES) {
            std::size_t n = sizeof(shm_error);
            psh_array *a = nullptr;
            if (psh_alloc(&a, c, PSH_UINT8, 1, &n, nullptr) == PSH_OK) {
                s->err_array = a;
                s->err = static_cast<shm_error *>(psh_array_data(a));
            }
        } else {
            void *p = mmap(nullptr, sizeof(shm_error), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
            if (p != MAP_FAILED) {
                s->err = static_cast<shm_error *>(p);
                s->err_mapped = true;
            }
        }
        if (!s->err) return nullptr;
    }
    __atomic_store_n(&s->err->state, 0, __ATOMIC_RELAXED);
    return s->err;
}

/* A map in serial and threads contexts: the closure is used in place. */
template <class F, class A>
struct local_payload {
    const F *f;
    A a;
    exception_slot *slot;
    void (*hooks[2])(int);  // worker_begin, worker_end
};

/* A map in processes contexts: the closure is copied (into the pool's shared
 * memory by the library when the pool is persistent). */
template <class F, class A>
struct shared_payload {
    F f;
    A a;
    shm_error *err;
    void (*hooks[2])(int);  // worker_begin, worker_end
};

/* map_options::worker_begin (H = 0) and worker_end (H = 1) in a worker. */
template <class P, int H>
int local_hook(void *ud, int worker_id) noexcept
{
    const auto *p = static_cast<const P *>(ud);
    try {
        p->hooks[H](worker_id);
        return 0;
    } catch (...) {
        p->slot->store();
        return 1;
    }
}

template <class P, int H>
int shared_hook(void *ud, int worker_id) noexcept
{
    const auto *p = static_cast<const P *>(ud);
    try {
        p->hooks[H](worker_id);
        return 0;
    } catch (...) {
        record(p->err, worker_id, SIZE_MAX, SIZE_MAX);
        return 1;
    }
}

/* One block: a small closure is copied into a local first, so that the
 * compiler keeps its captures in registers (a store through a captured
 * pointer cannot then alias a capture) and vectorizes the loop. */
template <class F, class A>
inline void call_block(const F &f, const A &a, int worker_id, std::size_t begin, std::size_t end)
{
    if constexpr (sizeof(F) <= 256) {
        const F local = f;
        a.run(local, worker_id, begin, end);
    } else {
        a.run(f, worker_id, begin, end);
    }
}

template <class F, class A>
int local_trampoline(void *ud, int worker_id, std::size_t begin, std::size_t end) noexcept
{
    const auto *p = static_cast<const local_payload<F, A> *>(ud);
    try {
        call_block(*p->f, p->a, worker_id, begin, end);
        return 0;
    } catch (...) {
        p->slot->store();
        return 1;
    }
}

template <class F, class A>
int shared_trampoline(void *ud, int worker_id, std::size_t begin, std::size_t end) noexcept
{
    const auto *p = static_cast<const shared_payload<F, A> *>(ud);
    try {
        call_block(p->f, p->a, worker_id, begin, end);
        return 0;
    } catch (...) {
        record(p->err, worker_id, begin, end);
        return 1;
    }
}

struct progress_state {
    const std::function<void(std::size_t, std::size_t)> *fn;
    std::atomic<int> *own_cancel;
    std::exception_ptr exc;
};

inline void progress_trampoline(void *ud, std::size_t done, std::size_t total) noexcept
{
    auto *p = static_cast<progress_state *>(ud);
    if (p->exc) return;
    try {
        (*p->fn)(done, total);
    } catch (...) {
        p->exc = std::current_exception();
        if (p->own_cancel) p->own_cancel->store(1, std::memory_order_relaxed);
    }
}

/* Adapters: how a block [begin, end) becomes calls of the user's lambda. */
struct items_adapter {
    static constexpr bool per_item = true;
    template <class F>
    void run(const F &f, int w, std::size_t begin, std::size_t end) const
    {
        items_loop(begin, end, [&](std::size_t i) { f(w, i); });
    }
};

struct blocks_adapter {
    static constexpr bool per_item = false;
    template <class F>
    void run(const F &f, int w, std::size_t begin, std::size_t end) const
    {
        f(w, begin, end);
    }
};

template <class T>
struct range_adapter {
    static constexpr bool per_item = true;
    T *data;
    template <class F>
    void run(const F &f, int w, std::size_t begin, std::size_t end) const
    {
        T *d = data;
        items_loop(begin, end, [&](std::size_t i) { f(w, i, d[i]); });
    }
};

template <class T>
struct axis_adapter {
    static constexpr bool per_item = true;
    char *base;
    std::ptrdiff_t step;  // bytes between sub-arrays
    int rank;
    std::size_t extents[32];
    std::ptrdiff_t strides[32];  // elements
    template <class F>
    void run(const F &f, int w, std::size_t begin, std::size_t end) const
    {
        items_loop(begin, end, [&](std::size_t i) {
            f(w, i,
              view<T>(reinterpret_cast<T *>(base + static_cast<std::ptrdiff_t>(i) * step), rank, extents, strides));
        });
    }
};

template <class F, class A>
void run_map(const context &ctx, std::size_t n, const F &f, const A &a, const map_options *mo)
{
    static_assert(std::is_trivially_copyable<F>::value,
                  "pasha::map: the closure must be trivially copyable, because a persistent pool's workers get a "
                  "copy of it: capture plain values and pointers into psh arrays by value (see "
                  "pasha::context_options::persistent), not a std::vector, std::string, pasha::array or "
                  "pasha::context");
    static_assert(sizeof(shared_payload<F, A>) <= max_closure_size,
                  "pasha::map: the closure is larger than pasha::max_closure_size (64 KiB): capture pointers to "
                  "the data instead");
    psh_context *c = checked(ctx);
    psh_kind k = psh_context_kind(c);
    psh_map_options o;
    psh_map_options_init(&o);
    std::atomic<int> own_cancel{0};
    progress_state ps{nullptr, nullptr, nullptr};
    if (mo) {
        o.schedule = mo->schedule;
        o.chunk = mo->chunk;
        if (mo->cancel) o.cancel = reinterpret_cast<const volatile int *>(mo->cancel);
        if (mo->progress) {
            ps.fn = &mo->progress;
            // A flag of our own, so that a throwing callback can end the map;
            // not on MPI contexts, where a cancel flag makes every rank run
            // its block in rounds (pasha_mpi.h).
            if (!mo->cancel && k != PSH_MPI) {
                ps.own_cancel = &own_cancel;
                o.cancel = reinterpret_cast<const volatile int *>(&own_cancel);
            }
            o.progress = &progress_trampoline;
            o.progress_data = &ps;
        }
    }
    int rc;
    if (k == PSH_SERIAL || k == PSH_THREADS) {
        exception_slot slot;
        using P = local_payload<F, A>;
        P p{&f, a, &slot, {mo ? mo->worker_begin : nullptr, mo ? mo->worker_end : nullptr}};
        if (p.hooks[0]) o.worker_begin = &local_hook<P, 0>;
        if (p.hooks[1]) o.worker_end = &local_hook<P, 1>;
        rc = psh_map_blocks_ext(c, &local_trampoline<F, A>, &p, n, &o);
        if (slot.taken.load(std::memory_order_acquire)) std::rethrow_exception(slot.p);
    } else {
        std::unique_lock<std::mutex> lock;
        shm_error *err = acquire_error_page(c, state_of(ctx), lock);
        using P = shared_payload<F, A>;
        P p{f, a, err, {mo ? mo->worker_begin : nullptr, mo ? mo->worker_end : nullptr}};
        if (p.hooks[0]) o.worker_begin = &shared_hook<P, 0>;
        if (p.hooks[1]) o.worker_end = &shared_hook<P, 1>;
        o.user_data_size = sizeof p;
        rc = psh_map_blocks_ext(c, &shared_trampoline<F, A>, &p, n, &o);
        if (rc == PSH_EKERNEL) {
            // The library saw our block trampoline fail: the C++ layer knows
            // the very item, and that the user's callback is a per-item kernel.
            psh_error_info info = error::last_info(rc);
            bool recorded = err && __atomic_load_n(&err->state, __ATOMIC_ACQUIRE) == 2;
            if (recorded && err->item >= 0) info.index = err->item;
            if (A::per_item && info.callback && std::strcmp(info.callback, "block_kernel") == 0)
                info.callback = "kernel";
            std::string who = "the kernel";
            if (info.callback && std::strncmp(info.callback, "worker_", 7) == 0) who = info.callback;
            if (recorded) throw error(PSH_EKERNEL, who + " threw " + err->text, info);
            throw error(PSH_EKERNEL,
                        std::string("the kernel threw (its text could not be passed back): ") + psh_last_error(),
                        info);
        }
    }
    if (ps.exc) std::rethrow_exception(ps.exc);
    check(rc);
}

template <class R>
using range_element_t = std::remove_reference_t<decltype(*std::data(std::declval<R &>()))>;

template <class T>
struct is_array : std::false_type {};
template <class T>
struct is_array<array<T>> : std::true_type {};

template <class T>
axis_adapter<T> make_axis_adapter(const array<T> &arr, int axis, std::size_t &n)
{
    if (!arr) throw error(PSH_EINVAL, "pasha::map: an empty array");
    int nd = arr.ndim();
    if (nd == 0) throw error(PSH_EINVAL, "pasha::map: a 0-d array has no axis to map over");
    if (axis < -nd || axis >= nd)
        throw error(PSH_EINVAL, "pasha::map: axis " + std::to_string(axis) + " is out of range for a " +
                                    std::to_string(nd) + "-d array");
    if (axis < 0) axis += nd;
    axis_adapter<T> a{};
    const std::size_t *shape = psh_array_shape(arr.get());
    const std::ptrdiff_t *strides = psh_array_strides(arr.get());
    a.base = reinterpret_cast<char *>(arr.data());
    a.step = strides[axis];
    a.rank = nd - 1;
    for (int d = 0, r = 0; d < nd; ++d) {
        if (d == axis) continue;
        a.extents[r] = shape[d];
        a.strides[r] = strides[d] / static_cast<std::ptrdiff_t>(sizeof(T));
        ++r;
    }
    n = shape[axis];
    return a;
}

/* The result type of a kernel, void when it returns nothing (or cannot be
 * called so: the caller's static_assert then says how it must be). */
template <class Void, class F, class... Args>
struct result_or_void {
    using type = void;
};
template <class F, class... Args>
struct result_or_void<std::enable_if_t<std::is_invocable<F, Args...>::value>, F, Args...> {
    using type = std::decay_t<std::invoke_result_t<F, Args...>>;
};
template <class F, class... Args>
using result_or_void_t = typename result_or_void<void, F, Args...>::type;

/* The closure of a map with results: calls the user's kernel and constructs
 * its value in slot i of out (trivially copyable when F is). */
template <class F, class R>
struct store_results {
    F f;
    R *out;
    template <class... X>
    void operator()(int w, std::size_t i, X &&...x) const
    {
        ::new (static_cast<void *>(out + i)) R(f(w, i, std::forward<X>(x)...));
    }
};

/* Where a map's results go: straight into the vector in serial and threads
 * contexts; in processes contexts into a psh array (shared memory, seen by
 * a persistent pool too), copied into the vector after the map. run(out)
 * runs the map that fills out[0..n). */
template <class R, class Run>
std::vector<R> collect(const context &ctx, std::size_t n, Run run)
{
    static_assert(std::is_trivially_copyable<R>::value,
                  "pasha::map: the kernel's result type must be trivially copyable, because processes contexts "
                  "write the results into shared memory (return plain values or structs of them; for a "
                  "std::string or std::vector result, write into psh arrays instead)");
    static_assert(alignof(R) <= 64, "pasha::map: the kernel's result type must be aligned to at most 64 bytes");
    psh_kind k = psh_context_kind(checked(ctx));
    if (k == PSH_MPI)
        throw error(PSH_EINVAL, "pasha::map with results: not on an MPI context (write into a psh array and "
                                "use pasha::mpi::allgather)");
    if (k == PSH_SERIAL || k == PSH_THREADS) {
        if constexpr (std::is_default_constructible<R>::value) {
            std::vector<R> out(n);
            run(out.data());
            return out;
        } else {
            std::unique_ptr<unsigned char[]> buf(new unsigned char[n * sizeof(R) + 64]);
            R *p = reinterpret_cast<R *>(buf.get() + (64 - reinterpret_cast<std::uintptr_t>(buf.get()) % 64) % 64);
            run(p);
            return std::vector<R>(p, p + n);
        }
    }
    if (n > (SIZE_MAX - 64) / sizeof(R))
        throw error(PSH_EINVAL, "pasha::map with results: " + std::to_string(n) + " results do not fit in memory");
    std::size_t bytes = n * sizeof(R) + 64;
    psh_array *a = nullptr;
    check(psh_alloc(&a, checked(ctx), PSH_UINT8, 1, &bytes, nullptr));
    std::unique_ptr<psh_array, void (*)(psh_array *)> hold(a, &psh_array_free);
    R *p = static_cast<R *>(psh_array_data(a));
    run(p);
    return std::vector<R>(p, p + n);
}

/* Per-worker accumulators of pasha::reduce: one slot per worker, each
 * starting on its own 128-byte boundary (two cache lines: no false sharing,
 * and the adjacent-line prefetcher does not pull a neighbour's slot). In
 * processes contexts the slots are in a psh array. */
template <class T>
struct reduce_slots {
    static constexpr std::size_t align = 128;
    static constexpr std::size_t stride = (sizeof(T) + align - 1) / align * align;
    unsigned char *base = nullptr;
    int count = 0;
    std::unique_ptr<unsigned char[]> local;
    std::unique_ptr<psh_array, void (*)(psh_array *)> shared{nullptr, &psh_array_free};

    reduce_slots(psh_context *c, int workers, const T &identity)
    {
        count = workers;
        if (static_cast<std::size_t>(workers) > (SIZE_MAX - align) / stride)
            throw error(PSH_EINVAL, "pasha::reduce: the accumulators do not fit in memory");
        std::size_t bytes = static_cast<std::size_t>(workers) * stride + align;
        unsigned char *raw;
        if (psh_context_kind(c) == PSH_SERIAL || psh_context_kind(c) == PSH_THREADS) {
            local.reset(new unsigned char[bytes]);
            raw = local.get();
        } else {
            psh_array *a = nullptr;
            check(psh_alloc(&a, c, PSH_UINT8, 1, &bytes, nullptr));
            shared.reset(a);
            raw = static_cast<unsigned char *>(psh_array_data(a));
        }
        base = raw + (align - reinterpret_cast<std::uintptr_t>(raw) % align) % align;
        for (int w = 0; w < workers; ++w) ::new (static_cast<void *>(base + w * stride)) T(identity);
    }
    T &operator[](int w) const noexcept { return *std::launder(reinterpret_cast<T *>(base + w * stride)); }
};

/* The block closure of pasha::reduce: the worker's own accumulator, updated
 * in place (kernel(begin, end, T &acc) returning void) or replaced
 * (acc = kernel(begin, end, const T &acc)). */
template <class K, class T>
struct reduce_body {
    K kernel;
    unsigned char *slots;
    void operator()(int w, std::size_t begin, std::size_t end) const
    {
        T &acc = *std::launder(reinterpret_cast<T *>(slots + static_cast<std::size_t>(w) * reduce_slots<T>::stride));
        if constexpr (std::is_void<std::invoke_result_t<const K &, std::size_t, std::size_t, T &>>::value)
            kernel(begin, end, acc);
        else
            acc = kernel(begin, end, static_cast<const T &>(acc));
    }
};

/* Which forms of kernel and combine pasha::reduce accepts (see there). */
template <class K, class T>
struct reduce_kernel_ok
    : std::integral_constant<
          bool, (std::is_invocable<const K &, std::size_t, std::size_t, T &>::value &&
                 std::is_void<result_or_void_t<const K &, std::size_t, std::size_t, T &>>::value &&
                 !std::is_invocable<const K &, std::size_t, std::size_t, const T &>::value) ||
                    std::is_convertible<result_or_void_t<const K &, std::size_t, std::size_t, const T &>, T>::value> {};
template <class C, class T>
struct reduce_combine_ok
    : std::integral_constant<bool, (std::is_invocable<const C &, T &, const T &>::value &&
                                    std::is_void<result_or_void_t<const C &, T &, const T &>>::value &&
                                    !std::is_invocable<const C &, const T &, const T &>::value) ||
                                       std::is_convertible<result_or_void_t<const C &, const T &, const T &>,
                                                           T>::value> {};

}  // namespace detail

/** Call f(worker_id, index) for every index in [0, n), split among the
 *  context's workers; return when all are done. See the top of this file
 *  for the closure rule and how exceptions come back. */
template <class F>
auto map(const context &ctx, std::size_t n, const F &f, const map_options &opts = {})
{
    static_assert(std::is_invocable<const F &, int, std::size_t>::value,
                  "pasha::map: the kernel must be callable as f(int worker_id, std::size_t index) const");
    using R = detail::result_or_void_t<const F &, int, std::size_t>;
    if constexpr (std::is_void<R>::value)
        detail::run_map(ctx, n, f, detail::items_adapter{}, &opts);
    else
        return detail::collect<R>(ctx, n, [&](R *out) {
            detail::run_map(ctx, n, detail::store_results<F, R>{f, out}, detail::items_adapter{}, &opts);
        });
}

/** Call f(worker_id, begin, end) once per contiguous block of [0, n) (with
 *  the static schedule: once per worker, its whole share). */
template <class F>
void map_blocks(const context &ctx, std::size_t n, const F &f, const map_options &opts = {})
{
    static_assert(std::is_invocable<const F &, int, std::size_t, std::size_t>::value,
                  "pasha::map_blocks: the kernel must be callable as f(int worker_id, std::size_t begin, "
                  "std::size_t end) const");
    detail::run_map(ctx, n, f, detail::blocks_adapter{}, &opts);
}

/** Call f(worker_id, index, pasha::view<T> sub) for every sub-array of arr
 *  along axis (negative: from the end): view of rank ndim-1; for a 1-d
 *  array a 0-d view of element index. */
template <class T, class F>
auto map(const context &ctx, const array<T> &arr, int axis, const F &f, const map_options &opts = {})
{
    static_assert(std::is_invocable<const F &, int, std::size_t, view<T>>::value,
                  "pasha::map over an array: the kernel must be callable as f(int worker_id, std::size_t index, "
                  "pasha::view<T> sub) const");
    std::size_t n = 0;
    auto a = detail::make_axis_adapter(arr, axis, n);
    using R = detail::result_or_void_t<const F &, int, std::size_t, view<T>>;
    if constexpr (std::is_void<R>::value)
        detail::run_map(ctx, n, f, a, &opts);
    else
        return detail::collect<R>(
            ctx, n, [&](R *out) { detail::run_map(ctx, n, detail::store_results<F, R>{f, out}, a, &opts); });
}

/** The same along axis 0. */
template <class T, class F>
auto map(const context &ctx, const array<T> &arr, const F &f, const map_options &opts = {})
{
    return map(ctx, arr, 0, f, opts);
}

/** Call f(worker_id, index, element &) for every element of a contiguous
 *  range (std::vector, std::array, C array, std::span). Writes to a range
 *  outside psh arrays come back only from serial and threads contexts;
 *  a persistent pool does not see memory made after it. */
template <class R, class F, class = std::enable_if_t<!detail::is_array<std::remove_cv_t<std::remove_reference_t<R>>>::value>,
          class E = detail::range_element_t<R>>
auto map(const context &ctx, R &&range, const F &f, const map_options &opts = {})
{
    static_assert(std::is_invocable<const F &, int, std::size_t, E &>::value,
                  "pasha::map over a range: the kernel must be callable as f(int worker_id, std::size_t index, "
                  "element &) const");
    detail::range_adapter<E> a{std::data(range)};
    const std::size_t n = static_cast<std::size_t>(std::size(range));
    using V = detail::result_or_void_t<const F &, int, std::size_t, E &>;
    if constexpr (std::is_void<V>::value)
        detail::run_map(ctx, n, f, a, &opts);
    else
        return detail::collect<V>(
            ctx, n, [&](V *out) { detail::run_map(ctx, n, detail::store_results<F, V>{f, out}, a, &opts); });
}

/** Sum the rows of a per_worker array (shape {num_workers, ...} in C order)
 *  into a std::vector of the remaining size: the usual end of a per-worker
 *  reduction. */
template <class T>
std::vector<T> sum_per_worker(const array<T> &acc)
{
    if (!acc || acc.ndim() < 1) throw error(PSH_EINVAL, "pasha::sum_per_worker: an empty or 0-d array");
    if (acc.order() != order::c) throw error(PSH_EINVAL, "pasha::sum_per_worker: the array is not in C order");
    std::size_t rows = acc.shape()[0], cols = rows ? acc.size() / rows : 0;
    std::vector<T> r(cols, T{});
    for (std::size_t w = 0; w < rows; ++w)
        for (std::size_t j = 0; j < cols; ++j) r[j] += acc[w * cols + j];
    return r;
}

/** A reduction in the manner of tbb::parallel_reduce's functional form:
 *  each worker folds the blocks of [0, n) it is handed into an accumulator
 *  of its own that starts as a copy of identity, with
 *    kernel(std::size_t begin, std::size_t end, T &acc)             (void: in place) or
 *    T kernel(std::size_t begin, std::size_t end, const T &acc)     (the new value),
 *  then the caller folds the accumulators with
 *    combine(T &into, const T &from)                                (void: in place) or
 *    T combine(const T &a, const T &b),
 *  always in worker order: acc[0] + acc[1] + ... + acc[W-1], left to right
 *  (deterministic for a given schedule; with the static schedule worker w
 *  always gets items [w*n/W, (w+1)*n/W), so floating-point results are the
 *  same from run to run). identity must be an identity of combine (a worker
 *  with no items contributes it). The accumulators sit on separate 128-byte
 *  boundaries (no false sharing); in processes contexts in a psh array, so
 *  T must be trivially copyable (checked at compile time). The kernel and
 *  combine follow the closure rule of pasha::map; exceptions come back as
 *  from pasha::map. Not on MPI contexts (PSH_EINVAL). For a large T (a
 *  histogram, a sum frame) use the in-place forms: the functional ones copy
 *  T once per block. */
template <class T, class K, class C>
T reduce(const context &ctx, std::size_t n, const T &identity, const K &kernel, const C &combine,
         const map_options &opts = {})
{
    static_assert(std::is_trivially_copyable<T>::value,
                  "pasha::reduce: the accumulator type must be trivially copyable, because processes contexts "
                  "keep the per-worker accumulators in shared memory");
    static_assert(alignof(T) <= 128, "pasha::reduce: the accumulator type must be aligned to at most 128 bytes");
    static_assert(detail::reduce_kernel_ok<K, T>::value,
                  "pasha::reduce: the kernel must be callable as kernel(std::size_t begin, std::size_t end, T &acc) "
                  "const returning void, or as T kernel(std::size_t begin, std::size_t end, const T &acc) const");
    static_assert(detail::reduce_combine_ok<C, T>::value,
                  "pasha::reduce: combine must be callable as combine(T &into, const T &from) returning void, or "
                  "as T combine(const T &a, const T &b)");
    psh_context *c = detail::checked(ctx);
    if (psh_context_kind(c) == PSH_MPI)
        throw error(PSH_EINVAL, "pasha::reduce: not on an MPI context (reduce per-worker rows with "
                                "pasha::mpi::reduce)");
    detail::reduce_slots<T> slots(c, psh_context_num_workers(c), identity);
    detail::run_map(ctx, n, detail::reduce_body<K, T>{kernel, slots.base}, detail::blocks_adapter{}, &opts);
    T result = slots[0];
    for (int w = 1; w < slots.count; ++w) {
        if constexpr (std::is_void<std::invoke_result_t<const C &, T &, const T &>>::value)
            combine(result, static_cast<const T &>(slots[w]));
        else
            result = combine(static_cast<const T &>(result), static_cast<const T &>(slots[w]));
    }
    return result;
}

}  // namespace pasha

#endif /* PASHA_PASHA_HPP */
