// The map loop: what one worker does with one job, and the control block
// through which a caller and its workers (threads or processes) talk.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "functor.hh"

namespace psh {

// One map, as every worker sees it. Plain data: it is copied into the
// control block of a persistent process pool.
struct Job {
    psh_kernel kernel;             // item mode, or
    psh_block_kernel block_kernel; // block mode
    void *user_data;
    FunctorDesc functor;           // item mode
    size_t begin, end;             // the indices to cover
    psh_schedule schedule;
    size_t chunk;                  // resolved: > 0, at most the number of indices
    bool dynamic_cas;              // dynamic schedule: take chunks by CAS (a fetch_add could wrap)
    int num_workers;               // how many take part in the split
    int worker_base;               // added to worker ids the kernel sees
    const volatile int *cancel;    // only where the worker shares the caller's memory
    size_t user_data_size;         // > 0: persistent pools copy user_data
    int (*worker_begin)(void *, int);  // psh_map_options': around each worker's share
    int (*worker_end)(void *, int);
};

// Why a map stopped early.
enum StopReason {
    STOP_NONE = 0,
    STOP_KERNEL,
    STOP_GET,
    STOP_BEGIN,
    STOP_CANCEL,
    STOP_DEATH,
    STOP_FORK,
    STOP_THROW,  // a user callback threw: Outcome::what says which and what
    STOP_MAP_BEGIN,  // psh_map_options.worker_begin returned non-zero
    STOP_MAP_END,    // psh_map_options.worker_end returned non-zero
};

// Which user callback was running (for messages about exceptions).
// CB_BEGIN/CB_END: the functor's; CB_MAP_BEGIN/CB_MAP_END: psh_map_options'.
enum Callback { CB_KERNEL = 0, CB_BLOCK_KERNEL, CB_GET, CB_BEGIN, CB_END, CB_PROGRESS, CB_MAP_BEGIN, CB_MAP_END };

struct Outcome {
    int reason;      // StopReason
    int code;        // the kernel's return value, the signal, or errno; STOP_THROW: Callback
    size_t index;    // where it happened (SIZE_MAX: before any item)
    int worker;      // the worker id the kernel saw
    int exit_status; // STOP_DEATH: waitpid status
    char what[240];  // STOP_THROW: the exception's type and what() (plain data: crosses processes)
};

// Slot w belongs to share w (worker id worker_base + w). In a persistent
// pool a share is claimed before it runs (claim_share), by its own process
// or, when the job allows it, by another process of the pool that is idle.
struct alignas(64) WorkerSlot {
    std::atomic<size_t> current;    // the index being processed
    std::atomic<uint32_t> done_gen; // the last job generation finished
    // Pool: (generation << 32) | runner, the last generation share w was
    // claimed for and by whom (a worker process's index, or kCallerClaim).
    std::atomic<uint64_t> claim;
    pid_t pid;
};

// The claim of a share that nobody may run any more (its process died).
const uint32_t kCallerClaim = 0xffffffffu;

// Shared by a caller and its workers; lives in MAP_SHARED memory for process
// workers. Fields written by different parties sit on different cache lines.
struct Control {
    alignas(64) std::atomic<uint32_t> generation;  // bumped to publish a job
    std::atomic<uint32_t> sleepers;                // idle workers in futex_wait
    std::atomic<uint32_t> shutdown;
    alignas(64) std::atomic<uint32_t> finished;    // workers done with this job
    std::atomic<uint32_t> caller_sleeping;         // the caller waits in futex/poll: wake it
    alignas(64) std::atomic<size_t> next;          // dynamic/guided counter
    alignas(64) std::atomic<size_t> done;          // items done, for progress
    alignas(64) std::atomic<int> stop;
    std::atomic<int> claimed;
    Outcome outcome;
    Job job;
    int num_slots;
    WorkerSlot *slots;
    alignas(64) std::atomic<uint32_t> steal_gen;  // pool: the generation whose shares idle workers may take
    // Pool: until when (monotonic_ns) the workers spin throttled (yield at
    // every step), set by a caller that saw an awake worker not running
    // (it shares a CPU with someone): shared, unlike spin_throttled_until.
    std::atomic<long long> workers_throttled_until;
    bool claims = false;         // pool: shares are claimed (claim_share), by their own process or another
    bool throttle_spin = false;  // more threads spin on this block than there are usable CPUs
    bool woke_sleepers = false;  // the caller's own: publish had to wake workers from a futex
    bool wake_pending = false;   // the caller's own: publish left sleepers asleep (publish_deferred)
    int wake_fd = -1;  // process workers: an eventfd the last one writes when the caller sleeps
    dev_t wake_dev = 0;
    ino_t wake_ino = 0;

    // Map the control block and its slots in shared anonymous memory.
    static Control *create_shared(int num_slots);
    static void destroy_shared(Control *c);
    // Process workers: make wake_fd (close-on-exec); without it the caller polls.
    void open_wake_fd();
    // wake_fd if it is still ours (fstat), else -1; drain it after a wake.
    int checked_wake_fd() const;
    // Before forking workers: if the program closed wake_fd behind our back
    // (its number may now be one of its files, which a new worker would
    // write into), make a new one (reopen) or do without (-1: the caller
    // then polls; workers forked earlier keep their own copy).
    void verify_wake_fd(bool reopen);
    void drain_wake_fd();

