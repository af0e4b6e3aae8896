#!/usr/bin/env bash
# Throughput of `ipckit pipeline` against bash on the same chain of cat stages:
#
#   A  bash -c 'cat F | cat | cat | cat > /dev/null'
#   B  ipckit pipeline "cat F" cat cat cat > /dev/null
#   C  ipckit pipeline --pipe-size 1048576 "cat F" cat cat cat > /dev/null
#
# The claim to check: B is within 5% of A, and C is faster than A.
#
# It builds nothing: it runs $IPCKIT, or target/release/ipckit from the repository root
# (cargo build --release -p ipckit-cli). Run it on a quiet machine.
#
#   IPCKIT    the binary (default: target/release/ipckit next to this script's repository)
#   SIZE_MB   size of the test file in MiB (default 2048); it is made in $TMPDIR (default
#             /tmp; on a tmpfs that is RAM) and removed at exit
#   RUNS      rounds; each round runs A, B, C once, in turn (default 7)
#
# Prints each run, then the median MB/s of each variant and the ratios B/A and C/A.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
ipckit=${IPCKIT:-$root/target/release/ipckit}
size_mb=${SIZE_MB:-2048}
runs=${RUNS:-7}
tmp=${TMPDIR:-/tmp}

[[ -x $ipckit ]] || { echo "no ipckit binary at $ipckit (build it, or set IPCKIT)" >&2; exit 2; }
[[ $size_mb =~ ^[1-9][0-9]*$ ]] || { echo "SIZE_MB must be a positive integer" >&2; exit 2; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 2; }

# timed_ns CMD...: runs CMD with stdout to /dev/null and prints how long it took in ns, on a
# monotonic clock (date +%s%N is wall-clock time, which can jump), measured inside one process
# around fork/exec/wait so that starting the clock itself is not counted.
if command -v python3 >/dev/null; then
    timed_ns() {
        python3 -c '
import subprocess, sys, time
t = time.monotonic_ns()
r = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
print(time.monotonic_ns() - t)
sys.exit(1 if r else 0)' "$@"
    }
elif command -v perl >/dev/null; then
    timed_ns() {
        perl -MTime::HiRes=clock_gettime,CLOCK_MONOTONIC -e '
my $t = clock_gettime(CLOCK_MONOTONIC);
my $p = fork // die "fork: $!";
if (!$p) { open STDOUT, ">", "/dev/null" or die; exec @ARGV or die "exec: $!" }
waitpid($p, 0);
my $st = $?;
printf "%.0f\n", (clock_gettime(CLOCK_MONOTONIC) - $t) * 1e9;
exit($st ? 1 : 0)' "$@"
    }
else
    echo "needs python3 or perl for a monotonic clock" >&2
    exit 2
fi

file=$(mktemp "$tmp/ipckit-pipeline-bench.XXXXXX")
trap 'rm -f "$file"' EXIT
case $file in *"'"*) echo "the file path must not contain a single quote: $file" >&2; exit 2 ;; esac
echo "making a ${size_mb} MiB file in $tmp ..." >&2
head -c "$((size_mb * 1024 * 1024))" /dev/zero >"$file"
cat "$file" >/dev/null # into the page cache, so every variant reads from memory
bytes=$((size_mb * 1024 * 1024))

variant_cmd() {
    case $1 in
        A) timed_ns bash -c "cat '$file' | cat | cat | cat > /dev/null" ;;
        B) timed_ns "$ipckit" pipeline "cat '$file'" cat cat cat ;;
        C) timed_ns "$ipckit" pipeline --pipe-size 1048576 "cat '$file'" cat cat cat ;;
    esac
}

declare -A results=([A]="" [B]="" [C]="")
# This VM drifts over seconds, so the ratios are also taken round by round (A, B and C run
# back to back) and their median reported: that compares like with like.
ratios_b="" ratios_c=""
for ((round = 1; round <= runs; round++)); do
    declare -A this=()
    for v in A B C; do
        ns=$(variant_cmd "$v") || { echo "variant $v failed" >&2; exit 1; }
        mbs=$(awk -v b="$bytes" -v ns="$ns" 'BEGIN { printf "%.1f", b / (ns / 1e9) / 1e6 }')
        printf 'round %d  %s  %8.1f MB/s\n' "$round" "$v" "$mbs"
        results[$v]+="$mbs "
        this[$v]=$mbs
    done
    ratios_b+="$(awk -v x="${this[B]}" -v y="${this[A]}" 'BEGIN { print x / y }') "
    ratios_c+="$(awk -v x="${this[C]}" -v y="${this[A]}" 'BEGIN { print x / y }') "
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ma=$(median "${results[A]}")
mb=$(median "${results[B]}")
mc=$(median "${results[C]}")
echo
echo "median of $runs runs, ${size_mb} MiB through cat | cat | cat | cat:"
printf '  A bash -c                         %8.1f MB/s\n' "$ma"
printf '  B ipckit pipeline                 %8.1f MB/s   B/A = %.3f\n' "$mb" "$(awk -v x="$mb" -v y="$ma" 'BEGIN { print x / y }')"
printf '  C ipckit pipeline --pipe-size 1M  %8.1f MB/s   C/A = %.3f\n' "$mc" "$(awk -v x="$mc" -v y="$ma" 'BEGIN { print x / y }')"
printf 'median of the per-round ratios:     B/A = %.3f   C/A = %.3f   (min..max B/A %s)\n' \
    "$(median "$ratios_b")" "$(median "$ratios_c")" \
    "$(tr ' ' '\n' <<<"$ratios_b" | grep . | sort -g | sed -n '1p;$p' | awk '{ printf "%s%.3f", (NR > 1 ? ".." : ""), $1 }')"
