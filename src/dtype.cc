#include "dtype.hh"

#include "error.hh"

namespace psh {

size_t dtype_size(int dtype)
{
    switch (dtype) {
    case PSH_INT8: case PSH_UINT8: return 1;
    case PSH_INT16: case PSH_UINT16: return 2;
    case PSH_INT32: case PSH_UINT32: case PSH_FLOAT32: return 4;
    case PSH_INT64: case PSH_UINT64: case PSH_FLOAT64: case PSH_COMPLEX64: return 8;
    case PSH_COMPLEX128: return 16;
    default: return 0;
    }
}

void check_dtype(int dtype)
{
    if (dtype_size(dtype) == 0) fail(PSH_EINVAL, "unknown dtype %d", dtype);
}

}  // namespace psh
