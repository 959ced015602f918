/* The C driver of the MPI behaviour suite (tests/mpi/behaviours.txt, the
 * cases and their expected outcomes; the Fortran and Python drivers run
 * the same cases). Usage, under mpirun on any number of ranks:
 *
 *   behaviours-c SPEC [CASE...]
 *
 * Every rank runs every case of SPEC (or the named ones) in order. A case
 * makes its collective calls on every rank whatever its checks find (a
 * failed check is recorded, never an early return), computes its values
 * and returns what it saw: "ok", or an error code (EKERNEL, ...) prefixed
 * by "remote-" when it is another rank's error. The driver compares that
 * with the spec's outcome for this rank, the ranks agree on the result,
 * and rank 0 prints one line per case. alarm() guards every case: a rank
 * that hangs dies of SIGALRM and mpirun ends the job. Exit status 1 when
 * any case failed on any rank. */
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pasha/pasha_mpi.h"

static int rank, nranks, last;
static char failure[512]; /* the first failed check of the current case */

#define CHECK(cond)                                                                                        \
    do {                                                                                                   \
        if (!(cond) && !failure[0])                                                                        \
            snprintf(failure, sizeof failure, "%s:%d: %s (last error: %s)", __FILE__, __LINE__, #cond,     \
                     psh_last_error());                                                                    \
    } while (0)

/* The rank that a map over n items gives index i (contiguous blocks). */
static int owner(size_t n, size_t i)
{
    size_t q = n / (size_t)nranks, rem = n % (size_t)nranks;
    size_t big = rem * (q + 1);
    return i < big ? (int)(i / (q + 1)) : (int)(rem + (i - big) / q);
}

static void block_of(size_t n, int r, size_t *lo, size_t *hi)
{
    size_t q = n / (size_t)nranks, rem = n % (size_t)nranks, ur = (size_t)r;
    *lo = ur * q + (ur < rem ? ur : rem);
    *hi = *lo + q + (ur < rem ? 1 : 0);
}

static const char *code_name(int rc)
{
    switch (rc) {
    case PSH_OK: return "ok";
    case PSH_EINVAL: return "EINVAL";
    case PSH_ENOMEM: return "ENOMEM";
    case PSH_ESYS: return "ESYS";
    case PSH_EKERNEL: return "EKERNEL";
    case PSH_EWORKER: return "EWORKER";
    case PSH_ECANCELED: return "ECANCELED";
    case PSH_ENOTSUP: return "ENOTSUP";
    default: return "E?";
    }
}

/* What this rank saw: rc, and for an error the rank psh_last_error()
 * names ("rank N: "), which must be `named` (-1: an error of every rank
 * alike, such as a disagreement, names none); own: this rank failed
 * itself. */
static const char *outcome(int rc, int named, int own)
{
    static char buf[64];
    if (rc == PSH_OK) return "ok";
    char want[32];
    snprintf(want, sizeof want, "rank %d: ", named);
    if (named >= 0) CHECK(strstr(psh_last_error(), want) != NULL);
    snprintf(buf, sizeof buf, "%s%s", own ? "" : "remote-", code_name(rc));
    return buf;
}

/* ------------------------------------------------------------------ */
/* kernels                                                             */

struct fill_args {
    double *out;
    int32_t *who, *rank_of;
    size_t fail_at;       /* an index that fails, or SIZE_MAX */
    int how;              /* 0: return 42, 1: SIGKILL the worker */
    volatile int *cancel; /* set at the first item, if not NULL */
    int slow_us;          /* sleep per item */
    long calls;           /* items run (threads only: processes do not share it) */
};

static int fill_kernel(void *ud, int worker, size_t i, const void *value)
{
    struct fill_args *a = ud;
    (void)value;
    __atomic_fetch_add(&a->calls, 1, __ATOMIC_RELAXED);
    if (a->cancel) __atomic_store_n(a->cancel, 1, __ATOMIC_RELAXED);
    if (i == a->fail_at) {
        if (a->how == 1) raise(SIGKILL);
        return 42;
    }
    if (a->slow_us) usleep((useconds_t)a->slow_us);
    if (a->out) a->out[i] = 3.0 * (double)i + 1.0;
    if (a->who) a->who[i] = worker;
    if (a->rank_of) a->rank_of[i] = rank;
    return 0;
}

