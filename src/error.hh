// Errors inside the engine are C++ exceptions carrying a psh status code;
// the C API layer (api.cc) turns them back into codes and psh_last_error().
#pragma once

#include <cstdarg>
#include <string>

namespace psh {

struct Error {
    int code;
    std::string message;
};

// Throw an Error with a printf-style message.
[[noreturn]] void fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Throw PSH_ESYS (or PSH_ENOMEM for ENOMEM/ENOSPC) naming the failed call and errno.
[[noreturn]] void fail_errno(const char *what, int err);

// Record the detail of this thread's last failed call.
void set_last_error(const std::string &message);
const char *last_error();

const char *strerror_code(int code);

}  // namespace psh
