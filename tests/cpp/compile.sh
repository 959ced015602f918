#!/bin/sh
# Compile one C++ file and check the outcome:
#   compile.sh pass -  COMPILER ARGS...   must compile without any diagnostic
#   compile.sh fail RE COMPILER ARGS...   must fail, with a diagnostic matching RE
# (RE: a grep -E pattern, e.g. the text of the static_assert it must hit).
expect=$1
pattern=$2
shift 2
out=$("$@" 2>&1)
rc=$?
case $expect in
pass)
    if [ $rc -ne 0 ] || [ -n "$out" ]; then
        printf '%s\n' "$out"
        echo "compile.sh: expected a clean compile (exit $rc): $*"
        exit 1
    fi
    ;;
fail)
    if [ $rc -eq 0 ]; then
        echo "compile.sh: expected a compile error, it compiled: $*"
        exit 1
    fi
    if ! printf '%s\n' "$out" | grep -Eq "$pattern"; then
        printf '%s\n' "$out" | head -n 40
        echo "compile.sh: the compile failed, but not with /$pattern/: $*"
        exit 1
    fi
    ;;
*)
    echo "usage: compile.sh pass|fail PATTERN COMPILER ARGS..."
    exit 2
    ;;
esac
echo "compile.sh: $expect as expected"