/* A map of n items over ctx (local_workers per rank) into fresh arrays;
 * checks every value, writer rank and worker id on every rank after an
 * allgather. every_worker: also that every worker of every rank ran. */
static void map_and_check(psh_context *ctx, size_t n, int local_workers, int every_worker)
{
    psh_array *out, *who, *rk;
    CHECK(psh_alloc(&out, ctx, PSH_FLOAT64, 1, &n, NULL) == PSH_OK);
    CHECK(psh_alloc(&who, ctx, PSH_INT32, 1, &n, NULL) == PSH_OK);
    CHECK(psh_alloc(&rk, ctx, PSH_INT32, 1, &n, NULL) == PSH_OK);
    struct fill_args a = {psh_array_data(out), psh_array_data(who), psh_array_data(rk), SIZE_MAX, 0, NULL, 0, 0};
    for (size_t i = 0; i < n; ++i) a.who[i] = a.rank_of[i] = -1;
    MPI_Barrier(MPI_COMM_WORLD); /* the node's ranks share these buffers */
    psh_functor *f;
    CHECK(psh_functor_range(&f, n) == PSH_OK);
    CHECK(psh_map(ctx, fill_kernel, &a, f) == PSH_OK);
    CHECK(psh_mpi_allgather(ctx, out) == PSH_OK);
    CHECK(psh_mpi_allgather(ctx, who) == PSH_OK);
    CHECK(psh_mpi_allgather(ctx, rk) == PSH_OK);
    char seen[256] = {0};
    for (size_t i = 0; i < n; ++i) {
        int r = owner(n, i);
        CHECK(a.out[i] == 3.0 * (double)i + 1.0);
        CHECK(a.rank_of[i] == r);
        CHECK(a.who[i] >= r * local_workers && a.who[i] < (r + 1) * local_workers);
        if (a.who[i] >= 0 && a.who[i] < 256) seen[a.who[i]] = 1;
    }
    if (every_worker)
        for (int w = 0; w < nranks * local_workers && w < 256; ++w) CHECK(seen[w]);
    psh_functor_destroy(f);
    MPI_Barrier(MPI_COMM_WORLD);
    psh_array_free(out);
    psh_array_free(who);
    psh_array_free(rk);
}

/* ------------------------------------------------------------------ */
/* the cases                                                           */

static const char *map_results_with(psh_kind kind)
{
    psh_context *ctx;
    CHECK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, kind, 2) == PSH_OK);
    CHECK(psh_context_num_workers(ctx) == 2 * nranks);
    map_and_check(ctx, 1001, 2, 1);
    psh_context_destroy(ctx);
    return "ok";
}

static const char *case_map_results(void) { return map_results_with(PSH_THREADS); }
static const char *case_map_results_processes(void) { return map_results_with(PSH_PROCESSES); }

static const char *case_map_fewer_items(void)
{
    psh_context *ctx;
    CHECK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, 2) == PSH_OK);
    map_and_check(ctx, (size_t)(2 * nranks - 1), 2, 0);
    psh_context_destroy(ctx);
    return "ok";
}

static const char *case_map_empty(void)
{
    psh_context *ctx;
    CHECK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, 2) == PSH_OK);
    struct fill_args a = {NULL, NULL, NULL, SIZE_MAX, 0, NULL, 0, 0};
    psh_functor *f;
    CHECK(psh_functor_range(&f, 0) == PSH_OK);
    int rc = psh_map(ctx, fill_kernel, &a, f);
    CHECK(a.calls == 0);
    psh_functor_destroy(f);
    /* and a map afterwards still covers every index */
    map_and_check(ctx, 37, 2, 0);
    psh_context_destroy(ctx);
    return outcome(rc, -1, 1);
}

