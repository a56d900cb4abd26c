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

# ---------------------------------------------------------------- key set
t 0 "create with deletion protection" - key create kept --type aes-256-gcm --deletion-protection
t 0 "info" - key info kept --json
check "the flag shows" test "$(json_get out 'd["flags"]')" = "['deletion-protected']"
t 0 "revoke (deactivated: destroyable)" - key revoke kept --version 1 --reason superseded
t 4 "a protected key is not scheduled for destruction" - key destroy kept --version 1 --grace 7
check "the refusal says why" grep -q "protected against deletion" err
t 0 "key set --rotate-every --usage" - key set kept --rotate-every 30 --usage decrypt
t 0 "info" - key info kept --json
check "the rotation period shows" test "$(json_get out 'd["rotate_days"]')" = 30
check "the usage is narrowed" test "$(json_get out 'd["usage"]')" = "['decrypt']"
t 0 "create k2" - key create k2 --type aes-256-gcm
t 0 "key set --usage" - key set k2 --usage decrypt
t 4 "encrypt with a decrypt-only key" msg encrypt k2
t 1 "widening the usage" - key set kept --usage decrypt,encrypt
t 4 "a rotation period the policy refuses" - key set kept --rotate-every 800
printf '{"version": 1, "rotation": {"max_days": 60}}\n' >pol60
printf '{"version": 1, "rotation": {"max_days": 365}}\n' >pol365
printf '{"version": 1, "rotation": {"max_days": 20}}\n' >pol20
printf '{"version": 1,' >polbad
t 0 "key set --policy" - key set kept --policy pol60
t 0 "info" - key info kept --json
check "the own policy shows" test "$(json_get out 'd["policy"]["rotation"]["max_days"]')" = 60
t 4 "a looser own policy" - key set kept --policy pol365
check "the refusal says it loosens" grep -q "only tighten" err
t 4 "a policy the rotation period breaks" - key set kept --policy pol20
t 1 "a policy that does not parse" - key set kept --policy polbad
t 1 "key set with nothing to change" - key set kept
t 1 "key set --deletion-protection maybe" - key set kept --deletion-protection maybe
t 0 "create exportable" - key create exp --type aes-256-gcm --exportable
t 0 "key set --not-exportable" - key set exp --not-exportable
t 0 "info" - key info exp --json
check "no longer exportable" test "$(json_get out 'd["flags"]')" = "[]"
t 8 "an exportable pkcs11 key is refused" - key create dev --type aes-256-gcm --protection pkcs11 --exportable
check "the refusal says why" grep -q "cannot be exportable" err

# clearing deletion protection under dual control
for who in ann carl; do printf 'cred of %s\n' "$who" >"$tmp/cred-$who"; done
chmod 600 "$tmp"/cred-*
t 0 "principal add (custodian)" - principal add carl --role custodian --credential-file "$tmp/cred-carl"
t 0 "principal add (admin)" - principal add ann --role admin --credential-file "$tmp/cred-ann"
printf '{"version": 1, "dual_control": {"policy-change": 1, "principal-change": 1}}\n' >dual
t 0 "policy set" - policy set dual
as() { who=$1; shift; "$KMCTL" --principal "$who" --passphrase-file "$tmp/cred-$who" "$@"; }
t 4 "clearing deletion protection needs approval" - key set kept --deletion-protection off
check "the refusal names the request" grep -q "request create key-set" err
as ann request create key-set --target kept --deletion-protection off >out 2>err
check "request create key-set" test -s out
req=$(cat out)
as carl request approve "$req" >out 2>err
check "a custodian approves it" test $? -eq 0
as ann key set kept --deletion-protection off >out 2>err
check "the requester clears deletion protection" test $? -eq 0
t 0 "destroy after the protection is cleared" - key destroy kept --version 1 --grace 7
t 0 "audit verify" - audit verify
t 0 "audit show" - audit show
check "the settings are audited as key.policy" grep -q '"op": *"key.policy".*deletion protection off' out

# ---------------------------------------------------------------- version window, trim
t 0 "create win" - key create win --type aes-256-gcm
t 0 "encrypt v1" msg encrypt win
cp out ctw1
t 0 "rotate" - key rotate win
t 0 "encrypt v2" msg encrypt win
cp out ctw2
t 0 "rotate" - key rotate win
t 4 "trim without a minimum" - key trim win
t 0 "set the window" - key set win --min-decryption-version 2 --min-encryption-version 3
t 0 "info" - key info win --json
check "the window shows" test "$(json_get out '(d["min_decryption_version"], d["min_encryption_version"])')" = "(2, 3)"
t 4 "below the minimum does not decrypt" ctw1 decrypt
check "the refusal says why" grep -q "minimum decryption version" err
t 0 "at the minimum decrypts" ctw2 decrypt
t 1 "a minimum past the last version" - key set win --min-decryption-version 9
t 0 "trim" - key trim win --grace 7
check "trim prints how many" test "$(cat out)" = 1
t 0 "info" - key info win --json
check "version 1 is destroy-pending" test "$(json_get out 'd["versions"][0]["state"]')" = destroy-pending

# ---------------------------------------------------------------- purge
t 4 "purge a key that is not destroyed" - key purge zeta
check "the refusal says why" grep -q "only a key whose versions are all destroyed is purged" err
t 2 "purge a missing key" - key purge nothing
t 0 "policy show" - policy show
check "the policy has destruction.tombstone_days" test "$(json_get out 'd["destruction"]["tombstone_days"]')" = 90

