/* The MPI context under a real mpirun (1, 2, 4 ranks; see meson.build).
 * Every rank runs every case; values are computed and checked on root (or
 * on every rank where they must be everywhere). A failed check aborts the
 * whole job with MPI_Abort, so mpirun exits non-zero. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* The rank that psh_map gives index i of n (contiguous blocks). */
static int owner(size_t n, size_t i)
{
    size_t q = n / (size_t)nranks, rem = n % (size_t)nranks;
    size_t big = rem * (q + 1);
    return i < big ? (int)(i / (q + 1)) : (int)(rem + (i - big) / q);
}

struct fill_args {
    double *out;
    int32_t *who;
    int32_t *rank_of;
    size_t fail_at;  /* an index that fails, or SIZE_MAX */
    int how;         /* 0: return 42, 1: SIGKILL the worker */
};

static int fill_kernel(void *ud, int worker, size_t i, const void *value)
{
    struct fill_args *a = ud;
    (void)value;
    if (i == a->fail_at) {
        if (a->how == 1) raise(SIGKILL);
        return 42;
    }
    a->out[i] = 3.0 * (double)i + 1.0;
    a->who[i] = worker;
    a->rank_of[i] = rank;
    return 0;
}

/* psh_map over an MPI context: global indices, global worker ids, every
 * index written once, zero-copy into the node's shared buffer. */
static void test_map_and_gather(psh_context *ctx, int local_workers)
{
    const size_t n = 1001;
    psh_array *out, *who, *rk;
    CHECK_OK(psh_alloc(&out, ctx, PSH_FLOAT64, 1, &n, NULL));
    CHECK_OK(psh_alloc(&who, ctx, PSH_INT32, 1, &n, NULL));
    CHECK_OK(psh_alloc(&rk, ctx, PSH_INT32, 1, &n, NULL));
    CHECK(((uintptr_t)psh_array_data(out) & 63) == 0);
    struct fill_args a = {psh_array_data(out), psh_array_data(who), psh_array_data(rk), SIZE_MAX, 0};
    psh_functor *f;
    CHECK_OK(psh_functor_range(&f, n));
    CHECK_OK(psh_map(ctx, fill_kernel, &a, f));
    int root = nranks - 1;
    CHECK_OK(psh_mpi_gather(ctx, out, root));
    CHECK_OK(psh_mpi_gather(ctx, who, root));
    CHECK_OK(psh_mpi_gather(ctx, rk, root));
    if (rank == root) {
        for (size_t i = 0; i < n; ++i) {
            CHECK(a.out[i] == 3.0 * (double)i + 1.0);
            CHECK(a.rank_of[i] == owner(n, i));
            /* worker ids are global: rank r's are r*L .. r*L+L-1 */
            CHECK(a.who[i] / local_workers == a.rank_of[i]);
        }
    }
    /* allgather: every rank has everything */
    CHECK_OK(psh_mpi_allgather(ctx, out));
    CHECK_OK(psh_mpi_allgather(ctx, rk));
    for (size_t i = 0; i < n; ++i) {
        CHECK(a.out[i] == 3.0 * (double)i + 1.0);
        CHECK(a.rank_of[i] == owner(n, i));
    }
    psh_functor_destroy(f);
    psh_array_free(out);
    psh_array_free(who);
    psh_array_free(rk);
}

/* Arrays that are private to each rank (made with a local context): gather
 * moves every rank's block, rows of a 2-d array in C and F order. */
struct rows_args {
    float *data;
    size_t cols;
    int fortran;
    size_t rows;
};

static int rows_kernel(void *ud, int worker, size_t begin, size_t end)
{
    struct rows_args *a = ud;
    (void)worker;
    for (size_t i = begin; i < end; ++i)
        for (size_t j = 0; j < a->cols; ++j) {
            size_t at = a->fortran ? j + i * a->cols : i * a->cols + j;
            a->data[at] = (float)(i * 100 + j);
        }
    return 0;
}