static const char *case_gather(void)
{
    psh_context *ctx;
    CHECK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, 2) == PSH_OK);
    const size_t n = 999;
    psh_array *out, *rk;
    CHECK(psh_alloc(&out, ctx, PSH_FLOAT64, 1, &n, NULL) == PSH_OK);
    CHECK(psh_alloc(&rk, ctx, PSH_INT32, 1, &n, NULL) == PSH_OK);
    struct fill_args a = {psh_array_data(out), NULL, psh_array_data(rk), SIZE_MAX, 0, NULL, 0, 0};
    psh_functor *f;
    CHECK(psh_functor_range(&f, n) == PSH_OK);
    CHECK(psh_map(ctx, fill_kernel, &a, f) == PSH_OK);
    CHECK(psh_mpi_gather(ctx, out, last) == PSH_OK);
    CHECK(psh_mpi_gather(ctx, rk, last) == PSH_OK);
    if (rank == last)
        for (size_t i = 0; i < n; ++i) {
            CHECK(a.out[i] == 3.0 * (double)i + 1.0);
            CHECK(a.rank_of[i] == owner(n, i));
        }
    psh_functor_destroy(f);
    MPI_Barrier(MPI_COMM_WORLD);
    psh_array_free(out);
    psh_array_free(rk);
    psh_context_destroy(ctx);
    return "ok";
}

struct acc_args {
    double *acc;
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

static const char *case_reduce_sum(void)
{
    psh_context *ctx;
    CHECK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, 2) == PSH_OK);
    const size_t n = 5000;
    psh_alloc_options o;
    psh_alloc_options_init(&o);
    o.per_worker = 1;
    psh_array *acc, *count;
    CHECK(psh_alloc(&acc, ctx, PSH_FLOAT64, 0, NULL, &o) == PSH_OK);
    CHECK(psh_alloc(&count, ctx, PSH_INT64, 0, NULL, &o) == PSH_OK);
    struct acc_args a = {psh_array_data(acc), psh_array_data(count)};
    psh_functor *f;
    CHECK(psh_functor_range(&f, n) == PSH_OK);
    CHECK(psh_map(ctx, acc_kernel, &a, f) == PSH_OK);
    CHECK(psh_mpi_reduce(ctx, acc, PSH_OP_SUM, 0) == PSH_OK);
    CHECK(psh_mpi_reduce(ctx, count, PSH_OP_SUM, 0) == PSH_OK);
    if (rank == 0) {
        double sum = 0;
        int64_t c = 0;
        for (int w = 0; w < 2 * nranks; ++w) sum += a.acc[w], c += a.count[w];
        CHECK(sum == (double)n * (double)(n - 1) / 2);
        CHECK(c == (int64_t)n);
    }
    psh_functor_destroy(f);
    MPI_Barrier(MPI_COMM_WORLD);
    psh_array_free(acc);
    psh_array_free(count);
    psh_context_destroy(ctx);
    return "ok";
}

static int32_t minmax_value(size_t j, int r) { return (int32_t)((j * 7 + (size_t)r * 13) % 29) - 10; }

static const char *case_reduce_min_max(void)
{
    psh_context *ctx, *local;
    CHECK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, 2) == PSH_OK);
    CHECK(psh_context_create(&local, PSH_SERIAL, 1) == PSH_OK);
    const size_t n = 64;
    psh_array *mn, *mx;
    CHECK(psh_alloc(&mn, local, PSH_INT32, 1, &n, NULL) == PSH_OK);
    CHECK(psh_alloc(&mx, local, PSH_INT32, 1, &n, NULL) == PSH_OK);
    int32_t *pmn = psh_array_data(mn), *pmx = psh_array_data(mx);
    for (size_t j = 0; j < n; ++j) pmn[j] = pmx[j] = minmax_value(j, rank);
    int root = nranks / 2;
    CHECK(psh_mpi_reduce(ctx, mn, PSH_OP_MIN, root) == PSH_OK);
    CHECK(psh_mpi_reduce(ctx, mx, PSH_OP_MAX, root) == PSH_OK);
    if (rank == root)
        for (size_t j = 0; j < n; ++j) {
            int32_t lo = INT32_MAX, hi = INT32_MIN;
            for (int r = 0; r < nranks; ++r) {
                int32_t v = minmax_value(j, r);
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
            CHECK(pmn[j] == lo);
            CHECK(pmx[j] == hi);
        }
    psh_array_free(mn);
    psh_array_free(mx);
    psh_context_destroy(local);
    psh_context_destroy(ctx);
    return "ok";
}

/* A failure at index fail_at (the middle of the last rank's block) of a
 * 400-item map, how: 0 the kernel returns 42, 1 the worker is killed. */
