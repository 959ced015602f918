/* The calibration workload over MPI: F frames of 512x128 float32,
 * out = (raw - offset) * gain, one frame per item, timed as a psh_map on
 * an MPI context (R ranks x T threads each; the time of a round is the
 * slowest rank's, between two barriers) and, on rank 0 alone when R == 1,
 * on a plain threads context of T threads for reference.
 *
 *   mpirun -n R ./bench-mpi [--frames 1000] [--rounds 7] [--threads T]
 *
 * Prints one line per configuration: the median, min and max of the
 * rounds in milliseconds. Timing is reported, never asserted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pasha/pasha_mpi.h"

#include "bench_mpi.h"



/* Time `rounds` maps of the workload on ctx; comm synchronises the ranks
 * (MPI_COMM_SELF for a local context). Results in ms, sorted. */
static void run(psh_context *ctx, MPI_Comm comm, size_t frames, int rounds, double *ms, const float *off,
                const float *gn)
{
    size_t shape[3] = {frames, 512, 128};
    psh_array *raw, *out;
    TRY(psh_alloc(&raw, ctx, PSH_FLOAT32, 3, shape, NULL));
    TRY(psh_alloc(&out, ctx, PSH_FLOAT32, 3, shape, NULL));
    struct calib c = {psh_array_data(raw), off, gn, psh_array_data(out)};
    psh_functor *f;
    TRY(psh_functor_range(&f, frames));
    TRY(psh_map(ctx, make_frame, &c, f));
    TRY(psh_map(ctx, calibrate, &c, f)); /* warm-up: pages touched */
    for (int r = 0; r < rounds; ++r) {
        MPI_Barrier(comm);
        double t0 = now();
        TRY(psh_map(ctx, calibrate, &c, f));
        double t = now() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm);
        ms[r] = 1e3 * t;
    }
    qsort(ms, (size_t)rounds, sizeof *ms, cmp);
    /* a spot check that the work was done */
    size_t i = frames - 1, p = PIXELS - 1;
    float want = ((float)((i * 31 + p) % 4096) - off[p]) * gn[p];
    int rank;
    MPI_Comm_rank(comm, &rank);
    if (psh_context_kind(ctx) != PSH_MPI || rank == psh_mpi_size(ctx) - 1)
        if (c.out[i * PIXELS + p] != want) {
            fprintf(stderr, "wrong result\n");
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    psh_functor_destroy(f);
    psh_array_free(out);
    psh_array_free(raw);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    size_t frames = 1000;
    int rounds = 7, threads = 0;
    if (parse_args(argc, argv, "bench-mpi", rank, &frames, &rounds, &threads)) {
        MPI_Finalize();
        return 2;
    }
    float *off, *gn;
    make_constants(&off, &gn);
    double *ms = malloc((size_t)rounds * sizeof *ms);
    psh_context *ctx;
    TRY(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, threads));
    int T = psh_context_num_workers(ctx) / size;
    run(ctx, MPI_COMM_WORLD, frames, rounds, ms, off, gn);
    if (rank == 0)
        printf("mpi %d rank(s) x %d thread(s), %zu frames: median %.2f ms (min %.2f, max %.2f, %d rounds)\n",
               size, T, frames, ms[rounds / 2], ms[0], ms[rounds - 1], rounds);
    psh_context_destroy(ctx);
    if (size == 1) {
        psh_context *local;
        TRY(psh_context_create(&local, PSH_THREADS, T));
        run(local, MPI_COMM_SELF, frames, rounds, ms, off, gn);
        printf("threads %d (no MPI context), %zu frames: median %.2f ms (min %.2f, max %.2f, %d rounds)\n", T,
               frames, ms[rounds / 2], ms[0], ms[rounds - 1], rounds);
        psh_context_destroy(local);
    }
    free(ms);
    free(gn);
    free(off);
    MPI_Finalize();
    return 0;
}
