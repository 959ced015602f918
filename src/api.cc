// The C API: checks arguments, turns C calls into C++ calls and C++
// exceptions back into status codes and psh_last_error(). No exception
// crosses this file's functions.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <new>
#include <string>

#include "array.hh"
#include "context.hh"
#include "dtype.hh"
#include "error.hh"
#include "fork_safety.hh"
#include "functor.hh"
#include "pasha/pasha.h"
#include "worker_process.hh"

using namespace psh;

namespace {

const int kMaxWorkers = 4096;
const size_t kMaxUserData = 65536;

Context *impl(psh_context *c) { return reinterpret_cast<Context *>(c); }
const Context *impl(const psh_context *c) { return reinterpret_cast<const Context *>(c); }
psh_context *handle(Context *c) { return reinterpret_cast<psh_context *>(c); }

// The value of an enum the caller passed, read as the int it is. A C caller
// may pass any int; in C++ merely loading an out-of-range enum is undefined,
// so enums from outside are read through memcpy and checked as ints.
template <class E>
int raw(const E &e)
{
    static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
    int v;
    memcpy(&v, &e, sizeof v);
    return v;
}

// Is `field` within the struct_size the caller's struct says it has?
#define HAS_FIELD(opts, type, field) ((opts)->struct_size >= offsetof(type, field) + sizeof((opts)->field))

template <class T>
void check_struct_size(const T *opts, size_t minimum, const char *init)
{
    if (opts->struct_size < minimum)
        fail(PSH_EINVAL, "struct_size %zu is too small: call %s first", opts->struct_size, init);
}

// A reference that is dropped at scope exit.
struct ContextRef {
    Context *ctx = nullptr;
    ~ContextRef() { psh_context_destroy(handle(ctx)); }
};

std::mutex default_mutex;
Context *default_ctx = nullptr;

}  // namespace

void psh::api_after_fork_child()
{
    new (&default_mutex) std::mutex();  // another thread may have held it at the fork
}