static const char *failure_case(psh_kind kind, int how)
{
    psh_context *ctx;
    CHECK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, kind, 2) == PSH_OK);
    const size_t n = 400;
    size_t lo, hi;
    block_of(n, last, &lo, &hi);
    size_t at = lo + (hi - lo) / 2;
    psh_array *out;
    CHECK(psh_alloc(&out, ctx, PSH_FLOAT64, 1, &n, NULL) == PSH_OK);
    struct fill_args a = {psh_array_data(out), NULL, NULL, rank == last ? at : SIZE_MAX, how, NULL, 0, 0};
    psh_functor *f;
    CHECK(psh_functor_range(&f, n) == PSH_OK);
    int rc = psh_map(ctx, fill_kernel, &a, f);
    char text[1100];
    snprintf(text, sizeof text, "%s", psh_last_error());
    psh_error_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK(psh_last_error_info(&info) == PSH_OK);
    CHECK(info.code == rc);
    CHECK(info.message && strcmp(info.message, text) == 0);
    const char *seen = outcome(rc, last, rank == last);
    char want[64];
    if (how == 0) {
        snprintf(want, sizeof want, "returned 42 at index %zu", at);
        CHECK(strstr(text, want) != NULL);
    } else {
        CHECK(strstr(text, "signal 9") != NULL);
        snprintf(want, sizeof want, "index %zu", at);
        CHECK(strstr(text, want) != NULL);
    }
    /* the context maps again, every index right */
    a.fail_at = SIZE_MAX;
    MPI_Barrier(MPI_COMM_WORLD);
    memset(a.out, 0, n * sizeof(double));
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK(psh_map(ctx, fill_kernel, &a, f) == PSH_OK);
    CHECK(psh_mpi_allgather(ctx, out) == PSH_OK);
    for (size_t i = 0; i < n; ++i) CHECK(a.out[i] == 3.0 * (double)i + 1.0);
    psh_functor_destroy(f);
    MPI_Barrier(MPI_COMM_WORLD);
    psh_array_free(out);
    psh_context_destroy(ctx);
    return seen;
}

static const char *case_kernel_error(void) { return failure_case(PSH_THREADS, 0); }
static const char *case_kernel_error_processes(void) { return failure_case(PSH_PROCESSES, 0); }
static const char *case_worker_killed(void) { return failure_case(PSH_PROCESSES, 1); }

/* The last rank's kernel sets its map's cancel flag at its first item;
 * the other ranks' items take 1 ms each (1.6 s for a block on two
 * threads), and their maps stop early on the last rank's stop message. */
static const char *case_cancel_during_map(void)
{
    psh_context *ctx;
    CHECK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, 2) == PSH_OK);
    const size_t per_rank = 3200, n = per_rank * (size_t)nranks;
    volatile int flag = 0;
    struct fill_args a = {NULL, NULL, NULL, SIZE_MAX, 0, rank == last ? &flag : NULL, rank == last ? 0 : 1000, 0};
    psh_functor *f;
    CHECK(psh_functor_range(&f, n) == PSH_OK);
    psh_map_options o;
    psh_map_options_init(&o);
    if (rank == last) o.cancel = &flag;
    int rc = psh_map_ext(ctx, fill_kernel, &a, f, &o);
    const char *seen = outcome(rc, last, rank == last);
    CHECK(strstr(psh_last_error(), "cancelled") != NULL);
    CHECK(a.calls < (long)per_rank / 2); /* every rank stopped early */
    /* the context maps again */
    map_and_check(ctx, 301, 2, 0);
    psh_functor_destroy(f);
    psh_context_destroy(ctx);
    return seen;
}

static const char *case_cancel_before_map(void)
{
    psh_context *ctx;
    CHECK(psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, 2) == PSH_OK);
    volatile int flag = 1;
    struct fill_args a = {NULL, NULL, NULL, SIZE_MAX, 0, NULL, 0, 0};
    psh_functor *f;
    CHECK(psh_functor_range(&f, 500) == PSH_OK);
    psh_map_options o;
    psh_map_options_init(&o);
    if (rank == last) o.cancel = &flag;
    int rc = psh_map_ext(ctx, fill_kernel, &a, f, &o);
    const char *seen = outcome(rc, last, rank == last);
    CHECK(strstr(psh_last_error(), "cancel") != NULL);
    CHECK(a.calls == 0); /* no rank ran an item */
    map_and_check(ctx, 301, 2, 0);
    psh_functor_destroy(f);
    psh_context_destroy(ctx);
    return seen;
}

