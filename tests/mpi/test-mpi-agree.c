/* No rank may hang the others: a call on an MPI context that fails its
 * local checks on ONE rank (a cancel flag already set, bad map options, bad
 * arguments, a failed allocation, a different call) must return the same
 * error on EVERY rank, and the context must work afterwards. Run under
 * mpirun with 1, 2 and 4 ranks (see meson.build); every rank arms
 * alarm(), so a rank that hangs is killed and the job fails instead of
 * waiting for meson's timeout. A failed check aborts the whole job. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "pasha/pasha_mpi.h"

static int rank, nranks;

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "rank %d: %s:%d: check failed: %s (last error: %s)\n", rank, __FILE__, \
                    __LINE__, #cond, psh_last_error());                                          \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                        \
        }                                                                                        \
    } while (0)

#define CHECK_OK(call) CHECK((call) == PSH_OK)

/* psh_last_error() names the failing rank and says why. */
static void check_error_from(int from, const char *why)
{
    char want[32];
    snprintf(want, sizeof want, "rank %d: ", from);
    CHECK(strstr(psh_last_error(), want) != NULL);
    CHECK(strstr(psh_last_error(), why) != NULL);
}

static int last(void) { return nranks - 1; }

/* The kernel of the maps that must work: out[i] = i * i + 7. */
static int square_kernel(void *ud, int worker, size_t i, const void *value)
{
    (void)worker;
    (void)value;
    ((int64_t *)ud)[i] = (int64_t)(i * i) + 7;
    return 0;
}

static int block_kernel(void *ud, int worker, size_t b, size_t e)
{
    for (size_t i = b; i < e; ++i) square_kernel(ud, worker, i, NULL);
    return 0;
}

/* After a failed call: a map, a gather and a reduce still work and give
 * the right values, so no rank was left behind in a collective. */
static void check_still_works(psh_context *ctx)
{
    const size_t n = 1001;
    psh_array *out;
    CHECK_OK(psh_alloc(&out, ctx, PSH_INT64, 1, &n, NULL));
    psh_functor *f;
    CHECK_OK(psh_functor_range(&f, n));
    CHECK_OK(psh_map(ctx, square_kernel, psh_array_data(out), f));
    CHECK_OK(psh_mpi_allgather(ctx, out));
    const int64_t *v = psh_array_data(out);
    for (size_t i = 0; i < n; ++i) CHECK(v[i] == (int64_t)(i * i) + 7);
    psh_array *one;
    const size_t one_n = 3;
    psh_context *local;
    CHECK_OK(psh_context_create(&local, PSH_SERIAL, 1));
    CHECK_OK(psh_alloc(&one, local, PSH_INT64, 1, &one_n, NULL));
    int64_t *o = psh_array_data(one);
    for (size_t j = 0; j < one_n; ++j) o[j] = rank + (int64_t)j;
    CHECK_OK(psh_mpi_reduce(ctx, one, PSH_OP_SUM, 0));
    if (rank == 0)
        for (size_t j = 0; j < one_n; ++j) CHECK(o[j] == (int64_t)nranks * (nranks - 1) / 2 + (int64_t)nranks * (int64_t)j);
    psh_array_free(one);
    psh_context_destroy(local);
    psh_functor_destroy(f);
    psh_array_free(out);
}

/* A cancel flag already set on the last rank only: PSH_ECANCELED on all. */
static void test_cancel_before(psh_context *ctx)
{
    const size_t n = 500;
    psh_array *out;
    CHECK_OK(psh_alloc(&out, ctx, PSH_INT64, 1, &n, NULL));
    psh_functor *f;
    CHECK_OK(psh_functor_range(&f, n));
    volatile int flag = 1;
    psh_map_options o;
    psh_map_options_init(&o);
    if (rank == last()) o.cancel = &flag;
    CHECK(psh_map_ext(ctx, square_kernel, psh_array_data(out), f, &o) == PSH_ECANCELED);
    check_error_from(last(), "cancelled");
    /* the same with psh_map_blocks_ext */
    CHECK(psh_map_blocks_ext(ctx, block_kernel, psh_array_data(out), n, &o) == PSH_ECANCELED);
    check_error_from(last(), "cancelled");
    psh_functor_destroy(f);
    psh_array_free(out);
    check_still_works(ctx);
}

