/* One dlopen/map/dlclose cycle's work, shared by the unload test's driver
 * (which reaches libpasha through dlsym) and its plugin (linked to
 * libpasha, so its kernel is unmapped with it at dlclose). */
#ifndef PASHA_TESTS_UNLOAD_CYCLE_H
#define PASHA_TESTS_UNLOAD_CYCLE_H

#include <pasha/pasha.h>
#include <stdio.h>

/* The calls a cycle makes, however they were found. */
struct unload_api {
    void (*context_options_init)(psh_context_options *);
    int (*context_create_ext)(psh_context **, const psh_context_options *);
    void (*context_destroy)(psh_context *);
    int (*alloc)(psh_array **, psh_context *, psh_dtype, int, const size_t *, const psh_alloc_options *);
    void *(*array_data)(const psh_array *);
    void (*array_free)(psh_array *);
    int (*map_blocks)(psh_context *, psh_block_kernel, void *, size_t);
    const char *(*last_error)(void);
    int (*set_default_kind)(psh_kind, int);
};

enum unload_kind { UNLOAD_SERIAL, UNLOAD_THREADS, UNLOAD_PROCESSES, UNLOAD_POOL, UNLOAD_DEFAULT, UNLOAD_DEFAULT_THREADS, UNLOAD_KINDS };

static const char *const unload_kind_names[UNLOAD_KINDS] = {"serial", "threads", "processes", "pool", "default",
                                                            "default-threads"};

enum { UNLOAD_N = 1000 };

static int unload_square(void *user_data, int worker_id, size_t begin, size_t end)
{
    (void)worker_id;
    long long *out = (long long *)user_data;
    for (size_t i = begin; i < end; ++i) out[i] = (long long)(i * i) + 1;
    return 0;
}

/* Make a context of the kind (default: the library's own; default-threads:
 * the library's own, made a threads context), map, check every
 * item, and destroy the context unless keep. *kept gets a kept context
 * (the caller leaks it on purpose: it is alive at dlclose). 0, or -1 with a
 * message on stderr. */
static int unload_cycle(const struct unload_api *a, int kind, int keep, psh_context **kept)
{
    psh_context *ctx = NULL;
    *kept = NULL;
    if (kind == UNLOAD_DEFAULT_THREADS && a->set_default_kind(PSH_THREADS, 2)) {
        fprintf(stderr, "set_default_kind: %s\n", a->last_error());
        return -1;
    }
    if (kind < UNLOAD_DEFAULT) {
        psh_context_options o;
        a->context_options_init(&o);
        o.kind = kind == UNLOAD_SERIAL ? PSH_SERIAL : kind == UNLOAD_THREADS ? PSH_THREADS : PSH_PROCESSES;
        o.num_workers = kind == UNLOAD_SERIAL ? 1 : 2;
        o.persistent = kind == UNLOAD_POOL;
        if (a->context_create_ext(&ctx, &o)) {
            fprintf(stderr, "context_create_ext: %s\n", a->last_error());
            return -1;
        }
    }
    size_t n = UNLOAD_N;
    psh_array *arr = NULL;
    if (a->alloc(&arr, ctx, PSH_INT64, 1, &n, NULL)) {
        fprintf(stderr, "alloc: %s\n", a->last_error());
        return -1;
    }
    long long *out = (long long *)a->array_data(arr);
    int rc = a->map_blocks(ctx, unload_square, out, n);
    if (rc) {
        fprintf(stderr, "map_blocks: %s\n", a->last_error());
        return -1;
    }
    for (size_t i = 0; i < n; ++i)
        if (out[i] != (long long)(i * i) + 1) {
            fprintf(stderr, "item %zu is %lld, not %lld\n", i, out[i], (long long)(i * i) + 1);
            return -1;
        }
    a->array_free(arr);
    if (keep)
        *kept = ctx;
    else
        a->context_destroy(ctx);
    return 0;
}

#endif
