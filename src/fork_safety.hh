// The program's own forks. A program may fork while another of its threads
// is inside libpasha (holding a lock, or in the middle of a map); the child
// has only the forking thread. pthread_atfork handlers keep the child
// usable: the locks it inherited are made anew, the arena becomes the
// parent's (the child makes its own), and every context re-creates its
// threads or worker processes at its next map there.
#pragma once

#include <sys/types.h>

#include <atomic>

namespace psh {

class Context;

// getpid() of this process without a system call: cached, and refreshed in
// the child by the fork handler. (A child made by a raw clone/_Fork, which
// runs no fork handlers, is not supported.)
pid_t current_pid();

// Contexts alive in this process, so that the child of a fork can reset
// them.
void register_context(Context *ctx);
void unregister_context(Context *ctx);

// The C API's own state in a forked child (its default-context lock).
void api_after_fork_child();

// OpenMP runtimes before libpasha forks worker processes (fork-per-map,
// pool creation, pool workers replaced). GNU libgomp keeps its thread pool
// across fork: in the child the pool's threads are gone and the first
// parallel region waits for them for ever. So a libgomp loaded in the
// process (found by name, renamed wheel copies included; reached at run
// time, libpasha links none) is asked to release the forking thread's
// pool with omp_pause_resource_all(omp_pause_soft) (OpenMP 5.0) when the
// process has other threads; its next region starts new ones. LLVM's
// libomp and Intel's libiomp5 handle fork themselves and are left alone.
// Throws PSH_ENOTSUP, naming the runtime and the remedy, for a libgomp
// without that function beside other threads (a fork would hang).
void release_openmp_before_fork();

}  // namespace psh
