// A context runs jobs. Each kind is one class behind this interface, in a
// file of its own; the C API (api.cc) only ever talks to Context.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>

#include "error.hh"
#include "fork_safety.hh"
#include "map.hh"
#include "shm.hh"

namespace psh {

struct ContextConfig {
    psh_kind kind;
    int num_workers;  // resolved: >= 1
    bool persistent;
    psh_schedule schedule;
    size_t chunk;
    bool pin_cpus;
};

class Context {
public:
    explicit Context(const ContextConfig &cfg) : cfg_(cfg), owner_(current_pid()) { register_context(this); }
    virtual ~Context() { unregister_context(this); }

    psh_kind kind() const { return cfg_.kind; }
    int num_workers() const { return cfg_.num_workers; }
    const ContextConfig &config() const { return cfg_; }

    // Run one job over all workers (serializing concurrent callers) and
    // throw a psh Error describing why it stopped early, if it did.
    void map(Job &job, Monitor &mon);

    // Where the arrays of this context live: shared memory by default.
    virtual std::unique_ptr<Block> allocate(size_t nbytes) { return shm_allocate(nbytes); }

    // A psh_alloc or map on this context that failed on this rank before
    // reaching allocate() or run(). Collective contexts (MPI) override it to
    // join the call's first collective with the error, so that every rank
    // gets it instead of waiting for this one; they then throw.
    virtual void refuse(const Error &) {}

    std::atomic<int> refs{1};

    // In the child of a fork (from the fork handler): the lock may have
    // been held by a thread that does not exist here.
    void reset_after_fork_child() { new (&mutex_) std::mutex(); }

protected:
    // Run the job; fill *out with why it stopped early (STOP_NONE if not).
    virtual void run(Job &job, Monitor &mon, Outcome &out) = 0;
    // Called before the first map in a process forked from the one that made
    // the context (its threads or worker processes are not ours there).
    virtual void after_fork() {}

    // True in a process forked from the one that owns the workers: there the
    // threads do not exist and the worker processes are not our children, so
    // teardown must leave them alone.
    bool forked() const { return current_pid() != owner_; }

    ContextConfig cfg_;

private:
    std::mutex mutex_;
    pid_t owner_;
};

// Each kind's factory (one per file).
std::unique_ptr<Context> make_serial_context(const ContextConfig &cfg);
std::unique_ptr<Context> make_threads_context(const ContextConfig &cfg);
std::unique_ptr<Context> make_fork_context(const ContextConfig &cfg);
std::unique_ptr<Context> make_pool_context(const ContextConfig &cfg);

// Run job inline in the calling thread as one worker with id worker_id
// (serial contexts, and maps nested inside a kernel).
void run_inline(Job &job, Monitor &mon, int worker_id, Outcome &out);

// The default worker count, psh_cpu_count() (cpu_count.cc): PASHA_NUM_WORKERS,
// else the smallest of the affinity mask, SLURM_CPUS_PER_TASK and the
// cgroup v2/v1 CPU quotas. Throws PSH_EINVAL naming a malformed variable.
int default_num_workers();

// The n-th CPU of the process's affinity mask (wrapping), or -1.
int nth_cpu(int n);
void pin_to_cpu(int cpu);

// Turn an early stop into a psh Error with a message and the fields of
// psh_error_info (no-op for STOP_NONE). blocks: the job ran a block kernel.
void raise_outcome(const Outcome &out, bool blocks);

}  // namespace psh