    // Reset for a new job, before it is published or run.
    void prepare(const Job &j);
    // Keep the first reason to stop; every reason stops all workers.
    void record(int reason, int code, size_t index, int worker, int exit_status = 0, const char *what = nullptr);
    // Record the exception being handled (call inside a catch block).
    void record_exception(int callback, size_t index, int worker);
};

// The caller's cancel flag, read atomically (another thread may set it).
inline bool cancelled(const volatile int *flag)
{
    return flag && __atomic_load_n(const_cast<const int *>(flag), __ATOMIC_RELAXED) != 0;
}

// Caller-side periodic duties: progress callback and the cancel flag.
struct Monitor {
    psh_progress_fn progress = nullptr;
    void *progress_data = nullptr;
    const volatile int *cancel = nullptr;
    // An external context's own stop test (the MPI context: a stop message
    // from another rank), asked in the caller's thread at each tick;
    // non-zero stops the map as a cancel does.
    int (*poll)(void *) = nullptr;
    void *poll_data = nullptr;
    size_t total = 0;
    long long last_ns = 0;

    bool active() const { return progress || cancel || poll; }
    void tick(Control &c);
    // The last progress call, after the map; throws an Error if it threw.
    void final_progress(size_t total_items);
};

// Run worker w's part of c.job (item or block mode). mon: non-NULL only when
// w runs in the caller's thread.
void run_worker(Control &c, const Job &job, int w, Monitor *mon);

// Mark worker w finished with generation gen and wake the caller if last.
void finish_worker(Control &c, int w, uint32_t gen, uint32_t expected);

// Idle worker: wait until c.generation differs from seen (or timeout_ns
// passed: returns false). Spins briefly, then sleeps on a futex.
bool wait_for_job(Control &c, uint32_t seen, long long timeout_ns);

// Caller: publish c.job to the pool.
void publish(Control &c);

// Caller of a pool whose job idle workers may take over (steal_gen): wake
// the workers asleep on the futex only if none is awake; else leave it to
// wake_deferred (an awake worker takes the shares of the sleeping ones, and
// a map that ends within a few microseconds makes no system call).
void publish_deferred(Control &c);
// Caller: wake the sleepers that publish_deferred left asleep, if any.
void wake_deferred(Control &c);

// Pool: claim share s of generation gen for runner (a worker process's
// index, or kCallerClaim); false if it was claimed for gen already.
bool claim_share(Control &c, int s, uint32_t gen, uint32_t runner);

// May another worker process run this job's shares under their worker ids?
// Not when it has per-worker hooks (psh_map_options' or the functor's):
// they run in the worker's own process.
bool job_allows_stealing(const Job &job);

// Caller of a threads context (worker 0): wait until `expected` workers
// (slots 1..expected) finished, calling on_tick every tick_ns (< 0: never)
// while waiting.
template <class F>
void wait_finished(Control &c, uint32_t expected, long long tick_ns, F on_tick);

// The type and what() of the exception being handled, as "type: what" in buf.
void describe_current_exception(char *buf, size_t size);

// PASHA_SPIN_US in nanoseconds (default 200 us); throws PSH_EINVAL naming
// the variable if it is malformed. Checked when a context is made.
long long parse_spin_env();

// The worker id of the calling thread if it is inside a kernel, else -1
// (nested maps run inline in that worker).
int current_worker();

// Resolve the chunk for a schedule (0: the library chooses).
size_t resolve_chunk(psh_schedule s, size_t chunk, size_t n, int workers);

}  // namespace psh

#include "sync.hh"

namespace psh {

template <class F>
void wait_finished(Control &c, uint32_t expected, long long tick_ns, F on_tick)
{
    // Evidence of oversubscription: a worker that has neither started an
    // item nor finished (slot 0 is the caller itself). Not on the first job
    // (new threads may not have been scheduled yet), nor when the workers
    // were asleep (a futex wake-up takes tens of microseconds).
    auto not_running = [&] {
        uint32_t gen = c.generation.load(std::memory_order_relaxed);
        if (gen <= 1 || c.woke_sleepers) return false;
        for (int w = 1; w < c.num_slots && w <= (int)expected; ++w)
            if (c.slots[w].current.load(std::memory_order_relaxed) == SIZE_MAX &&
                c.slots[w].done_gen.load(std::memory_order_acquire) != gen)
                return true;
        return false;
    };
    if (spin_until([&] { return c.finished.load(std::memory_order_acquire) >= expected; }, c.throttle_spin,
                   not_running))
        return;
    for (;;) {
        // Announce the sleep, then look again (the last worker wakes us only
        // if it sees the announcement: both sides are seq_cst).
        c.caller_sleeping.store(1, std::memory_order_seq_cst);
        uint32_t f = c.finished.load(std::memory_order_seq_cst);
        if (f >= expected) break;
        futex_wait(&c.finished, f, tick_ns);
        c.caller_sleeping.store(0, std::memory_order_relaxed);
        if (!on_tick()) return;
    }
    c.caller_sleeping.store(0, std::memory_order_relaxed);
}

}  // namespace psh
