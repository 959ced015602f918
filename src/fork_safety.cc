#include "fork_safety.hh"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_set>

#include "context.hh"
#include "error.hh"
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

namespace {

const int kOmpPauseSoft = 1;  // omp_pause_soft in omp.h (OpenMP 5.0)

// The OpenMP runtimes loaded in this process.
struct OmpRuntimes {
    static const int kMax = 8;
    char path[kMax][512];
    bool gnu[kMax];
    int n = 0;
};

int find_openmp(struct dl_phdr_info *info, size_t, void *data)
{
    auto &rt = *static_cast<OmpRuntimes *>(data);
    const char *path = info->dlpi_name;
    if (!path || !*path || rt.n == OmpRuntimes::kMax) return 0;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    bool gnu = strncmp(base, "libgomp", 7) == 0;
    if (!gnu && strncmp(base, "libomp", 6) != 0 && strncmp(base, "libiomp", 7) != 0) return 0;
    if (strncmp(base, "libompd", 7) == 0 || strncmp(base, "libomptarget", 12) == 0) return 0;
    snprintf(rt.path[rt.n], sizeof rt.path[0], "%s", path);
    rt.gnu[rt.n] = gnu;
    ++rt.n;
    return 0;
}

// Threads in this process (1: only the caller, so no runtime has a pool).
int thread_count()
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f) return 2;  // unknown: assume others
    char line[256];
    int n = 2;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    fclose(f);
    return n;
}

}  // namespace

void release_openmp_before_fork()
{
    OmpRuntimes rt;
    dl_iterate_phdr(find_openmp, &rt);
    int threads = -1;  // read when a libgomp is found
    for (int i = 0; i < rt.n; ++i) {
        // LLVM's libomp and Intel's libiomp5 re-initialise themselves in a
        // forked child (their pthread_atfork handler; tests/fault/
        // test-openmp.c checks libomp): pausing them would only cost the
        // parent its threads.
        if (!rt.gnu[i]) continue;
        // A process with no other thread has no OpenMP pool to release
        // (and the last pause left none): no pause, so a program that
        // maps without running OpenMP in between keeps its pool.
        if (threads < 0) threads = thread_count();
        if (threads <= 1) return;
        // RTLD_NOLOAD: a handle on what is loaded already (even RTLD_LOCAL,
        // as Python extension modules load theirs), never a new load.
        void *h = dlopen(rt.path[i], RTLD_LAZY | RTLD_NOLOAD);
        if (!h) continue;
        int (*pause_all)(int);
        *reinterpret_cast<void **>(&pause_all) = dlsym(h, "omp_pause_resource_all");
        // libgomp frees the calling thread's pool (the one the child would
        // inherit). Its -1 inside a parallel region is not an error: there
        // the child's regions are nested ones, which start threads of
        // their own.
        if (pause_all) pause_all(kOmpPauseSoft);
        dlclose(h);
        if (!pause_all)
            fail(PSH_ENOTSUP,
                 "GNU libgomp (%s) has no omp_pause_resource_all (OpenMP 5.0) to release its threads before "
                 "libpasha forks worker processes: an OpenMP region in a worker would wait for ever for "
                 "threads that did not survive the fork. Use a newer libgomp, a PSH_THREADS context, or make "
                 "the persistent pool before the program's first OpenMP region",
                 rt.path[i]);
    }
}

}  // namespace psh

