// The C++ API's benchmark (a program, not a test): the same kernels through
// pasha::map (a lambda), OpenMP, the C API and oneTBB, interleaved round by
// round in one process after a warm-up, idle spinners settled between
// variants (odd rounds in reverse order); medians and fastest rounds, ratios against the reference run in
// the same process.
//
//   bench_cpp [--workers N] [--rounds R] [--quick] [--only axpy|calib|w4]
//
// Workloads:
//   axpy  y[i] = a*x[i] + y[i] over 2^25 floats, one item per element, on a
//         threads context: pasha::map lambda vs OpenMP parallel for
//         schedule(static) vs the C per-item function-pointer path (psh_map
//         over psh_functor_range) vs oneTBB parallel_for (when built with it)
//   calib the calibration workload of bench/bench.c (a): frames of 512x128
//         float32, out = (raw - offset) * gain, one frame per item, through
//         the C API (psh_map over psh_functor_array, as bench.c) and through
//         the C++ API (pasha::map over the array's axis 0), on a threads
//         context and on a persistent pool
//   w4    the reduction workload (f) of bench/bench.c (bench_w4.h): a
//         64-bin histogram and the sum of 1000 frames of 512x128 float32,
//         through pasha::reduce (in-place kernel and combine, threads
//         context static and dynamic, persistent pool) vs OpenMP reduction(+: sum[:65536],
//         hist[:64]) vs oneTBB parallel_reduce (auto and static partitioner)
//         and parallel_deterministic_reduce (static partitioner)
#include <pasha/pasha.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#ifdef PASHA_BENCH_TBB
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_reduce.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>
#endif

extern "C" {
#include "bench_w4.h"
}

static int opt_workers = 2, opt_rounds = 11;
static bool opt_quick = false;
static std::string opt_only = "axpy,calib,w4";

static double now()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

static void settle()
{
    // Let spinning idle workers (OpenMP's, TBB's, ours) sleep between variants.
    timespec ts{0, 5000000};
    nanosleep(&ts, nullptr);
}

static void check(int rc, const char *what)
{
    if (rc != PSH_OK) {
        std::fprintf(stderr, "%s: %s (%s)\n", what, psh_strerror(rc), psh_last_error());
        std::exit(1);
    }
}

struct variant {
    variant(std::string n, std::function<void()> r) : name(std::move(n)), run(std::move(r)) {}
    std::string name;
    std::function<void()> run;
    std::vector<double> ms;
    double median = 0, min = 0;
};

static const variant &find(const std::vector<variant> &vs, const char *name)
{
    for (auto &v : vs)
        if (v.name == name) return v;
    std::fprintf(stderr, "no variant %s\n", name);
    std::exit(1);
}

static void ratio(const std::vector<variant> &vs, const char *num, const char *den, const char *label)
{
    const variant &a = find(vs, num), &b = find(vs, den);
    // The median of the per-round ratios as well: both ran in the same
    // round, so a slow spell of the machine that hits the round hits both.
    std::vector<double> per_round;
    for (std::size_t r = 0; r < a.ms.size() && r < b.ms.size(); ++r) per_round.push_back(a.ms[r] / b.ms[r]);
    std::sort(per_round.begin(), per_round.end());
    std::printf("  => %s: %.3fx (medians), %.3fx (fastest rounds), %.3fx (median of per-round ratios)\n", label,
                a.median / b.median, a.min / b.min, per_round[per_round.size() / 2]);
}

static void measure(const char *title, std::vector<variant> &vs, const char *ref)
{
    for (auto &v : vs) v.run();  // warm-up
    // Odd rounds run the variants in reverse order, so that no variant
    // always follows the same neighbour.
    for (int r = 0; r < opt_rounds; ++r)
        for (std::size_t k = 0; k < vs.size(); ++k) {
            variant &v = vs[r % 2 ? vs.size() - 1 - k : k];
            settle();
            double t0 = now();
            v.run();
            v.ms.push_back((now() - t0) * 1e3);
        }
    double ref_med = 0, ref_min = 0;
    for (auto &v : vs) {
        std::vector<double> s = v.ms;
        std::sort(s.begin(), s.end());
        v.median = s[s.size() / 2];
        v.min = s.front();
        if (v.name == ref) {
            ref_med = v.median;
            ref_min = v.min;
        }
    }
    std::printf("\n%s: median of %d interleaved rounds, %d workers (ratios: to %s)\n", title, opt_rounds, opt_workers,
                ref);
    std::printf("  %-44s %10s %10s %8s %8s\n", "variant", "median ms", "min ms", "x med", "x min");
    for (auto &v : vs)
        std::printf("  %-44s %10.3f %10.3f %8.3f %8.3f\n", v.name.c_str(), v.median, v.min, v.median / ref_med,
                    v.min / ref_min);
    std::fflush(stdout);
}

