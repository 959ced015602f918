#include "array.hh"

#include <cstdint>
#include <cstring>

#include "context.hh"
#include "dtype.hh"
#include "error.hh"

namespace psh {

size_t checked_size(int dtype, int ndim, const size_t *shape)
{
    check_dtype(dtype);
    if (ndim < 0 || ndim > kMaxDims) fail(PSH_EINVAL, "ndim %d is out of range 0..%d", ndim, kMaxDims);
    if (ndim > 0 && !shape) fail(PSH_EINVAL, "shape is NULL");
    // Strides are products of lengths too, with zero lengths counted as one
    // (see contiguous_strides): an empty array can still have strides that
    // overflow, so both products must fit.
    size_t itemsize = dtype_size(dtype), size = 1, span = itemsize;
    bool overflow = false;
    for (int i = 0; i < ndim; ++i) {
        overflow |= __builtin_mul_overflow(size, shape[i], &size);
        overflow |= __builtin_mul_overflow(span, shape[i] ? shape[i] : 1, &span);
    }
    if (overflow || span > (size_t)PTRDIFF_MAX) fail(PSH_EINVAL, "the shape's size in bytes overflows");
    return size;
}

void contiguous_strides(size_t itemsize, int ndim, const size_t *shape, bool fortran,
                        ptrdiff_t *strides)
{
    ptrdiff_t step = (ptrdiff_t)itemsize;
    for (int k = 0; k < ndim; ++k) {
        int i = fortran ? k : ndim - 1 - k;
        strides[i] = step;
        step *= (ptrdiff_t)(shape[i] ? shape[i] : 1);
    }
}

static void fill_elements(char *data, size_t count, size_t itemsize, const void *value)
{
    bool zero = true;
    for (size_t i = 0; i < itemsize; ++i) zero &= ((const char *)value)[i] == 0;
    if (zero || count == 0) return;  // fresh shared memory is already zero
    memcpy(data, value, itemsize);
    // Doubling copies keep this memcpy-speed for any element size.
    size_t filled = 1;
    while (filled < count) {
        size_t n = filled < count - filled ? filled : count - filled;
        memcpy(data + filled * itemsize, data, n * itemsize);
        filled += n;
    }
}

std::unique_ptr<psh_array> make_array(Context &ctx, int dtype, int ndim, const size_t *shape,
                                      int order, const void *fill, int per_worker)
{
    if (order != PSH_ORDER_C && order != PSH_ORDER_F) fail(PSH_EINVAL, "unknown order %d", order);
    checked_size(dtype, ndim, shape);
    size_t full[kMaxDims + 1];
    bool fortran = order == PSH_ORDER_F;
    // The worker axis goes first in C order, last in F order.
    int lead = per_worker && !fortran ? 1 : 0;
    int n = ndim + (per_worker ? 1 : 0);
    if (per_worker && ndim == kMaxDims) fail(PSH_EINVAL, "per_worker needs a free axis: ndim is already %d", ndim);
    for (int i = 0; i < ndim; ++i) full[lead + i] = shape[i];
    int worker_axis = fortran ? ndim : 0;
    if (per_worker) full[worker_axis] = (size_t)ctx.num_workers();
    size_t size = checked_size(dtype, n, full);
    size_t itemsize = dtype_size(dtype);
    auto a = std::make_unique<psh_array>();
    a->dtype = (psh_dtype)dtype;
    a->order = (psh_order)order;
    a->ndim = n;
    a->size = size;
    a->nbytes = size * itemsize;
    a->span = a->nbytes;
    memcpy(a->shape, full, n * sizeof *full);
    contiguous_strides(itemsize, n, a->shape, fortran, a->strides);
    // Padded rows: contiguous rows leave a worker's last cache line next to
    // its neighbour's first, and the next-line prefetcher of the core that
    // writes one pulls the other's line away from the core that writes it
    // (bench (f): a 512-byte histogram row per worker, 1.4x slower with the
    // rows adjacent than with a 64-byte gap). Each row starts on a multiple
    // of 128 bytes (the pairs of lines x86's spatial prefetcher fetches
    // together) and the next one at least 128 bytes after its end.
    size_t workers = per_worker ? full[worker_axis] : 0;
    size_t row_bytes = workers ? a->nbytes / workers : 0;
    if (per_worker == PSH_PER_WORKER_PADDED && row_bytes) {
        size_t stride = (row_bytes + 127) / 128 * 128 + 128, span;
        if (stride < row_bytes || __builtin_mul_overflow(stride, workers - 1, &span) ||
            __builtin_add_overflow(span, row_bytes, &span) || span > (size_t)PTRDIFF_MAX - 4096)
            fail(PSH_EINVAL, "the padded per_worker array's size in bytes overflows");
        a->strides[worker_axis] = (ptrdiff_t)stride;
        a->span = span;
    }
    // Per-worker rows start a few cache lines past a page boundary. Arrays
    // are page-aligned, so rows of a page-multiple size would share their
    // offset in the page with the page-aligned inputs a kernel reads while
    // it adds into its row; loads then wait on unrelated stores with the
    // same low 12 address bits (4K aliasing), ~4% of a reduction such as
    // bench (f). The offset is a multiple of 128 bytes: the L2 prefetcher
    // of x86 CPUs fetches cache lines in 128-byte pairs, and rows whose
    // size is a multiple of 128 must not share a pair with their neighbour
    // (false sharing of a histogram's last and the next row's first bin).
    // It depends only on the size, so MPI ranks agree; strides stay
    // contiguous (rows are indexed as data + worker * row) unless the rows
    // are padded.
    size_t colour = per_worker ? 128 * (1 + (a->span / 128) % 31) : 0;
    a->block = ctx.allocate(a->span + colour);
    a->data = static_cast<char *>(a->block->data()) + colour;
    // Padded rows: the gaps are filled too (a whole number of elements, as
    // the stride is a multiple of 128 and so of every element size).
    if (fill) fill_elements((char *)a->data, a->span / itemsize, itemsize, fill);
    return a;
}

}  // namespace psh
