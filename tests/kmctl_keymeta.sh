#!/bin/sh
# kmctl_keymeta.sh - kmctl's commands on a key's names and metadata (issue 22):
# key rename, alias, unalias, describe, tag, untag, and key list sorted and
# filtered, with their exit codes and outputs.
# Run by make check (top_builddir and top_srcdir come from the environment).
set -u
: "${top_builddir:=.}" "${top_srcdir:=.}"
. "$(dirname "$0")/lib.sh"
lib_init kmctl_keymeta
LIB_SHOW_ERR=1
KMCTL="$top_builddir/src/kmctl/kmctl"
[ -x "$KMCTL" ] || lib_die "$KMCTL is not built"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

lib_tmpdir
cd "$tmp" || exit 1
case $KMCTL in /*) ;; *) KMCTL="$OLDPWD/$KMCTL" ;; esac

unset KM_VAULT KM_PASSPHRASE
export KM_VAULT="$tmp/vault" KM_PASSPHRASE="kmctl keymeta passphrase"
json_get() { "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }

t 0 "init" - init --kdf-cost 14
t 0 "create zeta" - key create zeta --type aes-256-gcm
t 0 "create alpha" - key create alpha --type ec-p256
t 0 "create Mid" - key create Mid --type aes-256-gcm
t 0 "create beta" - key create beta --type hmac-sha256
printf 'attack at dawn\n' >msg
t 0 "encrypt under zeta" msg encrypt zeta
cp out ct

# ---------------------------------------------------------------- list
t 0 "key list" - key list
check "key list is sorted by name" test "$(cut -f1 out | tr '\n' ' ')" = "Mid alpha beta zeta "
t 0 "suspend Mid" - key suspend Mid
t 0 "tag zeta" - key tag zeta env=prod
t 0 "tag alpha" - key tag alpha env=dev
t 0 "list --type" - key list --type aes-256-gcm
check "--type filters" test "$(cut -f1 out | tr '\n' ' ')" = "Mid zeta "
t 0 "list --state" - key list --state suspended
check "--state filters" test "$(cut -f1 out | tr '\n' ' ')" = "Mid "
t 0 "list --tag K" - key list --tag env
check "--tag K filters" test "$(cut -f1 out | tr '\n' ' ')" = "alpha zeta "
t 0 "list --tag K=V" - key list --tag env=prod
check "--tag K=V filters" test "$(cut -f1 out | tr '\n' ' ')" = "zeta "
t 0 "list --protection" - key list --protection software --type ec-p256
check "--protection and --type together" test "$(cut -f1 out | tr '\n' ' ')" = "alpha "
t 0 "list --protection pkcs11" - key list --protection pkcs11
check "no pkcs11 key" test ! -s out
t 1 "list --state unknown" - key list --state sleepy
check "an unknown state names the states" grep -q "one of: pre-active" err
t 1 "list --type unknown" - key list --type aes-9
t 1 "list --tag empty" - key list --tag =x

# ---------------------------------------------------------------- rename
t 0 "rename zeta" - key rename zeta zeta-2026
t 2 "the old name is gone" - key info zeta
t 0 "decrypt after the rename" ct decrypt
check "the ciphertext still decrypts" cmp -s out msg
t 3 "rename onto a taken name" - key rename alpha zeta-2026
check "the refusal says the name is taken" grep -q "is taken" err
t 1 "rename onto a reserved name" - key rename alpha km:mine
t 2 "rename a missing key" - key rename nothing other
t 0 "the old name is free" - key create zeta --type aes-256-gcm

# ---------------------------------------------------------------- aliases
t 0 "alias" - key alias zeta-2026 current
t 0 "encrypt through the alias" msg encrypt current
cp out ct2
t 0 "info by alias" - key info current --json
check "info by alias is the key" test "$(json_get out 'd["name"]')" = zeta-2026
check "info lists the alias" test "$(json_get out 'd["aliases"]')" = "['current']"
t 3 "alias taken by another key" - key alias zeta current
check "the refusal points at --move" grep -q -- "--move" err
t 3 "alias that is a key's name" - key alias zeta alpha --move
t 0 "alias moved" - key alias zeta current --move
t 0 "info after the move" - key info current --json
check "the alias now names the new key" test "$(json_get out 'd["name"]')" = zeta
t 0 "the old key" - key info zeta-2026 --json
check "the old key no longer lists it" test "$(json_get out 'd["aliases"]')" = "[]"
t 0 "old data still decrypts" ct2 decrypt
t 1 "unalias a key's name" - key unalias zeta
t 2 "unalias an unknown alias" - key unalias nothing
t 0 "unalias" - key unalias current
t 2 "the alias is gone" - key info current

# ---------------------------------------------------------------- description, tags
t 0 "describe" - key describe alpha "signing key of the build farm"
t 1 "describe with a control character" - key describe alpha "$(printf 'two\nlines')"
t 0 "tag" - key tag alpha team=release
t 1 "tag without =" - key tag alpha team
t 1 "tag with a bad key" - key tag alpha "a b=c"
t 0 "info" - key info alpha
check "info shows the description" grep -q '^description: signing key of the build farm$' out
check "info shows the tags sorted" grep -q '^tags:        env=dev, team=release$' out
t 0 "info --json" - key info alpha --json
check "info --json has the tags" test "$(json_get out 'd["tags"]["team"]')" = release
t 0 "list --json" - key list --json
check "list --json has tags and protection" test "$(json_get out '[k["tags"] for k in d["keys"] if k["name"] == "alpha"][0]["env"] + [k["protection"] for k in d["keys"]][0]')" = devsoftware
t 0 "untag" - key untag alpha env
t 2 "untag again" - key untag alpha env
t 0 "describe empty removes" - key describe alpha ""
t 0 "info --json" - key info alpha --json
check "the description is gone" test "$(json_get out 'd["description"]')" = None

# ---------------------------------------------------------------- audit
t 0 "audit show" - audit show
check "the changes are audited as key.meta" test "$(grep -c '"op": *"key.meta"' out)" -ge 10
t 0 "audit verify" - audit verify

lib_summary
