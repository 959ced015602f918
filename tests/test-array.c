/* Shared-memory arrays: shapes, orders, fill, per_worker, lifetime. */
#include <complex.h>
#include <dirent.h>

#include "common.h"

static const psh_dtype all_dtypes[] = {PSH_INT8,  PSH_UINT8,  PSH_INT16,   PSH_UINT16,
                                       PSH_INT32, PSH_UINT32, PSH_INT64,   PSH_UINT64,
                                       PSH_FLOAT32, PSH_FLOAT64, PSH_COMPLEX64, PSH_COMPLEX128};
static const size_t all_sizes[] = {1, 1, 2, 2, 4, 4, 8, 8, 4, 8, 8, 16};

static void test_dtype_sizes(void **state)
{
    (void)state;
    for (size_t i = 0; i < 12; ++i) assert_int_equal(psh_dtype_size(all_dtypes[i]), all_sizes[i]);
    assert_int_equal(psh_dtype_size((psh_dtype)12), 0);
    assert_int_equal(psh_dtype_size((psh_dtype)-1), 0);
}

static void test_alloc_c_and_f_order_shapes_and_strides(void **state)
{
    (void)state;
    const size_t shape[3] = {2, 3, 4};
    psh_alloc_options o;
    psh_alloc_options_init(&o);
    assert_int_equal(o.struct_size, sizeof o);
    assert_int_equal(o.order, PSH_ORDER_DEFAULT);
    psh_array *c, *f;
    assert_int_equal(psh_alloc(&c, NULL, PSH_FLOAT32, 3, shape, NULL), PSH_OK);
    o.order = PSH_ORDER_F;
    assert_int_equal(psh_alloc(&f, NULL, PSH_FLOAT32, 3, shape, &o), PSH_OK);
    static const ptrdiff_t cs[3] = {48, 16, 4}, fs[3] = {4, 8, 24};
    for (int i = 0; i < 3; ++i) {
        assert_int_equal(psh_array_shape(c)[i], shape[i]);
        assert_int_equal(psh_array_shape(f)[i], shape[i]);
        assert_int_equal(psh_array_strides(c)[i], cs[i]);
        assert_int_equal(psh_array_strides(f)[i], fs[i]);
    }
    assert_int_equal(psh_array_ndim(c), 3);
    assert_int_equal(psh_array_size(c), 24);
    assert_int_equal(psh_array_nbytes(c), 96);
    assert_int_equal(psh_array_dtype(f), PSH_FLOAT32);
    assert_int_equal(psh_array_order(c), PSH_ORDER_C);
    assert_int_equal(psh_array_order(f), PSH_ORDER_F);
    assert_int_equal((uintptr_t)psh_array_data(c) % 64, 0);
    assert_int_equal((uintptr_t)psh_array_data(f) % 64, 0);
    /* Writable and zero-filled. */
    float *d = psh_array_data(c);
    for (int i = 0; i < 24; ++i) assert_true(d[i] == 0.0f);
    d[23] = 1.5f;
    assert_true(((float *)psh_array_data(c))[23] == 1.5f);
    psh_array_free(c);
    psh_array_free(f);
}

static void test_alloc_fill_every_dtype(void **state)
{
    (void)state;
    const size_t shape[2] = {37, 129}; /* odd sizes: the doubling fill must end exactly */
    unsigned char value[16];
    for (size_t k = 0; k < 12; ++k) {
        for (size_t b = 0; b < 16; ++b) value[b] = (unsigned char)(0x11 * (b + 1) + k);
        psh_alloc_options o;
        psh_alloc_options_init(&o);
        o.fill = value;
        psh_array *a;
        assert_int_equal(psh_alloc(&a, NULL, all_dtypes[k], 2, shape, &o), PSH_OK);
        const unsigned char *d = psh_array_data(a);
        for (size_t i = 0; i < psh_array_size(a); ++i)
            if (memcmp(d + i * all_sizes[k], value, all_sizes[k]) != 0) fail_msg("dtype %zu element %zu", k, i);
        psh_array_free(a);
    }
    /* A concrete one, read as its type. */
    double complex z = 1.0 - 2.0 * I;
    psh_alloc_options o;
    psh_alloc_options_init(&o);
    o.fill = &z;
    size_t n = 5;
    psh_array *a;
    assert_int_equal(psh_alloc(&a, NULL, PSH_COMPLEX128, 1, &n, &o), PSH_OK);
    for (size_t i = 0; i < n; ++i) assert_true(((double complex *)psh_array_data(a))[i] == z);
    psh_array_free(a);
}

