// PSH_PROCESSES, fork per map: every psh_map forks num_workers children, so
// kernels see the caller's memory exactly as it is at the call
// (copy-on-write); only writes into psh arrays come back.
#include "context.hh"
#include "error.hh"
#include "worker_process.hh"

namespace psh {

namespace {

class ForkContext final : public Context {
public:
    explicit ForkContext(const ContextConfig &cfg) : Context(cfg) { make_control(); }
    ~ForkContext() override { Control::destroy_shared(control_); }

protected:
    void run(Job &job, Monitor &mon, Outcome &out) override
    {
        Control &c = *control_;
        job.cancel = nullptr;  // the children's copy of the flag would never change
        release_openmp_before_fork();  // or PSH_ENOTSUP before anything is forked
        c.verify_wake_fd(true);  // one fstat: fork costs far more
        c.prepare(job);
        uint32_t gen = c.generation.fetch_add(1) + 1;
        size_t started = 0;
        for (int w = 0; w < cfg_.num_workers; ++w) {
            Args args{&c, w, gen};
            int cpu = cfg_.pin_cpus ? nth_cpu(w) : -1;
            // The forking thread waits for these workers: its death signal
            // is the right parent watch.
            int err = workers_[w].start(cpu, ParentWatch::FORKING_THREAD, body, &args);
            if (err) {
                c.record(STOP_FORK, -err, SIZE_MAX, job.worker_base + w);
                break;
            }
            ++started;
        }
        // After a failed fork the stop flag is set: those that started end at
        // their first item, and nobody takes the rest.
        if (started == workers_.size()) supervise(c, gen, workers_, mon, job.worker_base, nullptr);
        for (size_t w = 0; w < started; ++w) workers_[w].reap(-1);
        out = c.outcome;
    }

    void after_fork() override
    {
        for (auto &w : workers_) w.forget();
        Control::destroy_shared(control_);  // our mapping and descriptor only
        make_control();  // the parent's block is shared with the parent: not ours
    }

private:
    struct Args {
        Control *c;
        int w;
        uint32_t gen;
    };

    void make_control()
    {
        control_ = Control::create_shared(cfg_.num_workers);
        control_->throttle_spin = cfg_.num_workers + 1 > usable_cpus();  // the caller waits too
        control_->open_wake_fd();
        workers_.clear();
        workers_.resize(cfg_.num_workers);  // no allocation per map
    }

    static void body(void *p)
    {
        Args &a = *static_cast<Args *>(p);
        run_worker(*a.c, a.c->job, a.w, nullptr);
        finish_worker(*a.c, a.w, a.gen, (uint32_t)a.c->job.num_workers);
    }

    Control *control_ = nullptr;
    std::vector<WorkerProcess> workers_;
};

}  // namespace

std::unique_ptr<Context> make_fork_context(const ContextConfig &cfg)
{
    return std::make_unique<ForkContext>(cfg);
}

}  // namespace psh
