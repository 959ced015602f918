/* The calibration workload's kernels, shared by the MPI benchmarks:
 * out = (raw - offset) * gain per 512x128 float32 frame, and a kernel that
 * makes the synthetic raw frames. */
#ifndef PASHA_BENCH_MPI_CALIB_KERNELS_H
#define PASHA_BENCH_MPI_CALIB_KERNELS_H

#include <stddef.h>

enum { PIXELS = 512 * 128 };

struct calib {
    const float *raw, *offset, *gain;
    float *out;
};

static int calibrate(void *ud, int worker, size_t i, const void *value)
{
    struct calib *c = ud;
    (void)worker;
    (void)value;
    const float *raw = c->raw + i * PIXELS;
    float *out = c->out + i * PIXELS;
    for (size_t p = 0; p < PIXELS; ++p) out[p] = (raw[p] - c->offset[p]) * c->gain[p];
    return 0;
}

static int make_frame(void *ud, int worker, size_t i, const void *value)
{
    struct calib *c = ud;
    (void)worker;
    (void)value;
    float *raw = (float *)c->raw + i * PIXELS;
    for (size_t p = 0; p < PIXELS; ++p) raw[p] = (float)((i * 31 + p) % 4096);
    return 0;
}

#endif
