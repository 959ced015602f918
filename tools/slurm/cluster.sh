#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, everything in one directory:
#
#   tools/slurm/cluster.sh start DIR   # munged, slurmctld, slurmd; waits for the node
#   export SLURM_CONF=DIR/slurm.conf   # then sbatch, squeue, sinfo, srun as usual
#   tools/slurm/cluster.sh stop DIR    # ends exactly the daemons start began
#
# Needs Debian's slurm-wlm and munge (tools/deps/slurm.apt) and root (the
# daemons run as root; the jobs as the user who submits them). DIR must
# not exist yet or be empty; nothing outside it is written: the munge key,
# socket and logs, Slurm's state, spool and logs, and DIR/pids (one PID a
# line, the daemons started here, read by stop). The configuration is
# slurm.conf.in with this host's name, its CPUs and memory (`slurmd -C`)
# and two free TCP ports filled in. .ci/parts/55-slurm.sh runs the
# docs/slurm scripts on it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2

stop() {
    [ -f "$dir/pids" ] || return 0
    local pids=() pid
    while read -r pid; do [ -n "$pid" ] && pids+=("$pid"); done < "$dir/pids"
    # slurmd first (it ends its job steps), then slurmctld, then munged.
    for ((i = ${#pids[@]} - 1; i >= 0; --i)); do
        pid=${pids[i]}
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -f "$dir/pids"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

start() {
    for p in munged slurmctld slurmd sinfo; do
        command -v "$p" >/dev/null || [ -x "/usr/sbin/$p" ] ||
            { echo "cluster: $p not found (apt-get install slurm-wlm munge)" >&2; exit 1; }
    done
    export PATH=$PATH:/usr/sbin
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -n "$(ls -A "$dir")" ]; then echo "cluster: $dir is not empty" >&2; exit 1; fi
    chmod 700 "$dir"
    mkdir -m 700 "$dir/munge" "$dir/ctld" "$dir/slurmd"
    : > "$dir/pids"

    # munge: a fresh key, its socket in DIR (Slurm finds it through AuthInfo).
    head -c 1024 /dev/urandom > "$dir/munge/munge.key"
    chmod 400 "$dir/munge/munge.key"
    munged --foreground --force --socket="$dir/munge/munge.socket" \
        --key-file="$dir/munge/munge.key" --pid-file="$dir/munge/munged.pid" \
        --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" \
        > "$dir/munge/munged.stdout" 2>&1 &
    echo $! >> "$dir/pids"
    for _ in $(seq 100); do [ -S "$dir/munge/munge.socket" ] && break; sleep 0.1; done
    [ -S "$dir/munge/munge.socket" ] || { echo "cluster: munged did not start:" >&2; cat "$dir/munge/munged.log" >&2; exit 1; }

    local host hw ctld_port slurmd_port
    host=$(hostname -s)
    # "CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
    hw=$(slurmd -C | sed -n 's/^NodeName=[^ ]* //p')
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    [ "$ctld_port" != "$slurmd_port" ] || slurmd_port=$((ctld_port + 1))
    sed -e "s|@HOST@|$host|g" -e "s|@NODE_HW@|$hw|" -e "s|@STATE@|$dir|g" \
        -e "s|@CTLD_PORT@|$ctld_port|" -e "s|@SLURMD_PORT@|$slurmd_port|" \
        "$here/slurm.conf.in" > "$dir/slurm.conf"
    export SLURM_CONF=$dir/slurm.conf

    slurmctld -D -i -f "$SLURM_CONF" > "$dir/slurmctld.stdout" 2>&1 &
    echo $! >> "$dir/pids"
    slurmd -D -f "$SLURM_CONF" > "$dir/slurmd.stdout" 2>&1 &
    echo $! >> "$dir/pids"

    # The node is ready when sinfo calls it idle (up to 60 s on a loaded machine).
    local state=""
    for _ in $(seq 120); do
        state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
        [ "$state" = idle ] && break
        sleep 0.5
    done
    if [ "$state" != idle ]; then
        echo "cluster: node $host is '${state:-not answering}', not idle; logs:" >&2
        tail -n 20 "$dir"/slurmctld.log "$dir"/slurmd.log "$dir"/*.stdout >&2 2>/dev/null || true
        exit 1
    fi
    echo "cluster: node $host idle ($hw); export SLURM_CONF=$SLURM_CONF"
}

case $cmd in
    start) trap 'rc=$?; [ $rc -eq 0 ] || stop; exit $rc' EXIT; start ;;
    stop) stop ;;
    *) usage ;;
esac
