// PSH_PROCESSES, fork per map: every psh_map forks num_workers children, so
// kernels see the caller's memory exactly as it is at the call
// (copy-on-write); only writes into psh arrays come back.
#include <cstdio>

#include "context.hh"
#include "error.hh"
#include "process.hh"

namespace psh {

namespace {

class ForkContext final : public Context {
public:
    explicit ForkContext(const ContextConfig &cfg)
        : Context(cfg), control_(Control::create_shared(cfg.num_workers))
    {
        workers_.reserve(cfg.num_workers);  // no allocation per map
    }
    ~ForkContext() override { Control::destroy_shared(control_); }

protected:
    void run(Job &job, Monitor &mon, Outcome &out) override
    {
        Control &c = *control_;
        job.cancel = nullptr;  // the children's copy of the flag would never change
        c.prepare(job);
        uint32_t gen = c.generation.fetch_add(1) + 1;
        workers_.clear();
        for (int w = 0; w < cfg_.num_workers; ++w) {
            Args args{&c, w, gen};
            int cpu = cfg_.pin_cpus ? nth_cpu(w) : -1;
            pid_t pid = spawn_worker(cpu, body, &args);
            if (pid < 0) {
                c.record(STOP_FORK, -pid, SIZE_MAX, job.worker_base + w);
                break;
            }
            workers_.push_back(Worker{pid, 0, false});
        }
        // After a failed fork the stop flag is set: those that started end at
        // their first item, and nobody takes the rest.
        if ((int)workers_.size() == cfg_.num_workers) wait_processes(c, gen, workers_, mon, job.worker_base);
        for (auto &w : workers_) reap_worker(w, -1);
        out = c.outcome;
    }

    void after_fork() override { control_ = Control::create_shared(cfg_.num_workers); }

private:
    struct Args {
        Control *c;
        int w;
        uint32_t gen;
    };

    static void body(void *p)
    {
        Args &a = *static_cast<Args *>(p);
        run_worker(*a.c, a.c->job, a.w, nullptr);
        finish_worker(*a.c, a.w, a.gen, (uint32_t)a.c->job.num_workers);
    }

    Control *control_;
    std::vector<Worker> workers_;
};

}  // namespace

std::unique_ptr<Context> make_fork_context(const ContextConfig &cfg)
{
    return std::make_unique<ForkContext>(cfg);
}

}  // namespace psh
