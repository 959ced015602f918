// PSH_PROCESSES, persistent: the workers are forked once, when the context
// is made, and wait on the shared control block for jobs. They see every psh
// array (all live in the shm arena, mapped before the fork) and whatever
// memory existed at creation; a dead worker is replaced after the map.
#include <sys/mman.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <unistd.h>

#include "context.hh"
#include "error.hh"
#include "sync.hh"
#include "worker_process.hh"

namespace psh {

namespace {

class PoolContext final : public Context, private Respawner {
public:
    explicit PoolContext(const ContextConfig &cfg) : Context(cfg) { start(); }
    ~PoolContext() override
    {
        if (!forked()) stop();  // in a forked copy the workers belong to the parent
    }

protected:
    void run(Job &job, Monitor &mon, Outcome &out) override
    {
        Control &c = *control_;
        job.cancel = nullptr;  // the workers cannot see the caller's flag: mon.tick relays it
        if (job.user_data_size) {
            memcpy(user_copy_, job.user_data, job.user_data_size);
            job.user_data = user_copy_;
        }
        c.prepare(job);
        uint32_t gen = c.generation.load() + 1;
        // A job without per-worker hooks may be run by whichever workers
        // are awake: one that is running takes the share of one that is
        // not (asleep, or waiting for a CPU), under that share's worker id.
        // Not with pinned workers: the share would run on the taker's CPU.
        bool steal = !cfg_.pin_cpus && job_allows_stealing(job);
        c.steal_gen.store(steal ? gen : 0, std::memory_order_relaxed);  // published by the generation
        if (steal)
            publish_deferred(c);
        else
            publish(c);
        // A worker that died since the last map (OOM killer, kill -9) is
        // found here, by its pidfd, and replaced in place: no liveness
        // check costs a system call while every worker is alive, except
        // one waitpid per 10 ms for workers whose shares others took
        // (check_idle_workers): no map waits for those.
        supervise(c, gen, workers_, mon, job.worker_base, this);
        out = c.outcome;
        if (steal) check_idle_workers(c, gen);
        replace_dead();
    }

    // The pool belongs to the process that forked it.
    void after_fork() override
    {
        for (auto &w : workers_) w.forget();
        control_ = nullptr;
        workers_.clear();
        start();
    }

private:
    struct Args {
        PoolContext *self;
        int w;
        uint32_t seen;
        pid_t parent;
    };

    static void worker_main(void *p)
    {
        Args a = *static_cast<Args *>(p);
        Control &c = *a.self->control_;
        uint32_t seen = a.seen;
        for (;;) {
            if (!wait_for_job(c, seen, 200000000LL)) {
                if (getppid() != a.parent) return;  // orphaned (the parent watch should have ended us)
                continue;
            }
            seen = c.generation.load(std::memory_order_acquire);
            if (c.shutdown.load()) return;
            // The job is read only after a claim: a share of generation
            // `seen` that is still unclaimed means the caller waits for it
            // and leaves c.job alone. A claim that fails (another worker
            // took the share, or `seen` is over) reads nothing.
            if (claim_share(c, a.w, seen, (uint32_t)a.w)) run_share(c, a.w, seen);
            if (c.steal_gen.load(std::memory_order_relaxed) != seen) continue;
            // Idle now: take the shares of workers that have not started.
            for (int k = 1; k < c.num_slots; ++k) {
                int s = (a.w + k) % c.num_slots;
                if (claim_share(c, s, seen, (uint32_t)a.w)) run_share(c, s, seen);
            }
        }
    }

    static void run_share(Control &c, int s, uint32_t gen)
    {
        run_worker(c, c.job, s, nullptr);
        worker_flush_stdio();
        finish_worker(c, s, gen, (uint32_t)c.job.num_workers);
    }

    // Fork worker w, which takes the first job published after `seen`.
    void spawn(int w, uint32_t seen)
    {
        control_->verify_wake_fd(false);
        release_openmp_before_fork();
        Args args{this, w, seen, current_pid()};
        int cpu = cfg_.pin_cpus ? nth_cpu(w) : -1;
        // The pool outlives the thread that made it: watch the process.
        int err = workers_[w].start(cpu, ParentWatch::PROCESS, worker_main, &args);
        if (err) fail_errno("fork", -err);
        control_->slots[w].pid = workers_[w].pid();
    }

    bool respawn_unstarted(int w) override
    {
        try {
            spawn(w, control_->generation.load() - 1);
            return true;
        } catch (const Error &) {
            return false;  // reported as the death it is
        }
    }

    void start()
    {
        shm_arena_capacity();  // map the arena before forking, so later arrays are shared
        control_ = Control::create_shared(cfg_.num_workers);
        control_->claims = true;
        // The caller, not a worker, spins too while the workers run.
        control_->throttle_spin = cfg_.num_workers + 1 > usable_cpus();
        control_->open_wake_fd();
        user_copy_ = mmap(nullptr, kUserCopy, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (user_copy_ == MAP_FAILED) {
            int err = errno;
            Control::destroy_shared(control_);
            control_ = nullptr;
            fail_errno("mmap", err);
        }
        shm_pool_started();  // undone by stop()
        workers_.clear();
        workers_.resize(cfg_.num_workers);
        try {
            for (int w = 0; w < cfg_.num_workers; ++w) spawn(w, control_->generation.load());
        } catch (...) {
            stop();
            throw;
        }
    }

    void stop()
    {
        if (!control_) return;
        control_->shutdown.store(1);
        publish(*control_);
        for (auto &w : workers_) w.reap(2000);
        Control::destroy_shared(control_);
        control_ = nullptr;
        munmap(user_copy_, kUserCopy);
        shm_pool_stopped();
    }

    // A worker whose share others took may be dead, unseen: the caller
    // watches only the processes a map waits for. Ask the kernel about
    // those (waitpid, no hang), at most every kLivenessNs, so a dead worker
    // is replaced (replace_dead) and the pool keeps its size.
    void check_idle_workers(Control &c, uint32_t gen)
    {
        bool any = false;
        for (int s = 0; s < cfg_.num_workers; ++s) {
            uint64_t cl = c.slots[s].claim.load(std::memory_order_relaxed);
            if ((uint32_t)(cl >> 32) == gen && (uint32_t)cl != (uint32_t)s) any = true;
        }
        if (!any) return;
        long long now = monotonic_ns();
        if (now - last_liveness_ns_ < kLivenessNs) return;
        last_liveness_ns_ = now;
        for (int s = 0; s < cfg_.num_workers; ++s) {
            uint64_t cl = c.slots[s].claim.load(std::memory_order_relaxed);
            if ((uint32_t)(cl >> 32) == gen && (uint32_t)cl != (uint32_t)s) workers_[s].poll_exit();
        }
    }

    // Replace the workers seen to end during the last map (one that
    // finished its share and died afterwards left its results intact).
    void replace_dead()
    {
        for (int w = 0; w < cfg_.num_workers; ++w) {
            if (!workers_[w].reaped()) continue;
            try {
                spawn(w, control_->generation.load());
            } catch (const Error &) {
                // Leave the slot dead: the next map finds it again and retries.
            }
        }
    }

    static const size_t kUserCopy = 65536;
    static const long long kLivenessNs = 10000000;  // 10 ms
    long long last_liveness_ns_ = 0;
    Control *control_ = nullptr;
    void *user_copy_ = nullptr;  // shared: where user_data is copied for the workers
    std::vector<WorkerProcess> workers_;
};

}  // namespace

std::unique_ptr<Context> make_pool_context(const ContextConfig &cfg)
{
    return std::make_unique<PoolContext>(cfg);
}

}  // namespace psh
