/* Calibrate detector frames over MPI ranks: out = (raw - offset) * gain,
 * one frame per item, the frames split over the ranks and, in each rank,
 * over its threads. The arrays live in one shared buffer per node; a
 * gather brings every frame to rank 0, a reduce sums per-worker totals.
 *
 *   mpirun -n 2 ./example-mpi [frames]
 */
#include <stdio.h>
#include <stdlib.h>

#include "pasha/pasha_mpi.h"

enum { ROWS = 512, COLS = 128, PIXELS = ROWS * COLS };

struct calib {
    const float *raw, *offset, *gain;
    float *out;
    double *total; /* per worker */
};

/* Stands in for reading frame i from a file: every rank makes its own. */
static int make_frame(void *ud, int worker, size_t i, const void *value)
{
    struct calib *c = ud;
    (void)worker;
    (void)value;
    float *raw = (float *)c->raw + i * PIXELS;
    for (size_t p = 0; p < PIXELS; ++p) raw[p] = (float)((i + p) % 1000);
    return 0;
}

static int calibrate(void *ud, int worker, size_t i, const void *value)
{
    struct calib *c = ud;
    const psh_view *frame = value; /* frame i of raw: ROWS x COLS */
    const float *raw = frame->data;
    float *out = c->out + i * PIXELS;
    double sum = 0;
    for (size_t p = 0; p < PIXELS; ++p) {
        out[p] = (raw[p] - c->offset[p]) * c->gain[p];
        sum += out[p];
    }
    c->total[worker] += sum;
    return 0;
}

#define TRY(call)                                                                       \
    do {                                                                                \
        int rc_ = (call);                                                               \
        if (rc_) {                                                                      \
            fprintf(stderr, "%s: %s\n", psh_strerror(rc_), psh_last_error());           \
            MPI_Abort(MPI_COMM_WORLD, 1);                                               \
        }                                                                               \
    } while (0)

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    size_t frames = argc > 1 ? strtoul(argv[1], NULL, 10) : 100;

    psh_context *ctx;
    TRY(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, 0));

    size_t shape[3] = {frames, ROWS, COLS};
    psh_array *raw, *out, *total;
    TRY(psh_alloc(&raw, ctx, PSH_FLOAT32, 3, shape, NULL));
    TRY(psh_alloc(&out, ctx, PSH_FLOAT32, 3, shape, NULL));
    psh_alloc_options o;
    psh_alloc_options_init(&o);
    o.per_worker = 1;
    TRY(psh_alloc(&total, ctx, PSH_FLOAT64, 0, NULL, &o));

    /* constants: small, every rank makes its own (threads see them) */
    float *off = malloc(PIXELS * sizeof *off), *gn = malloc(PIXELS * sizeof *gn);
    for (size_t p = 0; p < PIXELS; ++p) {
        off[p] = (float)(p % 7);
        gn[p] = 1.0f + 0.5f * (float)(p % 3);
    }
    struct calib c = {psh_array_data(raw), off, gn, psh_array_data(out), psh_array_data(total)};

    psh_functor *range, *by_frame;
    TRY(psh_functor_range(&range, frames));
    TRY(psh_map(ctx, make_frame, &c, range));
    TRY(psh_functor_array(&by_frame, raw, 0));
    TRY(psh_map(ctx, calibrate, &c, by_frame));

    TRY(psh_mpi_gather(ctx, out, 0));
    TRY(psh_mpi_reduce(ctx, total, PSH_OP_SUM, 0));
    if (rank == 0) {
        double expect = 0, got = 0, check = 0;
        const float *res = c.out;
        for (size_t i = 0; i < frames; ++i)
            for (size_t p = 0; p < PIXELS; ++p) {
                double v = ((double)((i + p) % 1000) - (double)(p % 7)) * (1.0 + 0.5 * (double)(p % 3));
                expect += v;
                check += res[i * PIXELS + p];
            }
        for (int w = 0; w < psh_context_num_workers(ctx); ++w) got += c.total[w];
        printf("%zu frames on %d workers: sum %.1f (gathered %.1f, expected %.1f)\n", frames,
               psh_context_num_workers(ctx), got, check, expect);
        if (got != expect || check != expect) {
            fprintf(stderr, "mismatch\n");
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    psh_functor_destroy(by_frame);
    psh_functor_destroy(range);
    psh_array_free(total);
    free(gn);
    free(off);
    psh_array_free(out);
    psh_array_free(raw);
    psh_context_destroy(ctx);
    MPI_Finalize();
    return 0;
}
