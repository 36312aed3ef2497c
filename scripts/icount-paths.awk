# Instructions on one path through a loop, counted from `objdump -d -C --no-show-raw-insn`
# output (x86-64, AArch64 or RISC-V), for scripts/bench-icount-cross.sh.
#
# Usage: awk -f icount-paths.awk -v fn=<function> -v want=<class> [-v show=1] <disassembly>
#
#   fn    the function whose loop is counted (e.g. icount_row_switched);
#   want  which trip around the loop to count:
#           none         the path that calls nothing (a body inlined in place);
#           only:<ERE>   the path whose calls all go to functions matching <ERE>, at least one;
#   show  print the path, callees expanded, after the count.
#
# The loop head is the lowest target of a backward branch in `fn`. Every path from the head back
# to it is enumerated (depth first, no instruction twice); conditional branches are followed both
# ways, unconditional ones followed, returns, traps and indirect jumps end a path (it leaves the
# loop). A call adds its callee's instructions: the callee is walked from its entry to its `ret`
# (calls in it counted the same way, unconditional jumps and tail calls followed); a conditional
# branch in a callee is an error, since its path would be ambiguous.
#
# Prints `<count>` (or `<min>..<max>` when several paths match with different counts); exits 1
# when no path matches, 2 on a malformed disassembly or a branching callee.

function hex(s,    i, c, v) {
    s = tolower(s); sub(/^0x/, "", s); v = 0
    for (i = 1; i <= length(s); i++) {
        c = index("0123456789abcdef", substr(s, i, 1))
        if (c == 0) return -1
        v = v * 16 + c - 1
    }
    return v
}

# What an instruction does to control flow: call, ret, jump, cond, ijump (indirect jump), trap,
# or plain.
function kind(m, ops) {
    if (m == "ret" || m == "retq") return "ret"
    if (m == "call" || m == "callq" || m == "bl" || m == "blr" || m == "jal" || m == "jalr")
        return "call"
    if (m == "j" || m == "b" || m == "jmp" || m == "jmpq") {
        if (ops ~ /^\*/ || ops !~ / </) return "ijump"
        return "jump"
    }
    if (m == "jr" || m == "br") return "ijump"
    if (m ~ /^b\./ || m ~ /^(cbz|cbnz|tbz|tbnz)$/) return "cond"
    if (m ~ /^b(eq|ne|lt|ge|ltu|geu|eqz|nez|lez|gez|ltz|gtz|gt|le|gtu|leu)$/) return "cond"
    if (m ~ /^j[a-z]+$/) return "cond"
    if (m ~ /^(ebreak|unimp|c\.unimp|brk|udf|ud2|int3|hlt)$/) return "trap"
    return "plain"
}

# The address an instruction branches or calls to (the hex number right before " <"), or "".
function target(ops,    s, n, f) {
    if (ops !~ / </) return ""
    s = ops; sub(/ <.*$/, "", s)
    n = split(s, f, /[ ,\t]+/)
    s = f[n]; sub(/^0x/, "", s); sub(/^0+/, "", s)
    return s
}

# The symbol named in an instruction's operands (`<name>`, without `+0x..`).
function callee_name(ops,    s) {
    if (!match(ops, /<.*>/)) return "?"
    s = substr(ops, RSTART + 1, RLENGTH - 2); sub(/\+0x[0-9a-f]+$/, "", s)
    return s
}

# Instructions executed by a call of the function at `a`, up to and including its `ret`.
function callee_count(a, indent,    c, k, guard, t) {
    c = 0
    while (guard++ < 1000) {
        if (!(a in mn)) { print "icount-paths: no instruction at " a " (callee)" > "/dev/stderr"; exit 2 }
        c++
        if (show) listing = listing indent a "\t" mn[a] "\t" op[a] "\n"
        k = kind(mn[a], op[a])
        if (k == "ret") return c
        if (k == "call") {
            t = target(op[a])
            if (t == "") { print "icount-paths: indirect call in a callee at " a > "/dev/stderr"; exit 2 }
            c += callee_count(t, indent "    ")
        } else if (k == "jump") {
            a = target(op[a]); continue
        } else if (k != "plain") {
            print "icount-paths: " k " in a callee at " a ": " mn[a] " " op[a] > "/dev/stderr"; exit 2
        }
        a = nxt[a]
    }
    print "icount-paths: callee at " a " does not return" > "/dev/stderr"; exit 2
}

