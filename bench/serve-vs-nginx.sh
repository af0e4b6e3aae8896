#!/usr/bin/env bash
# Requests/s, p99 latency and server CPU time per request of `ipckit serve` (both accept
# modes: one socket with EPOLLEXCLUSIVE, SO_REUSEPORT sockets) against nginx (Debian's), same
# worker count, same 13-byte `Hello, World!`, access logging off, keep-alive defaults, with
# wrk at 64 and 256 connections (`wrk -t2 -cN -d10s --latency`).
#
# It builds nothing: it runs $IPCKIT, or target/release/ipckit from the repository root
# (cargo build --release -p ipckit-cli). wrk and nginx are installed with apt-get if missing.
# Run it on a quiet machine.
#
#   IPCKIT    the binary (default: target/release/ipckit next to this script's repository)
#   WORKERS   worker processes of both servers (default: nproc)
#   DURATION  of each wrk run (default 10s)
#   CONNS     connection counts (default "64 256")
#   THREADS   wrk threads (default 2)
#   RUNS      rounds; each round runs every server at every connection count, in turn
#             (default 3)
#   SERVERS   which to run (default "nginx ipckit-exclusive ipckit-reuseport")
#
# CPU time per request is the utime+stime (/proc/PID/stat) of the server's master and all its
# workers, summed, after the run minus before, divided by the requests wrk completed.
# Prints one tab-separated row per run, then the median of each server and connection count.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
ipckit=${IPCKIT:-$root/target/release/ipckit}
workers=${WORKERS:-$(nproc)}
duration=${DURATION:-10s}
conns=${CONNS:-"64 256"}
threads=${THREADS:-2}
runs=${RUNS:-3}
servers=${SERVERS:-"nginx ipckit-exclusive ipckit-reuseport"}

[[ -x $ipckit ]] || { echo "no ipckit binary at $ipckit (build it, or set IPCKIT)" >&2; exit 2; }
[[ $workers =~ ^[1-9][0-9]*$ ]] || { echo "WORKERS must be a positive integer" >&2; exit 2; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 2; }

if ! command -v wrk >/dev/null || ! { command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]]; }; then
    echo "installing wrk and nginx (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y wrk nginx >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk nginx >/dev/null; }
fi
nginx=$(command -v nginx || echo /usr/sbin/nginx)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ipckit-serve-bench.XXXXXX")
declare -A master=() port=()

cleanup() {
    for s in "${!master[@]}"; do
        case $s in
            nginx) kill -QUIT "${master[$s]}" 2>/dev/null || true ;;
            *) kill -TERM "${master[$s]}" 2>/dev/null || true ;;
        esac
    done
    for s in "${!master[@]}"; do
        for _ in $(seq 100); do kill -0 "${master[$s]}" 2>/dev/null || break; sleep 0.05; done
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# cpu_ticks PID: utime+stime of PID and its children (the workers), in clock ticks.
cpu_ticks() {
    local total=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        [[ -r /proc/$p/stat ]] || continue
        # Fields after the ")" that closes the command name: 12 and 13 there are utime, stime.
        total=$((total + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
    done
    echo "$total"
}

start() {
    local s=$1 p
    p=$(free_port)
    port[$s]=$p
    case $s in
        nginx)
            mkdir -p "$tmp/nginx"
            local user=""
            [[ $(id -u) == 0 ]] && user="user root;"
            sed -e "s|@WORKERS@|$workers|" -e "s|@PREFIX@|$tmp/nginx|g" -e "s|@PORT@|$p|" \
                -e "s|@USER@|$user|" "$root/bench/nginx.conf" >"$tmp/nginx/nginx.conf"
            "$nginx" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log"
            wait_port "$p"
            master[$s]=$(cat "$tmp/nginx/nginx.pid")
            ;;
        ipckit-*)
            XDG_RUNTIME_DIR=$tmp "$ipckit" serve --listen "127.0.0.1:$p" --workers "$workers" \
                --accept "${s#ipckit-}" 2>"$tmp/$s.log" &
            master[$s]=$!
            wait_port "$p"
            ;;
    esac
}

for s in $servers; do start "$s"; done
clk=$(getconf CLK_TCK)
rows=$tmp/rows.tsv
printf 'server\tconns\trun\treq_per_s\tp99_ms\tcpu_us_per_req\n'
for run in $(seq "$runs"); do
    for c in $conns; do
        for s in $servers; do
            before=$(cpu_ticks "${master[$s]}")
            out=$(wrk -t"$threads" -c"$c" -d"$duration" --latency "http://127.0.0.1:${port[$s]}/")
            after=$(cpu_ticks "${master[$s]}")
            rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
            reqs=$(awk '/requests in/ {print $1}' <<<"$out")
            # wrk prints "99%  1.23ms" (us, ms or s).
            p99=$(awk '$1 == "99%" {v = $2; if (v ~ /us$/) {sub(/us$/, "", v); v /= 1000}
                else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v *= 1000}
                print v}' <<<"$out")
            errs=$(awk '/Socket errors|Non-2xx/ {print}' <<<"$out")
            [[ -z $errs ]] || echo "$s c=$c: $errs" >&2
            cpu=$(awk -v t=$((after - before)) -v clk="$clk" -v n="$reqs" \
                'BEGIN {printf "%.2f", (n > 0 ? t / clk * 1e6 / n : 0)}')
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$c" "$run" "$rps" "$p99" "$cpu" | tee -a "$rows"
        done
    done
done

echo
echo "medians over $runs runs ($workers workers, wrk -t$threads -d$duration):"
printf 'server\tconns\treq_per_s\tp99_ms\tcpu_us_per_req\n'
for c in $conns; do
    for s in $servers; do
        awk -F'\t' -v s="$s" -v c="$c" '$1 == s && $2 == c {print $4, $5, $6}' "$rows" |
            python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
cols = list(zip(*rows))
print("\t".join(["'"$s"'", "'"$c"'"] + ["%.2f" % statistics.median(x) for x in cols]))'
    done
done
