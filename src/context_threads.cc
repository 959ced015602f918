// PSH_THREADS: a pool of num_workers - 1 threads made with the context; the
// thread calling psh_map is worker 0, as in an OpenMP parallel region.
#include <pthread.h>

#include <vector>

#include "context.hh"
#include "error.hh"

namespace psh {

namespace {

class ThreadsContext final : public Context {
public:
    explicit ThreadsContext(const ContextConfig &cfg) : Context(cfg) { start(); }

    ~ThreadsContext() override
    {
        if (control_ && !forked()) stop_threads();
    }

protected:
    void run(Job &job, Monitor &mon, Outcome &out) override
    {
        Control &c = *control_;
        uint32_t helpers = (uint32_t)threads_.size();
        job.cancel = mon.cancel;
        c.prepare(job);
        publish(c);
        run_worker(c, c.job, 0, &mon);
        long long tick = mon.active() ? 20000000LL : -1;
        wait_finished(c, helpers, tick, [&] {
            mon.tick(c);
            return true;
        });
        out = c.outcome;
    }

    // In a forked child the pool threads do not exist: start new ones and
    // abandon the parent's (joining them is impossible here).
    void after_fork() override
    {
        threads_.clear();
        control_ = nullptr;
        start();
    }

private:
    struct Start {
        ThreadsContext *self;
        int w;
    };

    static void *thread_main(void *arg)
    {
        Start s = *static_cast<Start *>(arg);
        delete static_cast<Start *>(arg);
        Control &c = *s.self->control_;
        if (s.self->cfg_.pin_cpus) pin_to_cpu(nth_cpu(s.w));
        uint32_t seen = 0;
        for (;;) {
            wait_for_job(c, seen, -1);
            seen = c.generation.load(std::memory_order_acquire);
            if (c.shutdown.load()) return nullptr;
            run_worker(c, c.job, s.w, nullptr);
            finish_worker(c, s.w, seen, (uint32_t)c.job.num_workers - 1);
        }
    }

    void start()
    {
        control_ = Control::create_shared(cfg_.num_workers);
        control_->throttle_spin = cfg_.num_workers > usable_cpus();
        for (int w = 1; w < cfg_.num_workers; ++w) {
            pthread_t t;
            auto *s = new Start{this, w};
            int rc = pthread_create(&t, nullptr, thread_main, s);
            if (rc) {
                delete s;
                stop_threads();
                fail_errno("pthread_create", rc);
            }
            threads_.push_back(t);
        }
    }

    void stop_threads()
    {
        control_->shutdown.store(1);
        publish(*control_);
        for (pthread_t t : threads_) pthread_join(t, nullptr);
        threads_.clear();
        Control::destroy_shared(control_);
        control_ = nullptr;
    }

    Control *control_ = nullptr;
    std::vector<pthread_t> threads_;
};

}  // namespace

std::unique_ptr<Context> make_threads_context(const ContextConfig &cfg)
{
    return std::make_unique<ThreadsContext>(cfg);
}

}  // namespace psh
