#include "functor.hh"

#include <cstring>

#include "array.hh"
#include "dtype.hh"
#include "error.hh"

namespace psh {

FunctorDesc strided_functor(const void *data, int dtype, int ndim, const size_t *shape,
                            const ptrdiff_t *strides, int axis)
{
    size_t size = checked_size(dtype, ndim, shape);
    if (ndim == 0) fail(PSH_EINVAL, "a 0-d array has no axis to iterate over");
    if (axis < -ndim || axis >= ndim)
        fail(PSH_EINVAL, "axis %d is out of range for %d dimensions", axis, ndim);
    if (!data && size > 0) fail(PSH_EINVAL, "data is NULL");
    if (axis < 0) axis += ndim;
    ptrdiff_t own[kMaxDims];
    if (!strides) {
        contiguous_strides(dtype_size(dtype), ndim, shape, false, own);
        strides = own;
    }
    // Every element's offset, base + sum(i_k * stride_k), must be computable
    // without overflow (the engine and the kernels' views both do this).
    if (size > 0) {
        __extension__ typedef unsigned __int128 u128;
        u128 extent = 0;
        for (int i = 0; i < ndim; ++i) {
            u128 s = strides[i] < 0 ? (u128)(-(strides[i] + 1)) + 1 : (u128)strides[i];
            extent += s * (u128)(shape[i] - 1);
            if (extent > (u128)PTRDIFF_MAX)
                fail(PSH_EINVAL, "the strides overflow: element offsets exceed %td bytes", (ptrdiff_t)PTRDIFF_MAX);
        }
    }
    FunctorDesc d;
    memset(&d, 0, sizeof d);
    d.kind = FunctorDesc::VIEW;
    d.length = shape[axis];
    d.base = (const char *)data;
    d.stride = data ? strides[axis] : 0;  // no data (an empty array): no pointer arithmetic on NULL
    d.dtype = (psh_dtype)dtype;
    d.ndim = 0;
    for (int i = 0; i < ndim; ++i) {
        if (i == axis) continue;
        d.shape[d.ndim] = shape[i];
        d.strides[d.ndim] = strides[i];
        ++d.ndim;
    }
    return d;
}

}  // namespace psh
