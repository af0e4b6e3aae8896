#!/usr/bin/env bash
# Old ring against new ring, in pairs (../shared/METHOD.md, "Machines that change under you"):
# each pair runs OLD then NEW (the order flips every other pair), the same shm command:
#
#   ipckit bench --mech shm --size 8,56,64,4096,65536 --wait spin,block --repeat 1 --format json
#
# Every row carries the cache-line probe measured beside it. bench/ring-pairs.py takes a row
# relative to its own probe (RTT / probe; MB/s * probe), drops a pair whose two probes show
# different machine modes (and counts it), and prints the median of the paired ratios
# NEW/OLD for each row, with CPU per message.
#
# It builds nothing:
#   OLD    the old binary (required), e.g. a release build of the commit before the change
#   NEW    the new binary (default: target/release/ipckit of this repository)
#   PAIRS  number of pairs (default 9)
#   OUT    directory for the JSON files (default: a new directory under /tmp)
#   SIZES  --size list (default 8,56,64,4096,65536); WAITS --wait list (default spin,block),
#          e.g. SIZES=64 WAITS=spin PAIRS=20 for the 64 B spin round trip alone
# Run it on a quiet machine: nothing else building.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
old=${OLD:?set OLD to the old ipckit binary}
new=${NEW:-$root/target/release/ipckit}
pairs=${PAIRS:-9}
out=${OUT:-$(mktemp -d /tmp/ring-pairs.XXXXXX)}
mkdir -p "$out"
[[ -x $old && -x $new ]] || { echo "OLD and NEW must be executables" >&2; exit 2; }
args=(bench --mech shm --size "${SIZES:-8,56,64,4096,65536}" --wait "${WAITS:-spin,block}" --repeat 1 --format json)
for ((i = 1; i <= pairs; i++)); do
    if ((i % 2)); then order=(old new); else order=(new old); fi
    for which in "${order[@]}"; do
        bin=$old; [[ $which == new ]] && bin=$new
        "$bin" "${args[@]}" --output "$out/$i-$which.json" >/dev/null 2>"$out/$i-$which.err" \
            || { echo "pair $i $which failed: $(tail -3 "$out/$i-$which.err")" >&2; exit 1; }
        echo "pair $i: $which done"
    done
done
python3 "$root/bench/ring-pairs.py" "$out" "$pairs"
