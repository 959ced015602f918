#include "worker_process.hh"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio_ext.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "context.hh"
#include "error.hh"
#include "sync.hh"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace psh {

namespace {

// ---- fork hooks ------------------------------------------------------------

struct ForkHooks {
    psh_fork_hook prepare, parent, child;
    void *data;
};
const int kMaxHookSets = 16;
ForkHooks hook_sets[kMaxHookSets];
std::atomic<int> num_hook_sets{0};  // entries below it are complete
std::mutex hooks_mutex;             // writers only

void run_prepare_hooks(int n)
{
    for (int i = n - 1; i >= 0; --i)
        if (hook_sets[i].prepare) hook_sets[i].prepare(hook_sets[i].data);
}

void run_parent_hooks(int n)
{
    for (int i = 0; i < n; ++i)
        if (hook_sets[i].parent) hook_sets[i].parent(hook_sets[i].data);
}

void run_child_hooks(int n)
{
    for (int i = 0; i < n; ++i)
        if (hook_sets[i].child) hook_sets[i].child(hook_sets[i].data);
}

// ---- the child side ----------------------------------------------------------

const int kExitEscaped = 125;  // something escaped the worker's body: a bug, reported as a death

int open_pidfd(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);  // close-on-exec always
}

// The parent watch of a long-lived worker. PR_SET_PDEATHSIG fires when the
// *thread* that forked the worker exits, not the process; so the signal is
// one with a handler that ends the worker only if the process is gone
// (getppid changed: the worker was reparented outside it). When only the
// thread exited, the worker was reparented to another thread of the same
// process, getppid is unchanged, and the signal is ignored; it is sent
// again if that thread exits. No thread in the worker, no polling.
pid_t watched_parent;

void on_parent_death(int)
{
    if (getppid() != watched_parent) kill(getpid(), SIGKILL);
}

void watch_parent_process(pid_t parent)
{
    watched_parent = parent;
    int sig = parent_death_signal();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_parent_death;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, nullptr);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    prctl(PR_SET_PDEATHSIG, sig);
    if (getppid() != parent) _exit(127);  // the parent was gone before the watch was set
}

[[noreturn]] void child_main(pid_t parent, int hooks, int cpu, ParentWatch watch, void (*body)(void *), void *arg)
{
    run_child_hooks(hooks);
    if (watch == ParentWatch::FORKING_THREAD) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
    } else {
        watch_parent_process(parent);
    }
    signal(SIGINT, SIG_IGN);  // the caller handles Ctrl-C and cancels the map
    // A crash must end the worker so the caller can report it, whatever
    // handlers the program installed (test frameworks longjmp out of them).
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGSYS}) signal(sig, SIG_DFL);
    if (cpu >= 0) pin_to_cpu(cpu);
    // The inherited stdio buffers hold the parent's pending output, which
    // the parent writes itself: drop our copy, so that only what the
    // kernels print here comes out of this process.
    __fpurge(stdout);
    __fpurge(stderr);
    try {
        body(arg);
    } catch (...) {
        _exit(kExitEscaped);
    }
    worker_flush_stdio();
    _exit(0);
}

}  // namespace

void register_fork_hooks(psh_fork_hook prepare, psh_fork_hook parent, psh_fork_hook child, void *data)
{
    if (!prepare && !parent && !child) fail(PSH_EINVAL, "all three hooks are NULL");
    std::lock_guard<std::mutex> lock(hooks_mutex);
    int n = num_hook_sets.load(std::memory_order_relaxed);
    if (n == kMaxHookSets) fail(PSH_ENOMEM, "at most %d sets of fork hooks can be registered", kMaxHookSets);
    hook_sets[n] = ForkHooks{prepare, parent, child, data};
    num_hook_sets.store(n + 1, std::memory_order_release);
}

int parent_death_signal() { return SIGRTMIN + 5; }

void worker_flush_stdio()
{
    fflush(stdout);
    fflush(stderr);
}

// ---- the parent side ----------------------------------------------------------

WorkerProcess &WorkerProcess::operator=(WorkerProcess &&o) noexcept
{
    if (this != &o) {
        close_pidfd();
        pid_ = o.pid_;
        pidfd_ = o.pidfd_;
        pidfd_dev_ = o.pidfd_dev_;
        pidfd_ino_ = o.pidfd_ino_;
        status_ = o.status_;
        reaped_ = o.reaped_;
        o.pid_ = -1;
        o.pidfd_ = -1;
        o.reaped_ = false;
    }
    return *this;
}