namespace {

// The context to use: ctx, or the default (made on first use); +1 reference.
void acquire_context(psh_context *ctx, ContextRef &ref)
{
    if (ctx) {
        ref.ctx = impl(psh_context_reference(ctx));
        return;
    }
    std::lock_guard<std::mutex> lock(default_mutex);
    if (!default_ctx) {
        psh_context *made = nullptr;
        int rc = psh_context_create(&made, PSH_PROCESSES, 0);
        if (rc) throw Error{rc, std::string("cannot make the default context: ") + last_error()};
        default_ctx = impl(made);
    }
    ref.ctx = impl(psh_context_reference(handle(default_ctx)));
}

std::unique_ptr<Context> create_context(const psh_context_options &o)
{
    int kind = raw(o.kind), schedule = raw(o.schedule);
    if (kind == PSH_MPI) fail(PSH_EINVAL, "MPI contexts are made by psh_context_create_mpi");
    if (kind != PSH_SERIAL && kind != PSH_THREADS && kind != PSH_PROCESSES)
        fail(PSH_EINVAL, "unknown context kind %d", kind);
    if (o.num_workers > kMaxWorkers) fail(PSH_EINVAL, "num_workers %d is more than %d", o.num_workers, kMaxWorkers);
    if (schedule < PSH_SCHEDULE_STATIC || schedule > PSH_SCHEDULE_GUIDED)
        fail(PSH_EINVAL, "unknown schedule %d", schedule);
    if (o.persistent && kind != PSH_PROCESSES) fail(PSH_EINVAL, "persistent is only for PSH_PROCESSES contexts");
    parse_spin_env();  // a malformed PASHA_SPIN_US is an error here, not a silent default
    ContextConfig cfg;
    cfg.kind = (psh_kind)kind;
    cfg.num_workers = kind == PSH_SERIAL ? 1 : o.num_workers > 0 ? o.num_workers : default_num_workers();
    cfg.persistent = o.persistent != 0;
    cfg.schedule = (psh_schedule)schedule;
    cfg.chunk = o.chunk;
    cfg.pin_cpus = o.pin_cpus != 0;
    switch (kind) {
    case PSH_SERIAL: return make_serial_context(cfg);
    case PSH_THREADS: return make_threads_context(cfg);
    default: return cfg.persistent ? make_pool_context(cfg) : make_fork_context(cfg);
    }
}

// The body of psh_alloc* and the maps on ctx: an error it throws before the
// context's own part began is handed to ctx->refuse, which for a collective
// (MPI) context makes it every rank's error (and throws).
template <class F>
void collective(psh_context *ctx, F body)
{
    try {
        body();
    } catch (const Error &e) {
        if (ctx && current_worker() < 0) impl(ctx)->refuse(e);
        throw;
    } catch (const std::bad_alloc &) {
        if (ctx && current_worker() < 0) impl(ctx)->refuse(Error{PSH_ENOMEM, "out of memory"});
        throw;
    }
}

// Copy a field of a caller's versioned struct over the defaults if the
// caller's struct_size covers all of it (memcpy: enums are not loaded).
#define COPY_FIELD(dst, src, type, field) \
    do { \
        if (HAS_FIELD(src, type, field)) memcpy(&(dst).field, &(src)->field, sizeof((dst).field)); \
    } while (0)

const psh_alloc_options *checked_alloc_options(const psh_alloc_options *opts, psh_alloc_options &defaults)
{
    psh_alloc_options_init(&defaults);
    if (!opts) return &defaults;
    check_struct_size(opts, offsetof(psh_alloc_options, order) + sizeof(psh_order), "psh_alloc_options_init");
    COPY_FIELD(defaults, opts, psh_alloc_options, order);
    COPY_FIELD(defaults, opts, psh_alloc_options, fill);
    COPY_FIELD(defaults, opts, psh_alloc_options, per_worker);
    return &defaults;
}

void alloc_into(psh_array **out, psh_context *ctx, int dtype, int ndim, const size_t *shape, int order,
                const psh_alloc_options &o)
{
    if (!out) fail(PSH_EINVAL, "out is NULL");
    ContextRef ref;
    acquire_context(ctx, ref);
    *out = make_array(*ref.ctx, dtype, ndim, shape, order, o.fill, o.per_worker).release();
}

int do_map(const char *fn, psh_context *ctx, psh_kernel kernel, psh_block_kernel block_kernel, void *user_data,
           const psh_functor *functor, size_t n, const psh_map_options *opts)
{
    return guard(fn, [&] {
        psh_map_options o;
        psh_map_options_init(&o);
        int schedule = 0;
        Job job;
        memset(&job, 0, sizeof job);
        Monitor mon;
        collective(ctx, [&] {
            if (!kernel && !block_kernel) fail(PSH_EINVAL, "kernel is NULL");
            if (kernel && !functor) fail(PSH_EINVAL, "functor is NULL");
            if (opts) {
                check_struct_size(opts, offsetof(psh_map_options, schedule) + sizeof(psh_schedule), "psh_map_options_init");
                COPY_FIELD(o, opts, psh_map_options, schedule);
                COPY_FIELD(o, opts, psh_map_options, chunk);
                COPY_FIELD(o, opts, psh_map_options, progress);
                COPY_FIELD(o, opts, psh_map_options, progress_data);
                COPY_FIELD(o, opts, psh_map_options, cancel);
                COPY_FIELD(o, opts, psh_map_options, user_data_size);
                COPY_FIELD(o, opts, psh_map_options, worker_begin);
                COPY_FIELD(o, opts, psh_map_options, worker_end);
            }
            schedule = raw(o.schedule);
            if (o.user_data_size > kMaxUserData)
                fail(PSH_EINVAL, "user_data_size %zu is more than %zu", o.user_data_size, kMaxUserData);
            if (o.user_data_size && !user_data) fail(PSH_EINVAL, "user_data_size is set but user_data is NULL");
            if (schedule < PSH_SCHEDULE_CONTEXT || schedule > PSH_SCHEDULE_GUIDED)
                fail(PSH_EINVAL, "unknown schedule %d", schedule);

            job.kernel = kernel;
            job.block_kernel = block_kernel;
            job.user_data = user_data;
            job.user_data_size = o.user_data_size;
            job.worker_begin = o.worker_begin;
            job.worker_end = o.worker_end;
            if (kernel) job.functor = functor->desc;
            job.begin = 0;
            job.end = kernel ? functor->desc.length : n;
            mon.progress = o.progress;
            mon.progress_data = o.progress_data;
            mon.cancel = o.cancel;
            mon.total = job.end;
            mon.last_ns = monotonic_ns();
            if (cancelled(o.cancel)) fail(PSH_ECANCELED, "the map was cancelled before it started");
        });

        int outer = current_worker();
        if (outer >= 0) {  // inside a kernel: run the inner map in this worker
            job.schedule = PSH_SCHEDULE_STATIC;
            Outcome out;
            run_inline(job, mon, outer, out);
            raise_outcome(out, job.block_kernel != nullptr);
            return;
        }
        ContextRef ref;
        acquire_context(ctx, ref);
        Context &c = *ref.ctx;
        job.schedule = schedule == PSH_SCHEDULE_CONTEXT ? c.config().schedule : (psh_schedule)schedule;
        job.num_workers = c.num_workers();
        job.chunk = resolve_chunk(job.schedule, o.chunk ? o.chunk : c.config().chunk, job.end, job.num_workers);
        // Progress and cancel want frequent block boundaries in static shares too.
        if (job.chunk == 0 && mon.active()) job.chunk = 64;
        // A chunk larger than the map is the whole map (a huge one would
        // wrap the dynamic counter around and run items twice).
        if (job.chunk > job.end && job.end > 0) job.chunk = job.end;
        __extension__ typedef unsigned __int128 u128;
        job.dynamic_cas = (u128)job.end + (u128)job.chunk * ((u128)job.num_workers + 1) > (u128)SIZE_MAX;
        // An MPI context must see every map, empty ones too: its ranks
        // check together that they all map the same number of items.
        if (job.end == 0 && c.kind() != PSH_MPI) {
            mon.final_progress(0);
            return;
        }
        c.map(job, mon);
    });
}

}  // namespace