// ---- axpy ------------------------------------------------------------------

struct axpy_args {
    float a;
    const float *x;
    float *y;
};

static int axpy_item(void *ud, int, std::size_t i, const void *)
{
    const auto *p = static_cast<const axpy_args *>(ud);
    p->y[i] = p->a * p->x[i] + p->y[i];
    return 0;
}

static void workload_axpy()
{
    const std::size_t n = opt_quick ? (std::size_t(1) << 20) : (std::size_t(1) << 25);
    pasha::context t(pasha::kind::threads, opt_workers);
    auto xa = pasha::alloc<float>(t, {n});
    auto ya = pasha::alloc<float>(t, {n});
    for (std::size_t i = 0; i < n; ++i) xa[i] = static_cast<float>(i % 1000) * 1e-3f;
    const float a = 0.5f;
    const float *x = xa.data();
    float *y = ya.data();
    psh_functor *range = nullptr;
    check(psh_functor_range(&range, n), "psh_functor_range");
    axpy_args args{a, x, y};

    std::vector<variant> vs;
    vs.push_back({"pasha::map lambda (threads)", [&] {
                      pasha::map(t, n, [=](int, std::size_t i) { y[i] = a * x[i] + y[i]; });
                  }});
    vs.push_back({"OpenMP parallel for schedule(static)", [&] {
#pragma omp parallel for schedule(static) num_threads(opt_workers)
                      for (std::size_t i = 0; i < n; ++i) y[i] = a * x[i] + y[i];
                  }});
    vs.push_back({"C psh_map per-item kernel (threads)",
                  [&] { check(psh_map(t.get(), axpy_item, &args, range), "psh_map"); }});
    vs.push_back({"pasha::map_blocks lambda (threads)", [&] {
                      pasha::map_blocks(t, n, [=](int, std::size_t b, std::size_t e) {
                          for (std::size_t i = b; i < e; ++i) y[i] = a * x[i] + y[i];
                      });
                  }});
#ifdef PASHA_BENCH_TBB
    static oneapi::tbb::task_arena arena(opt_workers);
    vs.push_back({"oneTBB parallel_for (auto_partitioner)", [&] {
                      arena.execute([&] {
                          oneapi::tbb::parallel_for(oneapi::tbb::blocked_range<std::size_t>(0, n),
                                                    [=](const oneapi::tbb::blocked_range<std::size_t> &r) {
                                                        for (std::size_t i = r.begin(); i < r.end(); ++i)
                                                            y[i] = a * x[i] + y[i];
                                                    });
                      });
                  }});
    vs.push_back({"oneTBB parallel_for (static_partitioner)", [&] {
                      arena.execute([&] {
                          oneapi::tbb::parallel_for(
                              oneapi::tbb::blocked_range<std::size_t>(0, n),
                              [=](const oneapi::tbb::blocked_range<std::size_t> &r) {
                                  for (std::size_t i = r.begin(); i < r.end(); ++i) y[i] = a * x[i] + y[i];
                              },
                              oneapi::tbb::static_partitioner());
                      });
                  }});
#endif
    vs.push_back({"plain loop (1 thread)", [&] {
                      for (std::size_t i = 0; i < n; ++i) y[i] = a * x[i] + y[i];
                  }});

    // Every variant computes the same thing: check each once from y = 1.
    for (auto &v : vs) {
        std::fill(ya.begin(), ya.end(), 1.0f);
        v.run();
        for (std::size_t i = 0; i < n; i += 4099)
            if (ya[i] != a * xa[i] + 1.0f) {
                std::fprintf(stderr, "axpy: %s is wrong at %zu\n", v.name.c_str(), i);
                std::exit(1);
            }
    }
    std::fill(ya.begin(), ya.end(), 0.0f);
    char title[128];
    std::snprintf(title, sizeof title, "axpy, y[i] = a*x[i] + y[i] over 2^%d floats", opt_quick ? 20 : 25);
    measure(title, vs, "OpenMP parallel for schedule(static)");
    ratio(vs, "pasha::map lambda (threads)", "OpenMP parallel for schedule(static)", "pasha::map lambda / OpenMP");
    ratio(vs, "C psh_map per-item kernel (threads)", "OpenMP parallel for schedule(static)", "C per-item / OpenMP");
#ifdef PASHA_BENCH_TBB
    ratio(vs, "pasha::map lambda (threads)", "oneTBB parallel_for (auto_partitioner)", "pasha::map lambda / oneTBB");
#endif
    psh_functor_destroy(range);
}

