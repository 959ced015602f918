// Worker processes: forking one, and waiting for a job's workers while
// watching for the ones that die. Shared by the fork-per-map and the
// persistent-pool contexts.
#pragma once

#include <sys/types.h>

#include <vector>

#include "map.hh"

namespace psh {

// Fork a worker process that runs body(arg) and then _exit(0)s. In the
// child: SIGKILL when the parent dies, SIGINT ignored (the caller handles
// Ctrl-C and cancels), pinned to cpu if cpu >= 0. Returns the pid, or
// -errno if fork failed.
pid_t spawn_worker(int cpu, void (*body)(void *), void *arg);

// The status of a worker that someone else reaped (SIGCHLD ignored, or a
// handler of the program's that calls waitpid(-1, ...)).
const int kStatusUnknown = -1;

struct Worker {
    pid_t pid = -1;
    int status = 0;     // waitpid status once reaped, or kStatusUnknown
    bool reaped = false;
};

// Has the worker ended? waitpid(WNOHANG), counting ECHILD (a child reaped
// elsewhere) as ended with kStatusUnknown.
bool poll_reaped(Worker &w);

// Wait until each of workers has finished generation gen or died. The first
// worker that died before finishing is recorded as STOP_DEATH (with the index
// it was on). After a cancel, workers still running 1 s later are killed.
void wait_processes(Control &c, uint32_t gen, std::vector<Worker> &workers, Monitor &mon,
                    int worker_base);

// Reap a worker, waiting at most timeout_ms (< 0: as long as it takes)
// before SIGKILLing it.
void reap_worker(Worker &w, int timeout_ms);

}  // namespace psh