int WorkerProcess::start(int cpu, ParentWatch watch, void (*body)(void *), void *arg)
{
    close_pidfd();
    pid_ = -1;
    status_ = 0;
    reaped_ = false;
    pid_t parent = current_pid();
    int hooks = num_hook_sets.load(std::memory_order_acquire);
    run_prepare_hooks(hooks);
    pid_t pid = fork();
    if (pid == 0) child_main(parent, hooks, cpu, watch, body, arg);
    int err = errno;
    run_parent_hooks(hooks);
    if (pid < 0) return -err;
    pid_ = pid;
    pidfd_ = open_pidfd(pid);  // our unreaped child: its pid cannot be reused
    struct stat st;
    if (pidfd_ >= 0 && fstat(pidfd_, &st) == 0) {
        pidfd_dev_ = st.st_dev;
        pidfd_ino_ = st.st_ino;
    }
    return 0;
}

void WorkerProcess::close_pidfd()
{
    if (pidfd_ >= 0) {
        if (checked_pidfd() >= 0) close(pidfd_);  // never close a descriptor that is not ours
        pidfd_ = -1;
    }
}

int WorkerProcess::checked_pidfd() const
{
    if (pidfd_ < 0) return -1;
    struct stat st;
    if (fstat(pidfd_, &st) != 0 || st.st_dev != pidfd_dev_ || st.st_ino != pidfd_ino_) return -1;
    return pidfd_;
}

bool WorkerProcess::poll_exit()
{
    if (reaped_) return true;
    if (pid_ <= 0) return false;
    pid_t r = waitpid(pid_, &status_, WNOHANG);
    if (r == pid_) return reaped_ = true;
    if (r < 0 && errno == ECHILD) {
        status_ = kStatusUnknown;
        return reaped_ = true;
    }
    return false;
}

void WorkerProcess::reap(int timeout_ms)
{
    if (reaped_ || pid_ <= 0) return;
    if (timeout_ms >= 0) {
        long long deadline = monotonic_ns() + timeout_ms * 1000000LL;
        int fd = checked_pidfd();
        while (!poll_exit()) {
            long long left = (deadline - monotonic_ns()) / 1000000;
            if (left <= 0) break;
            if (fd >= 0) {
                struct pollfd p = {fd, POLLIN, 0};
                poll(&p, 1, (int)left);
            } else {
                usleep(1000);
            }
        }
        if (reaped_) return;
        kill(pid_, SIGKILL);
    }
    while (waitpid(pid_, &status_, 0) < 0) {
        if (errno == EINTR) continue;
        status_ = kStatusUnknown;  // reaped elsewhere
        break;
    }
    reaped_ = true;
}

void WorkerProcess::forget()
{
    pid_ = -1;
    reaped_ = true;
    pidfd_ = -1;  // the parent's descriptor, copied: not closed here (the fork kept it; it is close-on-exec)
}