static void test_alloc_per_worker_axis(void **state)
{
    (void)state;
    psh_context *ctx;
    assert_int_equal(psh_context_create(&ctx, PSH_THREADS, 3), PSH_OK);
    const size_t shape[2] = {4, 5};
    psh_alloc_options o;
    psh_alloc_options_init(&o);
    o.per_worker = 1;
    psh_array *c, *f;
    assert_int_equal(psh_alloc(&c, ctx, PSH_INT16, 2, shape, &o), PSH_OK);
    o.order = PSH_ORDER_F;
    assert_int_equal(psh_alloc(&f, ctx, PSH_INT16, 2, shape, &o), PSH_OK);
    assert_int_equal(psh_array_ndim(c), 3);
    assert_int_equal(psh_array_shape(c)[0], 3); /* first in C order */
    assert_int_equal(psh_array_shape(c)[1], 4);
    assert_int_equal(psh_array_shape(c)[2], 5);
    assert_int_equal(psh_array_shape(f)[0], 4);
    assert_int_equal(psh_array_shape(f)[2], 3); /* last in F order */
    assert_int_equal(psh_array_size(c), 60);
    psh_array_free(c);
    psh_array_free(f);
    psh_context_destroy(ctx);
}

/* Per-worker rows of a page-multiple size start off a page boundary (4K
 * aliasing with page-aligned inputs, bench (f)), still 64-byte aligned, with
 * contiguous strides, and every row is writable. */
static void test_per_worker_rows_start_off_page(void **state)
{
    (void)state;
    psh_context *ctx;
    assert_int_equal(psh_context_create(&ctx, PSH_THREADS, 2), PSH_OK);
    psh_alloc_options o;
    psh_alloc_options_init(&o);
    o.per_worker = 1;
    const size_t row[2] = {512, 128}, bins = 64;
    psh_array *sums, *hist, *plain;
    assert_int_equal(psh_alloc(&sums, ctx, PSH_FLOAT32, 2, row, &o), PSH_OK);
    assert_int_equal(psh_alloc(&hist, ctx, PSH_INT64, 1, &bins, &o), PSH_OK);
    assert_int_equal(psh_alloc(&plain, ctx, PSH_FLOAT32, 2, row, NULL), PSH_OK);
    uintptr_t s = (uintptr_t)psh_array_data(sums), h = (uintptr_t)psh_array_data(hist);
    assert_int_equal(s % 128, 0); /* rows of 128-byte multiples never share a 128-byte line pair */
    assert_int_equal(h % 128, 0);
    assert_int_not_equal(s % 4096, 0);
    assert_int_not_equal(s % 4096, h % 4096); /* the two row arrays do not alias each other either */
    assert_int_equal((uintptr_t)psh_array_data(plain) % 4096, 0); /* other arrays stay page-aligned */
    assert_int_equal(psh_array_strides(sums)[0], 512 * 128 * 4);
    assert_int_equal(psh_array_strides(hist)[0], 64 * 8);
    assert_int_equal(psh_array_nbytes(sums), 2 * 512 * 128 * 4);
    float *d = psh_array_data(sums);
    for (size_t i = 0; i < 2 * 512 * 128; ++i) d[i] = (float)i;
    for (size_t i = 0; i < 2 * 512 * 128; i += 4097) assert_true(d[i] == (float)i);
    psh_array_free(sums);
    psh_array_free(hist);
    psh_array_free(plain);
    psh_context_destroy(ctx);
}

