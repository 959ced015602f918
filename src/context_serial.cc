// PSH_SERIAL: the caller's thread is the only worker.
#include "context.hh"

namespace psh {

namespace {

class SerialContext final : public Context {
public:
    using Context::Context;

protected:
    void run(Job &job, Monitor &mon, Outcome &out) override
    {
        job.cancel = mon.cancel;
        run_inline(job, mon, job.worker_base, out);  // 0, or a rank's first global id (MPI)
    }
};

}  // namespace

std::unique_ptr<Context> make_serial_context(const ContextConfig &cfg)
{
    return std::make_unique<SerialContext>(cfg);
}

}  // namespace psh
