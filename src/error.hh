// Errors inside the engine are C++ exceptions carrying a psh status code and
// what is known about the failure (worker, index, signal, callback); the C
// API layer (api.cc) turns them back into codes, psh_last_error() and
// psh_last_error_info().
#pragma once

#include <cstdarg>
#include <new>
#include <string>

#include "pasha/pasha.h"

namespace psh {

struct Error {
    int code;
    std::string message;
    // The fields of psh_error_info besides code and message (their "none"
    // values by default). callback: a static string.
    int worker_id = -1;
    long long index = -1;
    int signal = 0;
    int exit_status = -1;
    const char *callback = nullptr;
};

// Throw an Error with a printf-style message.
[[noreturn]] void fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Throw PSH_ESYS (or PSH_ENOMEM for ENOMEM/ENOSPC) naming the failed call and errno.
[[noreturn]] void fail_errno(const char *what, int err);

// Record this thread's last failed call: e's fields, with "fn: " before its
// message. Every C entry point that fails goes through here (see guard).
void set_last_error(const char *fn, const Error &e);
// Mark this thread's last call as successful: psh_last_error_info's code
// is 0 again (the message stays, as psh_last_error documents). One store.
void clear_last_error();
const char *last_error();
// Fill info (as much of it as info->struct_size covers); PSH_EINVAL if it
// cannot hold code.
int last_error_info(psh_error_info *info);

const char *strerror_code(int code);

// Run body for the C function fn: PSH_OK, or the code of whatever it threw,
// with psh_last_error() set to "fn: message". No exception gets out: this
// is how every C entry point keeps C++ exceptions from crossing the ABI.
template <class F>
int guard(const char *fn, F body)
{
    try {
        body();
        clear_last_error();
        return PSH_OK;
    } catch (const Error &e) {
        set_last_error(fn, e);
        return e.code;
    } catch (const std::bad_alloc &) {
        set_last_error(fn, Error{PSH_ENOMEM, "out of memory"});
        return PSH_ENOMEM;
    } catch (...) {
        set_last_error(fn, Error{PSH_ESYS, "unexpected internal error"});
        return PSH_ESYS;
    }
}

}  // namespace psh
