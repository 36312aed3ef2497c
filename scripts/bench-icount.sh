#!/usr/bin/env bash
# Instructions per call of every benchmark row, counted by callgrind, minus the direct call; then
# the trampolines and the switched row's hot loop as objdump shows them.
#
# Usage: scripts/bench-icount.sh            (honours CARGO_TARGET_DIR; about a minute)
# Needs: valgrind, objdump, jq.
#
# How: benches/icount.rs has one function per row, `icount_row_<row>(n)`, a loop of n calls.
# Each row runs twice under callgrind, with n = N1 and n = N2, counting only inside that function
# (--toggle-collect). (Ir(N2) - Ir(N1)) / (N2 - N1) is the exact cost of one loop iteration: the
# set-up, the IRQ stack's creation and everything else that happens once cancel out. Subtracting
# the direct row's iteration leaves the cost of the call mechanism alone.
set -euo pipefail
cd "$(dirname "$0")/.."

N1=${N1:-1000}
N2=${N2:-101000}

for tool in valgrind objdump jq; do
    command -v "$tool" >/dev/null || { echo "bench-icount: $tool is not installed" >&2; exit 1; }
done

# The bench binary itself (`cargo bench` builds it; the bench profile keeps debug info). irqstack
# reads the page size through libc's copy of the aux vector (rustix `use-libc-auxv`), so the
# binary runs under valgrind as it is.
echo "== build (cargo bench -p irqstack-bench --bench icount --no-run)" >&2
bin=$(cargo bench -p irqstack-bench --bench icount --no-run --message-format=json 2>/dev/null \
    | jq -r 'select(.reason == "compiler-artifact" and .target.name == "icount"
                    and .executable != null) | .executable' | tail -n1)
[ -x "$bin" ] || { echo "bench-icount: no icount executable found" >&2; exit 1; }
echo "binary: $bin" >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Ir counted inside icount_row_<row> for one run with n calls.
count() {
    local row=$1 n=$2 out="$work/$1.$2.out"
    valgrind --tool=callgrind --toggle-collect="icount_row_$row" \
        --callgrind-out-file="$out" "$bin" "$row" "$n" >/dev/null 2>"$work/$row.$n.log" \
        || { cat "$work/$row.$n.log" >&2; exit 1; }
    awk '/^totals:/ { print $2 }' "$out"
}

declare -A per_call
rows=$("$bin" list)
for row in $rows; do
    a=$(count "$row" "$N1")
    b=$(count "$row" "$N2")
    per_call[$row]=$(awk -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" \
        'BEGIN { printf "%.2f", (b - a) / (n2 - n1) }')
done

# The baseline each row is compared with besides `direct`: same arguments, plain call.
declare -A base=([direct6]=direct [switched6]=direct6 [direct_struct]=direct
                 [switched_struct]=direct_struct [nested_outline]=nested_direct
                 [fnptr]=direct_fnptr [extern_c]=direct_fnptr)

echo
echo "== instructions per call (callgrind, Ir per loop iteration; n = $N1 and $N2)"
printf '| %-16s | %9s | %11s | %-28s |\n' row "Ir/iter" "over direct" "over same-signature direct"
printf '|%s|%s|%s|%s|\n' "------------------" "-----------" "-------------" \
    "------------------------------"
for row in $rows; do
    over=$(awk -v x="${per_call[$row]}" -v d="${per_call[direct]}" 'BEGIN { printf "%+.2f", x - d }')
    same=""
    if [ -n "${base[$row]:-}" ] && [ "${base[$row]}" != direct ]; then
        same=$(awk -v x="${per_call[$row]}" -v d="${per_call[${base[$row]}]}" \
            'BEGIN { printf "%+.2f (vs %s)", x - d, "'"${base[$row]}"'" }')
    fi
    printf '| %-16s | %9s | %11s | %-28s |\n' "$row" "${per_call[$row]}" "$over" "$same"
done

# Disassembly of the functions whose (demangled) name starts with $1, without raw bytes and
# padding. Prefixes, because the generated items' exact names are the macro's business.
objdump -d -M intel --no-show-raw-insn -C "$bin" >"$work/disasm.txt"
disasm() {
    awk -v prefix="$1" '
        /^[0-9a-f]+ <.*>:$/ { on = (index($0, "<" prefix) > 0) }
        on && !/\tint3 *$/ && !/\t(cs )?nop +(WORD|DWORD)|\txchg +ax,ax/ { print }
        on && /^$/ { on = 0 }' \
        "$work/disasm.txt"
}
insns() { grep -cP '^\s+[0-9a-f]+:\t' || true; }
# Instructions up to and including the first `ret`: the trampoline's path (what follows it is the
# landing pad, run only when a panic unwinds through the switch).
path_insns() { awk '/^[ \t]+[0-9a-f]+:\t/ { n++; if ($0 ~ /\tret/) { print n; exit } } END { if (!n) print 0 }'; }

echo
for t in switched switched6 switched_struct; do
    text=$(disasm "icount::rows::$t::__irqstack_dispatch::__irqstack_trampoline")
    echo "== trampoline of $t: $(printf '%s\n' "$text" | path_insns) instructions to its ret" \
        "($(printf '%s\n' "$text" | insns) with the landing pad)"
    printf '%s\n' "$text"
    echo
done
# The shim the switched row's trampoline calls (the linker may have folded identical shims of
# several handlers into one symbol, so follow the call instead of guessing the name).
shim=$(disasm "icount::rows::switched::__irqstack_dispatch::__irqstack_trampoline" \
    | sed -n 's/.*\tcall .*<\(.*\)>$/\1/p' | head -n1)
echo "== shim of switched, $shim (the body; the direct row's callee is the same two instructions)"
[ -n "$shim" ] && disasm "$shim>"
echo
echo "== direct row: icount_row_direct"
disasm "icount_row_direct>"
echo
echo "== switched row: icount_row_switched (the loop calls the trampoline)"
disasm "icount_row_switched>"
echo
echo "== nested row: icount_row_nested (runs on the IRQ stack: every call takes the in-place path)"
disasm "icount_row_nested>"
echo
echo "== out-of-line wrapper: icount::rows::switched_outline (rows outline, fnptr, nested_outline)"
disasm "icount::rows::switched_outline>"
echo
echo "== out-of-line extern \"C\" wrapper: icount::rows::switched_extern_c (row extern_c)"
disasm "icount::rows::switched_extern_c>"
