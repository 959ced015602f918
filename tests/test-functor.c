/* Functors: what each kind hands the kernel, in every context. */
#include "common.h"

struct seen {
    double *out;       /* per index: a value computed from what the kernel got */
    int32_t *begun;    /* per worker (custom functor) */
    int32_t *ended;    /* per worker */
};

static int record_double(void *ud, int worker_id, size_t index, const void *value)
{
    struct seen *s = ud;
    (void)worker_id;
    s->out[index] = *(const double *)value;
    return 0;
}

struct rec {
    int64_t id;
    double x;
};

static void test_functor_sequence_hands_out_element_pointers(void **state)
{
    (void)state;
    const size_t n = 500;
    struct rec *recs = malloc(n * sizeof *recs); /* foreign memory, made before the contexts */
    for (size_t i = 0; i < n; ++i) recs[i] = (struct rec){(int64_t)i, 0.25 * (double)i};
    psh_functor *f;
    assert_int_equal(psh_functor_sequence(&f, &recs[0].x, n, sizeof *recs), PSH_OK);
    assert_int_equal(psh_functor_length(f), n);
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        psh_context *ctx = make_context(&all_configs[k]);
        psh_array *out;
        assert_int_equal(psh_alloc(&out, ctx, PSH_FLOAT64, 1, &n, NULL), PSH_OK);
        struct seen s = {psh_array_data(out), NULL, NULL};
        if (map_copy(ctx, record_double, &s, sizeof s, f) != PSH_OK) fail_msg("%s: %s", all_configs[k].name, psh_last_error());
        for (size_t i = 0; i < n; ++i) assert_true(s.out[i] == 0.25 * (double)i);
        psh_array_free(out);
        psh_context_destroy(ctx);
    }
    psh_functor_destroy(f);
    free(recs);
}

static int check_range(void *ud, int worker_id, size_t index, const void *value)
{
    struct seen *s = ud;
    (void)worker_id;
    s->out[index] = value == NULL ? (double)index : -1.0;
    return 0;
}

static void test_functor_range_hands_out_null(void **state)
{
    (void)state;
    const size_t n = 77;
    psh_functor *f;
    assert_int_equal(psh_functor_range(&f, n), PSH_OK);
    assert_int_equal(psh_functor_length(f), n);
    psh_array *out;
    assert_int_equal(psh_alloc(&out, NULL, PSH_FLOAT64, 1, &n, NULL), PSH_OK);
    struct seen s = {psh_array_data(out), NULL, NULL};
    psh_context *ctx;
    assert_int_equal(psh_context_create(&ctx, PSH_THREADS, 2), PSH_OK);
    assert_int_equal(psh_map(ctx, check_range, &s, f), PSH_OK);
    for (size_t i = 0; i < n; ++i) assert_true(s.out[i] == (double)i);
    psh_context_destroy(ctx);
    psh_array_free(out);
    psh_functor_destroy(f);
}

/* For a 3-d float64 input, the kernel sums its 2-d view using the view's own
 * shape and strides, so any axis and order is checked through the view. */
static int sum_view(void *ud, int worker_id, size_t index, const void *value)
{
    struct seen *s = ud;
    const psh_view *v = value;
    (void)worker_id;
    if (v->ndim != 2 || v->dtype != PSH_FLOAT64) return 3;
    double sum = 0;
    for (size_t i = 0; i < v->shape[0]; ++i)
        for (size_t j = 0; j < v->shape[1]; ++j)
            sum += *(const double *)((const char *)v->data + (ptrdiff_t)i * v->strides[0] + (ptrdiff_t)j * v->strides[1]);
    s->out[index] = sum;
    return 0;
}

