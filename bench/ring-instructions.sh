#!/usr/bin/env bash
# Instructions per message of the shm ring's send+recv path (callgrind; this VM has no PMU),
# for each mode and size, from the example crates/ipckit-bench/examples/ring_instructions.rs:
# a run of 128,000 messages minus a run of 64,000, divided by 64,000.
#
#   bash bench/ring-instructions.sh            # this tree
#   TREE=/path/to/other/checkout bash bench/ring-instructions.sh
#
# To compare with an older ring, check the older commit out beside this one (git worktree),
# copy the example into it (adapting the constructor names if the API differs) and pass TREE.
set -euo pipefail
tree=${TREE:-$(cd "$(dirname "$0")/.." && pwd)}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
(cd "$tree" && cargo build --release --locked -q -p ipckit-bench --example ring_instructions)
bin="$tree/target/release/examples/ring_instructions"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for mode in block spin blockzc spinzc; do
    for size in ${SIZES:-8 64}; do
        counts=()
        for n in 64000 128000; do
            valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bin" "$mode" "$n" "$size" \
                2>"$out/err" >/dev/null
            counts+=("$(grep -o 'Collected : [0-9]*' "$out/err" | awk '{print $3}')")
        done
        awk -v m="$mode" -v s="$size" -v a="${counts[0]}" -v b="${counts[1]}" \
            'BEGIN { printf "%-8s %6s B: %6.1f instructions a message\n", m, s, (b - a) / 64000 }'
    done
done