/* Bad map options or arguments on one rank: PSH_EINVAL on all. */
static void test_bad_map_args(psh_context *ctx)
{
    const size_t n = 300;
    psh_array *out;
    CHECK_OK(psh_alloc(&out, ctx, PSH_INT64, 1, &n, NULL));
    psh_functor *f;
    CHECK_OK(psh_functor_range(&f, n));
    psh_map_options o;
    psh_map_options_init(&o);
    if (rank == 0) o.schedule = (psh_schedule)99;
    CHECK(psh_map_ext(ctx, square_kernel, psh_array_data(out), f, &o) == PSH_EINVAL);
    check_error_from(0, "unknown schedule 99");
    psh_map_options_init(&o);
    if (rank == last()) o.struct_size = 0;
    CHECK(psh_map_ext(ctx, square_kernel, psh_array_data(out), f, &o) == PSH_EINVAL);
    check_error_from(last(), "struct_size");
    psh_map_options_init(&o);
    if (rank == last()) o.user_data_size = (size_t)1 << 20;
    CHECK(psh_map_ext(ctx, square_kernel, psh_array_data(out), f, &o) == PSH_EINVAL);
    check_error_from(last(), "user_data_size");
    CHECK(psh_map(ctx, rank == last() ? NULL : square_kernel, psh_array_data(out), f) == PSH_EINVAL);
    check_error_from(last(), "kernel is NULL");
    CHECK(psh_map(ctx, square_kernel, psh_array_data(out), rank == 0 ? NULL : f) == PSH_EINVAL);
    check_error_from(0, "functor is NULL");
    CHECK(psh_map_blocks(ctx, rank == last() ? NULL : block_kernel, psh_array_data(out), n) == PSH_EINVAL);
    check_error_from(last(), "kernel is NULL");
    /* two failing ranks: the lowest one's error everywhere */
    CHECK(psh_map(ctx, rank == 0 ? NULL : square_kernel, psh_array_data(out), rank == last() ? NULL : f) ==
          PSH_EINVAL);
    check_error_from(0, "kernel is NULL");
    psh_functor_destroy(f);
    psh_array_free(out);
    check_still_works(ctx);
}

/* Bad psh_alloc arguments, or sizes that differ, on one rank. */
static void test_bad_alloc_args(psh_context *ctx)
{
    const size_t n = 100;
    psh_array *a = (psh_array *)&a; /* must become NULL */
    CHECK(psh_alloc(&a, ctx, PSH_INT64, rank == last() ? -1 : 1, &n, NULL) == PSH_EINVAL);
    check_error_from(last(), "ndim -1");
    CHECK(psh_alloc(rank == 0 ? NULL : &a, ctx, PSH_INT64, 1, &n, NULL) == PSH_EINVAL);
    check_error_from(0, "out is NULL");
    psh_alloc_options ao;
    psh_alloc_options_init(&ao);
    if (rank == last()) ao.struct_size = 1;
    CHECK(psh_alloc(&a, ctx, PSH_INT64, 1, &n, &ao) == PSH_EINVAL);
    check_error_from(last(), "struct_size");
    CHECK(psh_alloc(&a, ctx, rank == last() ? (psh_dtype)77 : PSH_INT64, 1, &n, NULL) == PSH_EINVAL);
    check_error_from(last(), "dtype");
    psh_array *like;
    CHECK_OK(psh_alloc(&like, ctx, PSH_INT64, 1, &n, NULL));
    CHECK(psh_alloc_like(&a, ctx, rank == last() ? NULL : like, NULL) == PSH_EINVAL);
    check_error_from(last(), "like is NULL");
    if (nranks > 1) {
        const size_t m = rank == 0 ? n + 1 : n;
        CHECK(psh_alloc(&a, ctx, PSH_INT64, 1, &m, NULL) == PSH_EINVAL);
        CHECK(strstr(psh_last_error(), "disagree on the array's size") != NULL);
    }
    CHECK(a == (psh_array *)&a || a == NULL);
    psh_array_free(like);
    check_still_works(ctx);
}