static void test_functor_array_along_every_axis_and_order(void **state)
{
    (void)state;
    const size_t shape[3] = {4, 5, 6};
    for (int order = PSH_ORDER_C; order <= PSH_ORDER_F; ++order) {
        psh_alloc_options o;
        psh_alloc_options_init(&o);
        o.order = (psh_order)order;
        psh_array *a;
        assert_int_equal(psh_alloc(&a, NULL, PSH_FLOAT64, 3, shape, &o), PSH_OK);
        const ptrdiff_t *st = psh_array_strides(a);
        char *base = psh_array_data(a);
        for (size_t i = 0; i < 4; ++i)
            for (size_t j = 0; j < 5; ++j)
                for (size_t k = 0; k < 6; ++k)
                    *(double *)(base + i * st[0] + j * st[1] + k * st[2]) = (double)(100 * i + 10 * j + k);
        for (int axis = -3; axis < 3; ++axis) {
            int ax = axis < 0 ? axis + 3 : axis;
            psh_functor *f;
            assert_int_equal(psh_functor_array(&f, a, axis), PSH_OK);
            assert_int_equal(psh_functor_length(f), shape[ax]);
            for (size_t k = 0; k < NUM_CONFIGS; k += 3) {
                if (skip_config(k)) continue;
                psh_context *ctx = make_context(&all_configs[k]);
                psh_array *out;
                assert_int_equal(psh_alloc(&out, ctx, PSH_FLOAT64, 1, &shape[ax], NULL), PSH_OK);
                struct seen s = {psh_array_data(out), NULL, NULL};
                if (map_copy(ctx, sum_view, &s, sizeof s, f) != PSH_OK) fail_msg("%s: %s", all_configs[k].name, psh_last_error());
                for (size_t x = 0; x < shape[ax]; ++x) {
                    /* The sum over the other two axes of 100i + 10j + k with axis ax fixed at x. */
                    double expect = 0;
                    for (size_t i = 0; i < 4; ++i)
                        for (size_t j = 0; j < 5; ++j)
                            for (size_t kk = 0; kk < 6; ++kk) {
                                size_t idx[3] = {i, j, kk};
                                if (idx[ax] == x) expect += (double)(100 * i + 10 * j + kk);
                            }
                    assert_true(s.out[x] == expect);
                }
                psh_array_free(out);
                psh_context_destroy(ctx);
            }
            psh_functor_destroy(f);
        }
        psh_array_free(a);
    }
}

static int read_scalar_view(void *ud, int worker_id, size_t index, const void *value)
{
    struct seen *s = ud;
    const psh_view *v = value;
    (void)worker_id;
    if (v->ndim != 0) return 4;
    s->out[index] = (double)*(const int16_t *)v->data;
    return 0;
}

static void test_functor_strided_over_foreign_memory(void **state)
{
    (void)state;
    /* A 6x4 int16 matrix in plain memory, iterated along axis 1 of its
     * transpose (given as strides), i.e. over its rows' elements. */
    int16_t m[6][4];
    for (int i = 0; i < 6; ++i)
        for (int j = 0; j < 4; ++j) m[i][j] = (int16_t)(10 * i + j);
    const size_t shape[1] = {24};
    psh_functor *f;
    assert_int_equal(psh_functor_strided(&f, m, PSH_INT16, 1, shape, NULL, 0), PSH_OK); /* C-contiguous */
    psh_array *out;
    assert_int_equal(psh_alloc(&out, NULL, PSH_FLOAT64, 1, shape, NULL), PSH_OK);
    struct seen s = {psh_array_data(out), NULL, NULL};
    assert_int_equal(psh_map(NULL, read_scalar_view, &s, f), PSH_OK);
    for (int i = 0; i < 24; ++i) assert_true(s.out[i] == (double)(10 * (i / 4) + i % 4));
    psh_functor_destroy(f);
    /* Every other row, backwards: a negative stride. */
    const size_t shape2[1] = {3};
    const ptrdiff_t strides2[1] = {-2 * (ptrdiff_t)sizeof m[0]};
    assert_int_equal(psh_functor_strided(&f, &m[5][1], PSH_INT16, 1, shape2, strides2, 0), PSH_OK);
    assert_int_equal(psh_map(NULL, read_scalar_view, &s, f), PSH_OK);
    assert_true(s.out[0] == 51 && s.out[1] == 31 && s.out[2] == 11);
    psh_functor_destroy(f);
    psh_array_free(out);
}

struct table {
    double values[100];
};

static size_t table_length(void *self)
{
    (void)self;
    return 100;
}

