#!/usr/bin/env bash
# Runs the wall-clock benchmark (benches/switch.rs, criterion) and prints the median time per call
# of every row and its ratio to psm::on_stack and to the direct call.
#
# Usage: scripts/bench-criterion.sh [criterion filter]   (honours CARGO_TARGET_DIR; about 40 s)
# Needs: jq.
#
# Medians are wall clock: on a shared or small machine they move with the load. The instruction
# counts of scripts/bench-icount.sh do not.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v jq >/dev/null || { echo "bench-criterion: jq is not installed" >&2; exit 1; }

target=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
cargo bench --bench switch -- --noplot "$@" >&2

dir="$target/criterion/call"
median() { jq -r '.median.point_estimate' "$dir/$1/new/estimates.json"; }

psm=$(median 5_psm_on_stack)
direct=$(median 1_direct)
echo
echo "== median ns per call (criterion; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
printf '| %-22s | %9s | %7s | %9s |\n' row "ns/call" "vs psm" "vs direct"
printf '|%s|%s|%s|%s|\n' "------------------------" "-----------" "---------" "-----------"
for d in "$dir"/*/; do
    row=$(basename "$d")
    [ -f "$d/new/estimates.json" ] || continue
    m=$(median "$row")
    awk -v row="$row" -v m="$m" -v p="$psm" -v d="$direct" \
        'BEGIN { printf "| %-22s | %9.3f | %6.2fx | %8.2fx |\n", row, m, m / p, m / d }'
done
