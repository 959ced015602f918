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
#include "process.hh"

namespace psh {

namespace {

class PoolContext final : public Context {
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
        replace_dead();  // a worker may have died between maps (OOM killer, kill -9)
        job.cancel = nullptr;  // the workers cannot see the caller's flag: mon.tick relays it
        if (job.user_data_size) {
            memcpy(user_copy_, job.user_data, job.user_data_size);
            job.user_data = user_copy_;
        }
        c.prepare(job);
        uint32_t gen = c.generation.load() + 1;
        publish(c);
        wait_processes(c, gen, workers_, mon, job.worker_base);
        out = c.outcome;
        replace_dead();
    }

    // The pool belongs to the process that forked it.
    void after_fork() override
    {
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
                if (getppid() != a.parent) return;  // orphaned
                continue;
            }
            seen = c.generation.load(std::memory_order_acquire);
            if (c.shutdown.load()) return;
            run_worker(c, c.job, a.w, nullptr);
            finish_worker(c, a.w, seen, (uint32_t)c.job.num_workers);
        }
    }

    void spawn(int w)
    {
        Args args{this, w, control_->generation.load(), getpid()};
        int cpu = cfg_.pin_cpus ? nth_cpu(w) : -1;
        pid_t pid = spawn_worker(cpu, worker_main, &args);
        if (pid < 0) fail_errno("fork", -pid);
        workers_[w] = Worker{pid, 0, false};
        control_->slots[w].pid = pid;
    }

    void start()
    {
        shm_arena_capacity();  // map the arena before forking, so later arrays are shared
        control_ = Control::create_shared(cfg_.num_workers);
        user_copy_ = mmap(nullptr, kUserCopy, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (user_copy_ == MAP_FAILED) {
            int err = errno;
            Control::destroy_shared(control_);
            control_ = nullptr;
            fail_errno("mmap", err);
        }
        shm_pool_started();  // undone by stop()
        workers_.assign(cfg_.num_workers, Worker{});
        try {
            for (int w = 0; w < cfg_.num_workers; ++w) spawn(w);
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
        for (auto &w : workers_) reap_worker(w, 2000);
        Control::destroy_shared(control_);
        control_ = nullptr;
        munmap(user_copy_, kUserCopy);
        shm_pool_stopped();
    }

    void replace_dead()
    {
        for (int w = 0; w < cfg_.num_workers; ++w) {
            Worker &wk = workers_[w];
            if (!poll_reaped(wk)) continue;
            // A worker that finished this job but died afterwards left its
            // results intact; it is replaced all the same.
            try {
                spawn(w);
            } catch (const Error &) {
                // Leave the slot dead: the next map reports it again and retries.
            }
        }
    }

    static const size_t kUserCopy = 65536;
    Control *control_ = nullptr;
    void *user_copy_ = nullptr;  // shared: where user_data is copied for the workers
    std::vector<Worker> workers_;
};

}  // namespace

std::unique_ptr<Context> make_pool_context(const ContextConfig &cfg)
{
    return std::make_unique<PoolContext>(cfg);
}

}  // namespace psh
