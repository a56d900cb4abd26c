#!/bin/sh
# A program written from the installed headers alone: install libkm into a
# temporary prefix, build examples/demo.c there with pkg-config only (no
# -I into src/), and run it.
set -eu
: "${top_srcdir:=.}" "${top_builddir:=.}" "${CC:=cc}" "${MAKE:=make}" "${KM_SAN_FLAGS:=}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
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
grep -q 'demo: all steps passed' "$tmp/out"
echo "installed: the demo built from the installed headers and library alone passed"
