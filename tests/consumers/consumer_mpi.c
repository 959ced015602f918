/* An outside MPI program of an installed libpasha_mpi (pkg-config pasha-mpi
 * or CMake pasha::pasha_mpi): square 0..n-1 over the ranks of
 * MPI_COMM_WORLD (threads in each rank), allgather, and check the sum on
 * every rank. Rank 0 prints it; exit status 1 on any mismatch. */
#include <pasha/pasha_mpi.h>
#include <stdio.h>

static int square(void *user_data, int worker_id, size_t index, const void *value)
{
    (void)worker_id;
    (void)value;
    ((double *)psh_array_data(user_data))[index] = (double)index * (double)index;
    return 0;
}

int main(int argc, char **argv)
{
    const size_t n = 1000;
    const double want = (double)(n - 1) * n * (2 * n - 1) / 6; /* 332833500 */
    psh_context *ctx = NULL;
    psh_array *a = NULL;
    psh_functor *f = NULL;
    double sum = 0;
    int ok, all_ok;
    MPI_Init(&argc, &argv);
    int rc = psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, 2);
    if (rc == PSH_OK) rc = psh_alloc(&a, ctx, PSH_FLOAT64, 1, &n, NULL);
    if (rc == PSH_OK) rc = psh_functor_range(&f, n);
    if (rc == PSH_OK) rc = psh_map(ctx, square, a, f);
    if (rc == PSH_OK) rc = psh_mpi_allgather(ctx, a);
    if (rc == PSH_OK)
        for (size_t i = 0; i < n; ++i) sum += ((const double *)psh_array_data(a))[i];
    else
        printf("%s (%s)\n", psh_strerror(rc), psh_last_error());
    ok = rc == PSH_OK && sum == want;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    if (psh_mpi_rank(ctx) == 0)
        printf("mpi: %d ranks, sum %.0f, every rank %s\n", psh_mpi_size(ctx), sum, all_ok ? "agrees" : "DISAGREES");
    psh_functor_destroy(f);
    psh_array_free(a);
    psh_context_destroy(ctx);
    MPI_Finalize();
    return all_ok ? 0 : 1;
}
