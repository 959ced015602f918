#include "process.hh"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "context.hh"

namespace psh {

pid_t spawn_worker(int cpu, void (*body)(void *), void *arg)
{
    pid_t parent = getpid();
    // Children inherit the caller's stdio buffers and flush them when they
    // end: empty them first, or pending output is written once per worker.
    fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid > 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    signal(SIGINT, SIG_IGN);
    // A crash must end the worker so the caller can report it, whatever
    // handlers the program installed (test frameworks longjmp out of them).
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGSYS}) signal(sig, SIG_DFL);
    if (cpu >= 0) pin_to_cpu(cpu);
    body(arg);
    fflush(nullptr);
    _exit(0);
}

bool poll_reaped(Worker &w)
{
    if (w.reaped) return true;
    pid_t r = waitpid(w.pid, &w.status, WNOHANG);
    if (r == w.pid) return w.reaped = true;
    if (r < 0 && errno == ECHILD) {
        w.status = kStatusUnknown;
        return w.reaped = true;
    }
    return false;
}

void wait_processes(Control &c, uint32_t gen, std::vector<Worker> &workers, Monitor &mon,
                    int worker_base)
{
    long long stopped_at = 0;
    auto all_accounted = [&] {
        size_t n = 0;
        for (size_t w = 0; w < workers.size(); ++w) {
            Worker &wk = workers[w];
            bool finished = c.slots[w].done_gen.load(std::memory_order_acquire) == gen;
            poll_reaped(wk);
            if (wk.reaped && !finished)
                c.record(STOP_DEATH, 0, c.slots[w].current.load(), worker_base + (int)w, wk.status);
            n += finished || wk.reaped;
        }
        return n == workers.size();
    };
    wait_finished(c, (uint32_t)workers.size(), 10000000LL, [&] {
        mon.tick(c);
        if (all_accounted()) return false;
        if (c.outcome.reason == STOP_CANCEL && c.stop.load()) {
            long long now = monotonic_ns();
            if (!stopped_at) stopped_at = now;
            if (now - stopped_at > 1000000000LL)
                for (size_t w = 0; w < workers.size(); ++w)
                    if (!workers[w].reaped && c.slots[w].done_gen.load() != gen) kill(workers[w].pid, SIGKILL);
        }
        return true;
    });
}

void reap_worker(Worker &w, int timeout_ms)
{
    if (w.reaped || w.pid <= 0) return;
    if (timeout_ms < 0) {
        while (waitpid(w.pid, &w.status, 0) < 0) {
            if (errno == EINTR) continue;
            w.status = kStatusUnknown;  // reaped elsewhere
            break;
        }
        w.reaped = true;
        return;
    }
    for (int i = 0; i < timeout_ms; ++i) {
        if (poll_reaped(w)) return;
        usleep(1000);
    }
    kill(w.pid, SIGKILL);
    while (waitpid(w.pid, &w.status, 0) < 0 && errno == EINTR) {}
    w.reaped = true;
}

}  // namespace psh
