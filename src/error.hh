// Errors inside the engine are C++ exceptions carrying a psh status code;
// the C API layer (api.cc) turns them back into codes and psh_last_error().
#pragma once

#include <cstdarg>
#include <new>
#include <string>

#include "pasha/pasha.h"

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

// Run body for the C function fn: PSH_OK, or the code of whatever it threw,
// with psh_last_error() set to "fn: message". No exception gets out: this
// is how every C entry point keeps C++ exceptions from crossing the ABI.
template <class F>
int guard(const char *fn, F body)
{
    try {
        body();
        return PSH_OK;
    } catch (const Error &e) {
        set_last_error(std::string(fn) + ": " + e.message);
        return e.code;
    } catch (const std::bad_alloc &) {
        set_last_error(std::string(fn) + ": out of memory");
        return PSH_ENOMEM;
    } catch (...) {
        set_last_error(std::string(fn) + ": unexpected internal error");
        return PSH_ESYS;
    }
}

}  // namespace psh
