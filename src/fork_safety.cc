#include "fork_safety.hh"

#include <pthread.h>
#include <unistd.h>

#include <mutex>
#include <new>
#include <unordered_set>

#include "context.hh"
#include "shm.hh"

namespace psh {

namespace {

std::atomic<pid_t> cached_pid{getpid()};

// Held across fork, so that the child sees a consistent set.
std::mutex contexts_mutex;
std::unordered_set<Context *> *contexts = new std::unordered_set<Context *>();  // never freed: used at exit

void prepare() { contexts_mutex.lock(); }
void parent() { contexts_mutex.unlock(); }

void child()
{
    cached_pid.store(getpid(), std::memory_order_relaxed);
    contexts_mutex.unlock();  // locked by this thread in prepare()
    for (Context *c : *contexts) c->reset_after_fork_child();
    shm_after_fork_child();
    api_after_fork_child();
}

struct Install {
    Install() { pthread_atfork(prepare, parent, child); }
} install;

}  // namespace

pid_t current_pid() { return cached_pid.load(std::memory_order_relaxed); }

void register_context(Context *ctx)
{
    std::lock_guard<std::mutex> lock(contexts_mutex);
    contexts->insert(ctx);
}

void unregister_context(Context *ctx)
{
    std::lock_guard<std::mutex> lock(contexts_mutex);
    contexts->erase(ctx);
}

}  // namespace psh
