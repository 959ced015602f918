/* The 0.2 additions in one program: the default worker count
 * (psh_cpu_count), per-worker hooks around a map (worker_begin /
 * worker_end in psh_map_options) and errors as data (psh_last_error_info).
 * Run by `meson test example-features`; README.md shows it. */
#include <pasha/pasha.h>
#include <stdio.h>

struct job {
    double *partial; /* one row per worker: a per_worker array */
    long *begun;     /* how often each worker's hook ran */
};

static int begin(void *user_data, int worker_id)
{
    struct job *j = user_data;
    j->partial[worker_id] = 0; /* per-worker setup, once per map */
    j->begun[worker_id] += 1;
    return 0;
}

static int add(void *user_data, int worker_id, size_t index, const void *value)
{
    struct job *j = user_data;
    (void)value;
    j->partial[worker_id] += (double)index;
    return 0;
}

static int fail_at_13(void *user_data, int worker_id, size_t index, const void *value)
{
    (void)user_data, (void)worker_id, (void)value;
    return index == 13 ? 7 : 0;
}

int main(void)
{
    int n = psh_cpu_count(); /* PASHA_NUM_WORKERS, else CPUs, quota, Slurm */
    if (n < 0) {
        fprintf(stderr, "%s\n", psh_last_error());
        return 1;
    }
    psh_context *ctx;
    psh_context_create(&ctx, PSH_PROCESSES, 0); /* 0: psh_cpu_count() workers */
    int w = psh_context_num_workers(ctx);

    psh_alloc_options ao;
    psh_alloc_options_init(&ao);
    ao.per_worker = 1;
    size_t one = 1;
    psh_array *partial, *begun;
    psh_alloc(&partial, ctx, PSH_FLOAT64, 1, &one, &ao); /* shape (w, 1) */
    psh_alloc(&begun, ctx, PSH_INT64, 1, &one, &ao);
    struct job j = {psh_array_data(partial), psh_array_data(begun)};

    psh_map_options mo;
    psh_map_options_init(&mo);
    mo.schedule = PSH_SCHEDULE_DYNAMIC;
    mo.chunk = 10;
    mo.worker_begin = begin; /* runs in each worker, once per map */
    psh_functor *f;
    psh_functor_range(&f, 1000);
    psh_map_ext(ctx, add, &j, f, &mo);
    double sum = 0;
    long hooks = 0;
    for (int i = 0; i < w; i++) {
        sum += j.partial[i];
        hooks += j.begun[i];
    }
    printf("workers %d (psh_cpu_count %d), sum %.0f (expected 499500), hooks %ld\n", w, n, sum, hooks);

    int rc = psh_map(ctx, fail_at_13, NULL, f);
    psh_error_info info = {.struct_size = sizeof info};
    psh_last_error_info(&info);
    printf("failed map: %s at index %lld by worker %d in \"%s\"\n", psh_strerror(info.code), info.index,
           info.worker_id, info.callback ? info.callback : "");

    int ok = sum == 499500 && hooks == w && rc == PSH_EKERNEL && info.code == PSH_EKERNEL && info.index == 13 &&
             info.worker_id >= 0 && info.worker_id < w;
    psh_functor_destroy(f);
    psh_array_free(begun);
    psh_array_free(partial);
    psh_context_destroy(ctx);
    return ok ? 0 : 1;
}