/* Create a context with `var` set to value_last on the last rank and to
 * value_others on the others (NULL: unset); local_workers 0: the default.
 * The variable is restored afterwards. A context made is checked with a
 * map and destroyed. `mention`: what every error message must contain. */
static const char *env_case(const char *var, const char *value_others, const char *value_last, int local_workers,
                            int own, int named, const char *mention)
{
    const char *old = getenv(var);
    char saved[256];
    snprintf(saved, sizeof saved, "%s", old ? old : "");
    const char *v = rank == last ? value_last : value_others;
    if (v) setenv(var, v, 1);
    else unsetenv(var);
    psh_context *const untouched = (psh_context *)&var;
    psh_context *ctx = untouched; /* left as it is on failure (pasha.h) */
    int rc = psh_context_create_mpi(&ctx, MPI_COMM_WORLD, PSH_THREADS, local_workers);
    char text[1100];
    snprintf(text, sizeof text, "%s", psh_last_error());
    if (old) setenv(var, saved, 1);
    else unsetenv(var);
    const char *seen;
    if (rc == PSH_OK) {
        seen = "ok";
        map_and_check(ctx, 203, local_workers > 0 ? local_workers : psh_context_num_workers(ctx) / nranks, 0);
        psh_context_destroy(ctx);
    } else {
        CHECK(ctx == untouched);
        seen = outcome(rc, named, own);
        CHECK(strstr(text, mention) != NULL);
    }
    return seen;
}

static const char *case_node_size_malformed(void)
{
    return env_case("PASHA_MPI_NODE_SIZE", "abc", "abc", 2, 1, 0, "PASHA_MPI_NODE_SIZE='abc'");
}
static const char *case_node_size_negative(void)
{
    return env_case("PASHA_MPI_NODE_SIZE", "-1", "-1", 2, 1, 0, "PASHA_MPI_NODE_SIZE='-1'");
}
static const char *case_node_size_out_of_range(void)
{
    return env_case("PASHA_MPI_NODE_SIZE", "99999999999", "99999999999", 2, 1, 0,
                    "PASHA_MPI_NODE_SIZE='99999999999'");
}
static const char *case_node_size_zero(void) { return env_case("PASHA_MPI_NODE_SIZE", "0", "0", 2, 1, 0, ""); }
static const char *case_node_size_one_rank(void)
{
    const char *keep = getenv("PASHA_MPI_NODE_SIZE"); /* the others keep the run's value */
    char k[64];
    snprintf(k, sizeof k, "%s", keep ? keep : "");
    return env_case("PASHA_MPI_NODE_SIZE", keep ? k : NULL, "2x", 2, rank == last, last, "PASHA_MPI_NODE_SIZE='2x'");
}
static const char *case_node_size_differs(void)
{
    return env_case("PASHA_MPI_NODE_SIZE", "2", "1", 2, 1, -1, "different PASHA_MPI_NODE_SIZE values (1 to 2)");
}
static const char *case_num_workers_malformed(void)
{
    return env_case("PASHA_NUM_WORKERS", "two", "two", 0, 1, 0, "PASHA_NUM_WORKERS='two'");
}
static const char *case_num_workers_zero(void)
{
    return env_case("PASHA_NUM_WORKERS", "0", "0", 0, 1, 0, "PASHA_NUM_WORKERS='0'");
}
static const char *case_num_workers_one_rank(void)
{
    return env_case("PASHA_NUM_WORKERS", "2", "3x", 0, rank == last, last, "PASHA_NUM_WORKERS='3x'");
}

/* The cases, by their names in behaviours.txt (check-behaviours.py reads
 * this table: one {"name", function} a line). */
static const struct {
    const char *name;
    const char *(*run)(void);
} cases[] = {
    {"map-results", case_map_results},
    {"map-results-processes", case_map_results_processes},
    {"map-fewer-items", case_map_fewer_items},
    {"map-empty", case_map_empty},
    {"gather", case_gather},
    {"reduce-sum", case_reduce_sum},
    {"reduce-min-max", case_reduce_min_max},
    {"kernel-error", case_kernel_error},
    {"kernel-error-processes", case_kernel_error_processes},
    {"worker-killed", case_worker_killed},
    {"cancel-during-map", case_cancel_during_map},
    {"cancel-before-map", case_cancel_before_map},
    {"node-size-malformed", case_node_size_malformed},
    {"node-size-negative", case_node_size_negative},
    {"node-size-out-of-range", case_node_size_out_of_range},
    {"node-size-zero", case_node_size_zero},
    {"node-size-one-rank", case_node_size_one_rank},
    {"node-size-differs", case_node_size_differs},
    {"num-workers-malformed", case_num_workers_malformed},
    {"num-workers-zero", case_num_workers_zero},
    {"num-workers-one-rank", case_num_workers_one_rank},
};

