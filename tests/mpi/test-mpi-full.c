/* Shared windows that do not fit: run by test-mpi-full.sh with Open MPI's
 * window files on a 16 MiB tmpfs. A 64 MiB psh_alloc must fail with
 * PSH_ENOMEM on every rank (no hang, no SIGBUS), and a 1 MiB one must then
 * work: a map writes it, the root checks it.
 * With the argument "split" only the second half of the ranks (a "node" of
 * their own, PASHA_MPI_NODE_SIZE) has the small tmpfs: the first node makes
 * its window, and must free it again when the second node fails, every
 * rank returning the second node's error. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pasha/pasha_mpi.h"

static int rank;

#define CHECK(cond)                                                                                  \
    do {                                                                                             \
        if (!(cond)) {                                                                               \
            fprintf(stderr, "rank %d: %s:%d: check failed: %s (last error: %s)\n", rank, __FILE__, \
                    __LINE__, #cond, psh_last_error());                                              \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                            \
        }                                                                                            \
    } while (0)

/* The VmSize of this process in KiB. */
static long vm_kib(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "VmSize: %ld kB", &kib) == 1) break;
    if (fp) fclose(fp);
    return kib;
}

static int square(void *ud, int worker, size_t i, const void *value)
{
    (void)worker;
    (void)value;
    ((uint32_t *)ud)[i] = (uint32_t)(i * i);
    return 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int nranks, split = argc > 1 && strcmp(argv[1], "split") == 0;
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    psh_context *ctx;
    CHECK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_PROCESSES, 2) == PSH_OK);
    size_t big = (size_t)64 << 20, small = (size_t)1 << 18;
    psh_array *a = NULL;
    long before = vm_kib();
    CHECK(psh_alloc(&a, ctx, PSH_UINT8, 1, &big, NULL) == PSH_ENOMEM);
    CHECK(a == NULL);
    CHECK(strstr(psh_last_error(), "do not fit") != NULL);
    if (split) {
        /* the lowest rank of the second node failed; the first node's
         * window (its ranks would see 64 MiB more) is gone again */
        char want[32];
        snprintf(want, sizeof want, "rank %d: ", nranks / 2);
        CHECK(strstr(psh_last_error(), want) != NULL);
        CHECK(vm_kib() - before < 32 * 1024);
    }
    CHECK(psh_alloc(&a, ctx, PSH_UINT32, 1, &small, NULL) == PSH_OK);
    psh_functor *f;
    CHECK(psh_functor_range(&f, small) == PSH_OK);
    CHECK(psh_map(ctx, square, psh_array_data(a), f) == PSH_OK);
    CHECK(psh_mpi_gather(ctx, a, 0) == PSH_OK);
    if (rank == 0) {
        const uint32_t *v = psh_array_data(a);
        for (size_t i = 0; i < small; ++i) CHECK(v[i] == (uint32_t)(i * i));
        printf("test-mpi-full: ok\n");
    }
    psh_functor_destroy(f);
    psh_array_free(a);
    psh_context_destroy(ctx);
    MPI_Finalize();
    return 0;
}