/* PSH_PER_WORKER_PADDED: rows 128-byte aligned with at least 128 bytes
 * between one worker's last byte and the next worker's first, in C and F
 * order, for rows of every size class (a scalar, 120 B in F order, 512 B, 256 KiB);
 * the rows are independent storage (each worker's counts land in its own
 * row, in a map on every context kind) and a fill value reaches every
 * element. Without the option the rows stay back to back. */
static void check_padded_rows(const psh_array *a, int workers, size_t row_bytes)
{
    int ax = psh_array_order(a) == PSH_ORDER_F ? psh_array_ndim(a) - 1 : 0;
    ptrdiff_t stride = psh_array_strides(a)[ax];
    assert_int_equal(psh_array_shape(a)[ax], (size_t)workers);
    assert_int_equal(stride % 128, 0);
    assert_true((size_t)stride >= row_bytes + 128);
    assert_true((size_t)stride < row_bytes + 256); /* no more than the gap and the rounding */
    assert_int_equal((uintptr_t)psh_array_data(a) % 128, 0);
    assert_int_equal(psh_array_nbytes(a), (size_t)workers * row_bytes);
    /* within a row the strides are the contiguous ones */
    ptrdiff_t want = (ptrdiff_t)psh_dtype_size(psh_array_dtype(a));
    for (int k = 0; k < psh_array_ndim(a); ++k) {
        int i = psh_array_order(a) == PSH_ORDER_F ? k : psh_array_ndim(a) - 1 - k;
        if (i == ax) continue;
        assert_int_equal(psh_array_strides(a)[i], want);
        want *= (ptrdiff_t)psh_array_shape(a)[i];
    }
}

struct padded_counts {
    char *base;
    ptrdiff_t stride;
};

static int count_into_row(void *ud, int worker, size_t index, const void *value)
{
    const struct padded_counts *p = ud;
    (void)value;
    int64_t *row = (int64_t *)(p->base + worker * p->stride);
    row[index % 64] += 1;
    row[64] += (int64_t)index;
    return 0;
}

