#pragma once

#include <cstddef>

#include "pasha/pasha.h"

namespace psh {

// Bytes per element; 0 for a value outside the enum.
size_t dtype_size(int dtype);

// Throws PSH_EINVAL naming the bad value.
void check_dtype(int dtype);

}  // namespace psh
