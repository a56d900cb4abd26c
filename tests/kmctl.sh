#!/bin/sh
# kmctl.sh - kmctl's grammar end to end against a fresh vault: every command, its output and its exit code.
# Run by make check (top_builddir and top_srcdir come from the environment).
set -u
: "${top_builddir:=.}" "${top_srcdir:=.}"
. "$(dirname "$0")/lib.sh"
lib_init kmctl
LIB_SHOW_ERR=1
KMCTL="$top_builddir/src/kmctl/kmctl"
[ -x "$KMCTL" ] || lib_die "$KMCTL is not built"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
lib_need_tools openssl

lib_tmpdir
cd "$tmp" || exit 1
case $KMCTL in /*) ;; *) KMCTL="$OLDPWD/$KMCTL" ;; esac

PASS="kmctl test passphrase"
unset KM_VAULT KM_PASSPHRASE
export KM_VAULT="$tmp/vault" KM_PASSPHRASE="$PASS"

hex() { od -An -tx1 "$@" 2>/dev/null | tr -d ' \n'; }
# flip FILE OFFSET OUT: OUT is FILE with one bit changed at OFFSET (negative: from the end)
flip() {
    "$PY" -c 'import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[int(sys.argv[2])] ^= 1
open(sys.argv[3], "wb").write(b)' "$1" "$2" "$3" 2>/dev/null
}
json_ok() { "$PY" -m json.tool <"$1" >/dev/null 2>&1; }
# jq-like: json_get FILE PYTHON-EXPR (d is the document)
json_get() { "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }

printf 'attack at dawn\n' >msg
head -c 100000 /dev/urandom >blob
: >empty

# ---------------------------------------------------------------- basics
t 0 "version" - version
check "version names kmctl and libkm" grep -q '^kmctl .* (libkm .*)$' out
t 0 "--version" - --version
t 0 "--help" - --help
check "--help documents the exit codes" grep -q 'integrity' out
check "--help lists the unavailable commands" grep -q 'not available in this libkm version' out
t 0 "help" - help
t 0 "command --help" - key create --help
check "command --help shows its synopsis" grep -q 'kmctl key create NAME --type TYPE' out
t 1 "no command" -
t 2 "a vault that does not exist" - key list

# ---------------------------------------------------------------- init
t 0 "init" - init --kdf-cost 14
check "init prints the vault id" grep -Eq '^[0-9a-f]{32}$' out
t 3 "init of an existing vault" - init --kdf-cost 14
t 1 "init with a bad --kdf-cost" - --vault "$tmp/v2" init --kdf-cost 3

# ---------------------------------------------------------------- key create
t 0 "create aes-256-gcm" - key create aes --type aes-256-gcm
check "create prints the key id" grep -Eq '^[0-9a-f]{32}$' out
aes_id=$(cat out)
t 0 "create hmac-sha256" - key create hm --type hmac-sha256
t 0 "create ec-p256" - key create ec --type ec-p256
t 0 "create ed25519" - key create ed --type ed25519
t 0 "create rsa-2048" - key create rsa --type rsa-2048
t 0 "create with --protection software --exportable --usage" - \
    key create enc-only --type aes-128-gcm --protection software --exportable --usage encrypt
t 0 "create with --name=value options" - key create "two words" --type=aes-192-gcm
t 3 "duplicate create" - key create aes --type aes-256-gcm
t 1 "create with an unknown type" - key create x --type aes-512-gcm
t 1 "create with an unknown usage" - key create x --type aes-256-gcm --usage fly
t 1 "create with a usage the type lacks" - key create x --type ec-p256 --usage encrypt
t 8 "create with an unknown protection" - key create x --type aes-256-gcm --protection quantum

# ---------------------------------------------------------------- key list, key info
t 0 "key list" - key list
check "key list shows 7 keys" [ "$(wc -l <out)" -eq 7 ]
check "key list: NAME TAB TYPE TAB ID" grep -q "^aes	aes-256-gcm	$aes_id\$" out
check "key list shows the name with a space" grep -q '^two words	aes-192-gcm	' out
t 0 "key list --json" - key list --json
cp out list.json
check "key list --json is JSON" json_ok list.json
check "key list --json has 7 keys" [ "$(json_get list.json 'len(d["keys"])')" = 7 ]
t 0 "key info" - key info aes
check "key info shows the primary" grep -q '^primary: *1$' out
check "key info shows version 1 active" grep -Eq '^ +1 +active ' out
t 0 "key info --json" - key info enc-only --json
cp out info.json
check "key info --json is JSON" json_ok info.json
check "key info --json fields" [ "$(json_get info.json \
    '(d["name"], d["type"], d["usage"], d["flags"], d["protection"], d["primary"], len(d["id"]), d["created"][-1])')" = \
    "('enc-only', 'aes-128-gcm', ['encrypt'], ['exportable'], 'software', 1, 32, 'Z')" ]
check "key info --json versions" [ "$(json_get info.json \
    '[(v["version"], v["state"], v["created"][-1], v["destroy_after"], type(v["invocations"]).__name__) for v in d["versions"]]')" = \
    "[(1, 'active', 'Z', None, 'int')]" ]
t 2 "key info of a missing key" - key info nosuchkey
check "the message names the key" grep -q "^kmctl: opening key 'nosuchkey': " err

# ---------------------------------------------------------------- encrypt, decrypt
t 0 "encrypt binary" msg encrypt aes
cp out ct
check "binary ciphertext: KM header, plaintext + 52 bytes" \
    [ "$(hex -N2 ct)" = 4b4d -a "$(wc -c <ct)" -eq $(($(wc -c <msg) + 52)) ]
t 0 "decrypt binary" ct decrypt
check "binary round trip" cmp -s out msg
t 0 "encrypt --text" msg encrypt aes --text
cp out ct.txt
check "--text: km1: and one newline" [ "$(head -c4 ct.txt)" = km1: -a "$(wc -l <ct.txt)" -eq 1 ]
t 0 "decrypt text" ct.txt decrypt
check "text round trip" cmp -s out msg
t 0 "encrypt 100 kB of binary" blob encrypt aes
cp out blob.ct
t 0 "decrypt 100 kB" blob.ct decrypt
check "100 kB binary round trip" cmp -s out blob
t 0 "encrypt empty input" empty encrypt aes
cp out empty.ct
t 0 "decrypt empty" empty.ct decrypt
check "empty round trip" [ ! -s out ]
t 0 "encrypt --aad" msg encrypt aes --aad "table=orders"
cp out ct.aad
t 0 "decrypt --aad" ct.aad decrypt --aad "table=orders"
check "aad round trip" cmp -s out msg
t 6 "decrypt with the wrong aad" ct.aad decrypt --aad "table=billing"
check "a failed decrypt writes nothing" [ ! -s out ]
t 6 "decrypt without the aad" ct.aad decrypt
t 6 "decrypt with an aad it was not made with" ct decrypt --aad "table=orders"
t 0 "encrypt --text --aad" msg encrypt aes --text --aad ctx
cp out ct.aad.txt
t 0 "decrypt text --aad" ct.aad.txt decrypt --aad ctx
check "text aad round trip" cmp -s out msg
t 6 "decrypt text with the wrong aad" ct.aad.txt decrypt --aad xtc
flip ct -1 ct.bad
t 6 "decrypt a changed ciphertext" ct.bad decrypt
flip ct 22 ct.badver
t 2 "decrypt with the header's version changed" ct.badver decrypt
t 1 "decrypt garbage" msg decrypt
t 1 "decrypt empty input" - decrypt
printf 'km1:@@@@\n' >bad.txt
t 1 "decrypt bad km1: text" bad.txt decrypt
t 2 "encrypt with a missing key" msg encrypt nosuchkey
t 4 "encrypt with an HMAC key (usage)" msg encrypt hm
t 0 "encrypt with an encrypt-only key" msg encrypt enc-only
cp out ct.enconly
t 4 "decrypt with an encrypt-only key (usage)" ct.enconly decrypt
if [ -w /dev/full ]; then
    "$KMCTL" encrypt aes <msg >/dev/full 2>err
    rc=$?
    if [ $rc -eq 9 ] && grep -q '^kmctl: writing the output' err; then ok; else bad "write error: exit $rc, wanted 9"; fi
fi

# ---------------------------------------------------------------- rotate
t 0 "key rotate" - key rotate aes
check "rotate prints the new version" [ "$(cat out)" = 2 ]
t 0 "key info after rotate" - key info aes --json
cp out info2.json
check "primary is 2, versions 1 and 2 active" [ "$(json_get info2.json \
    '(d["primary"], [(v["version"], v["state"]) for v in d["versions"]])')" = \
    "(2, [(1, 'active'), (2, 'active')])" ]
t 0 "decrypt the old ciphertext after rotate" ct decrypt
check "old ciphertext still decrypts" cmp -s out msg
t 0 "decrypt the old text ciphertext with aad after rotate" ct.aad.txt decrypt --aad ctx
check "old text ciphertext still decrypts" cmp -s out msg
t 0 "encrypt after rotate" msg encrypt aes
cp out ct2
check "new ciphertext names version 2" [ "$(hex -j20 -N4 ct2)" = 00000002 ]
t 0 "decrypt the new ciphertext" ct2 decrypt
check "new round trip" cmp -s out msg
t 2 "rotate a missing key" - key rotate nosuchkey

# ---------------------------------------------------------------- sign, verify
for k in ec ed rsa; do
    t 0 "sign ($k)" msg sign $k
    cp out $k.sig
    t 0 "verify ($k)" msg verify $k $k.sig
    printf 'attack at dusk\n' >msg.bad
    t 6 "verify a changed message ($k)" msg.bad verify $k $k.sig
    flip $k.sig -1 $k.sig.bad
    t 6 "verify a changed signature ($k)" msg verify $k $k.sig.bad
    t 0 "sign --text ($k)" msg sign $k --text
    cp out $k.sig.txt
    check "sign --text gives km1:" [ "$(head -c4 $k.sig.txt)" = km1: ]
    t 0 "verify a km1: signature ($k)" msg verify $k $k.sig.txt
done
t 1 "verify with another key's signature" msg verify ec ed.sig
t 1 "verify with a missing signature file" msg verify ec no-such.sig
t 2 "sign with a missing key" msg sign nosuchkey
t 4 "sign with an AES key (usage)" msg sign aes
t 0 "rotate a signing key" - key rotate ed
t 0 "verify a version-1 signature after rotate" msg verify ed ed.sig

# ---------------------------------------------------------------- public keys and raw signatures, checked by openssl
ossl_verify() { # KEYTYPE PUB SIG: openssl verifies SIG of msg
    case $1 in
    ed) openssl pkeyutl -verify -pubin -inkey "$2" -rawin -in msg -sigfile "$3" ;;
    ec) openssl dgst -sha256 -binary msg >msg.sha256 &&
        openssl pkeyutl -verify -pubin -inkey "$2" -in msg.sha256 -sigfile "$3" ;;
    rsa) openssl dgst -sha256 -binary msg >msg.sha256 &&
        openssl pkeyutl -verify -pubin -inkey "$2" -in msg.sha256 -sigfile "$3" \
            -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32 -pkeyopt digest:sha256 \
            -pkeyopt rsa_mgf1_md:sha256 ;;
    esac >/dev/null 2>&1
}
for k in ec ed rsa; do
    t 0 "key public ($k)" - key public $k
    cp out $k.pub.pem
    check "key public gives a PEM public key ($k)" openssl pkey -pubin -in $k.pub.pem -noout
    t 0 "key public --der ($k)" - key public $k --der
    cp out $k.pub.der
    openssl pkey -pubin -in $k.pub.pem -outform DER -out $k.pub.der.ref 2>/dev/null
    check "--der is the PEM's DER ($k)" cmp -s $k.pub.der $k.pub.der.ref
    t 0 "sign --raw ($k)" msg sign $k --raw
    cp out $k.raw.sig
    check "openssl verifies the raw signature ($k)" ossl_verify $k $k.pub.pem $k.raw.sig
    flip $k.raw.sig -1 $k.raw.sig.bad
    check "openssl refuses a changed raw signature ($k)" eval '! ossl_verify $k $k.pub.pem $k.raw.sig.bad'
    t 0 "verify --raw ($k)" msg verify $k $k.raw.sig --raw
done
t 0 "sign --raw --p1363 (ec)" msg sign ec --raw --p1363
cp out ec.p1363
check "P1363 signature is 64 bytes" [ "$(wc -c <ec.p1363)" -eq 64 ]
t 0 "verify --raw --p1363 (ec)" msg verify ec ec.p1363 --raw --p1363
t 0 "key public --version 2 (ed)" - key public ed --version 2
check "the primary's public key is version 2's" cmp -s out ed.pub.pem
t 0 "key public --version 1 (ed)" - key public ed --version 1
check "version 1's public key differs from version 2's" eval '! cmp -s out ed.pub.pem'
t 8 "key public of an AES key" - key public aes
t 2 "key public of a missing version" - key public ec --version 9

# ---------------------------------------------------------------- mac
t 0 "mac" msg mac hm
cp out tag
t 0 "mac-verify" msg mac-verify hm tag
t 6 "mac-verify a changed message" msg.bad mac-verify hm tag
t 0 "mac --raw" msg mac hm --raw
check "raw HMAC-SHA256 is 32 bytes" [ "$(wc -c <out)" -eq 32 ]
t 0 "mac --text" msg mac hm --text
check "mac --text gives km1:" [ "$(head -c4 out)" = km1: ]
t 4 "mac with an AES key (usage)" msg mac aes

# ---------------------------------------------------------------- lifecycle
t 0 "create a key to move through its lifecycle" - key create lc --type aes-256-gcm --rotate-every 90
t 0 "encrypt (lc)" msg encrypt lc
cp out lc.ct
t 4 "activate an active version (state)" - key activate lc --version 1
t 0 "key suspend" - key suspend lc
t 0 "key info after suspend" - key info lc --json
cp out lc.json
check "the version is suspended" [ "$(json_get lc.json 'd["versions"][0]["state"]')" = suspended ]
t 4 "encrypt with a suspended key (state)" msg encrypt lc
t 0 "decrypt under a suspended version" lc.ct decrypt
check "a suspended version still processes" cmp -s out msg
t 0 "key resume (the suspended version by default)" - key resume lc
t 0 "encrypt after resume" msg encrypt lc
t 4 "destroy an active version (state)" - key destroy lc --version 1
t 0 "key revoke --reason superseded" - key revoke lc --reason superseded
t 0 "key info after revoke" - key info lc --json
cp out lc.json
check "the version is deactivated" [ "$(json_get lc.json 'd["versions"][0]["state"]')" = deactivated ]
t 4 "encrypt with a deactivated key (state)" msg encrypt lc
t 0 "decrypt under a deactivated version" lc.ct decrypt
t 4 "key destroy --grace 1 (below the policy minimum)" - key destroy lc --version 1 --grace 1
check "the grace period is worded for people: 1 day(s)" grep -q "a grace period of 1 day(s)" err
t 0 "key destroy --grace 7" - key destroy lc --version 1 --grace 7
t 0 "key info after destroy" - key info lc --json
cp out lc.json
check "the version is destroy-pending, with a destroy-after date" \
    [ "$(json_get lc.json '(d["versions"][0]["state"], d["versions"][0]["destroy_after"][-1])')" = "('destroy-pending', 'Z')" ]
t 4 "decrypt under a destroy-pending version (state)" lc.ct decrypt
t 0 "key cancel-destroy" - key cancel-destroy lc --version 1
t 0 "decrypt after cancel-destroy" lc.ct decrypt
check "the version is back to deactivated and decrypts" cmp -s out msg
t 2 "destroy a version that does not exist" - key destroy lc --version 9
t 1 "revoke with a compromise reason and no date" - key revoke aes --reason key-compromise
check "kmctl errors carry no C function prefix (km_key_revoke:)" sh -c 'grep -q "compromise needs its compromise date" err && ! grep -q "km_key_revoke" err'
t 1 "revoke with a future compromise date" - key revoke aes --reason compromise --compromise-date 2099-01-01
t 1 "revoke with an unknown reason" - key revoke aes --reason boredom
t 0 "create a key to compromise" - key create cmp --type aes-256-gcm
t 0 "encrypt (cmp)" msg encrypt cmp
cp out cmp.ct
t 0 "key revoke --reason compromise --compromise-date" - \
    key revoke cmp --reason compromise --compromise-date 2024-01-02T03:04:05Z
t 4 "decrypt under a compromised version (state)" cmp.ct decrypt
check "the compromise error names kmctl's flag, not the C one" sh -c 'grep -q -- "pass --allow-compromised" err && ! grep -q KM_DECRYPT err'
t 0 "decrypt --allow-compromised" cmp.ct decrypt --allow-compromised
check "the compromised version decrypts when asked" cmp -s out msg
t 0 "rotate (cmp)" - key rotate cmp
t 4 "rewrap under a compromised version (state)" cmp.ct rewrap
t 0 "rewrap --allow-compromised" cmp.ct rewrap --allow-compromised
cp out cmp2.ct
t 0 "decrypt the rewrapped ciphertext without the flag" cmp2.ct decrypt
check "rewrap --allow-compromised moved the data to the new version" cmp -s out msg
t 0 "create a pre-active key (--activate-at)" - key create later --type aes-256-gcm --activate-at 2099-01-01
t 1 "--activate-at in the past is refused, not taken as now" - key create earlier --type aes-256-gcm --activate-at 2001-01-01
t 0 "key info (pre-active)" - key info later --json
cp out later.json
check "the version is pre-active" [ "$(json_get later.json 'd["versions"][0]["state"]')" = pre-active ]
t 4 "encrypt with a pre-active key (state)" msg encrypt later
t 0 "key activate" - key activate later
t 0 "encrypt after activate" msg encrypt later
t 0 "create with --protect-days --process-days" - key create periods --type hmac-sha256 --protect-days 365 --process-days 730
t 0 "key info (periods)" - key info periods --json
cp out periods.json
check "protect-stop and process-stop are set" \
    [ "$(json_get periods.json '(d["versions"][0]["protect_stop"][-1], d["versions"][0]["process_stop"][-1])')" = "('Z', 'Z')" ]
t 0 "maintain" - maintain
t 0 "maintain --json" - maintain --json
cp out maintain.json
check "maintain --json is JSON with actions" [ "$(json_get maintain.json 'type(d["actions"]).__name__')" = list ]
t 2 "suspend a missing key" - key suspend nosuchkey

# ---------------------------------------------------------------- key import --raw
printf '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f' >hmac.hex
"$PY" -c 'import sys; open("hmac.key", "wb").write(bytes.fromhex(open("hmac.hex").read()))'
t 0 "key import raw HMAC key" - key import hm2 --type hmac-sha256 --raw hmac.key
check "import prints the key id" grep -Eq '^[0-9a-f]{32}$' out
t 0 "mac --raw with the imported key" msg mac hm2 --raw
cp out hm2.tag
openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(cat hmac.hex)" -binary <msg >hm2.tag.ref 2>/dev/null
check "the imported key's MAC equals openssl's" cmp -s hm2.tag hm2.tag.ref
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.key.pem 2>/dev/null
openssl pkey -in ec.key.pem -pubout -out ec.key.pub.pem 2>/dev/null
t 0 "import an EC private key (PEM, detected)" - key import ec2 --type ec-p256 --raw ec.key.pem
t 0 "sign --raw with the imported EC key" msg sign ec2 --raw
cp out ec2.raw.sig
check "openssl verifies it with the original public key" ossl_verify ec ec.key.pub.pem ec2.raw.sig
openssl pkcs8 -topk8 -nocrypt -in ec.key.pem -outform DER -out ec.key.der 2>/dev/null
t 0 "import PKCS#8 DER (--format pkcs8)" - key import ec3 --type ec-p256 --raw ec.key.der --format pkcs8
t 0 "import PKCS#8 DER (detected)" - key import ec4 --type ec-p256 --raw ec.key.der
t 0 "sign --raw with the DER-imported key" msg sign ec4 --raw
cp out ec4.raw.sig
check "openssl verifies it too" ossl_verify ec ec.key.pub.pem ec4.raw.sig
openssl genpkey -algorithm ED25519 -out ed.key.pem 2>/dev/null
openssl pkey -in ed.key.pem -pubout -out ed.key.pub.pem 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in ed.key.pem -outform DER 2>/dev/null | tail -c 32 >ed.key.raw
t 0 "import a raw 32-byte Ed25519 key (detected)" - key import ed2 --type ed25519 --raw ed.key.raw
t 0 "sign --raw with the imported Ed25519 key" msg sign ed2 --raw
cp out ed2.raw.sig
check "openssl verifies it with the original public key" ossl_verify ed ed.key.pub.pem ed2.raw.sig
t 0 "key public of the imported Ed25519 key" - key public ed2
check "it is the original public key" cmp -s out ed.key.pub.pem
t 0 "import a public key (--format pem)" - key import ec-pub --type ec-p256 --raw ec.key.pub.pem --format pem
t 0 "verify with the public-only key" msg verify ec-pub ec2.raw.sig --raw
t 0 "import from stdin (--raw -)" hmac.key key import hm3 --type hmac-sha256 --raw -
t 3 "import a taken name" - key import hm2 --type hmac-sha256 --raw hmac.key
t 1 "import material of the wrong length" - key import x --type aes-256-gcm --raw msg
t 1 "import without --raw or --wrapped" - key import x --type aes-256-gcm
t 1 "import with both --raw and --wrapped" - key import x --type aes-256-gcm --raw a --wrapped b
t 1 "import an unknown --format" - key import x --type aes-256-gcm --raw hmac.key --format cbor
t 1 "import a missing file" - key import x --type aes-256-gcm --raw no-such-file

# ---------------------------------------------------------------- passphrases
KM_PASSPHRASE="wrong passphrase" "$KMCTL" key list >out 2>err
rc=$?
if [ $rc -eq 5 ]; then ok; else bad "wrong passphrase: exit $rc, wanted 5"; fi
check "the passphrase is not in the message" eval '! grep -q "wrong passphrase" err'
printf '%s\n' "$PASS" >pass.txt
chmod 600 pass.txt
KM_PASSPHRASE= "$KMCTL" --passphrase-file pass.txt key list >out 2>err
rc=$?
if [ $rc -eq 0 ] && [ ! -s err ]; then ok; else bad "--passphrase-file: exit $rc"; fi
chmod 644 pass.txt
KM_PASSPHRASE="wrong" "$KMCTL" key list --passphrase-file pass.txt >out 2>err
rc=$?
if [ $rc -eq 0 ] && grep -q 'warning: passphrase file' err; then ok; else bad "readable passphrase file: exit $rc, no warning"; fi
printf '%s\n' "not it" >wrong.txt
t 5 "--passphrase-file with the wrong passphrase" - --passphrase-file wrong.txt key list
(unset KM_PASSPHRASE; "$KMCTL" key list >out 2>err)
rc=$?
if [ $rc -eq 1 ] && grep -q 'no passphrase' err; then ok; else bad "no passphrase: exit $rc, wanted 1"; fi

# ---------------------------------------------------------------- the vault option
(KM_VAULT="$tmp/nowhere" "$KMCTL" --vault "$tmp/vault" key list >out 2>err)
check "--vault overrides KM_VAULT" [ $? -eq 0 -a "$(wc -l <out)" -ge 7 ]
(unset KM_VAULT; "$KMCTL" key list --vault="$tmp/vault" >out 2>err)
check "--vault=DIR after the command" [ $? -eq 0 ]
(unset KM_VAULT; "$KMCTL" key list >out 2>err)
check "no vault is a usage error" [ $? -eq 1 ]

# ---------------------------------------------------------------- policy
"$KMCTL" policy show >out 2>err
check "policy show prints the policy" [ $? -eq 0 ]
check "policy show prints JSON" json_ok out
check "policy show is JSON with the profile" [ "$(json_get out 'd["profile"]')" = "default" ]
"$KMCTL" policy check >out 2>err
check "policy check: every key within the default policy" [ $? -eq 0 -a ! -s out ]
printf '{"version": 1, "algorithms": {"ec-p384": {"allowed": false}}}' > "$tmp/pol.json"
"$KMCTL" policy set "$tmp/pol.json" >out 2>err
check "policy set" [ $? -eq 0 ]
"$KMCTL" key create banned --type ec-p384 >out 2>err
rc=$?
if [ $rc -eq 4 ] && grep -q 'ec-p384' err; then ok; else bad "create of a forbidden type: exit $rc, wanted 4 naming the rule"; fi
printf '{"version": 1, "nonsense": true}' > "$tmp/bad.json"
"$KMCTL" policy set "$tmp/bad.json" >out 2>err
rc=$?
if [ $rc -eq 1 ] && grep -q 'nonsense' err; then ok; else bad "bad policy: exit $rc, wanted 1 naming the field"; fi
printf '{"version": 1}' > "$tmp/pol.json"
"$KMCTL" policy set "$tmp/pol.json" >out 2>err
check "policy set back to the defaults" [ $? -eq 0 ]
"$KMCTL" policy check --json >out 2>err
check "policy check --json" [ $? -eq 0 ]
check "policy check --json prints JSON" json_ok out

# ---------------------------------------------------------------- envelope: datakey, rewrap
"$KMCTL" key create kek --type aes-256-gcm >out 2>err
check "create a KEK" [ $? -eq 0 ]
"$KMCTL" datakey kek --aad file-1 --plaintext-file "$tmp/dk.bin" >"$tmp/dk.wrapped" 2>err
check "datakey" [ $? -eq 0 ]
check "datakey: 84-byte wrapped key" [ "$(wc -c <"$tmp/dk.wrapped")" -eq 84 ]
check "datakey: 32-byte plaintext file" [ "$(wc -c <"$tmp/dk.bin")" -eq 32 ]
check "datakey: plaintext file is private" [ "$(stat -c %a "$tmp/dk.bin")" = 600 ]
t 1 "decrypt a wrapped data key" "$tmp/dk.wrapped" decrypt --aad file-1
check "the error points at kmctl datakey decrypt, not the C call" sh -c 'grep -q "use .kmctl datakey decrypt." err && ! grep -q km_datakey err'
"$KMCTL" datakey kek --plaintext-file "$tmp/dk.bin" >out 2>err
check "datakey refuses to overwrite a plaintext file" [ $? -eq 1 ]
"$KMCTL" decrypt --aad file-1 <"$tmp/dk.wrapped" >out 2>err
check "a wrapped data key does not decrypt as data" [ $? -eq 1 ]
"$KMCTL" key rotate kek >out 2>err
"$KMCTL" rewrap --aad file-1 <"$tmp/dk.wrapped" >"$tmp/dk2.wrapped" 2>err
check "rewrap a data key" [ $? -eq 0 -a "$(wc -c <"$tmp/dk2.wrapped")" -eq 84 ]
check "rewrap: version 2 in the header" [ "$(od -An -tx1 -j23 -N1 "$tmp/dk2.wrapped" | tr -d ' ')" = 02 ]
printf 'envelope data' | "$KMCTL" encrypt kek --aad a --text >"$tmp/ct.txt" 2>err
"$KMCTL" rewrap --aad a <"$tmp/ct.txt" >"$tmp/ct2.txt" 2>err
check "rewrap keeps the km1: text form" grep -q '^km1:' "$tmp/ct2.txt"
check "rewrapped text decrypts" [ "$("$KMCTL" decrypt --aad a <"$tmp/ct2.txt" 2>/dev/null)" = "envelope data" ]
"$KMCTL" rewrap --aad wrong <"$tmp/ct.txt" >out 2>err
check "rewrap with the wrong aad: integrity exit" [ $? -eq 6 ]
"$KMCTL" datakey kek --text >out 2>err
check "datakey --text" grep -q '^km1:' out

# ---------------------------------------------------------------- BYOK: export, wrapping-key, import --wrapped
"$KMCTL" --vault "$tmp/vb" init --kdf-cost 14 >out 2>err
check "a second vault" [ $? -eq 0 ]
"$KMCTL" --vault "$tmp/vb" wrapping-key >"$tmp/vb.pub.pem" 2>err
check "wrapping-key prints a PEM public key" grep -q 'BEGIN PUBLIC KEY' "$tmp/vb.pub.pem"
check "the wrapping key is RSA-4096" [ "$(openssl pkey -pubin -in "$tmp/vb.pub.pem" -noout -text 2>/dev/null | grep -c '4096 bit')" -eq 1 ]
"$KMCTL" key create movable --type hmac-sha256 --exportable >out 2>err
"$KMCTL" export movable --wrap-with "$tmp/vb.pub.pem" >"$tmp/movable.blob" 2>err
check "export of an exportable key" [ $? -eq 0 -a "$(wc -c <"$tmp/movable.blob")" -eq 552 ]
"$KMCTL" export kek --wrap-with "$tmp/vb.pub.pem" >out 2>err
rc=$?
if [ $rc -eq 4 ] && grep -q 'exportable' err; then ok; else bad "export of a non-exportable key: exit $rc, wanted 4"; fi
"$KMCTL" --vault "$tmp/vb" import movable --type hmac-sha256 --wrapped "$tmp/movable.blob" >out 2>err
check "import --wrapped into the second vault" [ $? -eq 0 ]
printf 'same key' | "$KMCTL" mac movable --raw >"$tmp/m1" 2>err
printf 'same key' | "$KMCTL" --vault "$tmp/vb" mac movable --raw >"$tmp/m2" 2>err
check "the moved key computes the same MAC" cmp -s "$tmp/m1" "$tmp/m2"
"$KMCTL" import again --type hmac-sha256 --wrapped "$tmp/movable.blob" >out 2>err
check "no wrapping key yet: not found" [ $? -eq 2 ]
"$KMCTL" wrapping-key >/dev/null 2>err
"$KMCTL" import again --type hmac-sha256 --wrapped "$tmp/movable.blob" >out 2>err
check "a blob wrapped to another vault does not import" [ $? -eq 6 ]

# ---------------------------------------------------------------- parsed, not available: exit 8
unsupported() { # DESCRIPTION CMD...
    d=$1
    shift
    "$KMCTL" "$@" </dev/null >out 2>err
    rc=$?
    if [ $rc -eq 8 ] && grep -q "is not available in this libkm version" err; then ok
    else bad "$d: exit $rc, wanted 8 and the message"; fi
}
# ---------------------------------------------------------------- the audit log
t 0 "audit verify" - audit verify
check "audit verify says the log is whole" grep -q "whole" out
t 0 "audit verify --json" - audit verify --json
check "audit verify --json is one JSON document" json_ok out
check "audit verify --json: whole" [ "$(json_get out 'd["whole"]')" = True ]
t 0 "audit show --json" - audit show --json
check "audit show --json is one JSON document" json_ok out
check "the log records key creation" [ "$(json_get out 'sum(e["op"] == "key.create" for e in d["entries"])')" -ge 1 ]
check "the log holds no passphrase" sh -c '! grep -q "$1" out' - "$PASS"
t 0 "audit head" - audit head
cp out "$tmp/head"
check "audit head is SEQ HASH" grep -Eq '^[0-9]+ [0-9a-f]{64}$' "$tmp/head"
t 0 "audit verify --anchor" - audit verify --anchor "$tmp/head"
printf '99999 %064d\n' 0 >"$tmp/future-head"
t 6 "a head the log does not reach" - audit verify --anchor "$tmp/future-head"
t 1 "a bad anchor file" msg audit verify --anchor msg
t 0 "audit level every" - audit level every
t 0 "an encrypt at level every" msg encrypt aes
t 0 "audit show" - audit show
check "level every records the encrypt" grep -q '"op":"encrypt"' out
t 0 "audit level counters" - audit level counters
t 1 "audit level bogus" - audit level bogus

# ---------------------------------------------------------------- principals and grants
for who in ann carl cleo uma otto; do printf 'cred of %s\n' "$who" >"$tmp/cred-$who"; done
chmod 600 "$tmp"/cred-*
t 0 "principal add (admin)" - principal add ann --role admin --credential-file "$tmp/cred-ann"
t 0 "principal add (custodian)" - principal add carl --role custodian --credential-file "$tmp/cred-carl"
t 0 "principal add (custodian 2)" - principal add cleo --role custodian --credential-file "$tmp/cred-cleo"
t 0 "principal add (user)" - principal add uma --role user --credential-file "$tmp/cred-uma"
t 0 "principal add (auditor)" - principal add otto --role auditor --credential-file "$tmp/cred-otto"
t 3 "principal add twice" - principal add uma --role user --credential-file "$tmp/cred-uma"
t 1 "principal add with a bad role" - principal add x --role wizard --credential-file "$tmp/cred-uma"
t 0 "principal list --json" - principal list --json
check "principal list --json lists five" [ "$(json_get out 'len(d["principals"])')" = 5 ]
as() { who=$1; shift; "$KMCTL" --principal "$who" --passphrase-file "$tmp/cred-$who" "$@"; }
as uma whoami >out 2>err
check "whoami as a principal" grep -q "^uma	user$" out
"$KMCTL" --principal uma --passphrase-file "$tmp/cred-ann" whoami >out 2>err
check "another principal's credential: authentication fails" [ $? -eq 5 ]
as uma encrypt aes <msg >out 2>err
check "a user without a grant is denied (exit 4)" [ $? -eq 4 ]
check "the refusal names the permission" grep -q "encrypt permission" err
t 0 "key grant" - key grant aes uma --perms encrypt,decrypt
as uma encrypt aes <msg >"$tmp/uma.ct" 2>err
check "the granted user encrypts" [ $? -eq 0 ]
as uma decrypt <"$tmp/uma.ct" >out 2>err
check "the granted user decrypts" cmp -s out msg
as uma key create mine --type aes-256-gcm >out 2>err
check "a user cannot create keys" [ $? -eq 4 ]
as otto audit verify >out 2>err
check "the auditor verifies the log" [ $? -eq 0 ]
as otto decrypt <"$tmp/uma.ct" >out 2>err
check "the auditor never gets plaintext" [ $? -eq 4 ]
t 1 "key grant with a bad permission" - key grant aes uma --perms fly
t 0 "key grant none revokes" - key grant aes uma --perms none
as uma encrypt aes <msg >out 2>err
check "a revoked grant denies" [ $? -eq 4 ]

# offboarding with a new master key (issue 18 finding 4): the others keep their access
printf 'leo credential\n' >"$tmp/cred-leo"
t 0 "principal add (leaver)" - principal add leo --role user --credential-file "$tmp/cred-leo"
t 0 "principal remove --rotate-master" - principal remove leo --rotate-master
as leo whoami >out 2>err
check "the leaver's credential no longer opens" [ $? -eq 5 ]
as ann whoami >out 2>err
check "a remaining principal opens with its own credential" grep -q "^ann	admin$" out
t 0 "the owner decrypts an old ciphertext after the rotation" "$tmp/uma.ct" decrypt
check "to the same plaintext" cmp -s out msg
t 0 "the rotation is audited" - audit show
check "as one principal.remove entry naming it" grep -q "master key rotated" out

# ---------------------------------------------------------------- dual control
printf '{"version": 1, "dual_control": {"destroy": 2, "principal-change": 2, "policy-change": 2}}\n' >"$tmp/dual.json"
printf '{"version": 1, "dual_control": {"destroy": 2}}\n' >"$tmp/selfquorum.json"
t 4 "a policy that lets one principal add its own custodians is refused" - policy set "$tmp/selfquorum.json"
check "the refusal names principal-change" grep -q "principal-change is 0" err
t 0 "policy with dual control on destroy" - policy set "$tmp/dual.json"
t 0 "a key to destroy" - key create doomed --type aes-256-gcm
t 0 "rotate it" - key rotate doomed
t 0 "revoke version 1" - key revoke doomed --version 1 --reason superseded
t 4 "destroy without approvals" - key destroy doomed --version 1 --grace 7
check "the refusal says how many approvals" grep -q "2 custodian approval" err
as ann request create destroy --target doomed --version 1 --grace 7 >out 2>err
check "ann requests the destruction" [ $? -eq 0 ]
req=$(cat out)
check "a request id is 32 hex digits" sh -c 'printf %s "$1" | grep -Eq "^[0-9a-f]{32}$"' - "$req"
t 4 "the owner is not a custodian" - request approve "$req"
as ann request approve "$req" >out 2>err
check "no self-approval" [ $? -eq 4 ]
as carl request approve "$req" >out 2>err
check "carl approves" [ $? -eq 0 ]
as carl request approve "$req" >out 2>err
check "carl cannot approve twice (exit 3)" [ $? -eq 3 ]
as ann key destroy doomed --version 1 --grace 7 >out 2>err
check "one approval is not enough" [ $? -eq 4 ]
as cleo request approve "$req" >out 2>err
check "cleo approves" [ $? -eq 0 ]
t 0 "request show --json" - request show "$req" --json
check "request show counts two approvals" [ "$(json_get out 'd["approvals"]')" = 2 ]
check "request show spells out the parameters" [ "$(json_get out 'd["params"]')" = "destroy version 1 of key 'doomed' after 7 day(s) of grace" ]
as ann key destroy doomed --version 1 --grace 8 >out 2>err
check "other arguments than requested are refused" [ $? -eq 4 ]
as ann key destroy doomed --version 1 --grace 7 >out 2>err
check "the requester destroys with two approvals" [ $? -eq 0 ]
as ann key cancel-destroy doomed --version 1 >out 2>err
check "cancel" [ $? -eq 0 ]
as ann key destroy doomed --version 1 --grace 7 >out 2>err
check "a request serves once" [ $? -eq 4 ]
t 1 "request approve with a bad id" - request approve xyz
t 1 "a principal-add request names the roles" - request create principal-add --target pat
as ann request create principal-add --target pat --role user >out 2>err
check "ann asks to add pat as a user" [ $? -eq 0 ]
req=$(cat out)
t 0 "request show of a principal addition" - request show "$req"
check "request show names the principal and its roles" grep -q "add principal 'pat' with role(s) user" out
printf '{"version": 1}\n' >"$tmp/nodual.json"
t 4 "the policy change needs approvals too" - policy set "$tmp/nodual.json"
as ann request create policy-change --target "$tmp/nodual.json" >out 2>err
check "ann asks to drop dual control" [ $? -eq 0 ]
req=$(cat out)
as carl request approve "$req" >out 2>err && as cleo request approve "$req" >out 2>err
check "carl and cleo approve the policy change" [ $? -eq 0 ]
as ann policy set "$tmp/nodual.json" >out 2>err
check "policy back without dual control" [ $? -eq 0 ]

# ---------------------------------------------------------------- Shamir share keyslot
t 0 "keyslot add shares" - keyslot add shares --m 2 --n 3 --out-dir "$tmp/shares"
check "three share files, private" sh -c '[ "$(stat -c %a "$1/share-1.txt")" = 600 ] && [ -f "$1/share-3.txt" ]' - "$tmp/shares"
t 3 "keyslot add shares never overwrites" - keyslot add shares --m 2 --n 3 --out-dir "$tmp/shares"
(unset KM_PASSPHRASE; "$KMCTL" --share-file "$tmp/shares/share-1.txt" --share-file "$tmp/shares/share-3.txt" key list >out 2>err)
check "two of three shares open the vault" [ $? -eq 0 ]
(unset KM_PASSPHRASE; "$KMCTL" --share-file "$tmp/shares/share-2.txt" key list >out 2>err)
check "one share does not (exit 5)" [ $? -eq 5 ]
t 0 "audit alerts --json" - audit alerts --json
check "the alerts list the denied calls" [ "$(json_get out 'sum(a["op"] == "denied" for a in d["alerts"])')" -ge 3 ]
t 0 "audit verify after all that" - audit verify

# ---------------------------------------------------------------- credentials under dual control
printf '{"version": 1, "dual_control": {"principal-change": 2, "policy-change": 2}}\n' >"$tmp/pdual.json"
t 0 "policy with dual control on principal changes" - policy set "$tmp/pdual.json"
printf 'ann alone\n' >"$tmp/ann-pass"
as ann vault rekey --new-passphrase-file "$tmp/ann-pass" >out 2>err
check "one admin cannot rekey alone (exit 4)" [ $? -eq 4 ]
check "the refusal names principal-change" grep -q "principal-change needs 2" err
as ann keyslot remove passphrases >out 2>err
check "nor remove the owner passphrases" [ $? -eq 4 ]
as ann keyslot add shares --m 2 --n 3 --out-dir "$tmp/ann-shares" >out 2>err
check "nor add a set of shares" [ $? -eq 4 ]
check "no share file written" [ ! -e "$tmp/ann-shares/share-1.txt" ]
as ann request create rekey >out 2>err
check "request create rekey takes no --target" [ $? -eq 0 ]
as ann request create keyslot-remove --target everything >out 2>err
check "keyslot-remove names passphrases (exit 1)" [ $? -eq 1 ]
as ann request create keyslot-add --target shares:2-of-3 >out 2>err
check "ann requests a 2-of-3 share slot" [ $? -eq 0 ]
req=$(cat out)
as carl request approve "$req" >out 2>err && as cleo request approve "$req" >out 2>err
check "carl and cleo approve" [ $? -eq 0 ]
as ann keyslot add shares --m 2 --n 4 --out-dir "$tmp/ann-shares" >out 2>err
check "the approval is for 2 of 3 only" [ $? -eq 4 ]
as ann keyslot add shares --m 2 --n 3 --out-dir "$tmp/ann-shares" >out 2>err
check "approved, ann adds the share slot" [ $? -eq 0 ]
(unset KM_PASSPHRASE; "$KMCTL" --share-file "$tmp/ann-shares/share-1.txt" --share-file "$tmp/ann-shares/share-2.txt" key list >out 2>err)
check "its shares open the vault" [ $? -eq 0 ]
as ann request create policy-change --target "$tmp/nodual.json" >out 2>err
req=$(cat out)
as carl request approve "$req" >out 2>err && as cleo request approve "$req" >out 2>err
check "carl and cleo approve dropping dual control" [ $? -eq 0 ]
as ann policy set "$tmp/nodual.json" >out 2>err
check "policy back without dual control (approved)" [ $? -eq 0 ]

# ---------------------------------------------------------------- progress, compact, rekey
if command -v script >/dev/null 2>&1; then
    script -qec "\"$KMCTL\" maintain" /dev/null >out 2>&1
    check "maintain shows progress on a terminal" grep -q "maintain [0-9]*/[0-9]*" out
