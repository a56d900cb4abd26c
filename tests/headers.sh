#!/bin/sh
# Every public header compiles alone, as C99 and C11, with -pedantic -Werror,
# and as C++ (the extern "C" guards).
set -eu
: "${top_srcdir:=.}" "${CC:=cc}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
n=0
for h in "$top_srcdir"/include/km.h "$top_srcdir"/include/km/*.h "$top_srcdir"/include/km/sys/*.h; do
  rel=${h#"$top_srcdir"/include/}
  printf '#include <%s>\nint km_header_test_dummy;\n' "$rel" > "$tmp/t.c"
  for std in c99 c11; do
    $CC -std=$std -pedantic -Wall -Wextra -Werror -I"$top_srcdir/include" -c "$tmp/t.c" -o "$tmp/t.o" \
      || { echo "headers: $rel fails alone with -std=$std"; exit 1; }
  done
  if command -v g++ >/dev/null 2>&1; then
    cp "$tmp/t.c" "$tmp/t.cc"
    g++ -std=c++11 -pedantic -Wall -Wextra -Werror -I"$top_srcdir/include" -c "$tmp/t.cc" -o "$tmp/t.o" \
      || { echo "headers: $rel fails alone as C++"; exit 1; }
  fi
  n=$((n + 1))
done
echo "headers: $n public headers compile alone"
