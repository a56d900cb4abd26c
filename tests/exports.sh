#!/bin/sh
# The export list: libkm.so exports exactly the KM_EXTERN functions of the
# public headers, all named km_*, and nothing internal (km__*).
set -eu
: "${top_srcdir:=.}" "${top_builddir:=.}"
so="$top_builddir/.libs/libkm.so"
[ -f "$so" ] || { echo "exports: $so not built"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRV]$/ {print $3}' | sed 's/@.*//' | sort -u > "$tmp/exported"
# every function declared KM_EXTERN in an installed header
cat "$top_srcdir"/include/km.h "$top_srcdir"/include/km/*.h "$top_srcdir"/include/km/sys/*.h \
  | tr '\n' ' ' | sed 's/;/;\n/g' | grep 'KM_EXTERN' \
  | sed -E 's/.*[ *](km_[a-z0-9_]+) *\(.*/\1/' | grep '^km_' | sort -u > "$tmp/declared"
bad=0
if grep -v '^km_[a-z0-9]' "$tmp/exported"; then echo "exports: symbols above are exported but not km_*"; bad=1; fi
if grep '^km__' "$tmp/exported"; then echo "exports: internal km__ symbols above are exported"; bad=1; fi
if ! diff -u "$tmp/declared" "$tmp/exported"; then
  echo "exports: the exported symbols differ from the KM_EXTERN declarations (- declared only, + exported only)"
  bad=1
fi
n=$(wc -l < "$tmp/exported")
[ $bad -eq 0 ] && echo "exports: $n symbols, all declared KM_EXTERN"
exit $bad