else
    bad "script(1) (bsdutils) is needed to test the progress line"
fi
t 0 "maintain without a terminal" - maintain
check "no progress line when stderr is not a terminal" sh -c '! grep -q "maintain [0-9]" err'
t 0 "vault compact" - vault compact
printf 'kmctl rekeyed passphrase\n' >"$tmp/newpass"
chmod 600 "$tmp/newpass"
cp -r "$tmp/vault" "$tmp/vault-rekey"
t 0 "vault rekey" - --vault "$tmp/vault-rekey" vault rekey --new-passphrase-file "$tmp/newpass" --kdf-cost 14
(KM_PASSPHRASE="kmctl rekeyed passphrase" "$KMCTL" --vault "$tmp/vault-rekey" key list >out 2>err)
check "the rekeyed vault opens with the new passphrase" [ $? -eq 0 ]
t 5 "and not with the old one" - --vault "$tmp/vault-rekey" key list

# ---------------------------------------------------------------- backup and restore
t 0 "backup" - backup "$tmp/vault.bak"
check "the backup is a private file" eval '[ -f "$tmp/vault.bak" ] && [ "$(stat -c %a "$tmp/vault.bak")" = 600 ]'
check "the backup holds no plaintext key name" sh -c '! grep -q "movable" "$1"' - "$tmp/vault.bak"
t 3 "backup over an existing file" - backup "$tmp/vault.bak"
t 1 "restore without a directory" - restore "$tmp/vault.bak"
t 0 "restore" - restore "$tmp/vault.bak" "$tmp/restored"
t 3 "restore over a vault" - restore "$tmp/vault.bak" "$tmp/restored"
t 6 "restore of a file that is not a vault" - restore msg "$tmp/restored2"
t 2 "restore of a missing file" - restore "$tmp/nothing" "$tmp/restored2"
"$KMCTL" key list >list.orig 2>err
t 0 "the restored vault opens with the same passphrase" - --vault "$tmp/restored" key list
check "the restored vault has every key" cmp -s out list.orig
t 0 "the restored vault decrypts an old ciphertext" ct --vault "$tmp/restored" decrypt
check "to the same plaintext" cmp -s out msg
KM_PASSPHRASE="wrong" "$KMCTL" --vault "$tmp/restored" key list >out 2>err
check "and not with another passphrase" [ $? -eq 5 ]

