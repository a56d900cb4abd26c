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
# plant WHAT HEADER TEXT EXPECT: TEXT appended to HEADER in a copy of the
# headers must make the check fail with a line matching EXPECT
plant() {
  rm -rf "$tmp/inc"
  cp -r "$top_srcdir/include" "$tmp/inc"
  printf '%b' "$3" >> "$tmp/inc/$2"
  if out=$(check "$tmp/inc"); then
    echo "apidoc: self-test: $1 was not caught"; exit 1
  fi
  echo "$out" | grep -q "$4" || { echo "apidoc: self-test: wrong message for $1: $out"; exit 1; }
}
plant "an undocumented declaration" km/key.h '\nKM_EXTERN int km_apidoc_planted(void);\n' \
  'km/key.h:[0-9]*: km_apidoc_planted has no doc comment'
plant "a doc comment without Returns" km/sys/server.h \
  '\n/** Does something. */\nKM_EXTERN int km_apidoc_planted(void);\n' \
  'km/sys/server.h:[0-9]*: km_apidoc_planted: its doc comment says nothing'
plant "a /* */ comment taken for a doc comment" km/vault.h \
  '\n/* Returns 0. */\nKM_EXTERN int km_apidoc_planted(void);\n' \
  'km/vault.h:[0-9]*: km_apidoc_planted has no doc comment'

check "$top_srcdir/include"
n=$(cat "$top_srcdir"/include/km/*.h "$top_srcdir"/include/km/sys/*.h | grep -c '^KM_EXTERN[ 	]')
echo "apidoc: $n public functions documented, each saying what it returns"