static void test_private_gather(psh_context *ctx, psh_order order)
{
    psh_context *local;
    CHECK_OK(psh_context_create(&local, PSH_SERIAL, 1));
    size_t rows = 37, cols = 5;
    /* the slowest axis carries the rows: first in C order, last in F */
    size_t shape_c[2] = {rows, cols}, shape_f[2] = {cols, rows};
    psh_alloc_options o;
    psh_alloc_options_init(&o);
    o.order = order;
    psh_array *a;
    CHECK_OK(psh_alloc(&a, local, PSH_FLOAT32, 2, order == PSH_ORDER_F ? shape_f : shape_c, &o));
    struct rows_args ra = {psh_array_data(a), cols, order == PSH_ORDER_F, rows};
    CHECK_OK(psh_map_blocks(ctx, rows_kernel, &ra, rows));
    /* nothing of the other ranks is here yet */
    CHECK(ra.data[(rows - 1) * cols] == (rank == nranks - 1 ? (float)((rows - 1) * 100) : 0.0f));
    CHECK_OK(psh_mpi_gather(ctx, a, 0));
    if (rank == 0)
        for (size_t i = 0; i < rows; ++i)
            for (size_t j = 0; j < cols; ++j) CHECK(ra.data[i * cols + j] == (float)(i * 100 + j));
    memset(ra.data, 0, psh_array_nbytes(a));
    CHECK_OK(psh_map_blocks(ctx, rows_kernel, &ra, rows));
    CHECK_OK(psh_mpi_allgather(ctx, a));
    for (size_t i = 0; i < rows; ++i)
        for (size_t j = 0; j < cols; ++j) CHECK(ra.data[i * cols + j] == (float)(i * 100 + j));
    psh_array_free(a);
    psh_context_destroy(local);
}

/* per_worker accumulators, summed over the ranks with psh_mpi_reduce. */
struct acc_args {
    double *acc; /* [num_workers] */
    int64_t *count;
};

static int acc_kernel(void *ud, int worker, size_t i, const void *value)
{
    struct acc_args *a = ud;
    (void)value;
    a->acc[worker] += (double)i;
    a->count[worker] += 1;
    return 0;
}

static void test_reduce_per_worker(psh_context *ctx)
{
    const size_t n = 5000;
    psh_alloc_options o;
    psh_alloc_options_init(&o);
    o.per_worker = 1;
    psh_array *acc, *count;
    CHECK_OK(psh_alloc(&acc, ctx, PSH_FLOAT64, 0, NULL, &o));
    CHECK_OK(psh_alloc(&count, ctx, PSH_INT64, 0, NULL, &o));
    int W = psh_context_num_workers(ctx);
    CHECK(psh_array_size(acc) == (size_t)W);
    struct acc_args a = {psh_array_data(acc), psh_array_data(count)};
    psh_functor *f;
    CHECK_OK(psh_functor_range(&f, n));
    CHECK_OK(psh_map(ctx, acc_kernel, &a, f));
    CHECK_OK(psh_mpi_reduce(ctx, acc, PSH_OP_SUM, 0));
    CHECK_OK(psh_mpi_reduce(ctx, count, PSH_OP_SUM, 0));
    if (rank == 0) {
        double sum = 0;
        int64_t c = 0;
        for (int w = 0; w < W; ++w) sum += a.acc[w], c += a.count[w];
        CHECK(sum == (double)n * (double)(n - 1) / 2);
        CHECK(c == (int64_t)n);
    }
    psh_functor_destroy(f);
    psh_array_free(acc);
    psh_array_free(count);
}

/* PSH_PER_WORKER_PADDED rows: psh_mpi_reduce sums them row by row (the
 * ranks agree on the padded layout), psh_mpi_gather refuses them. */
struct padded_args {
    char *base;
    ptrdiff_t stride;
};

static int padded_kernel(void *ud, int worker, size_t i, const void *value)
{
    struct padded_args *a = ud;
    (void)value;
    int64_t *row = (int64_t *)(a->base + worker * a->stride);
    row[i % 3] += (int64_t)i;
    return 0;
}

