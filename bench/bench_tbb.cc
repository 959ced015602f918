// oneTBB reference for the reduction workload (f) of bench.c: the same
// per-frame kernel (bench_w4.h) through tbb::parallel_reduce, in an arena of
// `workers` threads. Built only where TBB is found (HAVE_TBB).
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_reduce.h>
#include <oneapi/tbb/task_arena.h>

#include <cstring>
#include <vector>

extern "C" {
#include "bench_w4.h"
}

namespace {

struct Body {
    const float *frames;
    std::vector<float> sum;
    std::vector<int64_t> hist;

    explicit Body(const float *f) : frames(f), sum(W4_PIXELS, 0.0f), hist(W4_BINS, 0) {}
    Body(Body &o, tbb::split) : frames(o.frames), sum(W4_PIXELS, 0.0f), hist(W4_BINS, 0) {}

    void operator()(const tbb::blocked_range<size_t> &r)
    {
        for (size_t i = r.begin(); i != r.end(); ++i)
            w4_frame(frames + i * W4_PIXELS, sum.data(), hist.data());
    }

    void join(const Body &o)
    {
        w4_add_rows(sum.data(), hist.data(), o.sum.data(), o.hist.data());
    }
};

}  // namespace

extern "C" void w4_tbb(const float *frames, size_t n, float *sum, int64_t *hist, int workers, int static_part)
{
    static tbb::task_arena *arena = nullptr;
    static int arena_workers = 0;
    if (!arena || arena_workers != workers) {
        delete arena;
        arena = new tbb::task_arena(workers);
        arena_workers = workers;
    }
    Body body(frames);
    arena->execute([&] {
        if (static_part)
            tbb::parallel_reduce(tbb::blocked_range<size_t>(0, n), body, tbb::static_partitioner());
        else
            tbb::parallel_reduce(tbb::blocked_range<size_t>(0, n), body);
    });
    std::memcpy(sum, body.sum.data(), sizeof(float) * W4_PIXELS);
    std::memcpy(hist, body.hist.data(), sizeof(int64_t) * W4_BINS);
}
