#include "context.hh"

#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "error.hh"
#include "worker_process.hh"

namespace psh {

int nth_cpu(int n)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    int count = CPU_COUNT(&set);
    if (count == 0) return -1;
    n %= count;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
        if (CPU_ISSET(cpu, &set) && n-- == 0) return cpu;
    return -1;
}

void pin_to_cpu(int cpu)
{
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);  // best effort: pinning is a hint
}

namespace {

// The contexts the calling thread is inside map() of, innermost first (a
// progress callback that maps on one of them would wait for itself).
struct MapScope {
    const Context *ctx;
    const MapScope *outer;
};
thread_local const MapScope *tls_maps = nullptr;

}  // namespace

void Context::map(Job &job, Monitor &mon)
{
    for (const MapScope *m = tls_maps; m; m = m->outer)
        if (m->ctx == this)
            fail(PSH_EINVAL,
                 "psh_map was called on a context from inside its own map (a progress callback?): it would "
                 "wait for itself; use another context");
    Outcome out{STOP_NONE, 0, SIZE_MAX, -1, 0, {0}};
    {
        MapScope scope{this, tls_maps};
        tls_maps = &scope;
        struct Pop {
            const MapScope *outer;
            ~Pop() { tls_maps = outer; }
        } pop{scope.outer};
        std::lock_guard<std::mutex> lock(mutex_);
        pid_t pid = current_pid();
        if (pid != owner_) {
            after_fork();
            owner_ = pid;
        }
        run(job, mon, out);
    }
    raise_outcome(out, job.block_kernel != nullptr);
    mon.final_progress(job.end - job.begin);
}

void run_inline(Job &job, Monitor &mon, int worker_id, Outcome &out)
{
    Control c;
    WorkerSlot slot;
    c.num_slots = 1;
    c.slots = &slot;
    job.num_workers = 1;
    job.worker_base = worker_id;
    c.prepare(job);
    run_worker(c, c.job, 0, &mon);
    out = c.outcome;
}

namespace {

// psh_error_info's name for each Callback.
const char *const kCallbackNames[] = {"kernel",   "block_kernel",       "get",          "functor_worker_begin",
                                      "functor_worker_end", "progress", "worker_begin", "worker_end"};

[[noreturn]] void raise_message(const Outcome &o, bool blocks)
{
    char where[64] = "";
    if (o.index != SIZE_MAX) snprintf(where, sizeof where, " at index %zu", o.index);
    switch (o.reason) {
    case STOP_KERNEL:
        fail(PSH_EKERNEL, "the %s returned %d%s (worker %d)", blocks ? "block kernel" : "kernel", o.code, where,
             o.worker);
    case STOP_GET:
        fail(PSH_EKERNEL, "the functor's get returned %d%s (worker %d)", o.code, where, o.worker);
    case STOP_BEGIN:
        fail(PSH_EKERNEL, "the functor's worker_begin returned %d (worker %d)", o.code, o.worker);
    case STOP_MAP_BEGIN:
        fail(PSH_EKERNEL, "the map's worker_begin returned %d (worker %d)", o.code, o.worker);
    case STOP_MAP_END:
        fail(PSH_EKERNEL, "the map's worker_end returned %d (worker %d)", o.code, o.worker);
    case STOP_CANCEL:
        fail(PSH_ECANCELED, "the map was cancelled");
    case STOP_THROW: {
        static const char *const names[] = {"the kernel", "the block kernel", "the functor's get",
                                            "the functor's worker_begin", "the functor's worker_end",
                                            "the progress callback", "the map's worker_begin",
                                            "the map's worker_end"};
        const char *who = o.code >= 0 && o.code <= CB_MAP_END ? names[o.code] : "a callback";
        char by[32] = "";
        if (o.worker >= 0) snprintf(by, sizeof by, " (worker %d)", o.worker);
        fail(PSH_EKERNEL, "%s threw %s%s%s", who, o.what, where, by);
    }
    case STOP_FORK:
        fail(o.code == ENOMEM ? PSH_ENOMEM : PSH_ESYS, "fork of worker %d failed: %s", o.worker,
             strerror(o.code));
    case STOP_DEATH: {
        int st = o.exit_status;
        const char *doing = o.index == SIZE_MAX ? " before its first item" : "";
        if (st == kStatusUnknown)
            fail(PSH_EWORKER,
                 "worker %d ended before finishing its share%s%s (its exit status was collected elsewhere: "
                 "the program ignores SIGCHLD or reaps children itself)",
                 o.worker, where, doing);
        if (WIFSIGNALED(st))
            fail(PSH_EWORKER, "worker %d was killed by signal %d (%s)%s%s", o.worker, WTERMSIG(st),
                 strsignal(WTERMSIG(st)), where, doing);
        fail(PSH_EWORKER, "worker %d exited with status %d before finishing its share%s%s", o.worker,
             WIFEXITED(st) ? WEXITSTATUS(st) : st, where, doing);
    }
    default:
        fail(PSH_ESYS, "the map stopped for an unknown reason %d", o.reason);
    }
}

}  // namespace

void raise_outcome(const Outcome &o, bool blocks)
{
    if (o.reason == STOP_NONE) return;
    try {
        raise_message(o, blocks);
    } catch (Error &e) {
        // The same facts as data, for psh_last_error_info.
        if (o.reason != STOP_CANCEL) {
            e.worker_id = o.worker >= 0 ? o.worker : -1;
            e.index = o.index == SIZE_MAX ? -1 : (long long)o.index;
        }
        switch (o.reason) {
        case STOP_KERNEL: e.callback = blocks ? "block_kernel" : "kernel"; break;
        case STOP_GET: e.callback = "get"; break;
        case STOP_BEGIN: e.callback = "functor_worker_begin"; break;
        case STOP_MAP_BEGIN: e.callback = "worker_begin"; break;
        case STOP_MAP_END: e.callback = "worker_end"; break;
        case STOP_THROW:
            e.callback = o.code >= 0 && o.code <= CB_MAP_END ? kCallbackNames[o.code] : nullptr;
            break;
        case STOP_DEATH:
            if (o.exit_status != kStatusUnknown && WIFSIGNALED(o.exit_status))
                e.signal = WTERMSIG(o.exit_status);
            else if (o.exit_status != kStatusUnknown && WIFEXITED(o.exit_status))
                e.exit_status = WEXITSTATUS(o.exit_status);
            break;
        default: break;
        }
        throw;
    }
}

}  // namespace psh