static void test_reduce_padded(psh_context *ctx)
{
    const size_t n = 3000, cols = 3;
    psh_alloc_options o;
    psh_alloc_options_init(&o);
    o.per_worker = PSH_PER_WORKER_PADDED;
    psh_array *acc;
    CHECK_OK(psh_alloc(&acc, ctx, PSH_INT64, 1, &cols, &o));
    int W = psh_context_num_workers(ctx);
    ptrdiff_t stride = psh_array_strides(acc)[0];
    CHECK(stride >= 24 + 128 && stride % 128 == 0);
    struct padded_args a = {psh_array_data(acc), stride};
    psh_functor *f;
    CHECK_OK(psh_functor_range(&f, n));
    CHECK_OK(psh_map(ctx, padded_kernel, &a, f));
    CHECK_OK(psh_mpi_reduce(ctx, acc, PSH_OP_SUM, 0));
    if (rank == 0) {
        int64_t got[3] = {0, 0, 0}, want[3] = {0, 0, 0};
        for (int w = 0; w < W; ++w)
            for (size_t j = 0; j < cols; ++j) got[j] += ((int64_t *)(a.base + w * stride))[j];
        for (size_t i = 0; i < n; ++i) want[i % 3] += (int64_t)i;
        for (size_t j = 0; j < cols; ++j) CHECK(got[j] == want[j]);
    }
    CHECK(psh_mpi_gather(ctx, acc, 0) == PSH_EINVAL);
    CHECK(strstr(psh_last_error(), "padded") != NULL);
    psh_functor_destroy(f);
    psh_array_free(acc);
}

