#!/usr/bin/env bash
# Runs the wall-clock benchmark (benches/switch.rs, criterion) ROUNDS times and prints, per row,
# the median over the rounds of criterion's median time per call, its ratio to psm::on_stack and
# to the direct call, and the range over the rounds of the switched/psm ratio. Then the paired
# measurement of benches/icount.rs (`icount pair`): switched and psm timed in alternating batches
# in one process, PAIRED times, which drifting load disturbs far less.
#
# Usage: scripts/bench-criterion.sh [criterion filter]
#        ROUNDS=3, PAIRED=3 by default (about 40 s a round, 5 s a pairing); honours
#        CARGO_TARGET_DIR. Needs: jq.
#
# Medians are wall clock: on a shared or small machine they move with the load, which is why the
# rounds are repeated and the spread is printed. The instruction counts of
# scripts/bench-icount.sh do not move.
#
# Loops are aligned to 64 bytes (`-C llvm-args=-align-loops=64`, ALIGN_LOOPS=0 turns it off), in
# a target directory of their own (target/bench-aligned unless CARGO_TARGET_DIR says otherwise):
# without it the hot loops land wherever the rest of the binary puts them, and a change anywhere
# moves them. Measured on the same day: the switched/psm ratio of the tree before and after the
# slot protocol was 0.64 and 0.79 in criterion but 0.79 and 0.64 in the paired loop, each harness
# contradicting the other; with aligned loops 0.62 and 0.71 in criterion, 0.64 and 0.64 paired
# (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${ALIGN_LOOPS:-1}" != 0 ]; then
    export RUSTFLAGS="${RUSTFLAGS:-} -C llvm-args=-align-loops=64"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/target/bench-aligned}"
fi

ROUNDS=${ROUNDS:-3}
PAIRED=${PAIRED:-3}
command -v jq >/dev/null || { echo "bench-criterion: jq is not installed" >&2; exit 1; }

target=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
dir="$target/criterion/call"
median_of() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

declare -A t
ratios=()
loads=()
for ((r = 1; r <= ROUNDS; r++)); do
    echo "== round $r of $ROUNDS" >&2
    cargo bench -p irqstack-bench --bench switch -- --noplot "$@" >&2
    loads+=("$(cut -d' ' -f1 /proc/loadavg)")
    for d in "$dir"/*/; do
        row=$(basename "$d")
        [ -f "$d/new/estimates.json" ] || continue
        t[$row]+="$(jq -r '.median.point_estimate' "$d/new/estimates.json") "
    done
    if [ -n "${t[2_switched]:-}" ] && [ -n "${t[5_psm_on_stack]:-}" ]; then
        s=$(jq -r '.median.point_estimate' "$dir/2_switched/new/estimates.json")
        p=$(jq -r '.median.point_estimate' "$dir/5_psm_on_stack/new/estimates.json")
        ratios+=("$(awk -v s="$s" -v p="$p" 'BEGIN { printf "%.2f", s / p }')")
    fi
done

med() { printf '%s\n' ${t[$1]} | median_of; }
psm=$(med 5_psm_on_stack)
direct=$(med 1_direct)
echo
echo "== ns per call: median over $ROUNDS rounds of criterion's median" \
    "($(nproc) cores; 1-minute load average after each round: ${loads[*]})"
printf '| %-22s | %9s | %7s | %9s |\n' row "ns/call" "vs psm" "vs direct"
printf '|%s|%s|%s|%s|\n' "------------------------" "-----------" "---------" "-----------"
for row in $(printf '%s\n' "${!t[@]}" | sort); do
    m=$(med "$row")
    awk -v row="$row" -v m="$m" -v p="$psm" -v d="$direct" \
        'BEGIN { printf "| %-22s | %9.3f | %6.2fx | %8.2fx |\n", row, m, m / p, m / d }'
done
if [ ${#ratios[@]} -gt 0 ]; then
    echo
    echo "switched / psm per round: ${ratios[*]}"
fi

echo
echo "== paired, in the loops of benches/icount.rs (alternating batches, one process)"
for ((r = 1; r <= PAIRED; r++)); do
    cargo bench -q -p irqstack-bench --bench icount -- pair switched psm 2>/dev/null
done
cargo bench -q -p irqstack-bench --bench icount -- pair nested direct 2>/dev/null
