// What a map iterates over. A functor is a plain description (no pointers
// into its own heap), so it can be copied into a control block that a
// persistent worker process reads.
#pragma once

#include <cstddef>

#include "pasha/pasha.h"

namespace psh {

const int kMaxDims = 32;

struct FunctorDesc {
    enum Kind { RANGE, SEQUENCE, VIEW, CUSTOM } kind;
    size_t length;
    // SEQUENCE, VIEW: item i is at base + i * stride.
    const char *base;
    ptrdiff_t stride;
    // VIEW: the sub-array handed to the kernel.
    psh_dtype dtype;
    int ndim;
    size_t shape[kMaxDims];
    ptrdiff_t strides[kMaxDims];
    // CUSTOM
    psh_functor_vtable vt;
    void *self;
};

// Describe the sub-arrays along axis of an n-d array (validates everything).
FunctorDesc strided_functor(const void *data, int dtype, int ndim, const size_t *shape,
                            const ptrdiff_t *strides, int axis);

}  // namespace psh

struct psh_functor {
    psh::FunctorDesc desc;
};