/* MIN / MAX / SUM of private arrays: each rank contributes its own values. */
static void test_reduce_private(psh_context *ctx)
{
    psh_context *local;
    CHECK_OK(psh_context_create(&local, PSH_SERIAL, 1));
    size_t n = 64;
    psh_array *mn, *mx, *sm;
    CHECK_OK(psh_alloc(&mn, local, PSH_INT32, 1, &n, NULL));
    CHECK_OK(psh_alloc(&mx, local, PSH_INT32, 1, &n, NULL));
    CHECK_OK(psh_alloc(&sm, local, PSH_COMPLEX64, 1, &n, NULL));
    int32_t *pmn = psh_array_data(mn), *pmx = psh_array_data(mx);
    float *psm = psh_array_data(sm);
    for (size_t j = 0; j < n; ++j) {
        int32_t v = (int32_t)((j * 7 + (size_t)rank * 13) % 29) - 10;
        pmn[j] = pmx[j] = v;
        psm[2 * j] = (float)(rank + 1);
        psm[2 * j + 1] = (float)j;
    }
    CHECK_OK(psh_mpi_reduce(ctx, mn, PSH_OP_MIN, nranks / 2));
    CHECK_OK(psh_mpi_reduce(ctx, mx, PSH_OP_MAX, nranks / 2));
    CHECK_OK(psh_mpi_reduce(ctx, sm, PSH_OP_SUM, nranks / 2));
    if (rank == nranks / 2)
        for (size_t j = 0; j < n; ++j) {
            int32_t lo = INT32_MAX, hi = INT32_MIN;
            for (int r = 0; r < nranks; ++r) {
                int32_t v = (int32_t)((j * 7 + (size_t)r * 13) % 29) - 10;
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
            CHECK(pmn[j] == lo);
            CHECK(pmx[j] == hi);
            CHECK(psm[2 * j] == (float)(nranks * (nranks + 1) / 2));
            CHECK(psm[2 * j + 1] == (float)(nranks * (int)j));
        }
    /* bad input: the same clear error on every rank, no hang */
    CHECK(psh_mpi_reduce(ctx, sm, PSH_OP_MIN, 0) == PSH_EINVAL);
    CHECK(strstr(psh_last_error(), "complex") != NULL);
    CHECK(psh_mpi_reduce(ctx, mn, 7, 0) == PSH_EINVAL);
    CHECK(psh_mpi_gather(ctx, mn, nranks) == PSH_EINVAL);
    CHECK(strstr(psh_last_error(), "root") != NULL);
    /* only the last rank passes a bad root: all fail alike */
    CHECK(psh_mpi_gather(ctx, mn, rank == nranks - 1 ? -1 : 0) == PSH_EINVAL);
    CHECK(psh_mpi_gather(NULL, mn, 0) == PSH_EINVAL);
    CHECK(psh_mpi_gather(local, mn, 0) == PSH_EINVAL);
    CHECK(psh_mpi_reduce(ctx, NULL, PSH_OP_SUM, 0) == PSH_EINVAL);
    psh_array_free(mn);
    psh_array_free(mx);
    psh_array_free(sm);
    psh_context_destroy(local);
}

/* A kernel error or a dead worker on the last rank: every rank's psh_map
 * returns the same code, and the context still works afterwards. */
static void test_errors(psh_context *ctx, int how, int expect)
{
    const size_t n = 400;
    psh_array *out, *who, *rk;
    CHECK_OK(psh_alloc(&out, ctx, PSH_FLOAT64, 1, &n, NULL));
    CHECK_OK(psh_alloc(&who, ctx, PSH_INT32, 1, &n, NULL));
    CHECK_OK(psh_alloc(&rk, ctx, PSH_INT32, 1, &n, NULL));
    struct fill_args a = {psh_array_data(out), psh_array_data(who), psh_array_data(rk), n - 3, how};
    psh_functor *f;
    CHECK_OK(psh_functor_range(&f, n));
    int rc = psh_map(ctx, fill_kernel, &a, f);
    CHECK(rc == expect);
    char want[64];
    snprintf(want, sizeof want, "rank %d: ", nranks - 1);
    CHECK(strstr(psh_last_error(), want) != NULL);
    if (how == 0) CHECK(strstr(psh_last_error(), "returned 42") != NULL);
    if (how == 1) CHECK(strstr(psh_last_error(), "signal 9") != NULL);
    /* still usable */
    a.fail_at = SIZE_MAX;
    CHECK_OK(psh_map(ctx, fill_kernel, &a, f));
    CHECK_OK(psh_mpi_gather(ctx, out, 0));
    if (rank == 0)
        for (size_t i = 0; i < n; ++i) CHECK(a.out[i] == 3.0 * (double)i + 1.0);
    /* ranks that disagree on n: EINVAL everywhere */
    psh_functor *g;
    CHECK_OK(psh_functor_range(&g, rank == 0 ? n - 1 : n));
    if (nranks > 1) {
        CHECK(psh_map(ctx, fill_kernel, &a, g) == PSH_EINVAL);
        CHECK(strstr(psh_last_error(), "disagree") != NULL);
    }
    psh_functor_destroy(g);
    psh_functor_destroy(f);
    psh_array_free(out);
    psh_array_free(who);
    psh_array_free(rk);
}

static void test_create(void)
{
    psh_context *ctx = NULL;
    CHECK(psh_context_create_mpi(&ctx, MPI_COMM_NULL, PSH_THREADS, 1) == PSH_EINVAL);
    CHECK(psh_context_create_mpi(NULL, MPI_COMM_WORLD, PSH_THREADS, 1) == PSH_EINVAL);
    CHECK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_MPI, 1) == PSH_EINVAL);
    CHECK(ctx == NULL);
    /* a bad kind on one rank only: every rank gets the error */
    CHECK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, rank == nranks - 1 ? (psh_kind)9 : PSH_THREADS, 1) == PSH_EINVAL);
    CHECK(ctx == NULL);
    char want[32];
    snprintf(want, sizeof want, "rank %d: ", nranks - 1);
    CHECK(strstr(psh_last_error(), want) != NULL);
    CHECK_OK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_SERIAL, 1));
    CHECK(psh_context_kind(ctx) == PSH_MPI);
    CHECK(psh_context_num_workers(ctx) == nranks);
    CHECK(psh_mpi_rank(ctx) == rank);
    CHECK(psh_mpi_size(ctx) == nranks);
    CHECK(psh_mpi_rank(NULL) == -1);
    {
        /* A serial local context keeps the global worker ids: rank r's
         * worker is worker r (regression: the serial context reset every
         * rank's to 0, and per_worker rows of all ranks were the same one). */
        const size_t m = 101;
        psh_array *who, *rk, *out;
        CHECK_OK(psh_alloc(&who, ctx, PSH_INT32, 1, &m, NULL));
        CHECK_OK(psh_alloc(&rk, ctx, PSH_INT32, 1, &m, NULL));
        CHECK_OK(psh_alloc(&out, ctx, PSH_FLOAT64, 1, &m, NULL));
        struct fill_args a = {psh_array_data(out), psh_array_data(who), psh_array_data(rk), SIZE_MAX, 0};
        psh_functor *f;
        CHECK_OK(psh_functor_range(&f, m));
        CHECK_OK(psh_map(ctx, fill_kernel, &a, f));
        CHECK_OK(psh_mpi_allgather(ctx, who));
        CHECK_OK(psh_mpi_allgather(ctx, rk));
        for (size_t i = 0; i < m; ++i) {
            CHECK(a.rank_of[i] == owner(m, i));
            CHECK(a.who[i] == owner(m, i));
        }
        psh_functor_destroy(f);
        psh_array_free(out);
        psh_array_free(rk);
        psh_array_free(who);
    }
    psh_context_destroy(ctx);
    /* uneven local counts (rank r has r + 1 threads): ids stay global and
     * contiguous, rank r's are r(r+1)/2 .. r(r+1)/2 + r */
    CHECK_OK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, rank + 1));
    CHECK(psh_context_num_workers(ctx) == nranks * (nranks + 1) / 2);
    const size_t n = 997;
    psh_array *who, *rk, *out;
    CHECK_OK(psh_alloc(&who, ctx, PSH_INT32, 1, &n, NULL));
    CHECK_OK(psh_alloc(&rk, ctx, PSH_INT32, 1, &n, NULL));
    CHECK_OK(psh_alloc(&out, ctx, PSH_FLOAT64, 1, &n, NULL));
    struct fill_args a = {psh_array_data(out), psh_array_data(who), psh_array_data(rk), SIZE_MAX, 0};
    psh_functor *f;
    CHECK_OK(psh_functor_range(&f, n));
    CHECK_OK(psh_map(ctx, fill_kernel, &a, f));
    CHECK_OK(psh_mpi_allgather(ctx, who));
    CHECK_OK(psh_mpi_allgather(ctx, rk));
    int seen[64] = {0};
    for (size_t i = 0; i < n; ++i) {
        int r = owner(n, i), first = r * (r + 1) / 2;
        CHECK(a.rank_of[i] == r);
        CHECK(a.who[i] >= first && a.who[i] <= first + r);
        if (a.who[i] < 64) seen[a.who[i]] = 1;
    }
    for (int w = 0; w < nranks * (nranks + 1) / 2 && w < 64; ++w) CHECK(seen[w]); /* every worker worked */
    psh_functor_destroy(f);
    psh_array_free(out);
    psh_array_free(rk);
    psh_array_free(who);
    psh_context_destroy(ctx);
}

