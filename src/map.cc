#include "map.hh"

#include <cxxabi.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>

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
            if (!job_.dynamic_cas) {
                // end + chunk * (workers + 1) fits in size_t (checked in
                // resolve), so the counter cannot wrap around.
                b = c_.next.fetch_add(job_.chunk, std::memory_order_relaxed);
                if (b >= job_.end) return false;
                e = job_.end - b > job_.chunk ? b + job_.chunk : job_.end;
                return true;
            }
            b = c_.next.load(std::memory_order_relaxed);
            for (;;) {
                if (b >= job_.end) return false;
                e = job_.end - b > job_.chunk ? b + job_.chunk : job_.end;
                if (c_.next.compare_exchange_weak(b, e, std::memory_order_relaxed)) return true;
            }
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

bool run_block(Control &c, const Job &job, int id, WorkerSlot &slot, size_t b, size_t e, int &callback)
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
            callback = CB_GET;
            int rc = f.vt.get(f.self, i, &value);
            if (rc) {
                c.record(STOP_GET, rc, i, id);
                return false;
            }
            callback = CB_KERNEL;
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

long long parse_spin_env()
{
    const char *env = getenv("PASHA_SPIN_US");
    if (!env || !*env) return 200000;
    char *end;
    errno = 0;
    long long v = strtoll(env, &end, 10);
    if (*env < '0' || *env > '9' || *end || errno || v > 10000000)
        fail(PSH_EINVAL, "PASHA_SPIN_US='%s' is not a whole number of microseconds in 0..10000000", env);
    return v * 1000;
}

long long spin_ns()
{
    static long long ns = [] {
        try {
            return parse_spin_env();
        } catch (const Error &) {
            return 200000LL;  // unreachable: contexts are not made with a bad value
        }
    }();
    return ns;
}

int usable_cpus()
{
    static int n = [] {
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        return online > 0 ? (int)online : 1;
    }();
    return n;
}

void describe_current_exception(char *buf, size_t size)
{
    const char *type = nullptr;
    char *demangled = nullptr;
    if (std::type_info *t = abi::__cxa_current_exception_type()) {
        int status = 0;
        demangled = abi::__cxa_demangle(t->name(), nullptr, nullptr, &status);
        type = status == 0 && demangled ? demangled : t->name();
    }
    try {
        throw;
    } catch (const std::exception &e) {
        snprintf(buf, size, "%s: %s", type ? type : "std::exception", e.what());
    } catch (...) {
        snprintf(buf, size, "%s", type ? type : "an exception of unknown type");
    }
    free(demangled);
}

int current_worker() { return tls_worker; }

size_t resolve_chunk(psh_schedule s, size_t chunk, size_t n, int workers)
{
    if (chunk) return chunk;  // do_map clamps it to the map
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
    if (!c) return;
    if (c->checked_wake_fd() >= 0) close(c->wake_fd);  // never close a descriptor that is not ours
    munmap(c, sizeof(Control) + (size_t)c->num_slots * sizeof(WorkerSlot));
}

void Control::prepare(const Job &j)
{
    job = j;
    next.store(j.begin, std::memory_order_relaxed);
    done.store(0, std::memory_order_relaxed);
    stop.store(0, std::memory_order_relaxed);
    claimed.store(0, std::memory_order_relaxed);
    finished.store(0, std::memory_order_relaxed);
    caller_sleeping.store(0, std::memory_order_relaxed);
    outcome = Outcome{STOP_NONE, 0, SIZE_MAX, -1, 0, {0}};
    for (int i = 0; i < num_slots; ++i) slots[i].current.store(SIZE_MAX, std::memory_order_relaxed);
}

void Control::record(int reason, int code, size_t index, int worker, int exit_status, const char *what)
{
    int expected = 0;
    if (claimed.compare_exchange_strong(expected, 1)) {
        outcome = Outcome{reason, code, index, worker, exit_status, {0}};
        if (what) snprintf(outcome.what, sizeof outcome.what, "%s", what);
    }
    stop.store(1, std::memory_order_release);
}

void Control::record_exception(int callback, size_t index, int worker)
{
    char what[sizeof outcome.what];
    describe_current_exception(what, sizeof what);
    record(STOP_THROW, callback, index, worker, 0, what);
}

