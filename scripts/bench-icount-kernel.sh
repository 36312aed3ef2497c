#!/usr/bin/env bash
# Instructions per switched call in kernel builds, counted by callgrind on the user-space `%gs`
# emulation (tests/fixtures/gs_backend: irqstack without `std`, each thread's `%gs` base set with
# arch_prctl(ARCH_SET_GS) to its own copy of Linux's two per-CPU variables), against a direct
# call of the same body; then the switched loop as objdump shows it.
#
# Usage: scripts/bench-icount-kernel.sh      (about half a minute)
# Needs: valgrind, objdump.
#
# Configurations (features of the fixture, all with `kernel-abi`):
#   hooks    `gs_percpu_backend!` + `set_backend!` link-time hooks, out-of-line trampoline
#   percpu   `linux-percpu`: claim/release inline on hardirq_stack_ptr/_inuse, trampoline
#   inline   `linux-percpu` + `inline-switch`: everything inline, as Linux's call_on_irqstack
set -euo pipefail
cd "$(dirname "$0")/.."

N1=${N1:-1000}
N2=${N2:-101000}
for tool in valgrind objdump; do
    command -v "$tool" >/dev/null || { echo "bench-icount-kernel: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

declare -A features=([hooks]="kernel-abi" [percpu]="kernel-abi,linux-percpu"
                     [inline]="kernel-abi,linux-percpu,inline-switch")
count() { # binary row n
    valgrind --tool=callgrind --toggle-collect="gs_row_$2" --callgrind-out-file="$work/out" \
        "$1" bench "$2" "$3" >/dev/null 2>"$work/log" || { cat "$work/log" >&2; exit 1; }
    awk '/^totals:/ { print $2 }' "$work/out"
}
per_iter() { # binary row
    local a b
    a=$(count "$1" "$2" "$N1"); b=$(count "$1" "$2" "$N2")
    awk -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" 'BEGIN { printf "%.2f", (b - a) / (n2 - n1) }'
}

echo "| configuration | direct Ir/iter | switched Ir/iter | switched over direct |"
echo "|---|---|---|---|"
for config in hooks percpu inline; do
    dir="target/fixtures-bench-$config"
    cargo build -q --release --manifest-path tests/fixtures/gs_backend/Cargo.toml \
        --target-dir "$dir" --features "${features[$config]}"
    bin="$dir/release/irqstack-fixture-gs-backend"
    d=$(per_iter "$bin" direct)
    s=$(per_iter "$bin" switched)
    printf '| %s (%s) | %s | %s | %+.2f |\n' "$config" "${features[$config]}" "$d" "$s" \
        "$(awk -v s="$s" -v d="$d" 'BEGIN { print s - d }')"
    cp "$bin" "$work/$config"
done

for config in hooks inline; do
    echo
    echo "== $config: gs_row_switched"
    objdump -d -M intel --no-show-raw-insn "$work/$config" \
        | awk '/<gs_row_switched>:/,/^$/' | grep -vP '\t(int3|nop|cs nop|data16)'
done