// ---- calibration (bench.c's workload a) ------------------------------------

constexpr std::size_t kFramePixels = 512 * 128;

struct calib_args {
    const float *offset, *gain;
    float *out;
};

static inline void calibrate_frame(const float *__restrict raw, const float *__restrict offset,
                                   const float *__restrict gain, float *__restrict out)
{
    for (std::size_t p = 0; p < kFramePixels; ++p) out[p] = (raw[p] - offset[p]) * gain[p];
}

static int calib_kernel(void *ud, int, std::size_t index, const void *value)
{
    const auto *c = static_cast<const calib_args *>(ud);
    const auto *v = static_cast<const psh_view *>(value);
    calibrate_frame(static_cast<const float *>(v->data), c->offset, c->gain, c->out + index * kFramePixels);
    return 0;
}

static void workload_calib()
{
    const std::size_t frames = opt_quick ? 40 : 1000;
    pasha::context t(pasha::kind::threads, opt_workers);
    pasha::context_options po;
    po.kind = pasha::kind::processes;
    po.num_workers = opt_workers;
    po.persistent = true;
    pasha::context pool(po);
    auto raw = pasha::alloc<float>(t, {frames, 512, 128});
    auto out = pasha::alloc_like(t, raw);
    auto offset = pasha::alloc<float>(t, {512, 128});
    auto gain = pasha::alloc<float>(t, {512, 128});
    for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<float>(i % 4096);
    for (std::size_t p = 0; p < kFramePixels; ++p) {
        offset[p] = static_cast<float>(p % 7);
        gain[p] = 1.0f + static_cast<float>(p % 5) * 0.01f;
    }
    psh_functor *f = nullptr;
    check(psh_functor_array(&f, raw.get(), 0), "psh_functor_array");
    calib_args args{offset.data(), gain.data(), out.data()};
    const float *po_ = offset.data(), *pg = gain.data();
    float *pout = out.data();
    auto c_api = [&](const pasha::context &ctx) {
        psh_map_options o;
        psh_map_options_init(&o);
        o.user_data_size = sizeof args;  // as bench.c: the pool cannot see the caller's stack
        check(psh_map_ext(ctx.get(), calib_kernel, &args, f, &o), "psh_map_ext");
    };
    auto cpp_api = [&](const pasha::context &ctx) {
        pasha::map(ctx, raw, [=](int, std::size_t i, pasha::view<float> frame) {
            calibrate_frame(frame.data(), po_, pg, pout + i * kFramePixels);
        });
    };
    std::vector<variant> vs;
    vs.push_back({"C API psh_map (threads)", [&] { c_api(t); }});
    vs.push_back({"C++ pasha::map over axis 0 (threads)", [&] { cpp_api(t); }});
    vs.push_back({"C API psh_map (persistent pool)", [&] { c_api(pool); }});
    vs.push_back({"C++ pasha::map over axis 0 (persistent pool)", [&] { cpp_api(pool); }});
    vs.push_back({"OpenMP schedule(static)", [&] {
#pragma omp parallel for schedule(static) num_threads(opt_workers)
                      for (std::size_t i = 0; i < frames; ++i)
                          calibrate_frame(raw.data() + i * kFramePixels, po_, pg, pout + i * kFramePixels);
                  }});
    for (auto &v : vs) {
        std::fill(out.begin(), out.end(), -1.0f);
        v.run();
        for (std::size_t i = 0; i < raw.size(); i += 997) {
            std::size_t p = i % kFramePixels;
            if (out[i] != (raw[i] - offset[p]) * gain[p]) {
                std::fprintf(stderr, "calib: %s is wrong at %zu\n", v.name.c_str(), i);
                std::exit(1);
            }
        }
    }
    char title[128];
    std::snprintf(title, sizeof title, "calibration, %zu frames of 512x128 float32", frames);
    measure(title, vs, "C API psh_map (threads)");
    ratio(vs, "C++ pasha::map over axis 0 (threads)", "C API psh_map (threads)", "C++ / C API, threads");
    ratio(vs, "C++ pasha::map over axis 0 (persistent pool)", "C API psh_map (persistent pool)",
          "C++ / C API, persistent pool");
    psh_functor_destroy(f);
}

// ---- the reduction (bench.c's workload f) -----------------------------------

