#include "error.hh"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "pasha/pasha.h"

namespace psh {

namespace {
thread_local std::string tls_last_error;
}

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

void set_last_error(const std::string &message) { tls_last_error = message; }

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
