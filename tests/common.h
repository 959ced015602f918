/* Shared by the test files: the contexts every behaviour is proven in. */
#ifndef PASHA_TESTS_COMMON_H
#define PASHA_TESTS_COMMON_H

#include <pasha/pasha.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct ctx_config {
    const char *name;
    psh_kind kind;
    int workers;
    int persistent;
    psh_schedule schedule;
    size_t chunk;
};

/* Every kind and mode, with a few worker counts and every schedule. */
static const struct ctx_config all_configs[] = {
    {"serial", PSH_SERIAL, 1, 0, PSH_SCHEDULE_STATIC, 0},
    {"threads-1", PSH_THREADS, 1, 0, PSH_SCHEDULE_STATIC, 0},
    {"threads-2", PSH_THREADS, 2, 0, PSH_SCHEDULE_STATIC, 0},
    {"threads-3-dynamic", PSH_THREADS, 3, 0, PSH_SCHEDULE_DYNAMIC, 0},
    {"threads-4-guided", PSH_THREADS, 4, 0, PSH_SCHEDULE_GUIDED, 0},
    {"processes-2", PSH_PROCESSES, 2, 0, PSH_SCHEDULE_STATIC, 0},
    {"processes-3-dynamic-7", PSH_PROCESSES, 3, 0, PSH_SCHEDULE_DYNAMIC, 7},
    {"pool-2", PSH_PROCESSES, 2, 1, PSH_SCHEDULE_STATIC, 0},
    {"pool-3-guided", PSH_PROCESSES, 3, 1, PSH_SCHEDULE_GUIDED, 0},
    {"pool-2-dynamic", PSH_PROCESSES, 2, 1, PSH_SCHEDULE_DYNAMIC, 1},
};
#define NUM_CONFIGS (sizeof all_configs / sizeof all_configs[0])

/* PASHA_TEST_FEW_CONFIGS=1 (set for slow runs such as valgrind) keeps one
 * context of each kind: serial, threads-2, processes-2, pool-2. */
static inline int skip_config(size_t k)
{
    const char *few = getenv("PASHA_TEST_FEW_CONFIGS");
    return few && *few && strcmp(few, "0") != 0 && k != 0 && k != 2 && k != 5 && k != 7;
}

static inline psh_context *make_context(const struct ctx_config *c)
{
    psh_context_options o;
    psh_context_options_init(&o);
    o.kind = c->kind;
    o.num_workers = c->workers;
    o.persistent = c->persistent;
    o.schedule = c->schedule;
    o.chunk = c->chunk;
    psh_context *ctx = NULL;
    int rc = psh_context_create_ext(&ctx, &o);
    if (rc != PSH_OK) fail_msg("%s: %s", c->name, psh_last_error());
    return ctx;
}

/* psh_map with user_data copied for persistent pools (it lives on the stack). */
static inline int map_copy(psh_context *ctx, psh_kernel kernel, void *ud, size_t size, psh_functor *f)
{
    psh_map_options o;
    psh_map_options_init(&o);
    o.user_data_size = size;
    return psh_map_ext(ctx, kernel, ud, f, &o);
}

static inline int map_blocks_copy(psh_context *ctx, psh_block_kernel kernel, void *ud, size_t size, size_t n)
{
    psh_map_options o;
    psh_map_options_init(&o);
    o.user_data_size = size;
    return psh_map_blocks_ext(ctx, kernel, ud, n, &o);
}

/* Assert a call failed with `code` and that the message mentions `needle`. */
#define assert_error(call, code, needle)                                                            \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        assert_int_equal(rc_, (code));                                                             \
        if (!strstr(psh_last_error(), (needle)))                                                   \
            fail_msg("message \"%s\" does not mention \"%s\"", psh_last_error(), (needle));         \
    } while (0)

#endif
