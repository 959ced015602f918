/* What the MPI benchmarks share: the calibration workload's kernels
 * (out = (raw - offset) * gain per 512x128 float32 frame, and a kernel that
 * makes the synthetic raw frames), its offset and gain constants, the
 * command line (--frames, --rounds, --threads), a clock and TRY. */
#ifndef PASHA_BENCH_MPI_H
#define PASHA_BENCH_MPI_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pasha/pasha_mpi.h"

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

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define TRY(call)                                                                       \
    do {                                                                                \
        int rc_ = (call);                                                               \
        if (rc_) {                                                                      \
            fprintf(stderr, "%s: %s\n", psh_strerror(rc_), psh_last_error());           \
            MPI_Abort(MPI_COMM_WORLD, 1);                                               \
        }                                                                               \
    } while (0)

/* Read --frames, --rounds and --threads over the defaults given; 0, or 2
 * after rank 0 printed the usage of prog. */
static int parse_args(int argc, char **argv, const char *prog, int rank, size_t *frames, int *rounds, int *threads)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--frames")) *frames = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--rounds")) *rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) *threads = atoi(argv[i + 1]);
    }
    if (*frames >= 1 && *rounds >= 1 && *rounds <= 1000) return 0;
    if (rank == 0) fprintf(stderr, "usage: %s [--frames N>=1] [--rounds 1..1000] [--threads T]\n", prog);
    return 2;
}

/* The calibration's offset and gain frames (malloc'd; free them). */
static void make_constants(float **off, float **gn)
{
    *off = malloc(PIXELS * sizeof **off);
    *gn = malloc(PIXELS * sizeof **gn);
    for (size_t p = 0; p < PIXELS; ++p) {
        (*off)[p] = (float)(p % 17);
        (*gn)[p] = 1.0f + 0.25f * (float)(p % 5);
    }
}

#endif
