// Futex waits and wakes on 32-bit atomics. The futexes are shared (not
// FUTEX_PRIVATE) so they work across fork in MAP_SHARED control blocks.
#pragma once

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <ctime>

namespace psh {

// Sleep while *word == expected, at most timeout_ns (< 0: no limit).
inline void futex_wait(std::atomic<uint32_t> *word, uint32_t expected, long long timeout_ns)
{
    struct timespec ts, *tp = nullptr;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        tp = &ts;
    }
    syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), FUTEX_WAIT, expected, tp, nullptr, 0);
}

inline void futex_wake_all(std::atomic<uint32_t> *word)
{
    syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

inline void cpu_relax()
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

inline long long monotonic_ns()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// How long a waiter spins before it sleeps on a futex, in nanoseconds
// (PASHA_SPIN_US overrides the default of 200 us; 0 disables spinning).
long long spin_ns();

// Spin until done() or spin_ns() passed; returns done()'s last value. Every
// 16th step checks the clock and yields the CPU, so that on a machine with
// fewer cores than runnable threads (a caller waiting on its worker
// processes) the spinner does not hold back the work it waits for. The
// bound is in time, not steps: yields can take a whole time slice.
template <class F>
inline bool spin_until(F done)
{
    long long limit = spin_ns();
    if (limit <= 0) return done();
    long long deadline = 0;
    for (unsigned i = 1;; ++i) {
        if (done()) return true;
        if ((i & 15) == 0) {
            long long now = monotonic_ns();
            if (!deadline)
                deadline = now + limit;
            else if (now > deadline)
                return done();
            sched_yield();
        } else {
            cpu_relax();
        }
    }
}

}  // namespace psh
