#include "map.hh"

#include <sys/mman.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <new>

#include "error.hh"

namespace psh {

namespace {

__extension__ typedef unsigned __int128 u128;

thread_local int tls_worker = -1;

// Marks the calling thread as a worker while it runs a job.
struct WorkerScope {
    int saved;
    explicit WorkerScope(int id) : saved(tls_worker) { tls_worker = id; }
    ~WorkerScope() { tls_worker = saved; }
};

const size_t kStaticBlock = 4096;  // static shares are walked in blocks of this many items

// Hands out [b, e) ranges of the job's indices to worker w.
class Scheduler {
public:
    Scheduler(Control &c, const Job &job, int w, bool blocks) : c_(c), job_(job)
    {
        size_t n = job.end - job.begin;
        unsigned W = (unsigned)job.num_workers;
        pos_ = job.begin + (size_t)((u128)n * (unsigned)w / W);
        end_ = job.begin + (size_t)((u128)n * (unsigned)(w + 1) / W);
        static_block_ = blocks ? SIZE_MAX : (job.chunk ? job.chunk : kStaticBlock);
    }

    bool next(size_t &b, size_t &e)
    {
        switch (job_.schedule) {
        case PSH_SCHEDULE_DYNAMIC:
            b = c_.next.fetch_add(job_.chunk, std::memory_order_relaxed);
            if (b >= job_.end) return false;
            e = job_.end - b > job_.chunk ? b + job_.chunk : job_.end;
            return true;
        case PSH_SCHEDULE_GUIDED: {
            b = c_.next.load(std::memory_order_relaxed);
            for (;;) {
                if (b >= job_.end) return false;
                size_t left = job_.end - b;
                size_t size = left / (2 * (size_t)job_.num_workers);
                if (size < job_.chunk) size = job_.chunk;
                e = left > size ? b + size : job_.end;
                if (c_.next.compare_exchange_weak(b, e, std::memory_order_relaxed)) return true;
            }
        }
        default:
            if (pos_ >= end_) return false;
            b = pos_;
            e = end_ - pos_ > static_block_ ? pos_ + static_block_ : end_;
            pos_ = e;
            return true;
        }
    }

private:
    Control &c_;
    const Job &job_;
    size_t pos_, end_, static_block_;
};

// The hot loop: one kernel call per index, a stop check and a store of the
// current index (for the message if this worker dies). value(i) is inlined.
template <class Value>
inline bool run_items(Control &c, const Job &job, int id, WorkerSlot &slot, size_t b, size_t e,
                      Value value)
{
    psh_kernel kernel = job.kernel;
    void *ud = job.user_data;
    const volatile int *cancel = job.cancel;
    for (size_t i = b; i < e; ++i) {
        if (c.stop.load(std::memory_order_relaxed)) return false;
        if (cancelled(cancel)) {
            c.record(STOP_CANCEL, 0, SIZE_MAX, -1);
            return false;
        }
        slot.current.store(i, std::memory_order_relaxed);
        int rc = kernel(ud, id, i, value(i));
        if (rc) {
            c.record(STOP_KERNEL, rc, i, id);
            return false;
        }
    }
    return true;
}

bool run_block(Control &c, const Job &job, int id, WorkerSlot &slot, size_t b, size_t e)
{
    if (job.block_kernel) {
        slot.current.store(b, std::memory_order_relaxed);
        int rc = job.block_kernel(job.user_data, id, b, e);
        if (rc) c.record(STOP_KERNEL, rc, b, id);
        return rc == 0;
    }
    const FunctorDesc &f = job.functor;
    switch (f.kind) {
    case FunctorDesc::RANGE:
        return run_items(c, job, id, slot, b, e, [](size_t) -> const void * { return nullptr; });
    case FunctorDesc::SEQUENCE: {
        const char *base = f.base;
        ptrdiff_t stride = f.stride;
        return run_items(c, job, id, slot, b, e,
                         [=](size_t i) -> const void * { return base + (ptrdiff_t)i * stride; });
    }
    case FunctorDesc::VIEW: {
        psh_view view = {nullptr, f.dtype, f.ndim, f.shape, f.strides};
        const char *base = f.base;
        ptrdiff_t stride = f.stride;
        return run_items(c, job, id, slot, b, e, [&](size_t i) -> const void * {
            view.data = const_cast<char *>(base + (ptrdiff_t)i * stride);
            return &view;
        });
    }
    case FunctorDesc::CUSTOM:
    default: {
        for (size_t i = b; i < e; ++i) {
            if (c.stop.load(std::memory_order_relaxed)) return false;
            if (cancelled(job.cancel)) {
                c.record(STOP_CANCEL, 0, SIZE_MAX, -1);
                return false;
            }
            slot.current.store(i, std::memory_order_relaxed);
            const void *value = nullptr;
            int rc = f.vt.get(f.self, i, &value);
            if (rc) {
                c.record(STOP_GET, rc, i, id);
                return false;
            }
            rc = job.kernel(job.user_data, id, i, value);
            if (rc) {
                c.record(STOP_KERNEL, rc, i, id);
                return false;
            }
        }
        return true;
    }
    }
}

}  // namespace

long long spin_ns()
{
    static long long ns = [] {
        const char *env = getenv("PASHA_SPIN_US");
        return (env && *env ? atoll(env) : 200) * 1000;
    }();
    return ns;
}

int current_worker() { return tls_worker; }

size_t resolve_chunk(psh_schedule s, size_t chunk, size_t n, int workers)
{
    if (chunk) return chunk;
    if (s == PSH_SCHEDULE_DYNAMIC) {
        size_t c = n / (256 * (size_t)workers);
        return c < 1 ? 1 : c > 4096 ? 4096 : c;
    }
    return s == PSH_SCHEDULE_GUIDED ? 1 : 0;
}

Control *Control::create_shared(int num_slots)
{
    size_t bytes = sizeof(Control) + (size_t)num_slots * sizeof(WorkerSlot);
    void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail_errno("mmap of the control block", errno);
    Control *c = new (p) Control();
    c->num_slots = num_slots;
    c->slots = reinterpret_cast<WorkerSlot *>(reinterpret_cast<char *>(p) + sizeof(Control));
    for (int i = 0; i < num_slots; ++i) new (&c->slots[i]) WorkerSlot();
    return c;
}

void Control::destroy_shared(Control *c)
{
    if (c) munmap(c, sizeof(Control) + (size_t)c->num_slots * sizeof(WorkerSlot));
}

void Control::prepare(const Job &j)
{
    job = j;
    next.store(j.begin, std::memory_order_relaxed);
    done.store(0, std::memory_order_relaxed);
    stop.store(0, std::memory_order_relaxed);
    claimed.store(0, std::memory_order_relaxed);
    finished.store(0, std::memory_order_relaxed);
    outcome = Outcome{STOP_NONE, 0, SIZE_MAX, -1, 0};
    for (int i = 0; i < num_slots; ++i) slots[i].current.store(SIZE_MAX, std::memory_order_relaxed);
}

void Control::record(int reason, int code, size_t index, int worker, int exit_status)
{
    int expected = 0;
    if (claimed.compare_exchange_strong(expected, 1)) outcome = Outcome{reason, code, index, worker, exit_status};
    stop.store(1, std::memory_order_release);
}

void Monitor::tick(Control &c)
{
    if (cancelled(cancel) && !c.stop.load(std::memory_order_relaxed))
        c.record(STOP_CANCEL, 0, SIZE_MAX, -1);
    if (progress) {
        long long now = monotonic_ns();
        if (now - last_ns >= 100000000LL) {
            last_ns = now;
            progress(progress_data, c.done.load(std::memory_order_relaxed), total);
        }
    }
}

void run_worker(Control &c, const Job &job, int w, Monitor *mon)
{
    int id = job.worker_base + w;
    WorkerScope scope(id);
    WorkerSlot &slot = c.slots[w < c.num_slots ? w : 0];
    const FunctorDesc &f = job.functor;
    bool custom = !job.block_kernel && f.kind == FunctorDesc::CUSTOM;
    if (custom && f.vt.worker_begin) {
        int rc = f.vt.worker_begin(f.self, id);
        if (rc) {
            c.record(STOP_BEGIN, rc, SIZE_MAX, id);
            return;
        }
    }
    Scheduler sched(c, job, w, job.block_kernel != nullptr);
    size_t b, e;
    while (!c.stop.load(std::memory_order_relaxed) && sched.next(b, e)) {
        if (!run_block(c, job, id, slot, b, e)) break;
        c.done.fetch_add(e - b, std::memory_order_relaxed);
        if (cancelled(job.cancel)) c.record(STOP_CANCEL, 0, SIZE_MAX, -1);
        if (mon) mon->tick(c);
    }
    if (custom && f.vt.worker_end) f.vt.worker_end(f.self, id);
}

void finish_worker(Control &c, int w, uint32_t gen, uint32_t expected)
{
    c.slots[w].done_gen.store(gen, std::memory_order_release);
    if (c.finished.fetch_add(1, std::memory_order_acq_rel) + 1 >= expected) futex_wake_all(&c.finished);
}

bool wait_for_job(Control &c, uint32_t seen, long long timeout_ns)
{
    if (spin_until([&] { return c.generation.load(std::memory_order_acquire) != seen; })) return true;
    c.sleepers.fetch_add(1, std::memory_order_seq_cst);
    bool changed;
    while (!(changed = c.generation.load(std::memory_order_seq_cst) != seen)) {
        futex_wait(&c.generation, seen, timeout_ns);
        if (timeout_ns >= 0) {
            changed = c.generation.load(std::memory_order_seq_cst) != seen;
            break;
        }
    }
    c.sleepers.fetch_sub(1, std::memory_order_relaxed);
    return changed;
}

void publish(Control &c)
{
    c.generation.fetch_add(1, std::memory_order_seq_cst);
    if (c.sleepers.load(std::memory_order_seq_cst) > 0) futex_wake_all(&c.generation);
}

}  // namespace psh