void Control::open_wake_fd()
{
    wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct stat st;
    if (wake_fd >= 0 && fstat(wake_fd, &st) == 0) {
        wake_dev = st.st_dev;
        wake_ino = st.st_ino;
    }
}

int Control::checked_wake_fd() const
{
    if (wake_fd < 0) return -1;
    struct stat st;
    if (fstat(wake_fd, &st) != 0 || st.st_dev != wake_dev || st.st_ino != wake_ino) return -1;
    return wake_fd;
}

void Control::verify_wake_fd(bool reopen)
{
    if (wake_fd < 0 || checked_wake_fd() >= 0) return;
    wake_fd = -1;  // not ours any more: never close or write it
    if (reopen) open_wake_fd();
}

void Control::drain_wake_fd()
{
    uint64_t v;
    while (read(wake_fd, &v, sizeof v) == (ssize_t)sizeof v) {}
}

void Monitor::tick(Control &c)
{
    if ((cancelled(cancel) || (poll && poll(poll_data))) && !c.stop.load(std::memory_order_relaxed))
        c.record(STOP_CANCEL, 0, SIZE_MAX, -1);
    if (progress && !c.stop.load(std::memory_order_relaxed)) {
        long long now = monotonic_ns();
        if (now - last_ns >= 100000000LL) {
            last_ns = now;
            try {
                progress(progress_data, c.done.load(std::memory_order_relaxed), total);
            } catch (...) {
                c.record_exception(CB_PROGRESS, SIZE_MAX, -1);
            }
        }
    }
}

void Monitor::final_progress(size_t total_items)
{
    if (!progress) return;
    try {
        progress(progress_data, total_items, total_items);
    } catch (...) {
        char what[sizeof(Outcome::what)];
        describe_current_exception(what, sizeof what);
        Error e{PSH_EKERNEL, std::string("the progress callback threw ") + what};
        e.callback = "progress";
        throw e;
    }
}

namespace {

// Worker w's share: the functor's worker_begin, the items, its worker_end.
void run_share(Control &c, const Job &job, int w, int id, WorkerSlot &slot, Monitor *mon)
{
    const FunctorDesc &f = job.functor;
    bool custom = !job.block_kernel && f.kind == FunctorDesc::CUSTOM;
    // Every user callback may throw (a C++ kernel behind a C function
    // pointer): the exception stops the map like a non-zero return and
    // never leaves this function.
    int callback = CB_BEGIN;  // which one is running: CB_BEGIN, an item callback, CB_END
    try {
        if (custom && f.vt.worker_begin) {
            int rc = f.vt.worker_begin(f.self, id);
            if (rc) {
                c.record(STOP_BEGIN, rc, SIZE_MAX, id);
                return;
            }
        }
        Scheduler sched(c, job, w, job.block_kernel != nullptr);
        size_t b, e;
        callback = job.block_kernel ? CB_BLOCK_KERNEL : CB_KERNEL;
        while (!c.stop.load(std::memory_order_relaxed) && sched.next(b, e)) {
            if (!run_block(c, job, id, slot, b, e, callback)) break;
            c.done.fetch_add(e - b, std::memory_order_relaxed);
            if (cancelled(job.cancel)) c.record(STOP_CANCEL, 0, SIZE_MAX, -1);
            if (mon) mon->tick(c);
        }
        callback = CB_END;
        if (custom && f.vt.worker_end) f.vt.worker_end(f.self, id);
    } catch (...) {
        bool in_items = callback != CB_BEGIN && callback != CB_END;
        c.record_exception(callback, in_items ? slot.current.load(std::memory_order_relaxed) : SIZE_MAX, id);
        if (callback != CB_END && custom && f.vt.worker_end) {
            try {
                f.vt.worker_end(f.self, id);
            } catch (...) {
            }
        }
    }
}

}  // namespace