// pasha::reduce's accumulator: the sum frame and the histogram of one worker.
struct w4_acc {
    float sum[W4_PIXELS];
    int64_t hist[W4_BINS];
};

#ifdef PASHA_BENCH_TBB
// tbb::parallel_reduce's imperative form (a Body with a splitting
// constructor and join), as bench/bench_tbb.cc.
struct w4_tbb_body {
    const float *frames;
    std::vector<float> sum;
    std::vector<int64_t> hist;
    explicit w4_tbb_body(const float *f) : frames(f), sum(W4_PIXELS, 0.0f), hist(W4_BINS, 0) {}
    w4_tbb_body(w4_tbb_body &o, oneapi::tbb::split) : frames(o.frames), sum(W4_PIXELS, 0.0f), hist(W4_BINS, 0) {}
    void operator()(const oneapi::tbb::blocked_range<std::size_t> &r)
    {
        for (std::size_t i = r.begin(); i != r.end(); ++i) w4_frame(frames + i * W4_PIXELS, sum.data(), hist.data());
    }
    void join(const w4_tbb_body &o) { w4_add_rows(sum.data(), hist.data(), o.sum.data(), o.hist.data()); }
};
#endif

static void workload_w4()
{
    const std::size_t frames = opt_quick ? 40 : 1000;
    pasha::context t(pasha::kind::threads, opt_workers);
    pasha::context_options po;
    po.kind = pasha::kind::processes;
    po.num_workers = opt_workers;
    po.persistent = true;
    pasha::context pool(po);
    auto raw = pasha::alloc<float>(t, {frames, 512, 128});
    uint32_t x = 12345;
    for (std::size_t i = 0; i < raw.size(); ++i) {  // bench.c's frames
        x = x * 1664525u + 1013904223u;
        raw[i] = static_cast<float>(x >> 8) * (4096.0f / 16777216.0f);
    }
    const float *pf = raw.data();
    // Every variant leaves its answer here (each variant's own copy-out
    // timed, as bench.c's).
    static w4_acc result;
    static const w4_acc zero{};
    auto pasha_reduce = [&](const pasha::context &ctx, const pasha::map_options &mo) {
        result = pasha::reduce(
            ctx, frames, zero,
            [=](std::size_t b, std::size_t e, w4_acc &acc) {
                for (std::size_t i = b; i < e; ++i) w4_frame(pf + i * W4_PIXELS, acc.sum, acc.hist);
            },
            [](w4_acc &into, const w4_acc &from) { w4_add_rows(into.sum, into.hist, from.sum, from.hist); }, mo);
    };
    std::vector<variant> vs;
    vs.push_back({"pasha::reduce (threads)", [&] { pasha_reduce(t, {}); }});
    // Dynamic hand-out in chunks of 8 frames, like TBB's auto partitioner
    // balances (the combine order stays fixed; which frames each worker adds
    // does not).
    vs.push_back({"pasha::reduce (threads, dynamic 8)", [&] { pasha_reduce(t, {PSH_SCHEDULE_DYNAMIC, 8}); }});
    vs.push_back({"OpenMP reduction(+: sum[:65536], hist[:64])", [&] {
                      float *sum = result.sum;
                      int64_t *hist = result.hist;
                      std::memset(sum, 0, sizeof result.sum);
                      std::memset(hist, 0, sizeof result.hist);
#pragma omp parallel num_threads(opt_workers) reduction(+ : sum[:W4_PIXELS], hist[:W4_BINS])
                      {
#pragma omp for schedule(static)
                          for (std::size_t i = 0; i < frames; ++i) w4_frame(pf + i * W4_PIXELS, sum, hist);
                      }
                  }});
#ifdef PASHA_BENCH_TBB
    static oneapi::tbb::task_arena arena(opt_workers);
    enum tbb_form { tbb_auto, tbb_static, tbb_deterministic };
    auto tbb_reduce = [&](tbb_form form) {
        w4_tbb_body body(pf);
        arena.execute([&] {
            oneapi::tbb::blocked_range<std::size_t> r(0, frames);
            if (form == tbb_static)
                oneapi::tbb::parallel_reduce(r, body, oneapi::tbb::static_partitioner());
            else if (form == tbb_deterministic)
                oneapi::tbb::parallel_deterministic_reduce(r, body, oneapi::tbb::static_partitioner());
            else
                oneapi::tbb::parallel_reduce(r, body);
        });
        std::memcpy(result.sum, body.sum.data(), sizeof result.sum);
        std::memcpy(result.hist, body.hist.data(), sizeof result.hist);
    };
    vs.push_back({"oneTBB parallel_reduce (auto_partitioner)", [&] { tbb_reduce(tbb_auto); }});
    vs.push_back({"oneTBB parallel_reduce (static_partitioner)", [&] { tbb_reduce(tbb_static); }});
    // The deterministic form: the same split and join order every run, as
    // pasha::reduce with the static schedule.
    vs.push_back({"oneTBB parallel_deterministic_reduce (static)", [&] { tbb_reduce(tbb_deterministic); }});
#endif
    vs.push_back({"pasha::reduce (persistent pool)", [&] { pasha_reduce(pool, {}); }});

    // Every variant computes the same histogram (exactly) and sum frame (up
    // to the order of the float additions).
    std::vector<int64_t> want_hist(W4_BINS, 0);
    std::vector<double> want_sum(W4_PIXELS, 0.0);
    for (std::size_t i = 0; i < frames; ++i)
        for (std::size_t p = 0; p < W4_PIXELS; ++p) {
            float v = raw[i * W4_PIXELS + p];
            want_sum[p] += v;
            int b = static_cast<int>(v * (W4_BINS / 4096.0f));
            want_hist[static_cast<std::size_t>(b < 0 ? 0 : b >= W4_BINS ? W4_BINS - 1 : b)] += 1;
        }
    for (auto &v : vs) {
        std::memset(&result, 0xff, sizeof result);
        v.run();
        for (std::size_t b = 0; b < W4_BINS; ++b)
            if (result.hist[b] != want_hist[b]) {
                std::fprintf(stderr, "w4: %s: histogram bin %zu is %lld, not %lld\n", v.name.c_str(), b,
                             static_cast<long long>(result.hist[b]), static_cast<long long>(want_hist[b]));
                std::exit(1);
            }
        for (std::size_t p = 0; p < W4_PIXELS; ++p)
            if (std::fabs(result.sum[p] - want_sum[p]) > 1e-4 * want_sum[p] + 1e-3) {
                std::fprintf(stderr, "w4: %s: sum[%zu] is %g, not %g\n", v.name.c_str(), p, double(result.sum[p]),
                             want_sum[p]);
                std::exit(1);
            }
    }
    char title[128];
    std::snprintf(title, sizeof title, "reduction (bench.c f), %zu frames of 512x128 float32", frames);
    measure(title, vs, "OpenMP reduction(+: sum[:65536], hist[:64])");
    ratio(vs, "pasha::reduce (threads)", "OpenMP reduction(+: sum[:65536], hist[:64])", "pasha::reduce / OpenMP");
#ifdef PASHA_BENCH_TBB
    ratio(vs, "pasha::reduce (threads)", "oneTBB parallel_reduce (auto_partitioner)",
          "pasha::reduce / oneTBB (auto)");
    ratio(vs, "pasha::reduce (threads)", "oneTBB parallel_reduce (static_partitioner)",
          "pasha::reduce / oneTBB (static)");
    ratio(vs, "pasha::reduce (threads)", "oneTBB parallel_deterministic_reduce (static)",
          "pasha::reduce / oneTBB deterministic (static)");
    ratio(vs, "pasha::reduce (threads, dynamic 8)", "oneTBB parallel_reduce (auto_partitioner)",
          "pasha::reduce dynamic / oneTBB (auto)");
#endif
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            opt_workers = std::atoi(argv[++i]);
        else if (std::strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            opt_rounds = std::atoi(argv[++i]);
        else if (std::strcmp(argv[i], "--quick") == 0)
            opt_quick = true;
        else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            opt_only = argv[++i];
        else {
            std::fprintf(stderr, "usage: bench_cpp [--workers N] [--rounds R] [--quick] [--only axpy|calib|w4]\n");
            return 2;
        }
    }
    if (opt_workers < 1 || opt_rounds < 1 || opt_rounds > 1000) {
        std::fprintf(stderr, "bench_cpp: --workers and --rounds must be positive (rounds <= 1000)\n");
        return 2;
    }
    std::printf("libpasha %s C++ benchmark, %d workers, %d rounds%s\n", pasha::version(), opt_workers, opt_rounds,
                opt_quick ? " (--quick)" : "");
    try {
        if (opt_only.find("axpy") != std::string::npos) workload_axpy();
        if (opt_only.find("calib") != std::string::npos) workload_calib();
        if (opt_only.find("w4") != std::string::npos) workload_w4();
    } catch (const pasha::error &e) {
        std::fprintf(stderr, "bench_cpp: %s\n", e.what());
        return 1;
    }
    return 0;
}