/* psh_context_create_mpi_ext: the local options reach the local maps. With
 * a dynamic schedule of chunk 1, the worker that takes a rank's first item
 * waits in it until the rest of the rank's block is done, which only the
 * other worker can do (static shares would leave the waiting worker's own
 * items undone: it gives up after 20 s and the check fails). */
struct wait_args {
    volatile int *who;
    size_t lo, hi;
};

static int wait_kernel(void *user_data, int worker_id, size_t index, const void *value)
{
    (void)value;
    struct wait_args *a = user_data;
    if (index == a->lo) {
        for (int ms = 0; ms < 20000; ++ms) {
            size_t done = 0;
            for (size_t i = a->lo + 1; i < a->hi; ++i) done += __atomic_load_n(&a->who[i], __ATOMIC_ACQUIRE) >= 0;
            if (done == a->hi - a->lo - 1) break;
            usleep(1000);
        }
    }
    __atomic_store_n(&a->who[index], worker_id, __ATOMIC_RELEASE);
    return 0;
}

static void test_create_ext(psh_kind kind)
{
    psh_context *ctx = NULL;
    psh_context_options lo;
    psh_context_options_init(&lo);
    CHECK(psh_context_create_mpi_ext(&ctx, MPI_COMM_WORLD, NULL) == PSH_EINVAL);
    CHECK(strstr(psh_last_error(), "local") != NULL);
    lo.struct_size = rank == nranks - 1 ? 0 : sizeof lo; /* one rank forgot _init: every rank fails */
    CHECK(psh_context_create_mpi_ext(&ctx, MPI_COMM_WORLD, &lo) == PSH_EINVAL);
    CHECK(strstr(psh_last_error(), "struct_size") != NULL);
    psh_context_options_init(&lo);
    lo.kind = PSH_PROCESSES;
    lo.persistent = 1;
    CHECK(psh_context_create_mpi_ext(&ctx, MPI_COMM_WORLD, &lo) == PSH_EINVAL);
    CHECK(strstr(psh_last_error(), "persistent") != NULL);
    CHECK(ctx == NULL);

    psh_context_options_init(&lo);
    lo.kind = kind;
    lo.num_workers = 2;
    lo.schedule = PSH_SCHEDULE_DYNAMIC;
    lo.chunk = 1;
    CHECK_OK(psh_context_create_mpi_ext(&ctx, MPI_COMM_WORLD, &lo));
    CHECK(psh_context_num_workers(ctx) == 2 * nranks);
    const size_t n = 8 * (size_t)nranks;
    psh_array *who;
    CHECK_OK(psh_alloc(&who, ctx, PSH_INT32, 1, &n, NULL));
    int *w = psh_array_data(who);
    size_t lo_i = (size_t)rank * (n / nranks), hi_i = lo_i + n / nranks;
    for (size_t i = lo_i; i < hi_i; ++i) w[i] = -1;
    MPI_Barrier(MPI_COMM_WORLD);
    struct wait_args a = {w, lo_i, hi_i};
    psh_functor *f;
    CHECK_OK(psh_functor_range(&f, n));
    CHECK_OK(psh_map(ctx, wait_kernel, &a, f));
    int first = w[lo_i], others = 0;
    for (size_t i = lo_i + 1; i < hi_i; ++i) others += w[i] != first && (w[i] == 2 * rank || w[i] == 2 * rank + 1);
    CHECK(first == 2 * rank || first == 2 * rank + 1);
    CHECK(others == (int)(hi_i - lo_i - 1));
    psh_functor_destroy(f);
    psh_array_free(who);
    psh_context_destroy(ctx);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);

    test_create();
    test_create_ext(PSH_THREADS);
    test_create_ext(PSH_PROCESSES);
    psh_context *threads, *procs;
    CHECK_OK(psh_context_create_mpi(&threads, MPI_COMM_WORLD, PSH_THREADS, 2));
    CHECK(psh_context_num_workers(threads) == 2 * nranks);
    CHECK_OK(psh_context_create_mpi(&procs, MPI_COMM_WORLD, PSH_PROCESSES, 2));

    test_map_and_gather(threads, 2);
    test_map_and_gather(procs, 2);
    test_private_gather(threads, PSH_ORDER_C);
    test_private_gather(threads, PSH_ORDER_F);
    test_reduce_per_worker(threads);
    test_reduce_per_worker(procs);
    test_reduce_padded(threads);
    test_reduce_padded(procs);
    test_reduce_private(threads);
    test_errors(threads, 0, PSH_EKERNEL);
    test_errors(procs, 0, PSH_EKERNEL);
    test_errors(procs, 1, PSH_EWORKER);

    psh_context_destroy(procs);
    psh_context_destroy(threads);
    if (rank == 0) printf("test-mpi: all checks passed on %d ranks\n", nranks);
    MPI_Finalize();
    return 0;
}
