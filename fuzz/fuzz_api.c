/* libFuzzer target over the argument validation of alloc, functors and map:
 * the input bytes become a sequence of calls with arbitrary arguments (NULLs,
 * bad enums, huge and overflowing shapes, bad axes, bad options). Every call
 * must return a status without crashing; successful ones are used and freed.
 * Allocations that would really take more than 16 MiB are skipped (the
 * overflowing ones are always tried: rejecting them is the point). */
#include <pasha/pasha.h>
#include <stdint.h>
#include <string.h>

struct input {
    const uint8_t *p;
    size_t n;
};

static uint64_t take(struct input *in, size_t bytes)
{
    uint64_t v = 0;
    for (size_t i = 0; i < bytes && in->n; ++i, ++in->p, --in->n) v = (v << 8) | *in->p;
    return v;
}

static int small_kernel(void *ud, int worker_id, size_t index, const void *value)
{
    (void)value;
    uint8_t *out = ud;
    if (out) out[index % 64] ^= (uint8_t)(index + (size_t)worker_id);
    return index == 1000 ? 5 : 0; /* an error path too */
}

static int small_block(void *ud, int worker_id, size_t begin, size_t end)
{
    (void)ud;
    (void)worker_id;
    return begin > end;
}

static size_t length3(void *self)
{
    (void)self;
    return 3;
}

static int get_self(void *self, size_t index, const void **value)
{
    (void)index;
    *value = self;
    return 0;
}

/* Would this shape really allocate more than limit bytes (no overflow)? */
static int too_big(int dtype, int ndim, const size_t *shape, size_t limit)
{
    size_t item = psh_dtype_size((psh_dtype)dtype), total = item ? item : 1;
    for (int i = 0; i < ndim && i < 40; ++i)
        if (__builtin_mul_overflow(total, shape[i], &total)) return 0; /* overflows: must be rejected */
    return total > limit;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    static psh_context *ctx;
    if (!ctx && psh_context_create(&ctx, PSH_SERIAL, 1) != PSH_OK) return 0;
    psh_array *arrays[4] = {0};
    psh_functor *functors[4] = {0};
    uint8_t scratch[64] = {0};
    for (int step = 0; step < 16 && in.n; ++step) {
        int op = (int)(take(&in, 1) % 8);
        size_t shape[40];
        int ndim = (int)(int8_t)take(&in, 1) % 40;
        int dtype = (int)(int8_t)take(&in, 1) % 16;
        for (int i = 0; i < (ndim > 0 ? ndim : 0); ++i) {
            uint64_t kind = take(&in, 1);
            shape[i] = kind & 0x80 ? (size_t)take(&in, 8) : (size_t)(kind & 0x3f);
        }
        int slot = (int)(take(&in, 1) % 4);
        psh_alloc_options ao;
        psh_alloc_options_init(&ao);
        uint64_t flags = take(&in, 2);
        ao.order = (psh_order)((int)(flags & 7) - 1);
        ao.per_worker = flags & 0x8 ? (flags & 0x1000 ? PSH_PER_WORKER_PADDED : 1) : 0;
        ao.fill = flags & 0x10 ? scratch : NULL;
        if (flags & 0x20) ao.struct_size = (size_t)(flags >> 6);
        int axis = (int)(int8_t)take(&in, 1);
        switch (op) {
        case 0:
            if (arrays[slot] || too_big(dtype, ndim, shape, (size_t)16 << 20)) break;
            psh_alloc(&arrays[slot], ctx, (psh_dtype)dtype, ndim, flags & 0x400 ? NULL : shape,
                      flags & 0x800 ? NULL : &ao);
            break;
        case 1:
            if (arrays[slot] || !arrays[(slot + 1) % 4]) break;
            if (too_big(psh_array_dtype(arrays[(slot + 1) % 4]), psh_array_ndim(arrays[(slot + 1) % 4]),
                        psh_array_shape(arrays[(slot + 1) % 4]), (size_t)8 << 20))
                break;
            psh_alloc_like(&arrays[slot], ctx, arrays[(slot + 1) % 4], &ao);
            break;
        case 2:
            if (!functors[slot]) psh_functor_array(&functors[slot], arrays[slot], axis);
            break;
        case 3:
            if (!functors[slot])
                psh_functor_strided(&functors[slot], flags & 0x40 ? NULL : scratch, (psh_dtype)dtype, ndim, shape,
                                    NULL, axis);
            break;
        case 4:
            if (!functors[slot])
                psh_functor_sequence(&functors[slot], flags & 0x40 ? NULL : scratch, (size_t)(flags & 0x3f),
                                     (size_t)take(&in, 1));
            break;
        case 5: {
            psh_functor_vtable vt = {(size_t)take(&in, 1), length3, flags & 0x40 ? NULL : get_self, NULL, NULL};
            if (!functors[slot]) psh_functor_custom(&functors[slot], &vt, scratch);
            break;
        }
        case 6: {
            psh_map_options mo;
            psh_map_options_init(&mo);
            mo.schedule = (psh_schedule)((int)(flags & 7) - 2);
            mo.chunk = (size_t)(flags >> 3 & 0xff);
            if (flags & 0x800) mo.struct_size = (size_t)(flags >> 6 & 0x3f);
            /* Kernels only see lengths up to 2000 here: enough to reach the error path. */
            if (psh_functor_length(functors[slot]) <= 2000)
                psh_map_ext(ctx, flags & 0x1000 ? NULL : small_kernel, scratch, functors[slot], &mo);
            break;
        }
        default:
            psh_map_blocks(ctx, flags & 0x40 ? NULL : small_block, NULL, (size_t)(flags & 0x7ff));
            break;
        }
        (void)psh_last_error();
        /* The error as data, with a struct_size that may be short (an older
         * caller) or too small to hold anything. */
        psh_error_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = flags & 0x2000 ? (size_t)(flags >> 7 & 0x3f) : sizeof info;
        if (psh_last_error_info(&info) == PSH_OK && info.message && info.struct_size == sizeof info)
            (void)strlen(info.message);
    }
    for (int i = 0; i < 4; ++i) {
        psh_functor_destroy(functors[i]);
        psh_array_free(arrays[i]);
    }
    return 0;
}