/* ------------------------------------------------------------------ */
/* the spec and the run                                                */

struct spec_case {
    char name[64], fail_on[8], failing[32], others[32];
    int min_ranks, na;
};

static int read_spec(const char *path, struct spec_case *out, int max)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "behaviours-c: cannot open %s\n", path);
        return -1;
    }
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, fp) && n < max) {
        char a[64], b[64], c[64];
        if (line[0] == '#' || sscanf(line, "%63s", a) != 1) continue;
        if (strcmp(a, "na") == 0 || strcmp(a, "gap") == 0) {
            /* na/gap LANG CASE: a C one marks the case */
            if (sscanf(line, "%*s %63s %63s", b, c) == 2 && strcmp(b, "c") == 0)
                for (int k = 0; k < n; ++k)
                    if (strcmp(out[k].name, c) == 0) out[k].na = a[0] == 'n' ? 1 : 2;
            continue;
        }
        struct spec_case s;
        memset(&s, 0, sizeof s);
        if (sscanf(line, "%63s %7s %31s %31s %d", s.name, s.fail_on, s.failing, s.others, &s.min_ranks) != 5) {
            fprintf(stderr, "behaviours-c: %s: a malformed line: %s", path, line);
            fclose(fp);
            return -1;
        }
        out[n++] = s;
    }
    fclose(fp);
    return n;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    last = nranks - 1;
    if (argc < 2) {
        if (rank == 0) fprintf(stderr, "usage: behaviours-c SPEC [CASE...]\n");
        MPI_Finalize();
        return 2;
    }
    static struct spec_case spec[128];
    int ns = read_spec(argv[1], spec, 128);
    if (ns <= 0) MPI_Abort(MPI_COMM_WORLD, 2);
    int failed = 0, passed = 0, skipped = 0;
    for (int k = 0; k < ns; ++k) {
        const struct spec_case *s = &spec[k];
        int wanted = argc == 2;
        for (int a = 2; a < argc; ++a) wanted |= strcmp(argv[a], s->name) == 0;
        if (!wanted) continue;
        int found = -1;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c)
            if (strcmp(cases[c].name, s->name) == 0) found = (int)c;
        if (found < 0 || s->na == 1 || nranks < s->min_ranks) {
            if (rank == 0)
                printf("behaviours-c %d ranks: %-24s %s\n", nranks, s->name,
                       found < 0 ? "FAIL (no such case in this driver)"
                       : s->na == 1 ? "not applicable (spec)" : "skipped (needs more ranks)");
            if (found < 0) ++failed;
            else ++skipped;
            continue;
        }
        failure[0] = 0;
        alarm(120); /* a hung rank dies, and mpirun ends the job */
        const char *seen = cases[found].run();
        alarm(0);
        int fails_here = strcmp(s->fail_on, "all") == 0 || (strcmp(s->fail_on, "last") == 0 && rank == last);
        const char *want = strcmp(s->fail_on, "none") == 0 || fails_here ? s->failing : s->others;
        char mine[700];
        if (strcmp(seen, want) != 0)
            snprintf(mine, sizeof mine, "saw %s, the spec says %s%s%.500s", seen, want, failure[0] ? "; " : "", failure);
        else snprintf(mine, sizeof mine, "%s", failure);
        int bad = mine[0] != 0, any = 0;
        if (bad) fprintf(stderr, "behaviours-c %d ranks: %s: rank %d: %s\n", nranks, s->name, rank, mine);
        MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (rank == 0) {
            printf("behaviours-c %d ranks: %-24s %s\n", nranks, s->name, any ? "FAIL" : "ok");
            fflush(stdout);
        }
        if (any) ++failed;
        else ++passed;
    }
    if (rank == 0)
        printf("behaviours-c %d ranks: %d passed, %d failed, %d skipped\n", nranks, passed, failed, skipped);
    MPI_Finalize();
    return failed ? 1 : 0;
}