static void test_per_worker_padded_rows(void **state)
{
    (void)state;
    psh_context *ctx;
    assert_int_equal(psh_context_create(&ctx, PSH_THREADS, 3), PSH_OK);
    psh_alloc_options o;
    psh_alloc_options_init(&o);
    o.per_worker = PSH_PER_WORKER_PADDED;
    const size_t bins = 64, row[2] = {512, 128}, odd[2] = {3, 5};
    psh_array *h, *s, *one, *f, *c;
    assert_int_equal(psh_alloc(&h, ctx, PSH_INT64, 1, &bins, &o), PSH_OK);
    check_padded_rows(h, 3, 512);
    assert_int_equal(psh_array_strides(h)[0], 640);
    assert_int_equal(psh_alloc(&one, ctx, PSH_FLOAT64, 0, NULL, &o), PSH_OK);
    check_padded_rows(one, 3, 8);
    assert_int_equal(psh_array_strides(one)[0], 256);
    assert_int_equal(psh_alloc(&s, ctx, PSH_FLOAT32, 2, row, &o), PSH_OK);
    check_padded_rows(s, 3, 512 * 128 * 4);
    o.order = PSH_ORDER_F;
    double fill = 2.5;
    o.fill = &fill;
    assert_int_equal(psh_alloc(&f, ctx, PSH_FLOAT64, 2, odd, &o), PSH_OK);
    check_padded_rows(f, 3, 15 * 8);
    assert_int_equal(psh_array_shape(f)[2], 3);
    for (int w = 0; w < 3; ++w)
        for (size_t j = 0; j < 5; ++j)
            for (size_t i = 0; i < 3; ++i) {
                const ptrdiff_t *st = psh_array_strides(f);
                double v = *(double *)((char *)psh_array_data(f) + i * st[0] + j * st[1] + w * st[2]);
                assert_true(v == 2.5);
            }
    /* contiguous without the option, the old layout */
    o.order = PSH_ORDER_C;
    o.fill = NULL;
    o.per_worker = 1;
    assert_int_equal(psh_alloc(&c, ctx, PSH_INT64, 1, &bins, &o), PSH_OK);
    assert_int_equal(psh_array_strides(c)[0], 512);
    psh_array_free(c);
    psh_array_free(f);
    psh_array_free(s);
    psh_array_free(one);
    psh_array_free(h);
    psh_context_destroy(ctx);

    /* each worker's counts in its own row, on every kind of context */
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        psh_context *x = make_context(&all_configs[k]);
        int workers = all_configs[k].workers;
        const size_t cols = 65;
        psh_array *acc;
        psh_alloc_options po;
        psh_alloc_options_init(&po);
        po.per_worker = PSH_PER_WORKER_PADDED;
        assert_int_equal(psh_alloc(&acc, x, PSH_INT64, 1, &cols, &po), PSH_OK);
        check_padded_rows(acc, workers, 65 * 8);
        struct padded_counts p = {psh_array_data(acc), psh_array_strides(acc)[0]};
        const size_t n = 10000;
        psh_functor *r;
        assert_int_equal(psh_functor_range(&r, n), PSH_OK);
        psh_map_options mo;
        psh_map_options_init(&mo);
        mo.user_data_size = sizeof p; /* p lives on this stack: pools get a copy */
        assert_int_equal(psh_map_ext(x, count_into_row, &p, r, &mo), PSH_OK);
        int64_t total[65] = {0};
        for (int w = 0; w < workers; ++w) {
            const int64_t *rw = (const int64_t *)(p.base + w * p.stride);
            for (size_t b = 0; b < 65; ++b) total[b] += rw[b];
            /* the gap after the row was never written */
            if (w + 1 < workers)
                for (const char *g = (const char *)(rw + 65); g < p.base + (w + 1) * p.stride; ++g)
                    assert_int_equal(*g, 0);
        }
        for (size_t b = 0; b < 64; ++b) assert_int_equal(total[b], (int64_t)(n / 64 + (b < n % 64 ? 1 : 0)));
        assert_int_equal(total[64], (int64_t)(n * (n - 1) / 2));
        psh_functor_destroy(r);
        psh_array_free(acc);
        psh_context_destroy(x);
    }
}

static void test_alloc_like_takes_shape_dtype_and_order(void **state)
{
    (void)state;
    const size_t shape[2] = {6, 7};
    psh_alloc_options o;
    psh_alloc_options_init(&o);
    o.order = PSH_ORDER_F;
    psh_array *like, *a, *b;
    assert_int_equal(psh_alloc(&like, NULL, PSH_UINT16, 2, shape, &o), PSH_OK);
    assert_int_equal(psh_alloc_like(&a, NULL, like, NULL), PSH_OK);
    assert_int_equal(psh_array_dtype(a), PSH_UINT16);
    assert_int_equal(psh_array_order(a), PSH_ORDER_F);
    assert_int_equal(psh_array_shape(a)[0], 6);
    assert_int_equal(psh_array_shape(a)[1], 7);
    assert_int_equal(psh_array_strides(a)[1], 12);
    assert_ptr_not_equal(psh_array_data(a), psh_array_data(like));
    o.order = PSH_ORDER_C; /* opts override like's order */
    assert_int_equal(psh_alloc_like(&b, NULL, like, &o), PSH_OK);
    assert_int_equal(psh_array_order(b), PSH_ORDER_C);
    assert_int_equal(psh_array_strides(b)[0], 14);
    assert_error(psh_alloc_like(&b, NULL, NULL, NULL), PSH_EINVAL, "like is NULL");
    psh_array_free(a);
    psh_array_free(b);
    psh_array_free(like);
}