/* Shared memory: a persistent pool's workers see changes made after they
 * were forked only in psh arrays. */
static int32_t *g_fail;

static int table_get(void *self, size_t index, const void **value)
{
    struct table *t = self;
    if (index == 66 && *g_fail) return 13; /* a bad item, when asked to fail */
    *value = &t->values[index];
    return 0;
}

static struct seen *g_seen; /* in memory that exists before any pool starts */

static int table_begin(void *self, int worker_id)
{
    (void)self;
    g_seen->begun[worker_id] += 1;
    return 0;
}

static void table_end(void *self, int worker_id)
{
    (void)self;
    g_seen->ended[worker_id] += 1;
}

static int failing_begin(void *self, int worker_id)
{
    (void)self;
    (void)worker_id;
    return 21;
}

static struct table g_table; /* a global: visible to persistent pools */

static void test_functor_custom_calls_get_and_worker_hooks_in_every_context(void **state)
{
    (void)state;
    for (int i = 0; i < 100; ++i) g_table.values[i] = 1.5 * i;
    psh_array *fail_flag;
    assert_int_equal(psh_alloc(&fail_flag, NULL, PSH_INT32, 0, NULL, NULL), PSH_OK);
    g_fail = psh_array_data(fail_flag);
    psh_functor_vtable vt = {sizeof vt, table_length, table_get, table_begin, table_end};
    psh_functor *f;
    assert_int_equal(psh_functor_custom(&f, &vt, &g_table), PSH_OK);
    assert_int_equal(psh_functor_length(f), 100);
    static struct seen s;
    g_seen = &s;
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        psh_context *ctx = make_context(&all_configs[k]);
        int W = psh_context_num_workers(ctx);
        psh_alloc_options pw;
        psh_alloc_options_init(&pw);
        pw.per_worker = 1;
        const size_t n = 100;
        psh_array *out, *begun, *ended;
        assert_int_equal(psh_alloc(&out, ctx, PSH_FLOAT64, 1, &n, NULL), PSH_OK);
        assert_int_equal(psh_alloc(&begun, ctx, PSH_INT32, 0, NULL, &pw), PSH_OK);
        assert_int_equal(psh_alloc(&ended, ctx, PSH_INT32, 0, NULL, &pw), PSH_OK);
        s = (struct seen){psh_array_data(out), psh_array_data(begun), psh_array_data(ended)};
        if (map_copy(ctx, record_double, &s, sizeof s, f) != PSH_OK) fail_msg("%s: %s", all_configs[k].name, psh_last_error());
        for (int i = 0; i < 100; ++i) assert_true(s.out[i] == 1.5 * i);
        for (int w = 0; w < W; ++w) {
            assert_int_equal(s.begun[w], 1); /* once per worker and map */
            assert_int_equal(s.ended[w], 1);
        }
        /* get failing stops the map with PSH_EKERNEL and says so. */
        *g_fail = 1;
        assert_error(map_copy(ctx, record_double, &s, sizeof s, f), PSH_EKERNEL, "get returned 13 at index 66");
        *g_fail = 0;
        psh_array_free(out);
        psh_array_free(begun);
        psh_array_free(ended);
        psh_context_destroy(ctx);
    }
    psh_functor_destroy(f);
    psh_array_free(fail_flag);

    psh_functor_vtable bad_begin = {sizeof vt, table_length, table_get, failing_begin, NULL};
    assert_int_equal(psh_functor_custom(&f, &bad_begin, &g_table), PSH_OK);
    double sink[100];
    struct seen s2 = {sink, NULL, NULL};
    assert_error(psh_map(NULL, record_double, &s2, f), PSH_EKERNEL, "worker_begin returned 21");
    psh_functor_destroy(f);
}

