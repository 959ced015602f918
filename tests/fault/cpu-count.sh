#!/bin/sh
# psh_cpu_count against the real thing (issue 24): the affinity mask set by
# taskset, a cgroup with a CPU quota that this script creates (v1 cpu
# controller or v2 cpu.max, whichever this machine has; the limit of a
# parent cgroup binds its children), and the environment variables on top.
# $1: the test-cpu-count program, which prints psh_cpu_count() with --print.
# Cgroups need root and a writable hierarchy: where there is none, that part
# is skipped with a message and the rest still runs.
set -eu
bin="$1"
unset PASHA_NUM_WORKERS SLURM_CPUS_PER_TASK
fails=0

count() { "$@" "$bin" --print; }

expect() {  # expect NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then
        echo "ok - $1: $3"
    else
        echo "not ok - $1: expected $2, got '$3'"
        fails=$((fails + 1))
    fi
}

base=$(count env | cut -d' ' -f1)
echo "# psh_cpu_count here: $base"

# The affinity mask.
if command -v taskset >/dev/null 2>&1; then
    cpu=$(taskset -pc $$ | sed 's/.*: *//' | cut -d, -f1 | cut -d- -f1)
    expect "taskset -c $cpu" 1 "$(count taskset -c "$cpu" | cut -d' ' -f1)"
    expect "taskset -c $cpu with PASHA_NUM_WORKERS=3" 3 "$(PASHA_NUM_WORKERS=3 count taskset -c "$cpu" | cut -d' ' -f1)"
else
    echo "# SKIP taskset: not installed"
fi

# The variables.
expect "SLURM_CPUS_PER_TASK=1" 1 "$(SLURM_CPUS_PER_TASK=1 count env | cut -d' ' -f1)"
expect "PASHA_NUM_WORKERS=3" 3 "$(PASHA_NUM_WORKERS=3 count env | cut -d' ' -f1)"
out=$(PASHA_NUM_WORKERS=two count env)
case "$out" in
    "-1 "*PASHA_NUM_WORKERS*two*) echo "ok - PASHA_NUM_WORKERS=two: $out" ;;
    *) echo "not ok - PASHA_NUM_WORKERS=two: '$out'"; fails=$((fails + 1)) ;;
esac
out=$(SLURM_CPUS_PER_TASK=1.5 count env)
case "$out" in
    "-1 "*SLURM_CPUS_PER_TASK*1.5*) echo "ok - SLURM_CPUS_PER_TASK=1.5: $out" ;;
    *) echo "not ok - SLURM_CPUS_PER_TASK=1.5: '$out'"; fails=$((fails + 1)) ;;
esac

# Run the program as a member of cgroup $1 (moved there before exec).
in_cgroup() {
    sh -c 'echo $$ > "$1/cgroup.procs" && exec "$2" --print' sh "$1" "$bin" | cut -d' ' -f1
}

cleanup() {
    for d in ${made:-}; do rmdir "$d" 2>/dev/null || true; done
}
made=""
trap cleanup EXIT

min2=$((base < 2 ? base : 2))
v1=/sys/fs/cgroup/cpu
v2=""
for m in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    if [ -f "$m/cgroup.controllers" ] && grep -qw cpu "$m/cgroup.controllers"; then v2=$m; break; fi
done
if [ -w "$v1/cgroup.procs" ] && [ -f "$v1/cpu.cfs_quota_us" ] && mkdir "$v1/psh-test-$$" 2>/dev/null; then
    cg="$v1/psh-test-$$"
    made="$cg"
    echo 100000 > "$cg/cpu.cfs_period_us"
    echo 150000 > "$cg/cpu.cfs_quota_us"
    expect "cgroup v1 quota 150000/100000 (1.5 CPUs, at most $base here)" "$min2" "$(in_cgroup "$cg")"
    echo 50000 > "$cg/cpu.cfs_quota_us"
    expect "cgroup v1 quota 50000/100000" 1 "$(in_cgroup "$cg")"
    mkdir "$cg/child"
    made="$cg/child $cg"
    expect "cgroup v1 child without a quota under a parent with 0.5 CPUs" 1 "$(in_cgroup "$cg/child")"
    expect "cgroup v1 with PASHA_NUM_WORKERS=3" 3 "$(PASHA_NUM_WORKERS=3 in_cgroup "$cg")"
elif [ -n "$v2" ] && mkdir "$v2/psh-test-$$" 2>/dev/null; then
    cg="$v2/psh-test-$$"
    made="$cg"
    if echo +cpu > "$v2/cgroup.subtree_control" 2>/dev/null && [ -f "$cg/cpu.max" ]; then
        echo "150000 100000" > "$cg/cpu.max"
        expect "cgroup v2 cpu.max 150000 100000 (at most $base here)" "$min2" "$(in_cgroup "$cg")"
        echo "50000 100000" > "$cg/cpu.max"
        expect "cgroup v2 cpu.max 50000 100000" 1 "$(in_cgroup "$cg")"
        mkdir "$cg/child"
        made="$cg/child $cg"
        if echo +cpu > "$cg/cgroup.subtree_control" 2>/dev/null; then
            expect "cgroup v2 child under a parent with 0.5 CPUs" 1 "$(in_cgroup "$cg/child")"
        fi
    else
        echo "# SKIP cgroup v2: cannot enable the cpu controller below $v2"
    fi
else
    echo "# SKIP cgroups: no writable cgroup v1 cpu hierarchy or v2 hierarchy with the cpu controller (not root, or a read-only /sys/fs/cgroup)"
fi

[ "$fails" -eq 0 ]