static void test_alloc_zero_length_and_zero_dimensions(void **state)
{
    (void)state;
    psh_array *scalar, *empty;
    assert_int_equal(psh_alloc(&scalar, NULL, PSH_FLOAT64, 0, NULL, NULL), PSH_OK);
    assert_int_equal(psh_array_ndim(scalar), 0);
    assert_int_equal(psh_array_size(scalar), 1);
    *(double *)psh_array_data(scalar) = 2.5;
    assert_true(*(double *)psh_array_data(scalar) == 2.5);
    const size_t shape[2] = {0, 10};
    assert_int_equal(psh_alloc(&empty, NULL, PSH_INT32, 2, shape, NULL), PSH_OK);
    assert_int_equal(psh_array_size(empty), 0);
    assert_int_equal(psh_array_nbytes(empty), 0);
    assert_non_null(psh_array_data(empty));
    psh_array_free(scalar);
    psh_array_free(empty);
}

static void test_alloc_bad_arguments(void **state)
{
    (void)state;
    psh_array *a = NULL;
    size_t shape[33];
    for (int i = 0; i < 33; ++i) shape[i] = 1;
    assert_error(psh_alloc(NULL, NULL, PSH_INT8, 1, shape, NULL), PSH_EINVAL, "out is NULL");
    assert_error(psh_alloc(&a, NULL, PSH_INT8, -1, shape, NULL), PSH_EINVAL, "ndim -1");
    assert_error(psh_alloc(&a, NULL, PSH_INT8, 33, shape, NULL), PSH_EINVAL, "ndim 33");
    assert_error(psh_alloc(&a, NULL, PSH_INT8, 2, NULL, NULL), PSH_EINVAL, "shape is NULL");
    assert_error(psh_alloc(&a, NULL, (psh_dtype)12, 1, shape, NULL), PSH_EINVAL, "unknown dtype 12");
    const size_t huge[2] = {SIZE_MAX / 2, 3};
    assert_error(psh_alloc(&a, NULL, PSH_INT8, 2, huge, NULL), PSH_EINVAL, "overflows");
    const size_t empty_but_huge[3] = {0, SIZE_MAX / 16, 64}; /* no elements, but strides overflow */
    assert_error(psh_alloc(&a, NULL, PSH_INT8, 3, empty_but_huge, NULL), PSH_EINVAL, "overflows");
    const size_t big[1] = {SIZE_MAX / 8 + 1};
    assert_error(psh_alloc(&a, NULL, PSH_FLOAT64, 1, big, NULL), PSH_EINVAL, "overflows");
    psh_alloc_options o;
    psh_alloc_options_init(&o);
    o.order = (psh_order)5;
    assert_error(psh_alloc(&a, NULL, PSH_INT8, 1, shape, &o), PSH_EINVAL, "unknown order 5");
    psh_alloc_options_init(&o);
    o.struct_size = 0;
    assert_error(psh_alloc(&a, NULL, PSH_INT8, 1, shape, &o), PSH_EINVAL, "psh_alloc_options_init");
    psh_alloc_options_init(&o);
    o.per_worker = 1;
    assert_error(psh_alloc(&a, NULL, PSH_INT8, 32, shape, &o), PSH_EINVAL, "per_worker");
    assert_null(a);
    /* More than the process can have: an error now, with the numbers,
     * never a SIGBUS or the OOM killer later. */
    const size_t too_big[1] = {(size_t)1 << 46};
    assert_error(psh_alloc(&a, NULL, PSH_UINT8, 1, too_big, NULL), PSH_ENOMEM, "does not fit in the memory");
    assert_null(a);
    /* Accessors and free accept NULL. */
    psh_array_free(NULL);
    assert_null(psh_array_data(NULL));
    assert_null(psh_array_shape(NULL));
    assert_null(psh_array_strides(NULL));
    assert_int_equal(psh_array_ndim(NULL), 0);
    assert_int_equal(psh_array_size(NULL), 0);
    assert_int_equal(psh_array_nbytes(NULL), 0);
}

