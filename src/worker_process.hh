// A worker process: both sides of one fork. The fork-per-map and the
// persistent-pool contexts are thin policies on top of this file.
//
// The child side is a region that never returns (after libuv's child
// setup): fork hooks, signals reset, a parent watch, the body run inside a
// no-throw wrapper, and always _exit. Nothing in the child unwinds into the
// caller's stack, and inherited stdio buffers are dropped, not flushed a
// second time.
//
// The parent side supervises through pidfds: a worker's exit wakes the
// caller at once (no polling), and the caller reads a worker's outcome only
// after it has seen that worker's exit, so a worker that finished and then
// exited is never reported dead.
#pragma once

#include <sys/types.h>

#include <vector>

#include "map.hh"
#include "pasha/pasha.h"

namespace psh {

// psh_register_fork_hooks.
void register_fork_hooks(psh_fork_hook prepare, psh_fork_hook parent, psh_fork_hook child, void *data);

// The status of a worker that someone else reaped (SIGCHLD ignored, or a
// handler of the program's that calls waitpid(-1, ...)).
const int kStatusUnknown = -1;

// How a worker notices that the process that made it is gone.
enum class ParentWatch {
    // PR_SET_PDEATHSIG: fires when the forking *thread* exits. Only for
    // workers that live no longer than the call that forked them.
    FORKING_THREAD,
    // The death signal as a handler that ends the worker only when the
    // parent *process* is gone: for workers that outlive the forking thread.
    PROCESS,
};

class WorkerProcess {
public:
    WorkerProcess() = default;
    WorkerProcess(WorkerProcess &&o) noexcept { *this = static_cast<WorkerProcess &&>(o); }
    WorkerProcess &operator=(WorkerProcess &&o) noexcept;
    WorkerProcess(const WorkerProcess &) = delete;
    WorkerProcess &operator=(const WorkerProcess &) = delete;
    ~WorkerProcess() { close_pidfd(); }  // does not reap: see reap()

    // Fork a worker that runs body(arg) and _exits; cpu >= 0 pins it.
    // Returns 0, or -errno if fork failed.
    int start(int cpu, ParentWatch watch, void (*body)(void *), void *arg);

    pid_t pid() const { return pid_; }
    bool started() const { return pid_ > 0; }
    bool reaped() const { return reaped_; }
    int status() const { return status_; }  // waitpid status, or kStatusUnknown

    // Has it ended? waitpid(WNOHANG); true once it is reaped.
    bool poll_exit();
    // Reap it, waiting at most timeout_ms (< 0: as long as it takes) before
    // SIGKILLing it.
    void reap(int timeout_ms);
    // In a forked copy of the parent: the worker is not ours; drop it.
    void forget();

    // The pidfd if it is still ours (checked with fstat), else -1.
    int checked_pidfd() const;

private:
    void close_pidfd();

    pid_t pid_ = -1;
    int pidfd_ = -1;
    dev_t pidfd_dev_ = 0;
    ino_t pidfd_ino_ = 0;
    int status_ = 0;
    bool reaped_ = false;
};

// Called while supervising when worker w died before it started the job:
// a pool replaces it in place (the new worker takes the job). Returns true
// if it did.
struct Respawner {
    virtual bool respawn_unstarted(int w) = 0;

protected:
    ~Respawner() = default;
};

// Wait until each worker has finished generation gen or ended. The first
// worker that died before finishing is recorded as STOP_DEATH (with the
// index it was on), unless it had not started the job and respawner
// replaced it. After a cancel, workers still running 1 s later are killed.
void supervise(Control &c, uint32_t gen, std::vector<WorkerProcess> &workers, Monitor &mon, int worker_base,
               Respawner *respawner);

// The signal a long-lived worker gets when the thread that forked it exits
// (a real-time signal; the worker ends if its parent process is gone).
int parent_death_signal();

// In a worker: write out what the kernels printed to stdout and stderr.
void worker_flush_stdio();

}  // namespace psh
