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

// The number of CPUs this process may run on (its affinity mask), cached.
int usable_cpus();

// Throttled spinning, as libgomp's throttled spin count.
//
// - Normal: a waiter spins without a system call (kPureSpinNs at most): on
//   a machine with a CPU free for each thread the other side answers within
//   a microsecond, so a map whose workers are awake makes no system call.
//   Past that (long work on the other side) it yields the CPU at every
//   step until spin_ns(), then sleeps.
// - Throttled: the waiter yields at every step from the start, so that a
//   caller and a worker that share one CPU hand it over instead of each
//   burning a time slice in a pure spin. Statically, when our own threads
//   exceed the usable CPUs (Control::throttle_spin: a pool's caller and its
//   workers on 2 CPUs); dynamically, when oversubscription is seen at run
//   time (another process holds a CPU).
//
// The evidence of oversubscription: a pure spinner finds that it was
// preempted (the clock jumped by more than kPreemptedNs between two of its
// checks, a few hundred ns apart), or a caller's pure spin ends while one
// of its workers has not even started the job; twice within kEvidenceNs.
// The process then spins throttled for kThrottleNs, after which pure
// spinning is tried again. (Sleeping on the futex after a short spin
// instead of yielding, as libgomp does, was measured too, bench (b) and
// (b'): a futex round trip cost more per map than the yields on a 2-CPU
// machine in most runs; see docs/performance.md.)
const long long kPureSpinNs = 10000;
// A pool's caller whose job idle workers may take over spins this long
// without yielding before it wakes sleeping workers (supervise).
const long long kStealSpinNs = 5000;
const long long kPreemptedNs = 30000;
const long long kThrottleNs = 20000000;

// Until when (monotonic_ns) the process spins throttled; 0: not throttled.
inline std::atomic<long long> spin_throttled_until{0};
// When the last evidence was seen: one alone (a virtual CPU stolen by the
// host, an interrupt) does not throttle, two within kEvidenceNs do.
inline std::atomic<long long> spin_last_evidence{0};
const long long kEvidenceNs = 5000000;

// Oversubscription seen at `now`; true if spinning is now throttled.
inline bool spin_evidence(long long now)
{
    long long prev = spin_last_evidence.exchange(now, std::memory_order_relaxed);
    if (!prev || now - prev > kEvidenceNs) return false;
    spin_throttled_until.store(now + kThrottleNs, std::memory_order_relaxed);
    return true;
}

inline bool never() { return false; }

// Spin until done() or spin_ns() passed; returns done()'s last value (false:
// the caller goes to sleep). The bound is in time, not steps: yields can
// take a whole time slice. yield_only: our own threads exceed the CPUs.
// not_running(): called once if the pure spin ends unanswered; true if the
// other side is known not to have run (evidence of oversubscription).
// limit_ns >= 0: spin at most that long (and at most spin_ns()).
template <class F, class G = bool (*)()>
inline bool spin_until(F done, bool yield_only = false, G not_running = never, long long limit_ns = -1)
{
    long long limit = spin_ns();
    if (limit_ns >= 0 && limit_ns < limit) limit = limit_ns;
    if (limit <= 0) return done();
    if (done()) return true;
    long long start = monotonic_ns(), last = start, deadline = start + limit;
    long long pure_end = start;  // yield_only: no pure phase
    if (!yield_only) {
        long long until = spin_throttled_until.load(std::memory_order_relaxed);
        if (!until || start >= until) pure_end = start + (limit < kPureSpinNs ? limit : kPureSpinNs);
    }
    // Past the pure spin every step yields: the other side may be waiting
    // for this very CPU (a pool's caller and a worker sharing one), and
    // each step spent in cpu_relax first delays it (16 pauses are ~1 us).
    bool yielding = pure_end == start;
    for (unsigned i = 1;; ++i) {
        if (done()) return true;
        if ((i & 15) == 0) {
            long long now = monotonic_ns();
            if (now >= deadline) return done();
            if (!yielding) {
                if (now < pure_end) {
                    if (now - last > kPreemptedNs) {
                        // Preempted while spinning: another thread wanted this CPU.
                        spin_evidence(now);
                        pure_end = now;
                    }
                    last = now;
                } else {
                    // The other side did not answer within the pure spin.
                    // If it has not even started (not scheduled), the
                    // runnable threads exceed the free CPUs: throttle.
                    if (not_running()) spin_evidence(now);
                    yielding = true;
                }
            }
        }
        if (yielding)
            sched_yield();
        else
            cpu_relax();
    }
}

}  // namespace psh
