// psh_array: an n-d array whose data is a shared-memory Block.
#pragma once

#include <memory>

#include "functor.hh"
#include "shm.hh"

namespace psh {
class Context;
}

struct psh_array {
    std::unique_ptr<psh::Block> block;
    void *data;
    psh_dtype dtype;
    psh_order order;
    int ndim;
    size_t size;
    size_t nbytes;
    size_t span;  // bytes from data to one past the last element: nbytes unless rows are padded
    size_t shape[psh::kMaxDims];
    ptrdiff_t strides[psh::kMaxDims];
};

namespace psh {

// Allocate through ctx (which decides where the memory lives). order must be
// C or F; per_worker (psh_alloc_options.per_worker) non-zero prepends (C) or
// appends (F) an axis of ctx's workers, PSH_PER_WORKER_PADDED with a gap of
// at least 128 bytes between the workers' rows.
std::unique_ptr<psh_array> make_array(Context &ctx, int dtype, int ndim, const size_t *shape,
                                      int order, const void *fill, int per_worker);

// True when the elements are not one contiguous run (padded per-worker rows).
inline bool is_padded(const psh_array *a) { return a->span != a->nbytes; }

// Throws PSH_EINVAL for bad ndim/shape/dtype or a byte size that overflows;
// returns the number of elements.
size_t checked_size(int dtype, int ndim, const size_t *shape);

// Byte strides of a contiguous array of the given order.
void contiguous_strides(size_t itemsize, int ndim, const size_t *shape, bool fortran,
                        ptrdiff_t *strides);

}  // namespace psh