# ---------------------------------------------------------------- usage errors: exit 1
t 1 "unknown command" - frobnicate
t 1 "key without a command" - key
t 1 "unknown key command" - key frob aes
t 1 "policy without a command" - policy
t 1 "key create without a name" - key create --type aes-256-gcm
t 1 "key create without --type" - key create x
t 1 "encrypt without a name" msg encrypt
t 1 "verify without a signature file" msg verify ec
t 1 "an extra argument" - key info aes extra
t 1 "an unknown option" - key list --frob
t 1 "an unknown short option" - key list -x
t 1 "an option given twice" - encrypt aes --aad a --aad b
t 1 "a flag with a value" - key list --json=yes
t 1 "an option without its value" - encrypt aes --aad
t 1 "--vault without its value" - --vault
t 1 "an unknown global option" - --frob key list
t 1 "key destroy without --version" - key destroy aes
t 1 "key destroy --version abc" - key destroy aes --version abc
t 1 "key destroy --version 0" - key destroy aes --version 0
t 1 "key revoke without --reason" - key revoke aes
t 1 "key revoke with a bad date" - key revoke aes --reason compromise --compromise-date 2024-13-01
t 1 "export without --wrap-with" - export aes
t 1 "backup without a file" - backup
check "usage errors show the synopsis" grep -q '^usage: kmctl backup FILE' err