/* Bad gather/reduce arguments on one rank, and ranks making different
 * calls. */
static void test_bad_collectives(psh_context *ctx)
{
    const size_t n = 64;
    psh_array *a;
    CHECK_OK(psh_alloc(&a, ctx, PSH_INT64, 1, &n, NULL));
    CHECK(psh_mpi_gather(ctx, rank == last() ? NULL : a, 0) == PSH_EINVAL);
    check_error_from(last(), "array is NULL");
    CHECK(psh_mpi_allgather(ctx, rank == 0 ? NULL : a) == PSH_EINVAL);
    check_error_from(0, "array is NULL");
    CHECK(psh_mpi_reduce(ctx, rank == last() ? NULL : a, PSH_OP_SUM, 0) == PSH_EINVAL);
    check_error_from(last(), "array is NULL");
    if (nranks > 1) {
        /* a different op on rank 0: no rank reduces */
        CHECK(psh_mpi_reduce(ctx, a, rank == 0 ? PSH_OP_MIN : PSH_OP_MAX, 0) == PSH_EINVAL);
        CHECK(strstr(psh_last_error(), "disagree") != NULL);
        /* rank 0 maps while the others gather */
        psh_functor *f;
        CHECK_OK(psh_functor_range(&f, n));
        int rc = rank == 0 ? psh_map(ctx, square_kernel, psh_array_data(a), f) : psh_mpi_gather(ctx, a, 0);
        CHECK(rc == PSH_EINVAL);
        CHECK(strstr(psh_last_error(), "different calls") != NULL);
        /* rank 0 allocates while the others map */
        psh_array *b = NULL;
        rc = rank == 0 ? psh_alloc(&b, ctx, PSH_INT64, 1, &n, NULL) : psh_map(ctx, square_kernel, psh_array_data(a), f);
        CHECK(rc == PSH_EINVAL);
        CHECK(b == NULL);
        CHECK(strstr(psh_last_error(), "different calls") != NULL);
        /* rank 0 passes bad map options while the others gather: its error */
        psh_map_options o;
        psh_map_options_init(&o);
        o.schedule = (psh_schedule)42;
        rc = rank == 0 ? psh_map_ext(ctx, square_kernel, psh_array_data(a), f, &o) : psh_mpi_gather(ctx, a, 0);
        CHECK(rc == PSH_EINVAL);
        check_error_from(0, "unknown schedule 42");
        psh_functor_destroy(f);
    }
    psh_array_free(a);
    check_still_works(ctx);
}

/* A cancel (or a kernel error) during the map on rank 0 stops every rank
 * early: the others' kernels take 1 ms an item, their blocks 1.6 s on two
 * threads, and they look for rank 0's stop message between the 16 parts
 * of their blocks. */
struct cancel_args {
    int64_t *out;
    volatile int *flag; /* set at the first item, or */
    int fail;           /* return 42 at the first item */
    int slow;           /* 1 ms an item */
    long done;          /* items this rank's kernels ran */
};

static int cancel_kernel(void *ud, int worker, size_t i, const void *value)
{
    struct cancel_args *c = ud;
    (void)worker;
    (void)value;
    if (c->flag) __atomic_store_n(c->flag, 1, __ATOMIC_RELAXED);
    if (c->fail) return 42;
    if (c->slow) usleep(1000);
    __atomic_fetch_add(&c->done, 1, __ATOMIC_RELAXED);
    c->out[i] = (int64_t)i;
    return 0;
}