# A path back to the head, of n instructions in stk[1..n]: count it if its calls are the ones
# wanted.
function finish(n,    i, k, names, calls, ok, t, total, pat) {
    calls = 0; ok = 1; names = ""
    for (i = 1; i <= n; i++) {
        if (kind(mn[stk[i]], op[stk[i]]) != "call") continue
        calls++
        names = names " " callee_name(op[stk[i]])
        if (want == "none") ok = 0
        else {
            pat = substr(want, 6)
            if (callee_name(op[stk[i]]) !~ pat) ok = 0
        }
    }
    if (want != "none" && calls == 0) ok = 0
    if (!ok) return
    listing = ""
    total = n
    for (i = 1; i <= n; i++) {
        if (show) listing = listing stk[i] "\t" mn[stk[i]] "\t" op[stk[i]] "\n"
        if (kind(mn[stk[i]], op[stk[i]]) == "call") {
            t = target(op[stk[i]])
            if (t == "") { print "icount-paths: indirect call on the path at " stk[i] > "/dev/stderr"; exit 2 }
            total += callee_count(t, "    ")
        }
    }
    found++
    if (found == 1 || total < lo) lo = total
    if (found == 1 || total > hi) hi = total
    if (show) paths = paths "-- path (" total " instructions; calls:" names ")\n" listing
}

function dfs(a, n,    k, t, nx) {
    if (n > 300 || (a in onpath) || !(a in mn)) return
    onpath[a] = 1
    n++; stk[n] = a
    k = kind(mn[a], op[a])
    if (k == "jump" || k == "cond") {
        t = target(op[a])
        if (t == head) finish(n); else dfs(t, n)
    }
    if (k == "plain" || k == "call" || k == "cond") {
        nx = nxt[a]
        if (nx == head) finish(n); else dfs(nx, n)
    }
    delete onpath[a]
}

# Function headers: "000000000000c2fc <icount_row_switched>:".
/^[0-9a-f]+ <.*>:$/ {
    cur = $0; sub(/^[0-9a-f]+ </, "", cur); sub(/>:$/, "", cur)
    prev = ""
    next
}

# Instructions: "    c328:\tsd\ts0,8(sp)" (fields separated by tabs; x86 pads the mnemonic).
/^ *[0-9a-f]+:\t/ {
    line = $0
    addr = line; sub(/^ */, "", addr); sub(/:.*$/, "", addr); sub(/^0+/, "", addr)
    rest = line; sub(/^ *[0-9a-f]+:\t/, "", rest)
    gsub(/\t/, " ", rest); sub(/^ +/, "", rest)
    m = rest; sub(/ .*$/, "", m)
    o = rest; if (o ~ / /) { sub(/^[^ ]+ +/, "", o) } else { o = "" }
    # x86: a prefix ("bnd jmp", "notrack jmp", "rep ret") leaves the real mnemonic second.
    if (m ~ /^(bnd|notrack|rep|repz|ds)$/ && o != "") { m = o; sub(/ .*$/, "", m); if (o ~ / /) { sub(/^[^ ]+ +/, "", o) } else { o = "" } }
    mn[addr] = m; op[addr] = o; fn_of[addr] = cur
    if (prev != "") nxt[prev] = addr
    prev = addr
    if (cur == fn) { order[++nfn] = addr }
    next
}

END {
    if (nfn == 0) { print "icount-paths: function " fn " not found" > "/dev/stderr"; exit 2 }
    if (want != "none" && want !~ /^only:/) { print "icount-paths: want must be none or only:<ERE>" > "/dev/stderr"; exit 2 }
    # The loop head: the lowest target of a backward branch inside fn.
    head = ""
    for (i = 1; i <= nfn; i++) {
        a = order[i]; k = kind(mn[a], op[a])
        if (k != "jump" && k != "cond") continue
        t = target(op[a])
        if (!(t in fn_of) || fn_of[t] != fn || hex(t) > hex(a)) continue
        if (head == "" || hex(t) < hex(head)) head = t
    }
    if (head == "") { print "icount-paths: no loop in " fn > "/dev/stderr"; exit 2 }
    found = 0
    dfs(head, 0)
    if (found == 0) { print "icount-paths: no path of class " want " around the loop of " fn > "/dev/stderr"; exit 1 }
    print (lo == hi ? lo : lo ".." hi)
    if (show) printf "%s", paths
}