# ---------------------------------------------------------------- messages
t 2 "decrypt when the vault is gone" ct --vault "$tmp/nowhere" decrypt
check "errors are one 'kmctl: what: why' line" grep -q "^kmctl: opening vault '$tmp/nowhere': ." err

# ---------------------------------------------------------------- lazy rotation in short-lived processes
# Issue 22 item 7: each kmctl call is a new process; rotation by usage must still happen on the
# key's first use in it (usage_fraction 0.5 of 10 invocations: rotated before the 6th encryption).
(
    export KM_VAULT="$tmp/lazy"
    printf '{"version": 1, "usage_limits": {"aes-gcm-invocations": 10}, "rotation": {"usage_fraction": 0.5}}' >"$tmp/lazy.json"
    "$KMCTL" init --kdf-cost 14 >/dev/null 2>&1 && "$KMCTL" policy set "$tmp/lazy.json" >/dev/null 2>&1 \
        && "$KMCTL" key create lazy --type aes-256-gcm >/dev/null 2>&1 || exit 9
    i=0
    while [ $i -lt 12 ]; do
        "$KMCTL" encrypt lazy <msg >"$tmp/lazy.ct" 2>>"$tmp/lazy.err" || exit $((20 + i))
        i=$((i + 1))
    done
    "$KMCTL" key info lazy --json >"$tmp/lazy.info" 2>>"$tmp/lazy.err" || exit 8
)
lazy_rc=$?
check "12 short-lived encryptions under a 10-invocation limit all succeed (lazy rotation)" [ "$lazy_rc" -eq 0 ]
check "the key rotated on use (at least 3 versions after 12 encryptions)" \
    [ "$(json_get "$tmp/lazy.info" 'len(d["versions"]) >= 3')" = True ]

lib_summary
