// A context kind implemented outside the engine (the MPI context of
// libpasha_mpi): a Context whose runs and allocations go to the part's C
// callbacks, and the table through which that part reaches the engine
// (src/pasha_internal.h). The part links this engine, not a copy of it, so
// a process has one arena, one default context and one set of fork hooks.
#include <cstdio>
#include <cstring>
#include <new>

#include "array.hh"
#include "context.hh"
#include "dtype.hh"
#include "pasha_internal.h"

struct psh_internal_job {
    psh::Job *job;
    psh::Monitor *mon;
};

namespace psh {

namespace {

[[noreturn]] void raise_failure(const psh_internal_failure &f)
{
    Error e{f.code ? f.code : PSH_ESYS, f.message};
    if (f.has_info) {  // a map's failure: where it happened, as data
        e.worker_id = f.worker_id;
        e.index = f.index;
        e.signal = f.signal;
        e.exit_status = f.exit_status;
    }
    throw e;
}

void keep_failure(psh_internal_failure *err, int code, const std::string &message)
{
    err->code = code;
    snprintf(err->message, sizeof err->message, "%s", message.c_str());
}

// A block the part made (data, and its handle for free_block); it
// remembers which part's context made it.
class ExternalBlock final : public Block {
public:
    ExternalBlock(void *data, size_t size, const psh_internal_kind *kind, void *impl, void *handle)
        : Block(data, size), kind_(kind), impl_(impl), handle_(handle)
    {
    }
    ~ExternalBlock() override
    {
        if (handle_) kind_->free_block(handle_);
    }
    bool made_by(const psh_internal_kind *kind, void **impl) const
    {
        if (kind != kind_) return false;
        *impl = impl_;
        return true;
    }

private:
    const psh_internal_kind *kind_;
    void *impl_;
    void *handle_;
};

class ExternalContext final : public Context {
public:
    ExternalContext(const ContextConfig &cfg, const psh_internal_kind *kind, void *impl)
        : Context(cfg), kind_(kind), impl_(impl)
    {
    }
    ~ExternalContext() override { kind_->destroy(impl_); }

    void *impl_of(const psh_internal_kind *kind) const { return kind == kind_ ? impl_ : nullptr; }

    std::unique_ptr<Block> allocate(size_t nbytes) override
    {
        psh_internal_failure f{};
        void *data = nullptr, *handle = nullptr;
        if (kind_->allocate(impl_, nbytes, &data, &handle, &f) != PSH_OK) raise_failure(f);
        try {
            return std::make_unique<ExternalBlock>(data, nbytes, kind_, impl_, handle);
        } catch (...) {
            if (handle) kind_->free_block(handle);
            throw;
        }
    }

    void refuse(const Error &e) override
    {
        psh_internal_failure f{};
        if (kind_->refuse(impl_, e.code, e.message.c_str(), &f) != PSH_OK) raise_failure(f);
    }

protected:
    void run(Job &job, Monitor &mon, Outcome &) override
    {
        psh_internal_job j{&job, &mon};
        psh_internal_failure f{};
        if (kind_->run(impl_, &j, job.begin, job.end, mon.cancel, &f) != PSH_OK) raise_failure(f);
    }

