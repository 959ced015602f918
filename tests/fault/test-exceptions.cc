// C++ exceptions thrown through libpasha's C function pointers (issue 10):
// from a kernel, a block kernel, a functor's get / worker_begin /
// worker_end and a progress callback, in every kind. Each must stop the map
// with PSH_EKERNEL and a message naming the callback, the exception's type
// and what(), the index and the worker; never std::terminate, never a
// forked worker returning into the program, no helper thread left running,
// and the context keeps working (the pool keeps its workers).
// Regressions: serial/threads gave PSH_ESYS "unexpected internal error" or
// aborted; fork-per-map workers ran the rest of main(); the pool's worker
// re-ran the program and every later map failed.
#include <dirent.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <pasha/pasha.h>

#define CHECK(cond)                                                                                    \
    do {                                                                                               \
        if (!(cond)) {                                                                                 \
            std::fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
                         psh_last_error());                                                            \
            std::_Exit(1);                                                                             \
        }                                                                                              \
    } while (0)

namespace {

struct Config {
    const char *name;
    psh_kind kind;
    int workers;
    bool persistent;
};

const Config configs[] = {
    {"serial", PSH_SERIAL, 1, false},
    {"threads-2", PSH_THREADS, 2, false},
    {"processes-2", PSH_PROCESSES, 2, false},
    {"pool-2", PSH_PROCESSES, 2, true},
};

psh_context *make(const Config &c)
{
    psh_context_options o;
    psh_context_options_init(&o);
    o.kind = c.kind;
    o.num_workers = c.workers;
    o.persistent = c.persistent;
    psh_context *ctx = nullptr;
    CHECK(psh_context_create_ext(&ctx, &o) == PSH_OK);
    return ctx;
}

// Counts, in memory shared with every process, how often control came back
// to main() after a map: exactly once per map, or a worker returned into
// the program.
std::atomic<int> *returns_to_main;

const size_t kThrowAt = 37;
const size_t kN = 200;

struct custom_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

int throwing_kernel(void *ud, int, size_t index, const void *)
{
    if (index == kThrowAt) throw std::out_of_range("index 37 is cursed");
    static_cast<double *>(ud)[index] = 2.0 * (double)index;
    return 0;
}

int throwing_int_kernel(void *, int, size_t index, const void *)
{
    if (index == kThrowAt) throw 42;  // not a std::exception
    return 0;
}

int throwing_block_kernel(void *, int, size_t begin, size_t end)
{
    if (begin <= kThrowAt && kThrowAt < end) throw custom_error("a block went wrong");
    return 0;
}

int fill_kernel(void *ud, int, size_t index, const void *)
{
    static_cast<double *>(ud)[index] = 3.0 * (double)index + 1;
    return 0;
}

// A custom functor whose callbacks throw where told to.
struct Source {
    int throw_in;  // 0 none, 1 get, 2 worker_begin, 3 worker_end
};

size_t src_length(void *) { return kN; }
int src_get(void *self, size_t index, const void **value)
{
    if (static_cast<Source *>(self)->throw_in == 1 && index == kThrowAt) throw std::invalid_argument("no such item");
    *value = nullptr;
    return 0;
}
int src_begin(void *self, int)
{
    if (static_cast<Source *>(self)->throw_in == 2) throw std::length_error("cannot begin");
    return 0;
}
void src_end(void *self, int)
{
    if (static_cast<Source *>(self)->throw_in == 3) throw std::logic_error("cannot end");
}
int noop_kernel(void *, int, size_t, const void *) { return 0; }

int throwing_map_begin(void *, int) { throw std::runtime_error("no setup"); }
int throwing_map_end(void *, int) { throw std::domain_error("no teardown"); }

void throwing_progress(void *, size_t, size_t) { throw std::runtime_error("progress bar broke"); }

int slow_kernel(void *, int, size_t, const void *)
{
    usleep(2000);
    return 0;
}

int threads_of_this_process()
{
    DIR *d = opendir("/proc/self/task");
    CHECK(d != nullptr);
    int n = 0;
    while (dirent *e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

std::set<int> child_pids()
{
    std::set<int> pids;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)getpid(), (int)getpid());
    if (FILE *f = std::fopen(path, "r")) {
        int pid;
        while (std::fscanf(f, "%d", &pid) == 1) pids.insert(pid);
        std::fclose(f);
    }
    return pids;
}

void expect_error(int rc, std::initializer_list<const char *> parts, const char *what)
{
    if (rc != PSH_EKERNEL) {
        std::fprintf(stderr, "%s: rc %d, not PSH_EKERNEL (%s)\n", what, rc, psh_last_error());
        std::_Exit(1);
    }
    for (const char *p : parts) {
        if (!std::strstr(psh_last_error(), p)) {
            std::fprintf(stderr, "%s: message \"%s\" lacks \"%s\"\n", what, psh_last_error(), p);
            std::_Exit(1);
        }
    }
}

// The same failure as data (psh_last_error_info): the callback's name, the
// index (-1: none) and a worker id in range (-1: none expected).
void expect_info(const char *callback, long long index, bool has_worker, int workers, const char *what)
{
    psh_error_info info;
    std::memset(&info, 0x5a, sizeof info);
    info.struct_size = sizeof info;
    CHECK(psh_last_error_info(&info) == PSH_OK);
    bool worker_ok = has_worker ? info.worker_id >= 0 && info.worker_id < workers : info.worker_id == -1;
    if (info.code != PSH_EKERNEL || !info.callback || std::strcmp(info.callback, callback) != 0 ||
        info.index != index || !worker_ok || info.signal != 0 || info.exit_status != -1 ||
        info.message != psh_last_error()) {
        std::fprintf(stderr,
                     "%s: error info code %d callback %s index %lld worker %d signal %d exit %d; expected "
                     "callback %s index %lld\n",
                     what, info.code, info.callback ? info.callback : "(null)", info.index, info.worker_id,
                     info.signal, info.exit_status, callback, index);
        std::_Exit(1);
    }
}

void run_config(const Config &cfg)
{
    psh_context *ctx = make(cfg);
    int threads_before = threads_of_this_process();
    std::set<int> pool_before = child_pids();
    psh_array *out;
    size_t n = kN;
    CHECK(psh_alloc(&out, ctx, PSH_FLOAT64, 1, &n, nullptr) == PSH_OK);
    double *d = static_cast<double *>(psh_array_data(out));
    psh_functor *range;
    CHECK(psh_functor_range(&range, kN) == PSH_OK);
    int maps = 0;

    // 1. A kernel throwing a std::exception: type, what(), index, worker.
    int rc = psh_map(ctx, throwing_kernel, d, range);
    ++maps;
    returns_to_main->fetch_add(1);
    expect_error(rc, {"the kernel threw", "std::out_of_range", "index 37 is cursed", "at index 37", "(worker "},
                 cfg.name);
    expect_info("kernel", kThrowAt, true, cfg.workers, cfg.name);

    // 2. Something that is not a std::exception.
    rc = psh_map(ctx, throwing_int_kernel, nullptr, range);
    ++maps;
    returns_to_main->fetch_add(1);
    expect_error(rc, {"the kernel threw int", "at index 37"}, cfg.name);
    expect_info("kernel", kThrowAt, true, cfg.workers, cfg.name);

    // 3. A block kernel.
    rc = psh_map_blocks(ctx, throwing_block_kernel, nullptr, kN);
    ++maps;
    returns_to_main->fetch_add(1);
    expect_error(rc, {"the block kernel threw", "custom_error", "a block went wrong"}, cfg.name);
    // Static shares: the block is the share of the worker that has index 37.
    {
        long long start = 0;
        for (int w = 0; w < cfg.workers; ++w)
            if ((size_t)w * kN / cfg.workers <= kThrowAt) start = (long long)((size_t)w * kN / cfg.workers);
        expect_info("block_kernel", start, true, cfg.workers, cfg.name);
    }

    // 4-6. A custom functor's get, worker_begin and worker_end.
    const char *cb_names[] = {nullptr, "the functor's get threw", "the functor's worker_begin threw",
                              "the functor's worker_end threw"};
    const char *cb_whats[] = {nullptr, "std::invalid_argument: no such item", "std::length_error: cannot begin",
                              "std::logic_error: cannot end"};
    for (int where = 1; where <= 3; ++where) {
        // In a psh array: a pool's workers see those, whenever they are made.
        psh_array *src_mem;
        size_t src_size = sizeof(Source);
        CHECK(psh_alloc(&src_mem, ctx, PSH_UINT8, 1, &src_size, nullptr) == PSH_OK);
        Source *src = new (psh_array_data(src_mem)) Source{where};
        psh_functor_vtable vt;
        std::memset(&vt, 0, sizeof vt);
        vt.struct_size = sizeof vt;
        vt.length = src_length;
        vt.get = src_get;
        vt.worker_begin = src_begin;
        vt.worker_end = src_end;
        psh_functor *f;
        CHECK(psh_functor_custom(&f, &vt, src) == PSH_OK);
        rc = psh_map(ctx, noop_kernel, nullptr, f);
        ++maps;
        returns_to_main->fetch_add(1);
        expect_error(rc, {cb_names[where], cb_whats[where]}, cfg.name);
        if (where == 1) expect_error(rc, {"at index 37"}, cfg.name);
        const char *cb_info[] = {nullptr, "get", "functor_worker_begin", "functor_worker_end"};
        expect_info(cb_info[where], where == 1 ? (long long)kThrowAt : -1, true, cfg.workers, cfg.name);
        psh_functor_destroy(f);
        psh_array_free(src_mem);
    }

    // 7. A progress callback (runs in the caller; the map must be long
    //    enough for a tick: 200 items x 2 ms over the workers).
    psh_map_options mo;
    psh_map_options_init(&mo);
    mo.progress = throwing_progress;
    rc = psh_map_ext(ctx, slow_kernel, nullptr, range, &mo);
    ++maps;
    returns_to_main->fetch_add(1);
    expect_error(rc, {"the progress callback threw", "std::runtime_error: progress bar broke"}, cfg.name);
    expect_info("progress", -1, false, cfg.workers, cfg.name);

    // 8-9. The map's own worker_begin and worker_end (psh_map_options).
    for (int end = 0; end < 2; ++end) {
        psh_map_options_init(&mo);
        (end ? mo.worker_end : mo.worker_begin) = end ? throwing_map_end : throwing_map_begin;
        rc = psh_map_ext(ctx, noop_kernel, nullptr, range, &mo);
        ++maps;
        returns_to_main->fetch_add(1);
        if (end)
            expect_error(rc, {"the map's worker_end threw", "std::domain_error: no teardown"}, cfg.name);
        else
            expect_error(rc, {"the map's worker_begin threw", "std::runtime_error: no setup"}, cfg.name);
        expect_info(end ? "worker_end" : "worker_begin", -1, true, cfg.workers, cfg.name);
    }

    // The context still works and computes the right values.
    CHECK(psh_map(ctx, fill_kernel, d, range) == PSH_OK);
    ++maps;
    returns_to_main->fetch_add(1);
    for (size_t i = 0; i < kN; ++i) CHECK(d[i] == 3.0 * (double)i + 1);

    // No helper thread left running beyond the context's own; the pool kept
    // its workers (same pids).
    CHECK(threads_of_this_process() == threads_before);
    if (cfg.persistent) CHECK(child_pids() == pool_before);
    CHECK(returns_to_main->load() == maps);
    returns_to_main->store(0);

    psh_functor_destroy(range);
    psh_array_free(out);
    psh_context_destroy(ctx);
    std::printf("ok - %s: kernel, int, block kernel, get, worker_begin, worker_end, progress and the map's "
                "worker_begin / worker_end throws are "
                "PSH_EKERNEL with type, what(), index and worker; the context maps correctly afterwards\n",
                cfg.name);
}

}  // namespace

int main()
{
    std::setvbuf(stdout, nullptr, _IONBF, 0);
    void *shared = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(shared != MAP_FAILED);
    returns_to_main = new (shared) std::atomic<int>(0);
    pid_t me = getpid();
    const char *only = std::getenv("ONLY");
    for (const Config &c : configs)
        if (!only || std::strcmp(only, c.name) == 0) run_config(c);
    // A worker that returned into main() would get here too.
    CHECK(getpid() == me);
    std::printf("%zu configurations passed\n", sizeof configs / sizeof configs[0]);
    return 0;
}
