/* The reduction workload (f) of bench.c, shared by its OpenMP, libpasha and
 * oneTBB variants: per frame of 512x128 float32, add the frame into a sum
 * frame and count its pixels into a 64-bin histogram of [0, 4096). */
#ifndef BENCH_W4_H
#define BENCH_W4_H

#include <stddef.h>
#include <stdint.h>

#define W4_PIXELS (512 * 128)
#define W4_BINS 64

static inline void w4_frame(const float *__restrict frame, float *__restrict sum, int64_t *__restrict hist)
{
    for (size_t p = 0; p < W4_PIXELS; ++p) {
        float v = frame[p];
        sum[p] += v;
        int b = (int)(v * (W4_BINS / 4096.0f));
        b = b < 0 ? 0 : b >= W4_BINS ? W4_BINS - 1 : b;
        hist[b] += 1;
    }
}

/* sum += other_sum, hist += other_hist */
static inline void w4_add_rows(float *__restrict sum, int64_t *__restrict hist, const float *__restrict osum,
                               const int64_t *__restrict ohist)
{
    for (size_t p = 0; p < W4_PIXELS; ++p) sum[p] += osum[p];
    for (size_t b = 0; b < W4_BINS; ++b) hist[b] += ohist[b];
}

#endif