# ---------------------------------------------------------------- further versions
head -c 32 /dev/urandom >m1
head -c 32 /dev/urandom >m2
t 0 "import version 1 with a given id" - import mig --type aes-256-gcm --raw m1 --key-id 0123456789abcdef0123456789abcdef
check "the id is kept" test "$(cat out)" = 0123456789abcdef0123456789abcdef
t 0 "encrypt under version 1" msg encrypt mig
cp out ctm1
t 0 "import version 3" - import mig --type aes-256-gcm --raw m2 --key-id 0123456789abcdef0123456789abcdef --version 3
t 3 "import version 3 again" - import mig --type aes-256-gcm --raw m2 --key-id 0123456789abcdef0123456789abcdef --version 3
check "the refusal says it must be newer" grep -q "must be newer" err
t 3 "another name for the same id" - import other --type aes-256-gcm --raw m2 --key-id 0123456789abcdef0123456789abcdef --version 4
t 1 "a bad --key-id" - import x --type aes-256-gcm --raw m2 --key-id 0123
t 0 "info" - key info mig --json
check "three versions, version 2 recorded destroyed" test "$(json_get out '[v["state"] for v in d["versions"]]')" = "['active', 'destroyed', 'active']"
t 0 "version 1 data still decrypts" ctm1 decrypt

# ---------------------------------------------------------------- backup, restore
t 0 "create an exportable key" - key create travel --type aes-256-gcm --exportable
t 0 "encrypt v1" msg encrypt travel
cp out ctt1
t 0 "rotate" - key rotate travel
t 0 "tag" - key tag travel owner=ops
t 0 "init vault 2" - --vault "$tmp/vault2" init --kdf-cost 14
t 0 "vault 2's wrapping key" - --vault "$tmp/vault2" wrapping-key
cp out v2pub.pem
t 0 "init vault 3" - --vault "$tmp/vault3" init --kdf-cost 14
t 1 "key backup needs a target" - key backup travel
t 0 "key backup to vault 2" - key backup travel --wrap-with v2pub.pem
cp out travel.kb
t 4 "a key not exportable is not backed up" - key backup zeta --wrap-with v2pub.pem
t 0 "key restore into vault 2" - --vault "$tmp/vault2" key restore travel.kb
check "restore prints the same id" test "$(cat out)" = "$("$KMCTL" key info travel --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
t 0 "old data decrypts in vault 2" ctt1 --vault "$tmp/vault2" decrypt
check "the plaintext" cmp -s out msg
t 0 "info in vault 2" - --vault "$tmp/vault2" key info travel --json
check "versions and tags came along" test "$(json_get out '(len(d["versions"]), d["tags"]["owner"])')" = "(2, 'ops')"
t 3 "restore again" - --vault "$tmp/vault2" key restore travel.kb
t 6 "another vault refuses it" - --vault "$tmp/vault3" key restore travel.kb
"$PY" -c 'import sys; b = bytearray(open("travel.kb", "rb").read()); b[-20] ^= 1; open("tampered.kb", "wb").write(b)'
t 6 "a tampered backup" - --vault "$tmp/vault2" key restore tampered.kb --name other
printf 'backup pass\n' >bpass; chmod 600 bpass
printf 'wrong pass\n' >wpass; chmod 600 wpass
t 0 "key backup under a passphrase" - key backup travel --backup-passphrase-file bpass
cp out travel-pw.kb
t 6 "a wrong backup passphrase" - --vault "$tmp/vault3" key restore travel-pw.kb --backup-passphrase-file wpass
t 0 "restore under a passphrase and another name" - --vault "$tmp/vault3" key restore travel-pw.kb --backup-passphrase-file bpass --name travel-copy
t 0 "old data decrypts in vault 3" ctt1 --vault "$tmp/vault3" decrypt

# ---------------------------------------------------------------- what key info tells
t 0 "create told" - key create told --type aes-256-gcm
t 0 "encrypt" msg encrypt told
t 0 "rotate" - key rotate told
t 0 "revoke version 1" - key revoke told --version 1 --reason key-compromise --compromise-date 2026-01-02T03:04:05Z
t 0 "info --json" - key info told --json
check "the owner" test "$(json_get out 'd["owner"]')" = owner
check "the revocation reason and compromise date" test "$(json_get out '(d["versions"][0]["revoke_reason"], d["versions"][0]["compromise_date"])')" = "('key-compromise', '2026-01-02T03:04:05Z')"
check "the bytes are counted" test "$(json_get out 'd["versions"][0]["bytes"] >= 15')" = True
t 0 "info" - key info told
check "the text shows the revocation" grep -q "version 1 revoked: key-compromise, compromised at 2026-01-02T03:04:05Z" out
t 0 "grant" - key grant told carl --perms decrypt
t 0 "key grants" - key grants told
check "key grants lists it" grep -q "^carl	decrypt$" out
t 0 "key grants --json" - key grants told --json
check "key grants --json" test "$(json_get out 'd["grants"][0]["perms"]')" = "['decrypt']"

# ---------------------------------------------------------------- audit
t 0 "audit show" - audit show
check "the changes are audited as key.meta" test "$(grep -c '"op": *"key.meta"' out)" -ge 10
t 0 "audit verify" - audit verify

lib_summary
