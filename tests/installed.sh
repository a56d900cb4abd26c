#!/bin/sh
# What `make install` gives a user, from the installed files alone: install
# libkm into a temporary DESTDIR, then
#  - build examples/demo.c with pkg-config only (no -I into src/) and run it;
#  - the installed kmctl lists the key backends configure built (config.h);
#  - the installed km package imports with the interpreter configure chose
#    (only the installed site directory on its path), records the libdir in
#    km/_paths.py, and round-trips a key through the installed library;
#  - the provider module and the man page are there.
# (tests/prefix_install.sh does the same for a real ./configure --prefix=P.)
set -eu
: "${top_srcdir:=.}" "${top_builddir:=.}" "${CC:=cc}" "${MAKE:=make}" "${KM_SAN_FLAGS:=}" "${PYTHON:=/usr/bin/python3}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "installed: FAIL: $*"; exit 1; }
"$MAKE" -s -C "$top_builddir" install DESTDIR="$tmp" >/dev/null
prefix=$(sed -n 's/^prefix=//p' "$top_builddir/libkm.pc")
root="$tmp$prefix"
pcdir=$(dirname "$(find "$root" -name libkm.pc | head -n 1)")
cflags=$(PKG_CONFIG_SYSROOT_DIR="$tmp" PKG_CONFIG_PATH="$pcdir" pkg-config --cflags libkm)
libs=$(PKG_CONFIG_SYSROOT_DIR="$tmp" PKG_CONFIG_PATH="$pcdir" pkg-config --libs libkm)
libdir=$(dirname "$(find "$root" -name 'libkm.so' | head -n 1)")
# a sanitizer build of libkm needs the same runtime in the program
$CC -std=c11 -Wall -Werror $KM_SAN_FLAGS $cflags "$top_srcdir/examples/demo.c" -o "$tmp/demo" $libs -Wl,-rpath,"$libdir"
LD_LIBRARY_PATH="$libdir" "$tmp/demo" "$tmp/vault" > "$tmp/out"
grep -q 'demo: all steps passed' "$tmp/out" || fail "the demo built from the installed files did not pass"
echo "installed: the demo built from the installed headers and library alone passed"

# kmctl: the backends configure decided on (config.h) are in the installed library
want="software"
grep -q '^#define KM_HAVE_PKCS11 1' "$top_builddir/config.h" && want="$want pkcs11 pkcs11-card"
grep -q '^#define KM_HAVE_TPM2 1' "$top_builddir/config.h" && want="$want tpm2"
LD_LIBRARY_PATH="$libdir" "$root/bin/kmctl" backend list > "$tmp/backends" || fail "kmctl backend list"
for b in $want; do
    grep -qx "$b" "$tmp/backends" || fail "installed kmctl does not list backend '$b' ($(tr '\n' ' ' < "$tmp/backends"))"
done
echo "installed: kmctl lists the backends: $(tr '\n' ' ' < "$tmp/backends")"
[ -f "$root/share/man/man1/kmctl.1" ] || fail "kmctl.1 not installed"
find "$root" -path '*ossl-modules/km.so' | grep -q . || fail "the OpenSSL provider module (ossl-modules/km.so) is not installed"
find "$root" -name FORMATS.md | grep -q . || fail "docs/FORMATS.md is not installed"

# the Python package, from the installed site directory only
init=$(find "$root" -path '*/km/__init__.py' | head -n 1)
[ -n "$init" ] || fail "the km Python package is not installed"
site=$(dirname "$(dirname "$init")")
grep -qx "LIBDIR = \"$prefix/lib\"" "$site/km/_paths.py" \
    || grep -q "^LIBDIR = \"$prefix" "$site/km/_paths.py" || fail "km/_paths.py does not record the libdir: $(cat "$site/km/_paths.py")"
case "$KM_SAN_FLAGS" in
*-fsanitize=address*)
    # the interpreter is not instrumented: preload the sanitizer runtime
    LD_PRELOAD="$($CC -print-file-name=libasan.so) $($CC -print-file-name=libubsan.so)"
    ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
    export LD_PRELOAD ASAN_OPTIONS ;;
esac
(cd "$tmp" && env -u KM_LIBRARY PYTHONPATH="$site" LD_LIBRARY_PATH="$libdir" PYTHONDONTWRITEBYTECODE=1 \
    "$PYTHON" - "$tmp/pyvault" "$site" <<'PY'
import sys, km
assert km.__file__.startswith(sys.argv[2]), km.__file__
assert "software" in km.backends()
with km.Vault.open(sys.argv[1], passphrase=b"installed test", create=True) as v:
    k = v.create_key("t", "aes-256-gcm")
    assert v.decrypt(k.encrypt(b"data", aad=b"a"), aad=b"a") == b"data"
print("installed: import km from the installed site directory and a round trip passed")
PY
) || fail "the installed km package"
