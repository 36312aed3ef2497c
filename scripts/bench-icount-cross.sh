#!/usr/bin/env bash
# Instructions per call on aarch64 and riscv64, counted on the disassembly (callgrind does not
# run foreign binaries): the icount bench rows (benches/icount.rs, benches/common/rows.rs) built
# for each target in the bench profile (release + debug info), disassembled with
# <arch>-linux-gnu-objdump, and the instructions on one trip around each row's loop counted by
# scripts/icount-paths.awk: the direct call's path, the switched path (the trampoline and the
# shim included) and the nested (in-place) path, and a few more rows.
#
# Usage: scripts/bench-icount-cross.sh [arch...]    (default: aarch64 riscv64; x86_64 too, to
#        compare the method with callgrind's exact counts in BENCHMARKS.md)
#        SHOW=1 scripts/bench-icount-cross.sh riscv64   also prints each path, callees expanded
#        QEMU_CHECK=1 scripts/bench-icount-cross.sh      also runs each row under qemu-user with
#            -singlestep -d exec,nochain (one log line per instruction executed) for n = 1000 and
#            11000 calls and prints the difference / 10000 next to the static count; they must
#            agree (the remainder is per-run noise, such as formatting a different number)
# Needs: the Rust targets, the cross binutils (gcc-<arch>-linux-gnu brings them), jq, awk.
# Cold: about 3 min per target on a 2-CPU machine (criterion and friends, cross-compiled);
# warm: a few seconds.
#
# The counts are exact for the path they name: straight-line code, each branch's direction fixed
# by the path (the switch path: the IRQ stack is free; the nested path: it is in use). They
# match callgrind's on x86-64 (run this script with x86_64).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
awk_prog="$root/scripts/icount-paths.awk"

arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(aarch64 riscv64)

command -v jq >/dev/null || { echo "bench-icount-cross: jq is not installed" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# row  function  calls on its path (see icount-paths.awk)  baseline row
rows=(
    "direct         icount_row_direct          only:^icount::rows::direct$          -"
    "switched       icount_row_switched        only:__irqstack_trampoline           direct"
    "nested         icount_row_nested          none                                 direct"
    "closure        icount_row_closure         only:closure_trampoline              direct"
    "direct6        icount_row_direct6         only:^icount::rows::direct6$         direct"
    "switched6      icount_row_switched6       only:__irqstack_trampoline           direct6"
    "direct_struct  icount_row_direct_struct   only:^icount::rows::direct_struct$   direct"
    "switched_struct icount_row_switched_struct only:__irqstack_trampoline          direct_struct"
)

for arch in "${arches[@]}"; do
    case "$arch" in
        aarch64) target=aarch64-unknown-linux-gnu; objdump=aarch64-linux-gnu-objdump ;;
        riscv64) target=riscv64gc-unknown-linux-gnu; objdump=riscv64-linux-gnu-objdump ;;
        x86_64) target=x86_64-unknown-linux-gnu; objdump=objdump ;;
        *) echo "bench-icount-cross: unknown arch $arch (aarch64, riscv64, x86_64)" >&2; exit 1 ;;
    esac
    command -v "$objdump" >/dev/null \
        || { echo "bench-icount-cross: $objdump is not installed" >&2; exit 1; }
    if [ "$arch" = x86_64 ]; then
        target_args=()
    else
        target_args=(--target "$target" --target-dir "target/cross-$arch")
    fi
    echo "== $arch: build (cargo bench -p irqstack-bench --bench icount --no-run ${target_args[*]})" >&2
    bin=$(cargo bench -p irqstack-bench --bench icount --no-run "${target_args[@]}" \
            --message-format=json 2>"$work/build.log" \
        | jq -r 'select(.reason == "compiler-artifact" and .target.name == "icount"
                        and .executable != null) | .executable' | tail -n1) \
        || { cat "$work/build.log" >&2; exit 1; }
    [ -x "$bin" ] || { cat "$work/build.log" >&2; echo "bench-icount-cross: no icount executable" >&2; exit 1; }
    echo "binary: $bin" >&2
    dis="$work/$arch.dis"
    "$objdump" -d -C --no-show-raw-insn "$bin" >"$dis"

    echo
    echo "== $arch: instructions per loop iteration, on the disassembly"
    qemu=""
    if [ "${QEMU_CHECK:-0}" = 1 ]; then
        case "$arch" in
            aarch64) qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu) ;;
            riscv64) qemu=(qemu-riscv64 -L /usr/riscv64-linux-gnu) ;;
            x86_64) qemu=(qemu-x86_64) ;;
        esac
        command -v "${qemu[0]}" >/dev/null \
            || { echo "bench-icount-cross: ${qemu[0]} is not installed" >&2; exit 1; }
    fi
    # Instructions executed per call of row $1 under qemu-user (whole process, two runs
    # differenced), or "" without QEMU_CHECK.
    executed() {
        [ -n "$qemu" ] || return 0
        local n runs=()
        for n in 1000 11000; do
            "${qemu[@]}" -singlestep -d exec,nochain -D "$work/exec.log" "$bin" "$1" "$n" \
                >/dev/null 2>&1 || { echo "bench-icount-cross: $1 failed under qemu" >&2; exit 1; }
            runs+=("$(grep -c '^Trace' "$work/exec.log")")
        done
        rm -f "$work/exec.log"
        awk -v a="${runs[0]}" -v b="${runs[1]}" 'BEGIN { printf "%.4f", (b - a) / 10000 }'
    }
    printf '| %-16s | %8s | %11s | %-26s | %-10s |\n' row "Ir/iter" "over direct" "over same-signature direct" "qemu"
    printf '|%s|%s|%s|%s|%s|\n' "------------------" "---------:" "------------:" "----------------------------" "------------"
    declare -A count=()
    for spec in "${rows[@]}"; do
        read -r row fn want base <<<"$spec"
        count[$row]=$(awk -f "$awk_prog" -v fn="$fn" -v want="$want" "$dis") \
            || { echo "bench-icount-cross: counting $row failed" >&2; exit 1; }
        over=$(( ${count[$row]%%.*} - ${count[direct]%%.*} ))
        same=""
        if [ "$base" != "-" ] && [ "$base" != direct ]; then
            same="+$(( ${count[$row]%%.*} - ${count[$base]%%.*} )) vs $base"
        fi
        ran=$(executed "$row")
        printf '| %-16s | %8s | %+11d | %-26s | %-10s |\n' "$row" "${count[$row]}" "$over" "$same" "$ran"
    done
    unset count

    # The trampoline of the switched row alone, entry to `ret`.
    tramp=$(awk '/<icount::rows::switched::__irqstack_dispatch::__irqstack_trampoline_reg>:$/ { on = 1; next }
                 on && /^$/ { exit } on && /^ *[0-9a-f]+:\t/ { n++; if ($0 ~ /\tret/) { print n; exit } }' "$dis")
    echo
    echo "trampoline (icount::rows::switched::__irqstack_dispatch::__irqstack_trampoline_reg), entry to ret: $tramp instructions"

    if [ "${SHOW:-0}" = 1 ]; then
        for spec in "${rows[@]:0:3}"; do
            read -r row fn want base <<<"$spec"
            echo
            echo "== $arch: $row ($fn)"
            awk -f "$awk_prog" -v fn="$fn" -v want="$want" -v show=1 "$dis" | tail -n +2
        done
    fi
done
