#!/bin/sh
# The layering check's own test: a tiny tree with one file per layer passes;
# each planted violation (an upward call, an upward include, a backend
# including core.h, an include found through the map's include path,
# OpenSSL in a core file, a rules file calling the store,
# rules calling an impure primitive, a cycle in primitives, a backend calling
# the core, an unmapped file, a stale debt line, kmd reaching past the KMIP codec) makes it fail with a message
# naming the file and line; and a violation planted in a copy of the real tree
# is caught by the real map. make check sets top_srcdir and PYTHON.
set -eu
: "${top_srcdir:=.}" "${PYTHON:=/usr/bin/python3}"
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
check="$top_srcdir/tests/layering.py"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0 n=0

# ------------------------------------------------------------ the fixture
fx="$tmp/clean"
mkdir -p "$fx/include/km/sys" "$fx/src" "$fx/backends/dev" "$fx/tools" "$fx/tests"
cat > "$fx/tests/layers.map" <<'EOF'
roots src backends include tools tests
tests tests/**
public include/**
tools:cli tools/**
backends:dev backends/dev/**
primitives src/prim.h src/prim.c src/prim2.c
store src/store.h src/store.c
rules src/rules.h src/rules.c
core src/core.h src/core.c
api src/api.c
pure src/prim.c
openssl primitives
EOF
: > "$fx/tests/layers.debt"
cat > "$fx/include/km.h" <<'EOF'
#include "km/sys/backend.h"
int km_do(int x);
EOF
echo 'typedef int km_backend_ops;' > "$fx/include/km/sys/backend.h"
cat > "$fx/src/prim.h" <<'EOF'
#include "km.h"
int km__err(int code);
int km__random(void *p, int n);
EOF
cat > "$fx/src/prim.c" <<'EOF'
#include "prim.h"
int km__err(int code)
{
    return code;
}
EOF
cat > "$fx/src/prim2.c" <<'EOF'
#include <openssl/rand.h>
#include "prim.h"
int km__random(void *p, int n)
{
    return RAND_bytes(p, n) == 1 ? 0 : km__err(-1);
}
EOF
cat > "$fx/src/store.h" <<'EOF'
#include "prim.h"
int km__rec_get(int k);
EOF
cat > "$fx/src/store.c" <<'EOF'
#include "store.h"
int km__rec_get(int k)
{
    char b[4];
    return km__random(b, k);
}
EOF
cat > "$fx/src/rules.h" <<'EOF'
#include "prim.h"
int km__rule_decide(int op);
EOF
cat > "$fx/src/rules.c" <<'EOF'
#include "rules.h"
int km__rule_decide(int op) /* km__rec_get( in a comment is no call */
{
    return op > 3 ? km__err(-2) : 0;
}
EOF
cat > "$fx/src/core.h" <<'EOF'
#include "store.h"
#include "rules.h"
int km__core_do(int x);
EOF
cat > "$fx/src/core.c" <<'EOF'
#include "core.h"
int km__core_do(int x)
{
    const char *s = "EVP_MD_fetch( in a string is no call";
    (void)s;
    return km__rule_decide(x) ? -1 : km__rec_get(x);
}
EOF
cat > "$fx/src/api.c" <<'EOF'
#include "core.h"
int km_do(int x)
{
    return km__core_do(x);
}
EOF
cat > "$fx/backends/dev/dev.c" <<'EOF'
#include "km/sys/backend.h"
#include "prim.h"
#include "dev.h"
int km__dev_open(int x)
{
    char b[4];
    return km__random(b, x) + km__dev_helper();
}
EOF
cat > "$fx/backends/dev/dev.h" <<'EOF'
static inline int km__dev_helper(void) { return 0; }
EOF
cat > "$fx/tools/cli.c" <<'EOF'
#include "km.h"
int main(void) { return km_do(1); }
EOF
echo 'int km__test_only(void) { return 0; }' > "$fx/tests/t.c"