void run_worker(Control &c, const Job &job, int w, Monitor *mon)
{
    int id = job.worker_base + w;
    WorkerScope scope(id);
    WorkerSlot &slot = c.slots[w < c.num_slots ? w : 0];
    // The map's own pair wraps the functor's: every worker of the map runs
    // it once, items or not; worker_end runs when worker_begin succeeded.
    if (job.worker_begin) {
        try {
            int rc = job.worker_begin(job.user_data, id);
            if (rc) {
                c.record(STOP_MAP_BEGIN, rc, SIZE_MAX, id);
                return;
            }
        } catch (...) {
            c.record_exception(CB_MAP_BEGIN, SIZE_MAX, id);
            return;
        }
    }
    run_share(c, job, w, id, slot, mon);
    if (job.worker_end) {
        try {
            int rc = job.worker_end(job.user_data, id);
            if (rc) c.record(STOP_MAP_END, rc, SIZE_MAX, id);
        } catch (...) {
            c.record_exception(CB_MAP_END, SIZE_MAX, id);
        }
    }
}

void finish_worker(Control &c, int w, uint32_t gen, uint32_t expected)
{
    // Count first, then mark the slot: a caller that sees done_gen == gen
    // knows the count already holds this worker. The other order let a pool
    // caller return (every slot marked) before the last count landed, and
    // that late count then went to the next map, which returned before one
    // of its workers had finished (seen under TSan in fault-death).
    uint32_t before = c.finished.fetch_add(1, std::memory_order_seq_cst);
    c.slots[w].done_gen.store(gen, std::memory_order_release);
    if (before + 1 < expected) return;
    // Wake the caller only if it went to sleep: no system call on the fast
    // path, where it is still spinning.
    if (!c.caller_sleeping.load(std::memory_order_seq_cst)) return;
    if (c.wake_fd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(c.wake_fd, &one, sizeof one);
        (void)r;
    } else {
        futex_wake_all(&c.finished);
    }
}

bool wait_for_job(Control &c, uint32_t seen, long long timeout_ns)
{
    // After a job whose shares could be taken (a pool, no hooks), spin
    // without yielding first, as where a CPU is free for each spinner: a
    // worker that shares the caller's CPU is not needed for the next such
    // job (the one that runs takes its share). Where a CPU is shared the
    // preemption evidence throttles it (spin_until), and so does the
    // caller's (supervise: workers_throttled_until).
    bool yield_only = c.throttle_spin && !(c.claims && c.steal_gen.load(std::memory_order_relaxed) == seen &&
                                           monotonic_ns() >= c.workers_throttled_until.load(std::memory_order_relaxed));
    if (spin_until([&] { return c.generation.load(std::memory_order_acquire) != seen; }, yield_only))
        return true;
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
    c.woke_sleepers = c.sleepers.load(std::memory_order_seq_cst) > 0;
    c.wake_pending = false;
    if (c.woke_sleepers) futex_wake_all(&c.generation);
}

void publish_deferred(Control &c)
{
    c.generation.fetch_add(1, std::memory_order_seq_cst);
    // A worker that goes to sleep after this load sees the new generation
    // first (wait_for_job: sleepers, then generation, both seq_cst). One
    // that died asleep stays counted: then all are taken for asleep, and
    // woken at once, as publish does.
    uint32_t sleepers = c.sleepers.load(std::memory_order_seq_cst);
    c.woke_sleepers = sleepers > 0;
    c.wake_pending = sleepers > 0 && sleepers < (uint32_t)c.num_slots;
    if (c.woke_sleepers && !c.wake_pending) futex_wake_all(&c.generation);
}

void wake_deferred(Control &c)
{
    if (!c.wake_pending) return;
    c.wake_pending = false;
    futex_wake_all(&c.generation);
}

bool claim_share(Control &c, int s, uint32_t gen, uint32_t runner)
{
    std::atomic<uint64_t> &claim = c.slots[s].claim;
    uint64_t old = claim.load(std::memory_order_acquire);
    uint64_t mine = (uint64_t)gen << 32 | runner;
    for (;;) {
        // Claimed for gen, or for a later one (this caller's gen is stale):
        // not ours. Generations wrap: compare by difference.
        if ((int32_t)((uint32_t)(old >> 32) - gen) >= 0) return false;
        if (claim.compare_exchange_weak(old, mine, std::memory_order_acq_rel, std::memory_order_acquire))
            return true;
    }
}

bool job_allows_stealing(const Job &job)
{
    if (job.worker_begin || job.worker_end) return false;
    const FunctorDesc &f = job.functor;
    bool custom = !job.block_kernel && f.kind == FunctorDesc::CUSTOM;
    return !(custom && (f.vt.worker_begin || f.vt.worker_end));
}

}  // namespace psh
