/* What "no rank may hang the others" costs. Two comparisons, each with its
 * reference in the same run, rounds interleaved (A, B, A, B, ...):
 *  - the calibration workload of bench-mpi (F frames of 512x128 float32,
 *    out = (raw - offset) * gain) mapped with no cancel flag (A) and with
 *    a cancel flag that is never set, given on rank 0 only (B): with a
 *    flag, each rank runs its block in up to 16 parts and looks for stop
 *    messages between them;
 *  - near-empty maps (one item per rank, a trivial kernel), which cost
 *    about the entry agreement plus the closing one: no flag (A) and a
 *    flag (B).
 * The time of a round is the slowest rank's, between two barriers.
 *
 *   mpirun -n R ./bench-mpi-cancel [--frames 200] [--rounds 9] [--threads T]
 *
 * Prints the medians and the ratio B / A. Timing is reported, never
 * asserted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pasha/pasha_mpi.h"

#include "bench_mpi.h"

enum { TINY = 200 };

static int nothing(void *ud, int worker, size_t i, const void *value)
{
    (void)worker;
    (void)value;
    ((volatile size_t *)ud)[0] += i;
    return 0;
}


static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return v[n / 2];
}

/* One timed call of fn over all ranks: the slowest rank's seconds. */
static double timed(psh_context *ctx, psh_kernel k, void *ud, psh_functor *f, const psh_map_options *o, int times)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now();
    for (int i = 0; i < times; ++i) TRY(psh_map_ext(ctx, k, ud, f, o));
    double t = now() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return t;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    size_t frames = 200;
    int rounds = 9, threads = 0;
    if (parse_args(argc, argv, "bench-mpi-cancel", rank, &frames, &rounds, &threads)) {
        MPI_Finalize();
        return 2;
    }
    float *off, *gn;
    make_constants(&off, &gn);
    psh_context *ctx;
    TRY(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, threads));
    int T = psh_context_num_workers(ctx) / size;
    size_t shape[3] = {frames, 512, 128};
    psh_array *raw, *out;
    TRY(psh_alloc(&raw, ctx, PSH_FLOAT32, 3, shape, NULL));
    TRY(psh_alloc(&out, ctx, PSH_FLOAT32, 3, shape, NULL));
    struct calib c = {psh_array_data(raw), off, gn, psh_array_data(out)};
    psh_functor *f, *tiny;
    TRY(psh_functor_range(&f, frames));
    TRY(psh_functor_range(&tiny, (size_t)size));
    TRY(psh_map(ctx, make_frame, &c, f));
    TRY(psh_map(ctx, calibrate, &c, f)); /* warm-up: pages touched */

    volatile int never = 0;
    psh_map_options plain, flagged;
    psh_map_options_init(&plain);
    psh_map_options_init(&flagged);
    if (rank == 0) flagged.cancel = &never;
    double *a = malloc((size_t)rounds * sizeof *a), *b = malloc((size_t)rounds * sizeof *b);
    double *ta = malloc((size_t)rounds * sizeof *ta), *tb = malloc((size_t)rounds * sizeof *tb);
    size_t sink = 0;
    for (int r = 0; r < rounds; ++r) {
        a[r] = 1e3 * timed(ctx, calibrate, &c, f, &plain, 1);
        b[r] = 1e3 * timed(ctx, calibrate, &c, f, &flagged, 1);
        ta[r] = 1e6 * timed(ctx, nothing, &sink, tiny, &plain, TINY) / TINY;
        tb[r] = 1e6 * timed(ctx, nothing, &sink, tiny, &flagged, TINY) / TINY;
    }
    /* a spot check that the work was done, on the rank of the last frame */
    size_t i = frames - 1, p = PIXELS - 1;
    float want = ((float)((i * 31 + p) % 4096) - off[p]) * gn[p];
    if (rank == size - 1 && c.out[i * PIXELS + p] != want) {
        fprintf(stderr, "wrong result\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (rank == 0) {
        double ma = median(a, rounds), mb = median(b, rounds), mta = median(ta, rounds), mtb = median(tb, rounds);
        printf("%d rank(s) x %d thread(s), %zu frames, %d rounds: calibration map %.2f ms, with a cancel flag "
               "%.2f ms (x%.3f); near-empty map %.1f us, with a cancel flag %.1f us (x%.3f)\n",
               size, T, frames, rounds, ma, mb, mb / ma, mta, mtb, mtb / mta);
    }
    free(a);
    free(b);
    free(ta);
    free(tb);
    psh_functor_destroy(tiny);
    psh_functor_destroy(f);
    psh_array_free(out);
    psh_array_free(raw);
    psh_context_destroy(ctx);
    free(gn);
    free(off);
    MPI_Finalize();
    return 0;
}