static int count_shm_entries(void)
{
    DIR *d = opendir("/dev/shm");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "psh-", 4) == 0) ++n;
    closedir(d);
    return n;
}

static void test_alloc_leaves_nothing_in_dev_shm(void **state)
{
    (void)state;
    psh_array *a[8];
    size_t n = 1 << 20;
    for (int i = 0; i < 8; ++i) {
        assert_int_equal(psh_alloc(&a[i], NULL, PSH_UINT8, 1, &n, NULL), PSH_OK);
        assert_int_equal(count_shm_entries(), 0);
        n *= 2;
    }
    for (int i = 0; i < 8; ++i) psh_array_free(a[i]);
    assert_int_equal(count_shm_entries(), 0);
}

static void test_freed_memory_comes_back_zeroed(void **state)
{
    (void)state;
    size_t n = 1 << 16;
    for (int round = 0; round < 4; ++round) {
        psh_array *a;
        assert_int_equal(psh_alloc(&a, NULL, PSH_INT64, 1, &n, NULL), PSH_OK);
        int64_t *d = psh_array_data(a);
        for (size_t i = 0; i < n; ++i) {
            if (d[i] != 0) fail_msg("round %d: element %zu is %lld", round, i, (long long)d[i]);
            d[i] = (int64_t)i + 1;
        }
        psh_array_free(a);
    }
}

static int add_one(void *ud, int worker_id, size_t index, const void *value)
{
    (void)ud;
    (void)worker_id;
    (void)index;
    const psh_view *v = value;
    *(int32_t *)v->data += 1;
    return 0;
}

static void test_arrays_from_one_context_work_in_every_other(void **state)
{
    (void)state;
    size_t n = 999;
    psh_context *serial;
    assert_int_equal(psh_context_create(&serial, PSH_SERIAL, 1), PSH_OK);
    psh_array *a;
    assert_int_equal(psh_alloc(&a, serial, PSH_INT32, 1, &n, NULL), PSH_OK);
    psh_functor *f;
    assert_int_equal(psh_functor_array(&f, a, 0), PSH_OK);
    for (size_t k = 0; k < NUM_CONFIGS; ++k) {
        if (skip_config(k)) continue;
        psh_context *ctx = make_context(&all_configs[k]);
        if (psh_map(ctx, add_one, NULL, f) != PSH_OK) fail_msg("%s: %s", all_configs[k].name, psh_last_error());
        psh_context_destroy(ctx);
    }
    int32_t ran = 0;
    for (size_t k = 0; k < NUM_CONFIGS; ++k) ran += !skip_config(k);
    for (size_t i = 0; i < n; ++i) assert_int_equal(((int32_t *)psh_array_data(a))[i], ran);
    psh_functor_destroy(f);
    psh_array_free(a);
    psh_context_destroy(serial);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_sizes),
        cmocka_unit_test(test_alloc_c_and_f_order_shapes_and_strides),
        cmocka_unit_test(test_alloc_fill_every_dtype),
        cmocka_unit_test(test_alloc_per_worker_axis),
        cmocka_unit_test(test_per_worker_rows_start_off_page),
        cmocka_unit_test(test_per_worker_padded_rows),
        cmocka_unit_test(test_alloc_like_takes_shape_dtype_and_order),
        cmocka_unit_test(test_alloc_zero_length_and_zero_dimensions),
        cmocka_unit_test(test_alloc_bad_arguments),
        cmocka_unit_test(test_alloc_leaves_nothing_in_dev_shm),
        cmocka_unit_test(test_freed_memory_comes_back_zeroed),
        cmocka_unit_test(test_arrays_from_one_context_work_in_every_other),
    };
    return cmocka_run_group_tests_name("array", tests, NULL, NULL);
}