    void after_fork() override
    {
        if (kind_->after_fork) fail(PSH_ENOTSUP, "%s", kind_->after_fork);
    }

private:
    const psh_internal_kind *kind_;
    void *impl_;
};

Context *impl(psh_context *c) { return reinterpret_cast<Context *>(c); }
const Context *impl(const psh_context *c) { return reinterpret_cast<const Context *>(c); }

int context_create_external(psh_context **out, const psh_internal_kind *kind, void *impl_ptr, int num_workers,
                            const psh_context *local, psh_internal_failure *err)
{
    try {
        if (!out || !kind || !local || num_workers < 1) {
            if (kind && impl_ptr) kind->destroy(impl_ptr);
            keep_failure(err, PSH_EINVAL, "bad arguments to context_create_external");
            return PSH_EINVAL;
        }
        ContextConfig cfg;
        cfg.kind = PSH_MPI;
        cfg.num_workers = num_workers;
        cfg.persistent = false;
        cfg.schedule = impl(local)->config().schedule;
        cfg.chunk = impl(local)->config().chunk;
        cfg.pin_cpus = false;
        ExternalContext *c = new (std::nothrow) ExternalContext(cfg, kind, impl_ptr);
        if (!c) {
            kind->destroy(impl_ptr);
            keep_failure(err, PSH_ENOMEM, "out of memory");
            return PSH_ENOMEM;
        }
        *out = reinterpret_cast<psh_context *>(static_cast<Context *>(c));
        return PSH_OK;
    } catch (const Error &e) {
        keep_failure(err, e.code, e.message);
        return e.code;
    }
}

void *context_impl(const psh_context *ctx, const psh_internal_kind *kind)
{
    auto *c = ctx ? dynamic_cast<const ExternalContext *>(impl(ctx)) : nullptr;
    return c ? c->impl_of(kind) : nullptr;
}

void *array_impl(const psh_array *a, const psh_internal_kind *kind)
{
    auto *b = a ? dynamic_cast<const ExternalBlock *>(a->block.get()) : nullptr;
    void *found = nullptr;
    return b && b->made_by(kind, &found) ? found : nullptr;
}

size_t array_span(const psh_array *a) { return a ? a->span : 0; }

int map_local(psh_context *local, psh_internal_job *j, size_t begin, size_t end, int worker_base,
              int (*poll)(void *), void *poll_data, psh_internal_failure *err)
{
    try {
        Job mine = *j->job;
        mine.begin = begin;
        mine.end = end;
        mine.num_workers = impl(local)->num_workers();
        mine.worker_base = worker_base;
        // The poll is asked at block boundaries: static shares need some
        // (as api.cc gives them when there is a cancel flag or progress).
        if (poll && mine.chunk == 0 && mine.schedule == PSH_SCHEDULE_STATIC) mine.chunk = 64;
        Monitor mon = *j->mon;
        mon.poll = poll;
        mon.poll_data = poll_data;
        impl(local)->map(mine, mon);
        return PSH_OK;
    } catch (const Error &e) {
        keep_failure(err, e.code, e.message);
        err->has_info = 1;
        err->worker_id = e.worker_id;
        err->index = e.index;
        err->signal = e.signal;
        err->exit_status = e.exit_status;
        return e.code;
    } catch (const std::bad_alloc &) {
        keep_failure(err, PSH_ENOMEM, "out of memory");
        return PSH_ENOMEM;
    }
}

int shm_alloc(size_t nbytes, void **data, void **block, psh_internal_failure *err)
{
    try {
        std::unique_ptr<Block> b = shm_allocate(nbytes);
        *data = b->data();
        *block = b.release();
        return PSH_OK;
    } catch (const Error &e) {
        keep_failure(err, e.code, e.message);
        return e.code;
    } catch (const std::bad_alloc &) {
        keep_failure(err, PSH_ENOMEM, "out of memory");
        return PSH_ENOMEM;
    }
}

void shm_free(void *block) { delete static_cast<Block *>(block); }

int set_error(const char *fn, int code, const char *message)
{
    try {
        set_last_error(fn, Error{code, message});
    } catch (const std::bad_alloc &) {
    }
    return code;
}

// psh_cpu_count: a malformed PASHA_NUM_WORKERS is its error code (< 1) with
// psh_last_error() set, never a C++ exception across the table (which
// would end the process in std::terminate: tests/mpi/behaviours.txt,
// num-workers-malformed).
int cpu_count() { return psh_cpu_count(); }

const psh_internal_engine kEngine = {
    sizeof(psh_internal_engine),
    PSH_INTERNAL_VERSION,
    context_create_external,
    context_impl,
    array_impl,
    array_span,
    map_local,
    shm_alloc,
    shm_free,
    set_error,
    psh_context_create,
    psh_alloc,
    psh_array_free,
    psh_context_destroy,
    psh_context_num_workers,
    psh_context_schedule,
    psh_last_error,
    cpu_count,
    psh_array_data,
    psh_array_dtype,
    psh_array_ndim,
    psh_array_shape,
    psh_array_order,
    psh_array_size,
    psh_array_nbytes,
    psh_dtype_size,
    psh_context_options_init,
    psh_context_create_ext,
};

}  // namespace

}  // namespace psh

extern "C" PSH_API const psh_internal_engine *psh_internal_engine_get(int version)
{
    return version == PSH_INTERNAL_VERSION ? &psh::kEngine : nullptr;
}