static void test_cancel_during(psh_context *ctx)
{
    const size_t per_rank = 3200, n = per_rank * (size_t)nranks;
    psh_array *out;
    CHECK_OK(psh_alloc(&out, ctx, PSH_INT64, 1, &n, NULL));
    psh_functor *f;
    CHECK_OK(psh_functor_range(&f, n));
    volatile int flag = 0, never = 0;
    struct cancel_args c = {psh_array_data(out), rank == 0 ? &flag : NULL, 0, rank != 0, 0};
    psh_map_options o;
    psh_map_options_init(&o);
    if (rank == 0) o.cancel = &flag; /* only rank 0 has a flag */
    CHECK(psh_map_ext(ctx, cancel_kernel, &c, f, &o) == PSH_ECANCELED);
    check_error_from(0, "cancelled");
    CHECK(c.done < (long)per_rank / 2);
    /* a kernel error on rank 0, a flag (never set) on rank 0 only */
    c.flag = NULL;
    c.fail = rank == 0;
    c.done = 0;
    if (rank == 0) o.cancel = &never;
    CHECK(psh_map_ext(ctx, cancel_kernel, &c, f, &o) == PSH_EKERNEL);
    check_error_from(0, "returned 42");
    CHECK(c.done < (long)per_rank / 2);
    /* no flag anywhere: the whole map runs */
    c.fail = 0;
    c.slow = 0;
    c.done = 0;
    CHECK_OK(psh_map(ctx, cancel_kernel, &c, f));
    CHECK(c.done == (long)per_rank);
    CHECK_OK(psh_mpi_allgather(ctx, out));
    const int64_t *v = psh_array_data(out);
    for (size_t i = 0; i < n; ++i) CHECK(v[i] == (int64_t)i);
    /* a flag (never set) on the last rank only: the map runs in parts and
     * still covers every index once */
    MPI_Barrier(MPI_COMM_WORLD); /* every rank has read the node's buffer */
    memset(psh_array_data(out), 0, n * sizeof(int64_t));
    MPI_Barrier(MPI_COMM_WORLD);
    c.done = 0;
    psh_map_options_init(&o);
    if (rank == last()) o.cancel = &never;
    CHECK_OK(psh_map_ext(ctx, cancel_kernel, &c, f, &o));
    CHECK(c.done == (long)per_rank);
    CHECK_OK(psh_mpi_allgather(ctx, out));
    for (size_t i = 0; i < n; ++i) CHECK(v[i] == (int64_t)i);
    psh_functor_destroy(f);
    psh_array_free(out);
}

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

/* Every rank alone on its "node" (PASHA_MPI_NODE_SIZE=1, or one rank):
 * the last rank cannot make its 64 MiB buffer (a file size limit), so
 * every rank gets its error and the others free the buffers they made. */
static void test_alloc_fails_on_one_rank(psh_context *ctx)
{
    const size_t big = (size_t)64 << 20;
    long before = vm_kib();
    if (rank == last()) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {(rlim_t)1 << 20, (rlim_t)RLIM_INFINITY};
        getrlimit(RLIMIT_FSIZE, &rl);
        struct rlimit small = {(rlim_t)1 << 20, rl.rlim_max};
        CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
        psh_array *a = NULL;
        int rc = psh_alloc(&a, ctx, PSH_UINT8, 1, &big, NULL);
        CHECK(rc != PSH_OK && a == NULL);
        check_error_from(last(), "");
        CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
        MPI_Bcast(&rc, 1, MPI_INT, last(), MPI_COMM_WORLD);
    } else {
        psh_array *a = NULL;
        int rc = psh_alloc(&a, ctx, PSH_UINT8, 1, &big, NULL), rc_last;
        MPI_Bcast(&rc_last, 1, MPI_INT, last(), MPI_COMM_WORLD);
        CHECK(rc == rc_last && a == NULL);
        check_error_from(last(), "");
        /* the buffer this rank made is gone again */
        long after = vm_kib();
        CHECK(after - before < 32 * 1024);
    }
    check_still_works(ctx);
}

/* A malformed PASHA_MPI_NODE_SIZE, on the last rank only or on every
 * rank, is PSH_EINVAL naming it on every rank (no rank hangs in the
 * creation's collectives). */
