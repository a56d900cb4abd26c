#!/bin/sh
# Every public function is documented where it is declared.
#
# The rule (docs/STYLE: "every public function documented in its header"),
# checked over include/km/*.h and include/km/sys/*.h:
#   1. every KM_EXTERN declaration is preceded (blank lines aside) by a
#      doxygen comment: one that opens with "/**" and closes with "*/";
#   2. when the function returns something (any type but plain `void`), that
#      comment says what: it contains "@return" or "Returns".
# One comment may document a group of declarations that follow it with no
# blank line between them ("The key's name." / "The key's id." ...): each
# declaration still needs its own comment, so write one per function.
#
# Usage: apidoc.sh [INCLUDE_DIR]   (default $top_srcdir/include). With no
# argument it first checks itself: an undocumented declaration, and a
# documented one without a Returns statement, planted in a temporary copy of
# the headers, must each make it fail naming the file and line.
set -eu
: "${top_srcdir:=.}"

# check DIR: prints one line per gap, exits 1 when there is any.
check() {
  found=0 bad=0
  for h in "$1"/km/*.h "$1"/km/sys/*.h; do
    [ -f "$h" ] || continue
    found=1
    awk -v file="${h#"$1"/}" '
      # the comment most recently closed, and whether only blank lines follow it
      /^[ \t]*#/ { incomment = 0; doc = ""; open = 0; next }
      {
        line = $0
        if (incomment) {
          text = text "\n" line
          if (index(line, "*/")) { incomment = 0; doc = text; open = isdoc }
          next
        }
        if (match(line, /^[ \t]*\/\*/)) {
          isdoc = (substr(line, RSTART + RLENGTH, 1) == "*")
          text = line
          rest = substr(line, RSTART + RLENGTH)
          if (index(rest, "*/")) { doc = text; open = isdoc } else incomment = 1
          next
        }
        if (line ~ /^[ \t]*$/) next
        if (line ~ /^KM_EXTERN[ \t]/) {
          name = line
          sub(/\(.*/, "", name); sub(/.*[ \t*]/, "", name)
          if (!open) {
            printf "apidoc: %s:%d: %s has no doc comment (/** ... */) right above it\n", file, NR, name
            bad = 1
          } else {
            decl = line
            sub(/^KM_EXTERN[ \t]+/, "", decl)
            isvoid = (decl ~ /^void[ \t]+[A-Za-z_]/)
            if (!isvoid && doc !~ /@return|Returns/) {
              printf "apidoc: %s:%d: %s: its doc comment says nothing of what it returns (@return or Returns)\n", file, NR, name
              bad = 1
            }
          }
          # a comment documents the declaration right after it only
          open = 0; doc = ""
          next
        }
        # any other code line (a typedef, a declaration continued) ends its reach
        open = 0; doc = ""
      }
      END { exit bad ? 1 : 0 }
    ' "$h" || bad=1
  done
  [ "$found" -eq 1 ] && [ "$bad" -eq 0 ]
}

if [ $# -gt 0 ]; then
  check "$1"
  exit $?
fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# self-test 1: a declaration with no comment at all
cp -r "$top_srcdir/include" "$tmp/a"
printf '\nKM_EXTERN int km_apidoc_planted(void);\n' >> "$tmp/a/km/key.h"
if out=$(check "$tmp/a"); then
  echo "apidoc: self-test: an undocumented declaration was not caught"; exit 1
fi
echo "$out" | grep -q 'km/key.h:[0-9]*: km_apidoc_planted has no doc comment' \
  || { echo "apidoc: self-test: wrong message for an undocumented declaration: $out"; exit 1; }
# self-test 2: a doc comment that does not say what the function returns
cp -r "$top_srcdir/include" "$tmp/b"
printf '\n/** Does something. */\nKM_EXTERN int km_apidoc_planted(void);\n' >> "$tmp/b/km/sys/server.h"
if out=$(check "$tmp/b"); then
  echo "apidoc: self-test: a doc comment without Returns was not caught"; exit 1
fi
echo "$out" | grep -q 'km/sys/server.h:[0-9]*: km_apidoc_planted: its doc comment says nothing' \
  || { echo "apidoc: self-test: wrong message for a missing Returns: $out"; exit 1; }
# self-test 3: a plain (non-doc) comment does not count
cp -r "$top_srcdir/include" "$tmp/c"
printf '\n/* Returns 0. */\nKM_EXTERN int km_apidoc_planted(void);\n' >> "$tmp/c/km/vault.h"
if check "$tmp/c" >/dev/null; then
  echo "apidoc: self-test: a /* */ comment was taken for a doc comment"; exit 1
fi

check "$top_srcdir/include"
n=$(cat "$top_srcdir"/include/km/*.h "$top_srcdir"/include/km/sys/*.h | grep -c '^KM_EXTERN[ 	]')
echo "apidoc: $n public functions documented, each saying what it returns"