# run NAME EXPECTED-RC [GREP-PATTERN]: the check on $tree
run() {
    n=$((n + 1))
    rc=0
    "$PYTHON" "$check" --root "$tree" > "$tmp/out" 2>&1 || rc=$?
    if [ "$rc" -ne "$2" ]; then
        echo "FAIL $1: exit $rc, expected $2"; sed 's/^/    /' "$tmp/out"; fails=$((fails + 1)); return 0
    fi
    if [ $# -ge 3 ] && ! grep -q -- "$3" "$tmp/out"; then
        echo "FAIL $1: no line matching '$3' in:"; sed 's/^/    /' "$tmp/out"; fails=$((fails + 1)); return 0
    fi
    echo "ok   $1: $(grep -- "${3:-files checked}" "$tmp/out" | head -n1)"
}
# plant NAME: a fresh copy of the clean fixture in $tree
plant() { tree="$tmp/$1"; rm -rf "$tree"; cp -R "$fx" "$tree"; }
# append FILE TEXT: TEXT added as the last line of FILE; $line is its number
append() { printf '%s\n' "$2" >> "$tree/$1"; line=$(wc -l < "$tree/$1" | tr -d ' '); }

tree="$fx"
run "clean fixture passes" 0 "0 violations (none), 0 new"

plant upcall
append src/prim.c 'int km__prim_up(void) { return km__core_do(1); }'
run "upward call" 1 "VIOLATION src/prim.c:$line: call km__core_do: primitives may not use km__core_do, defined in src/core.c (core)"

plant upinclude
append src/store.c '#include "core.h"'
run "upward include" 1 "VIOLATION src/store.c:$line: include src/core.h: store may not include src/core.h (core)"

plant backendcore
append backends/dev/dev.c '#include "core.h"'
run "backend includes core.h" 1 "VIOLATION backends/dev/dev.c:$line: include src/core.h: backends:dev may not include src/core.h (core)"

plant incpath
mkdir -p "$tree/src/inner"
echo 'int km__inner(void);' > "$tree/src/inner/inner.h"
echo 'int km__tool_inner(void);' > "$tree/tools/inner.h"
printf 'includes include src src/inner\ncore src/inner/**\n' >> "$tree/tests/layers.map"
append src/store.c '#include "inner.h"'
run "include resolved through the map's include path" 1 "VIOLATION src/store.c:$line: include src/inner/inner.h: store may not include src/inner/inner.h (core)"

plant backendcall
append backends/dev/dev.c 'int km__dev_x(void) { return km__core_do(2); }'
run "backend calls the core" 1 "VIOLATION backends/dev/dev.c:$line: call km__core_do: backends:dev may not use km__core_do"

plant opensslcore
append src/core.c 'int km__core_md(void) { return EVP_MD_fetch(0, "SHA256", 0) != 0; }'
run "OpenSSL call in a core file" 1 "VIOLATION src/core.c:$line: openssl EVP_MD_fetch: OpenSSL is allowed only in primitives"

plant opensslinclude
append src/core.c '#include <openssl/evp.h>'
run "OpenSSL header in a core file" 1 "VIOLATION src/core.c:$line: openssl <openssl/evp.h>"

plant rulesstore
append src/rules.c 'int km__rule_look(void) { return km__rec_get(1); }'
run "rules calls the store" 1 "VIOLATION src/rules.c:$line: call km__rec_get: rules may not use km__rec_get, defined in src/store.c (store)"

plant rulesimpure
append src/rules.c 'int km__rule_roll(void) { char b[2]; return km__random(b, 2); }'
run "rules calls an impure primitive" 1 "VIOLATION src/rules.c:$line: call km__random: rules may not use km__random, defined in src/prim2.c (primitives, not a pure helper)"

plant primcycle
append src/prim.c 'int km__prim_back(void) { char b[1]; return km__random(b, 1); }'
run "cycle in primitives" 1 "VIOLATION src/prim.c: cycle src/prim2.c: files of primitives call each other"

plant unmapped
echo 'int km__stray(void) { return 0; }' > "$tree/src/stray.c"
run "unmapped file" 1 "src/stray.c has no layer"

plant debt
append src/prim.c 'int km__prim_up(void) { return km__core_do(1); }'
echo "src/prim.c call km__core_do" > "$tree/tests/layers.debt"
run "a violation in the debt file passes" 0 "1 violations (call 1), 0 new, debt left 1"

plant stale
echo "src/prim.c call km__core_do" > "$tree/tests/layers.debt"
run "a debt line that no longer occurs fails" 1 "FIXED, remove from tests/layers.debt: src/prim.c call km__core_do"

# the real map on a copy of the real tree: clean as it is, caught when planted
tree="$tmp/real"
mkdir -p "$tree"
for d in src backends include bindings examples; do cp -R "$top_srcdir/$d" "$tree/"; done
mkdir -p "$tree/tests"
cp "$top_srcdir/tests/layers.map" "$top_srcdir/tests/layers.debt" "$tree/tests/"
chmod -R u+w "$tree"
run "the real tree passes with its debt" 0 "0 new, debt left"
# kmd may use the KMIP codec of the primitives, nothing else below the API
kmdf="$tree/src/kmd/kmd_planted.c"
printf '#include "kmip_ttlv.h"\nint kmd_t(void) { return km__ttlv_put_int(0, 0, 0); }\n' > "$kmdf"
run "kmd using the KMIP codec passes" 0 "0 new, debt left"
printf '#include "km_int.h"\n' >> "$kmdf"
run "kmd including another primitive header" 1 "VIOLATION src/kmd/kmd_planted.c:3: include src/prim/km_int.h: daemon:kmd may not include"
printf '#include "kmip_ttlv.h"\nint kmd_u(void) { return km__err(1, "x"); }\n' > "$kmdf"
run "kmd calling another primitive" 1 "VIOLATION src/kmd/kmd_planted.c:2: call km__err: daemon:kmd may not use km__err"
rm -f "$kmdf"
printf '#include "core.h"\n' >> "$tree/backends/tpm2/tpm2_conn.c"
line=$(wc -l < "$tree/backends/tpm2/tpm2_conn.c" | tr -d ' ')
run "the real tree with a planted include" 1 "VIOLATION backends/tpm2/tpm2_conn.c:$line: include src/core/core.h"

echo "layering_selftest: $((n - fails)) of $n cases as expected"
[ "$fails" -eq 0 ]
