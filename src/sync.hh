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

// One step of a spin-wait. Every 16th step yields the CPU, so that on a
// machine with fewer cores than runnable threads (a caller waiting on its
// worker processes) the spinner does not hold back the work it waits for.
inline void spin_step(int i)
{
    if ((i & 15) == 15)
        sched_yield();
    else
        cpu_relax();
}

inline long long monotonic_ns()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// How long an idle worker spins before it sleeps (PASHA_SPIN overrides).
int spin_count();

}  // namespace psh