void supervise(Control &c, uint32_t gen, std::vector<WorkerProcess> &workers, Monitor &mon, int worker_base,
               Respawner *respawner)
{
    const size_t n = workers.size();
    auto finished = [&](size_t s) { return c.slots[s].done_gen.load(std::memory_order_acquire) == gen; };
    // Who runs share s: its own process, unless the pool's shares are
    // claimed (c.claims) and another process claimed it. SIZE_MAX: nobody
    // yet (unclaimed), or the caller (it claimed a dead worker's share).
    auto runner = [&](size_t s, bool &claimed) -> size_t {
        claimed = true;
        if (!c.claims) return s;
        uint64_t cl = c.slots[s].claim.load(std::memory_order_acquire);
        claimed = (uint32_t)(cl >> 32) == gen;
        uint32_t r = (uint32_t)cl;
        return claimed && r < n ? r : SIZE_MAX;
    };
    std::vector<char> respawned;  // made at the first death: no allocation per map
    // A share's outcome is read only after the exit of the process that
    // runs it was seen (reaped first, then done_gen), so one that finished
    // and exited counts as finished. A worker counts the share in
    // c.finished before it marks done_gen (finish_worker), so when every
    // share is marked or lost no count of this map is still on its way to
    // the next one.
    auto all_accounted = [&] {
        size_t accounted = 0;
        for (size_t s = 0; s < n; ++s) {
            bool claimed;
            size_t r = runner(s, claimed);
            if (claimed && r == SIZE_MAX) {  // the caller's: recorded when it claimed it
                ++accounted;
                continue;
            }
            // Unclaimed: its own process is the one to watch.
            WorkerProcess &wp = workers[claimed ? r : s];
            bool ended = wp.reaped();
            if (finished(s)) {
                ++accounted;
                continue;
            }
            if (!ended) continue;
            WorkerSlot &slot = c.slots[s];
            if (!claimed) {
                // Its process died before it took the job. Once per slot
                // and map: a replacement that dies before starting too
                // (something kills every new worker) is reported, not
                // replaced for ever.
                if (respawner && !c.stop.load()) {
                    if (respawned.empty()) respawned.assign(n, 0);
                    if (!respawned[s]) {
                        respawned[s] = 1;
                        if (respawner->respawn_unstarted((int)s)) continue;  // the new worker takes its share
                    }
                }
                // Nobody may run it after this map returns: claim it for
                // the caller. A live worker that took it meanwhile is
                // waited for.
                if (c.claims && !claim_share(c, (int)s, gen, kCallerClaim)) continue;
            }
            c.record(STOP_DEATH, 0, slot.current.load(), worker_base + (int)s, wp.status());
            ++accounted;
        }
        return accounted == n;
    };

    auto all_done = [&] { return c.finished.load(std::memory_order_acquire) >= n; };
    if (c.claims && c.steal_gen.load(std::memory_order_relaxed) == gen) {
        // A worker that is awake takes the shares of those that are not:
        // wait for it without yielding, so that this CPU is not handed to
        // a worker whose share it is taking (a tiny map then costs no
        // context switch); then wake the sleepers publish_deferred left.
        if (spin_until(all_done, false, never, kStealSpinNs)) return;
        // No share claimed, though a worker was awake (none was woken from
        // the futex just now): it is not running, so it shares a CPU,
        // perhaps this one. Twice within kEvidenceNs throttle the spinning
        // of this caller and of the workers (a worker that spins without
        // yielding on the caller's CPU would keep it from the caller).
        if (!(c.woke_sleepers && !c.wake_pending)) {
            bool claimed = false;
            for (size_t s = 0; s < n && !claimed; ++s)
                claimed = (uint32_t)(c.slots[s].claim.load(std::memory_order_relaxed) >> 32) == gen;
            long long now = monotonic_ns();
            if (!claimed && spin_evidence(now))
                c.workers_throttled_until.store(now + kThrottleNs, std::memory_order_relaxed);
        }
        wake_deferred(c);
    }
    if (spin_until(all_done, c.throttle_spin)) return;
    long long stopped_at = 0;
    std::vector<struct pollfd> fds;
    std::vector<size_t> who;
    fds.reserve(n + 1);
    who.reserve(n + 1);
    for (;;) {
        // Every worker counted: all shares are done (one that died after
        // counting itself left its results intact).
        if (c.finished.load(std::memory_order_acquire) >= n || all_accounted()) return;
        // Sleep until a worker finishes the job (the last one writes the
        // wake descriptor), a worker ends (its pidfd), or the next tick.
        fds.clear();
        who.clear();
        int wake = c.checked_wake_fd();
        bool blind = wake < 0;  // some end could go unseen: poll for it
        if (wake >= 0) {
            fds.push_back({wake, POLLIN, 0});
            who.push_back(SIZE_MAX);
        }
        // Every process whose end could matter: a pool's worker may be
        // running another's share after finishing its own.
        for (size_t w = 0; w < n; ++w) {
            if (workers[w].reaped() || (!c.claims && finished(w))) continue;
            int fd = workers[w].checked_pidfd();
            if (fd < 0) {
                blind = true;
                continue;
            }
            fds.push_back({fd, POLLIN, 0});
            who.push_back(w);
        }
        int timeout = blind ? 10 : mon.active() || c.stop.load() ? 20 : -1;
        c.caller_sleeping.store(1, std::memory_order_seq_cst);
        if (c.finished.load(std::memory_order_seq_cst) < n) {
            int r = poll(fds.data(), fds.size(), timeout);
            if (r < 0 && errno != EINTR) usleep(1000);
        }
        c.caller_sleeping.store(0, std::memory_order_relaxed);
        for (size_t i = 0; i < fds.size(); ++i) {
            if (!fds[i].revents) continue;
            if (who[i] == SIZE_MAX)
                c.drain_wake_fd();
            else
                workers[who[i]].poll_exit();
        }
        if (blind)
            for (size_t w = 0; w < n; ++w)
                if ((c.claims || !finished(w)) && workers[w].checked_pidfd() < 0) workers[w].poll_exit();
        mon.tick(c);
        if (c.outcome.reason == STOP_CANCEL && c.stop.load()) {
            long long now = monotonic_ns();
            if (!stopped_at) stopped_at = now;
            if (now - stopped_at > 1000000000LL)
                for (size_t s = 0; s < n; ++s) {
                    bool claimed;
                    size_t r = runner(s, claimed);
                    size_t w = claimed ? r : s;
                    if (w < n && !workers[w].reaped() && !finished(s)) kill(workers[w].pid(), SIGKILL);
                }
        }
    }
}

}  // namespace psh
