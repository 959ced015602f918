#include "error.hh"

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>

#include "pasha/pasha.h"

namespace psh {

namespace {

thread_local std::string tls_last_error;

// The last failure's fields; code 0 means the last call succeeded and the
// others are then read as their "none" values. Plain data: no constructor
// runs on a thread's first call.
struct ErrorFields {
    int code;
    int worker_id;
    long long index;
    int signal;
    int exit_status;
    const char *callback;
};
thread_local ErrorFields tls_fields = {0, -1, -1, 0, -1, nullptr};

}  // namespace

void fail(int code, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    throw Error{code, buf};
}

void fail_errno(const char *what, int err)
{
    int code = (err == ENOMEM || err == ENOSPC) ? PSH_ENOMEM : PSH_ESYS;
    fail(code, "%s failed: %s", what, std::strerror(err));
}

void set_last_error(const char *fn, const Error &e)
{
    tls_last_error.assign(fn).append(": ").append(e.message);
    tls_fields = ErrorFields{e.code, e.worker_id, e.index, e.signal, e.exit_status, e.callback};
}

void clear_last_error() { tls_fields.code = 0; }

int last_error_info(psh_error_info *info)
{
    if (!info || info->struct_size < offsetof(psh_error_info, code) + sizeof info->code) return PSH_EINVAL;
    ErrorFields f = tls_fields;
    if (f.code == 0) f = ErrorFields{0, -1, -1, 0, -1, nullptr};
    // A caller built against an older (smaller) struct gets the fields it has.
#define PSH_FILL(field, value) \
    if (info->struct_size >= offsetof(psh_error_info, field) + sizeof info->field) info->field = (value)
    PSH_FILL(code, f.code);
    PSH_FILL(worker_id, f.worker_id);
    PSH_FILL(index, f.index);
    PSH_FILL(signal, f.signal);
    PSH_FILL(exit_status, f.exit_status);
    PSH_FILL(callback, f.callback);
    PSH_FILL(message, tls_last_error.c_str());
#undef PSH_FILL
    return PSH_OK;
}

const char *last_error() { return tls_last_error.c_str(); }

const char *strerror_code(int code)
{
    switch (code) {
    case PSH_OK: return "PSH_OK: success";
    case PSH_EINVAL: return "PSH_EINVAL: invalid argument";
    case PSH_ENOMEM: return "PSH_ENOMEM: out of memory or shared-memory space";
    case PSH_ESYS: return "PSH_ESYS: a system call failed";
    case PSH_EKERNEL: return "PSH_EKERNEL: the kernel returned an error";
    case PSH_EWORKER: return "PSH_EWORKER: a worker process died";
    case PSH_ECANCELED: return "PSH_ECANCELED: the map was cancelled";
    case PSH_ENOTSUP: return "PSH_ENOTSUP: not supported";
    default: return "unknown psh status code";
    }
}

}  // namespace psh