static void test_bad_node_size(void)
{
    const char *old = getenv("PASHA_MPI_NODE_SIZE");
    char saved[64];
    snprintf(saved, sizeof saved, "%s", old ? old : "");
    const char *bad[] = {"abc", "-1", "2x", "99999999999"};
    for (int k = 0; k < 4; ++k) {
        int only_last = k % 2 == 0;
        if (!only_last || rank == last()) setenv("PASHA_MPI_NODE_SIZE", bad[k], 1);
        psh_context *ctx = NULL;
        int rc = psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, 1);
        CHECK(rc == PSH_EINVAL && ctx == NULL);
        check_error_from(only_last ? last() : 0, "PASHA_MPI_NODE_SIZE");
        char quoted[80];
        snprintf(quoted, sizeof quoted, "'%s'", bad[k]);
        CHECK(strstr(psh_last_error(), quoted) != NULL);
        if (old) setenv("PASHA_MPI_NODE_SIZE", saved, 1);
        else unsetenv("PASHA_MPI_NODE_SIZE");
    }
    /* valid values that differ between the ranks: refused on every rank */
    if (nranks > 1) {
        if (rank == last()) setenv("PASHA_MPI_NODE_SIZE", "3", 1);
        else setenv("PASHA_MPI_NODE_SIZE", "1", 1);
        psh_context *ctx = NULL;
        CHECK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, 1) == PSH_EINVAL && ctx == NULL);
        CHECK(strstr(psh_last_error(), "different PASHA_MPI_NODE_SIZE values (1 to 3)") != NULL);
    }
    /* empty and 0: the real nodes */
    const char *fine[] = {"", "0", " 0 "};
    for (int k = 0; k < 3; ++k) {
        setenv("PASHA_MPI_NODE_SIZE", fine[k], 1);
        psh_context *ctx = NULL;
        CHECK_OK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, 1));
        check_still_works(ctx);
        psh_context_destroy(ctx);
    }
    if (old) setenv("PASHA_MPI_NODE_SIZE", saved, 1);
    else unsetenv("PASHA_MPI_NODE_SIZE");
}

/* Ranks sharing a node window: a window that would pass the last rank's
 * address-space limit (RLIMIT_AS) is PSH_ENOMEM on every rank, named as
 * such, and the context works afterwards. */
static void test_alloc_past_rlimit_as(psh_context *ctx)
{
    const size_t big = (size_t)256 << 20;
    struct rlimit saved;
    CHECK(getrlimit(RLIMIT_AS, &saved) == 0);
    if (rank == last()) {
        rlim_t now = (rlim_t)vm_kib() * 1024;
        struct rlimit tight = {now + ((rlim_t)96 << 20), saved.rlim_max};
        CHECK(setrlimit(RLIMIT_AS, &tight) == 0);
    }
    psh_array *a = NULL;
    int rc = psh_alloc(&a, ctx, PSH_UINT8, 1, &big, NULL);
    if (rank == last()) CHECK(setrlimit(RLIMIT_AS, &saved) == 0);
    CHECK(rc == PSH_ENOMEM && a == NULL);
    check_error_from(last(), "RLIMIT_AS");
    check_still_works(ctx);
}

int main(int argc, char **argv)
{
    /* Arrays outside the arena, each its own file, so that a file size
     * limit makes one rank's allocation fail. */
    setenv("PASHA_ARENA_SIZE", "1", 1);
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    alarm(90); /* a hung rank dies of SIGALRM, and mpirun ends the job */

    psh_context *threads, *procs;
    CHECK_OK(psh_context_create_mpi(&threads, MPI_COMM_WORLD, PSH_THREADS, 2));
    CHECK_OK(psh_context_create_mpi(&procs, MPI_COMM_WORLD, PSH_PROCESSES, 2));
    psh_context *both[2] = {threads, procs};
    for (int k = 0; k < 2; ++k) {
        test_cancel_before(both[k]);
        test_bad_map_args(both[k]);
        test_bad_alloc_args(both[k]);
        test_bad_collectives(both[k]);
    }
    test_cancel_during(threads);
    const char *node = getenv("PASHA_MPI_NODE_SIZE");
    if (nranks == 1 || (node && atoi(node) == 1)) test_alloc_fails_on_one_rank(threads);
    else test_alloc_past_rlimit_as(threads);  /* the last rank shares its node's window */

    psh_context_destroy(procs);
    psh_context_destroy(threads);
    test_bad_node_size();
    if (rank == 0) printf("test-mpi-agree: all checks passed on %d ranks\n", nranks);
    MPI_Finalize();
    return 0;
}
