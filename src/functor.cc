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