extern "C" {

const char *psh_strerror(int code) { return strerror_code(code); }
const char *psh_last_error(void) { return last_error(); }
int psh_last_error_info(psh_error_info *info) { return last_error_info(info); }

int psh_cpu_count(void)
{
    int n = 0;
    int rc = guard("psh_cpu_count", [&] { n = default_num_workers(); });
    return rc ? rc : n;
}
const char *psh_version(void) { return PASHA_VERSION; }
unsigned psh_version_number(void) { return PSH_VERSION_NUMBER; }

int psh_register_fork_hooks(psh_fork_hook prepare, psh_fork_hook parent, psh_fork_hook child, void *data)
{
    return guard("psh_register_fork_hooks", [&] { register_fork_hooks(prepare, parent, child, data); });
}

/* contexts */

void psh_context_options_init(psh_context_options *opts)
{
    if (!opts) return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->kind = PSH_PROCESSES;
    opts->schedule = PSH_SCHEDULE_STATIC;
}

int psh_context_create_ext(psh_context **out, const psh_context_options *opts)
{
    return guard("psh_context_create_ext", [&] {
        if (!out) fail(PSH_EINVAL, "out is NULL");
        psh_context_options o;
        psh_context_options_init(&o);
        if (opts) {
            check_struct_size(opts, offsetof(psh_context_options, num_workers) + sizeof(int), "psh_context_options_init");
            COPY_FIELD(o, opts, psh_context_options, kind);
            COPY_FIELD(o, opts, psh_context_options, num_workers);
            COPY_FIELD(o, opts, psh_context_options, persistent);
            COPY_FIELD(o, opts, psh_context_options, schedule);
            COPY_FIELD(o, opts, psh_context_options, chunk);
            COPY_FIELD(o, opts, psh_context_options, pin_cpus);
        }
        *out = handle(create_context(o).release());
    });
}

int psh_context_create(psh_context **out, psh_kind kind, int num_workers)
{
    return guard("psh_context_create", [&] {
        if (!out) fail(PSH_EINVAL, "out is NULL");
        psh_context_options o;
        psh_context_options_init(&o);
        memcpy(&o.kind, &kind, sizeof kind);
        o.num_workers = num_workers;
        *out = handle(create_context(o).release());
    });
}

psh_context *psh_context_reference(psh_context *ctx)
{
    if (ctx) impl(ctx)->refs.fetch_add(1, std::memory_order_relaxed);
    return ctx;
}

void psh_context_destroy(psh_context *ctx)
{
    if (ctx && impl(ctx)->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete impl(ctx);
}

int psh_context_num_workers(const psh_context *ctx) { return ctx ? impl(ctx)->num_workers() : 0; }
psh_kind psh_context_kind(const psh_context *ctx) { return ctx ? impl(ctx)->kind() : PSH_SERIAL; }
psh_schedule psh_context_schedule(const psh_context *ctx)
{
    return ctx ? impl(ctx)->config().schedule : PSH_SCHEDULE_STATIC;
}

psh_context *psh_default_context_ref(void)
{
    psh_context *result = nullptr;
    guard("psh_default_context_ref", [&] {
        ContextRef ref;
        acquire_context(nullptr, ref);
        result = handle(ref.ctx);
        ref.ctx = nullptr;  // the caller's reference now
    });
    return result;
}

psh_context *psh_get_default_context(void)
{
    psh_context *result = nullptr;
    guard("psh_get_default_context", [&] {
        ContextRef ref;
        acquire_context(nullptr, ref);
        result = handle(ref.ctx);  // the library's own reference keeps it alive
    });
    return result;
}

int psh_set_default_context(psh_context *ctx)
{
    return guard("psh_set_default_context", [&] {
        if (!ctx) fail(PSH_EINVAL, "ctx is NULL");
        psh_context_reference(ctx);
        Context *old;
        {
            std::lock_guard<std::mutex> lock(default_mutex);
            old = default_ctx;
            default_ctx = impl(ctx);
        }
        psh_context_destroy(handle(old));
    });
}

int psh_set_default_kind(psh_kind kind, int num_workers)
{
    psh_context *ctx = nullptr;
    psh_context_options o;
    psh_context_options_init(&o);
    memcpy(&o.kind, &kind, sizeof kind);
    o.num_workers = num_workers;
    int rc = psh_context_create_ext(&ctx, &o);
    if (rc) return rc;
    rc = psh_set_default_context(ctx);
    psh_context_destroy(ctx);
    return rc;
}

/* arrays */

void psh_alloc_options_init(psh_alloc_options *opts)
{
    if (!opts) return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->order = PSH_ORDER_DEFAULT;
}

int psh_alloc(psh_array **out, psh_context *ctx, psh_dtype dtype, int ndim, const size_t *shape,
              const psh_alloc_options *opts)
{
    return guard("psh_alloc", [&] {
        collective(ctx, [&] {
            psh_alloc_options defaults;
            const psh_alloc_options &o = *checked_alloc_options(opts, defaults);
            int order = raw(o.order) == PSH_ORDER_DEFAULT ? PSH_ORDER_C : raw(o.order);
            alloc_into(out, ctx, raw(dtype), ndim, shape, order, o);
        });
    });
}

int psh_alloc_like(psh_array **out, psh_context *ctx, const psh_array *like, const psh_alloc_options *opts)
{
    return guard("psh_alloc_like", [&] {
        collective(ctx, [&] {
            if (!like) fail(PSH_EINVAL, "like is NULL");
            psh_alloc_options defaults;
            const psh_alloc_options &o = *checked_alloc_options(opts, defaults);
            int order = raw(o.order) == PSH_ORDER_DEFAULT ? like->order : raw(o.order);
            alloc_into(out, ctx, like->dtype, like->ndim, like->shape, order, o);
        });
    });
}

void psh_array_free(psh_array *a) { delete a; }
void *psh_array_data(const psh_array *a) { return a ? a->data : nullptr; }
psh_dtype psh_array_dtype(const psh_array *a) { return a ? a->dtype : PSH_INT8; }
int psh_array_ndim(const psh_array *a) { return a ? a->ndim : 0; }
const size_t *psh_array_shape(const psh_array *a) { return a ? a->shape : nullptr; }
const ptrdiff_t *psh_array_strides(const psh_array *a) { return a ? a->strides : nullptr; }
psh_order psh_array_order(const psh_array *a) { return a ? a->order : PSH_ORDER_DEFAULT; }
size_t psh_array_size(const psh_array *a) { return a ? a->size : 0; }
size_t psh_array_nbytes(const psh_array *a) { return a ? a->nbytes : 0; }
size_t psh_dtype_size(psh_dtype dtype) { return dtype_size(raw(dtype)); }

/* functors */

static int new_functor(const char *fn, psh_functor **out, const std::function<FunctorDesc()> &describe)
{
    return guard(fn, [&] {
        if (!out) fail(PSH_EINVAL, "out is NULL");
        auto f = std::make_unique<psh_functor>();
        f->desc = describe();
        *out = f.release();
    });
}

static FunctorDesc blank(FunctorDesc::Kind kind, size_t length)
{
    FunctorDesc d;
    memset(&d, 0, sizeof d);
    d.kind = kind;
    d.length = length;
    return d;
}

int psh_functor_range(psh_functor **out, size_t n)
{
    return new_functor("psh_functor_range", out, [&] { return blank(FunctorDesc::RANGE, n); });
}

int psh_functor_sequence(psh_functor **out, const void *base, size_t count, size_t stride)
{
    return new_functor("psh_functor_sequence", out, [&] {
        if (!base && count > 0) fail(PSH_EINVAL, "base is NULL");
        if (stride > (size_t)PTRDIFF_MAX) fail(PSH_EINVAL, "stride %zu is too large", stride);
        // The last element's offset, (count - 1) * stride, must fit, and so
        // must its address.
        __extension__ typedef unsigned __int128 u128;
        u128 last = count ? (u128)(count - 1) * stride : 0;
        if (last > (u128)PTRDIFF_MAX || (u128)(uintptr_t)base + last > (u128)UINTPTR_MAX)
            fail(PSH_EINVAL, "count %zu times stride %zu overflows the address space", count, stride);
        FunctorDesc d = blank(FunctorDesc::SEQUENCE, count);
        d.base = (const char *)base;
        d.stride = (ptrdiff_t)stride;
        return d;
    });
}

int psh_functor_array(psh_functor **out, const psh_array *a, int axis)
{
    return new_functor("psh_functor_array", out, [&] {
        if (!a) fail(PSH_EINVAL, "array is NULL");
        return strided_functor(a->data, a->dtype, a->ndim, a->shape, a->strides, axis);
    });
}

int psh_functor_strided(psh_functor **out, const void *data, psh_dtype dtype, int ndim, const size_t *shape,
                        const ptrdiff_t *strides, int axis)
{
    return new_functor("psh_functor_strided", out,
                       [&] { return strided_functor(data, raw(dtype), ndim, shape, strides, axis); });
}

int psh_functor_custom(psh_functor **out, const psh_functor_vtable *vt, void *self)
{
    return new_functor("psh_functor_custom", out, [&] {
        if (!vt) fail(PSH_EINVAL, "vtable is NULL");
        check_struct_size(vt, offsetof(psh_functor_vtable, get) + sizeof(vt->get), "sizeof(psh_functor_vtable) as");
        if (!vt->length || !vt->get) fail(PSH_EINVAL, "the vtable's length and get are required");
        FunctorDesc d = blank(FunctorDesc::CUSTOM, 0);
        d.vt.struct_size = sizeof d.vt;
        d.vt.length = vt->length;
        d.vt.get = vt->get;
        COPY_FIELD(d.vt, vt, psh_functor_vtable, worker_begin);
        COPY_FIELD(d.vt, vt, psh_functor_vtable, worker_end);
        d.self = self;
        d.length = vt->length(self);
        return d;
    });
}

size_t psh_functor_length(const psh_functor *f) { return f ? f->desc.length : 0; }
void psh_functor_destroy(psh_functor *f) { delete f; }

/* map */

void psh_map_options_init_size(psh_map_options *opts, size_t struct_size)
{
    if (!opts || struct_size < offsetof(psh_map_options, schedule) + sizeof(psh_schedule)) return;
    if (struct_size > sizeof *opts) struct_size = sizeof *opts;
    memset(opts, 0, struct_size);
    opts->struct_size = struct_size;
    opts->schedule = PSH_SCHEDULE_CONTEXT;
}

// The exported function (the header's macro of this name calls
// psh_map_options_init_size): binaries built against 0.2 have a struct that
// ends after user_data_size, and this must not write past it.
void(psh_map_options_init)(psh_map_options *opts)
{
    psh_map_options_init_size(opts, offsetof(psh_map_options, worker_begin));
}

int psh_map(psh_context *ctx, psh_kernel kernel, void *user_data, psh_functor *functor)
{
    return do_map("psh_map", ctx, kernel, nullptr, user_data, functor, 0, nullptr);
}

int psh_map_ext(psh_context *ctx, psh_kernel kernel, void *user_data, psh_functor *functor,
                const psh_map_options *opts)
{
    return do_map("psh_map_ext", ctx, kernel, nullptr, user_data, functor, 0, opts);
}

int psh_map_blocks(psh_context *ctx, psh_block_kernel kernel, void *user_data, size_t n)
{
    return do_map("psh_map_blocks", ctx, nullptr, kernel, user_data, nullptr, n, nullptr);
}

int psh_map_blocks_ext(psh_context *ctx, psh_block_kernel kernel, void *user_data, size_t n,
                       const psh_map_options *opts)
{
    return do_map("psh_map_blocks_ext", ctx, nullptr, kernel, user_data, nullptr, n, opts);
}

}  // extern "C"