static void test_functor_bad_arguments(void **state)
{
    (void)state;
    psh_functor *f = NULL;
    psh_array *a0, *a1;
    size_t n = 4;
    assert_int_equal(psh_alloc(&a0, NULL, PSH_INT8, 0, NULL, NULL), PSH_OK);
    assert_int_equal(psh_alloc(&a1, NULL, PSH_INT8, 1, &n, NULL), PSH_OK);
    assert_error(psh_functor_range(NULL, 3), PSH_EINVAL, "out is NULL");
    assert_error(psh_functor_sequence(&f, NULL, 3, 8), PSH_EINVAL, "base is NULL");
    assert_error(psh_functor_array(&f, NULL, 0), PSH_EINVAL, "array is NULL");
    assert_error(psh_functor_array(&f, a0, 0), PSH_EINVAL, "0-d");
    assert_error(psh_functor_array(&f, a1, 1), PSH_EINVAL, "axis 1 is out of range");
    assert_error(psh_functor_array(&f, a1, -2), PSH_EINVAL, "axis -2 is out of range");
    assert_error(psh_functor_strided(&f, NULL, PSH_INT8, 1, &n, NULL, 0), PSH_EINVAL, "data is NULL");
    assert_error(psh_functor_strided(&f, &n, (psh_dtype)77, 1, &n, NULL, 0), PSH_EINVAL, "dtype 77");
    assert_error(psh_functor_strided(&f, &n, PSH_INT8, 40, &n, NULL, 0), PSH_EINVAL, "ndim 40");
    /* Strides whose products overflow (regression: accepted, and UBSan
     * reported the overflow inside the map). */
    {
        static char mem[16];
        size_t big_shape[2] = {(size_t)1 << 40, 3};
        ptrdiff_t big_strides[2] = {(ptrdiff_t)1 << 30, 1};
        assert_error(psh_functor_strided(&f, mem, PSH_INT8, 2, big_shape, big_strides, 0), PSH_EINVAL,
                     "strides overflow");
        ptrdiff_t neg_strides[2] = {PTRDIFF_MIN / 2, PTRDIFF_MIN / 2};
        size_t shape3[2] = {3, 3};
        assert_error(psh_functor_strided(&f, mem, PSH_INT8, 2, shape3, neg_strides, 0), PSH_EINVAL,
                     "strides overflow");
        assert_error(psh_functor_sequence(&f, mem, (size_t)1 << 40, (size_t)1 << 30), PSH_EINVAL, "overflows");
        assert_error(psh_functor_sequence(&f, mem, 3, (size_t)PTRDIFF_MAX), PSH_EINVAL, "overflows");
        assert_null(f);
        /* Large but representable strides still work. */
        ptrdiff_t ok_strides[2] = {-((ptrdiff_t)1 << 40), 1};
        size_t ok_shape[2] = {2, 3};
        assert_int_equal(psh_functor_strided(&f, mem + 8, PSH_INT8, 2, ok_shape, ok_strides, 1), PSH_OK);
        assert_int_equal(psh_functor_length(f), 3);
        psh_functor_destroy(f);
        f = NULL;
    }
    assert_error(psh_functor_custom(&f, NULL, NULL), PSH_EINVAL, "vtable is NULL");
    psh_functor_vtable vt = {sizeof vt, table_length, NULL, NULL, NULL};
    assert_error(psh_functor_custom(&f, &vt, NULL), PSH_EINVAL, "length and get are required");
    vt.struct_size = 4;
    vt.get = table_get;
    assert_error(psh_functor_custom(&f, &vt, NULL), PSH_EINVAL, "struct_size 4");
    assert_null(f);
    /* Empty sequences need no memory; NULL is harmless elsewhere. */
    assert_int_equal(psh_functor_sequence(&f, NULL, 0, 8), PSH_OK);
    assert_int_equal(psh_functor_length(f), 0);
    psh_functor_destroy(f);
    psh_functor_destroy(NULL);
    assert_int_equal(psh_functor_length(NULL), 0);
    psh_array_free(a0);
    psh_array_free(a1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_functor_sequence_hands_out_element_pointers),
        cmocka_unit_test(test_functor_range_hands_out_null),
        cmocka_unit_test(test_functor_array_along_every_axis_and_order),
        cmocka_unit_test(test_functor_strided_over_foreign_memory),
        cmocka_unit_test(test_functor_custom_calls_get_and_worker_hooks_in_every_context),
        cmocka_unit_test(test_functor_bad_arguments),
    };
    return cmocka_run_group_tests_name("functor", tests, NULL, NULL);
}
