#!/usr/bin/env bash
# The core and fault suites under ASan+UBSan, then under TSan. Any report fails.
set -euo pipefail
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
# atexit_sleep_ms=0: TSan otherwise sleeps 1 s in every exiting process that
# has a second thread, and each pool worker has one (its parent watch), so
# every worker death would take a second (the fault tests time them).
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:atexit_sleep_ms=0
for san in address,undefined thread; do
    dir=build-san-${san%%,*}
    [ -d "$dir" ] || meson setup "$dir" -Db_sanitize="$san" -Db_lundef=false -Dwerror=true -Dexamples=disabled >/dev/null
    ninja -C "$dir" >/dev/null
    meson test -C "$dir" --suite core --suite fault --print-errorlogs
done
