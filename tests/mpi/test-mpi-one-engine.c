/* A program that uses libpasha and libpasha_mpi has ONE engine: the MPI
 * library links libpasha instead of carrying a copy (run under mpirun with
 * 1 and 2 ranks; see meson.build). Each check would fail with a copy: two
 * default contexts, arrays of one arena unknown to the other library's
 * maps, fork hooks registered with one library not run around the other's
 * forks. A failed
 * check aborts the job (MPI_Abort), so mpirun exits non-zero. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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

typedef psh_context *(*get_fn)(void);

/* The library an address of the process belongs to (its file name). */
static const char *library_of(const void *addr)
{
    Dl_info info;
    CHECK(dladdr(addr, &info) != 0 && info.dli_fname);
    const char *slash = strrchr(info.dli_fname, '/');
    return slash ? slash + 1 : info.dli_fname;
}

/* The engine's functions are libpasha's wherever they are looked up, and
 * the default context is one object. */
static void test_one_default_context(void)
{
    void *core = dlopen("libpasha.so.0", RTLD_NOW | RTLD_NOLOAD);
    void *mpi = dlopen("libpasha_mpi.so.0", RTLD_NOW | RTLD_NOLOAD);
    CHECK(core && mpi);
    /* dlsym of a handle searches that library, then what it links */
    void *core_sym = dlsym(core, "psh_get_default_context"), *mpi_sym = dlsym(mpi, "psh_get_default_context");
    CHECK(core_sym && mpi_sym);
    CHECK(strncmp(library_of(mpi_sym), "libpasha.so", 11) == 0);
    CHECK(strncmp(library_of(dlsym(mpi, "psh_alloc")), "libpasha.so", 11) == 0);
    CHECK(strncmp(library_of(dlsym(mpi, "psh_context_create_mpi")), "libpasha_mpi.so", 15) == 0);
    get_fn from_core, from_mpi;
    memcpy(&from_core, &core_sym, sizeof from_core);
    memcpy(&from_mpi, &mpi_sym, sizeof from_mpi);
    psh_context *a = from_core(), *b = from_mpi();
    CHECK(a != NULL);
    CHECK(a == b);
    CHECK(a == psh_get_default_context());
    dlclose(core);
    dlclose(mpi);
}

struct square_args {
    double *out;
    size_t n;
};

/* This rank's items of n (contiguous blocks, as psh_map splits them). */
static void my_block(size_t n, size_t *lo, size_t *hi)
{
    size_t q = n / (size_t)nranks, rem = n % (size_t)nranks, r = (size_t)rank;
    *lo = r * q + (r < rem ? r : rem);
    *hi = *lo + q + (r < rem ? 1 : 0);
}

static int square_kernel(void *ud, int worker, size_t i, const void *value)
{
    struct square_args *a = ud;
    (void)worker;
    (void)value;
    a->out[i] = (double)i * (double)i + 1.0;
    return 0;
}

/* An array of the MPI context written by the forked workers of a plain
 * PSH_PROCESSES context (each rank its own block: the node shares one
 * buffer), then gathered through the MPI context. */
static void test_mpi_array_in_local_map(psh_context *mpi_ctx)
{
    const size_t n = 999;
    psh_array *a;
    CHECK_OK(psh_alloc(&a, mpi_ctx, PSH_FLOAT64, 1, &n, NULL));
    psh_context *local;
    CHECK_OK(psh_context_create(&local, PSH_PROCESSES, 2));
    size_t lo, hi;
    my_block(n, &lo, &hi);
    double *out = psh_array_data(a);
    struct square_args args = {out, n};
    psh_functor *f;
    CHECK_OK(psh_functor_range(&f, hi - lo));
    /* the kernel sees 0 .. hi-lo-1: shift the output by lo */
    args.out = out + lo;
    CHECK_OK(psh_map(local, square_kernel, &args, f));
    psh_functor_destroy(f);
    for (size_t i = lo; i < hi; ++i) CHECK(out[i] == (double)(i - lo) * (double)(i - lo) + 1.0);
    CHECK_OK(psh_mpi_allgather(mpi_ctx, a));
    for (int r = 0; r < nranks; ++r) {
        size_t q = n / (size_t)nranks, rem = n % (size_t)nranks, ur = (size_t)r;
        size_t b = ur * q + (ur < rem ? ur : rem), e = b + q + (ur < rem ? 1 : 0);
        for (size_t i = b; i < e; ++i) CHECK(out[i] == (double)(i - b) * (double)(i - b) + 1.0);
    }
    psh_context_destroy(local);
    psh_array_free(a);
}

/* An array of the default context (libpasha's arena) written by the MPI
 * context's forked workers, then made whole on every rank. */
static void test_default_array_in_mpi_map(psh_context *mpi_ctx)
{
    const size_t n = 1234;
    psh_array *a;
    CHECK_OK(psh_alloc(&a, NULL, PSH_FLOAT64, 1, &n, NULL));
    struct square_args args = {psh_array_data(a), n};
    psh_functor *f;
    CHECK_OK(psh_functor_range(&f, n));
    CHECK_OK(psh_map(mpi_ctx, square_kernel, &args, f));
    psh_functor_destroy(f);
    size_t lo, hi;
    my_block(n, &lo, &hi);
    for (size_t i = 0; i < n; ++i) CHECK(args.out[i] == (i >= lo && i < hi ? (double)i * (double)i + 1.0 : 0.0));
    CHECK_OK(psh_mpi_allgather(mpi_ctx, a));
    for (size_t i = 0; i < n; ++i) CHECK(args.out[i] == (double)i * (double)i + 1.0);
    psh_array_free(a);
}

static int prepares, parents, children;
static void on_prepare(void *d) { (void)d; ++prepares; }
static void on_parent(void *d) { (void)d; ++parents; }
static void on_child(void *d) { (void)d; ++children; }

struct hook_args {
    int32_t *pid;       /* per item: the worker process */
    int32_t *children;  /* per item: how often the child hook ran in it */
};

static int hook_kernel(void *ud, int worker, size_t i, const void *value)
{
    struct hook_args *a = ud;
    (void)worker;
    (void)value;
    a->pid[i] = (int32_t)getpid();
    a->children[i] = children;
    return 0;
}

static int cmp_i32(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* A fork hook registered once (through libpasha) runs once around each
 * fork the MPI context's local workers need (made by libpasha_mpi's maps):
 * once in the parent per worker process, once in each worker. */
static void test_fork_hooks_once(psh_context *mpi_ctx)
{
    CHECK_OK(psh_register_fork_hooks(on_prepare, on_parent, on_child, NULL));
    const size_t n = 64;
    psh_array *pid, *ch;
    CHECK_OK(psh_alloc(&pid, NULL, PSH_INT32, 1, &n, NULL));
    CHECK_OK(psh_alloc(&ch, NULL, PSH_INT32, 1, &n, NULL));
    struct hook_args args = {psh_array_data(pid), psh_array_data(ch)};
    for (int round = 1; round <= 2; ++round) {
        int before = prepares;
        psh_functor *f;
        CHECK_OK(psh_functor_range(&f, n));
        memset(args.pid, 0, n * sizeof(int32_t));
        CHECK_OK(psh_map(mpi_ctx, hook_kernel, &args, f));
        psh_functor_destroy(f);
        size_t lo, hi;
        my_block(n, &lo, &hi);
        int32_t pids[64];
        size_t k = 0;
        for (size_t i = lo; i < hi; ++i) {
            CHECK(args.children[i] == 1);  /* the child hook ran once in the worker */
            CHECK(args.pid[i] != (int32_t)getpid());
            pids[k++] = args.pid[i];
        }
        qsort(pids, k, sizeof pids[0], cmp_i32);
        int distinct = 0;
        for (size_t i = 0; i < k; ++i) distinct += i == 0 || pids[i] != pids[i - 1];
        /* every worker process was forked with the hooks around it, once;
         * some may have had no item, so at least `distinct` forks */
        int forks = prepares - before;
        CHECK(forks >= distinct && forks <= 2);
        CHECK(parents == prepares);
        CHECK(children == 0);  /* never in the caller */
    }
    psh_array_free(pid);
    psh_array_free(ch);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    alarm(120);
    test_one_default_context();
    psh_context *ctx;
    CHECK_OK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_PROCESSES, 2));
    CHECK(psh_context_kind(ctx) == PSH_MPI);
    CHECK(psh_context_num_workers(ctx) == 2 * nranks);
    test_mpi_array_in_local_map(ctx);
    test_default_array_in_mpi_map(ctx);
    test_fork_hooks_once(ctx);
    psh_context_destroy(ctx);
    if (rank == 0) printf("one engine: ok on %d rank(s)\n", nranks);
    MPI_Finalize();
    return 0;
}
