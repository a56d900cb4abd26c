#!/bin/sh
# kmctl_parity.sh - the public operations kmctl gained for parity with the C
# API (issue 22's export forms, issue 23 item 8): export --kek / --version,
# derive, sign-digest, datakey decrypt, the global --audit-json and
# --audit-syslog, and --json on the commands that print data; with their bad
# inputs and exit codes. Outputs are checked against independent tools
# (openssl, Python's hmac) where one exists.
# Run by make check (top_builddir and top_srcdir come from the environment).
set -u
: "${top_builddir:=.}" "${top_srcdir:=.}"
. "$(dirname "$0")/lib.sh"
lib_init kmctl_parity
LIB_SHOW_ERR=1
KMCTL="$top_builddir/src/kmctl/kmctl"
[ -x "$KMCTL" ] || lib_die "$KMCTL is not built"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
command -v openssl >/dev/null 2>&1 || lib_die "openssl is needed"

lib_tmpdir
cd "$tmp" || exit 1
case $KMCTL in /*) ;; *) KMCTL="$OLDPWD/$KMCTL" ;; esac

unset KM_VAULT KM_PASSPHRASE KM_PRINCIPAL KM_TPM2_TCTI KM_KMIP_CONFIG
export KM_VAULT="$tmp/vault" KM_PASSPHRASE="kmctl parity passphrase"
json_get() { "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }
is_hex() { "$PY" -c 'import sys; s = open(sys.argv[1]).read().strip(); bytes.fromhex(s); sys.exit(len(s) != int(sys.argv[2]))' "$1" "$2" 2>/dev/null; }

# ---------------------------------------------------------------- --json where data is printed
t 0 "init --json" - init --kdf-cost 14 --json
check "init --json gives the vault id" test "$(json_get out 'len(d["id"])')" = 32
t 0 "key create --json" - key create kek --type aes-256-kwp --usage wrap,unwrap --json
check "key create --json: name and id" test "$(json_get out 'd["name"] + str(len(d["id"]))')" = kek32
t 0 "key create (text form unchanged)" - key create h --type hmac-sha256 --exportable
check "key create still prints the bare id" grep -Eqx '[0-9a-f]{32}' out
printf 'attack at dawn\n' >msg
t 0 "mac with version 1" msg mac h --raw
cp out tag1
t 0 "key rotate --json" - key rotate h --json
check "key rotate --json: the new version" test "$(json_get out 'd["name"] + str(d["version"])')" = h2
t 0 "mac with version 2" msg mac h --raw
cp out tag2
check "the versions differ" test "$(od -An -tx1 tag1)" != "$(od -An -tx1 tag2)"

# ---------------------------------------------------------------- export --kek / --version
t 0 "export --kek --version 1" - export h --kek kek --version 1
cp out v1.blob
check "a KWP blob (libkm header)" test "$(head -c 2 v1.blob)" = KW
t 0 "import the version 1 blob --json" - import h1 --type hmac-sha256 --wrapped v1.blob --json
check "import --json: name" test "$(json_get out 'd["name"]')" = h1
t 0 "the imported key's MAC" msg mac h1 --raw
check "export --version 1 carried version 1's material" cmp -s out tag1
t 0 "export --kek (the primary)" - export h --kek kek
cp out v2.blob
t 0 "import the primary's blob" - import h2 --type hmac-sha256 --wrapped v2.blob
t 0 "the second imported key's MAC" msg mac h2 --raw
check "export without --version carried the primary (version 2)" cmp -s out tag2
t 0 "export --kek --version 2" - export h --kek kek --version 2
cp out v2b.blob
t 0 "import the version 2 blob" - import h2b --type hmac-sha256 --wrapped v2b.blob
t 0 "its MAC" msg mac h2b --raw
check "export --version 2 carried version 2's material" cmp -s out tag2
# the RSA form keeps working, and takes --version too
t 0 "wrapping-key" - wrapping-key
cp out wk.pem
t 0 "export --wrap-with (unchanged grammar)" - export h --wrap-with wk.pem
cp out r2.blob
t 0 "export --wrap-with --version 1" - export h --wrap-with wk.pem --version 1
cp out r1.blob
t 0 "import the RSA-wrapped version 1" - import r1 --type hmac-sha256 --wrapped r1.blob
t 0 "its MAC" msg mac r1 --raw
check "--wrap-with --version 1 carried version 1's material" cmp -s out tag1
# moving a key version by version to another vault that holds the same KEK
# (import --key-id --version): both versions' data decrypt there
head -c 32 /dev/urandom >kek.bin
KID=4b454b4b454b4b454b4b454b4b454b4b
t 0 "a shared KEK" - key import skek --type aes-256-kwp --raw kek.bin --key-id $KID --usage wrap,unwrap
t 0 "an exportable data key" - key create moving --type aes-256-gcm --exportable
t 0 "encrypt under version 1" msg encrypt moving
cp out m1.ct
t 0 "rotate it" - key rotate moving
t 0 "encrypt under version 2" msg encrypt moving
cp out m2.ct
t 0 "key info --json" - key info moving --json
MID=$(json_get out 'd["id"]')
t 0 "export version 1 under the shared KEK" - export moving --kek skek --version 1
cp out m1.blob
t 0 "export version 2 under the shared KEK" - export moving --kek skek --version 2
cp out m2.blob
B="--vault $tmp/vault-b"
t 0 "a second vault" - $B init --kdf-cost 14
t 0 "the shared KEK in it" - $B key import skek --type aes-256-kwp --raw kek.bin --key-id $KID --usage wrap,unwrap
t 0 "import version 1 there" - $B import moving --type aes-256-gcm --wrapped m1.blob --key-id "$MID" --version 1
t 0 "version 1's data decrypts there" m1.ct $B decrypt
check "the plaintext of version 1" cmp -s out msg
t 2 "version 2's data does not yet" m2.ct $B decrypt
t 0 "import version 2 there" - $B import moving --type aes-256-gcm --wrapped m2.blob --key-id "$MID" --version 2
t 0 "version 2's data decrypts there" m2.ct $B decrypt
check "the plaintext of version 2" cmp -s out msg
t 3 "the same version twice" - $B import moving --type aes-256-gcm --wrapped m2.blob --key-id "$MID" --version 2
t 2 "a blob under a KEK the vault does not have (another key id)" - $B import other --type hmac-sha256 --wrapped v1.blob
# bad input
t 1 "export with neither --kek nor --wrap-with" - export h
check "the error names both forms" grep -q -- "--wrap-with.*--kek" err
t 1 "export with both --kek and --wrap-with" - export h --kek kek --wrap-with wk.pem
t 2 "export --version of a version that does not exist" - export h --kek kek --version 9
check "the error names the version" grep -q "version 9" err
t 1 "export --version 0" - export h --kek kek --version 0
t 1 "export --version not a number" - export h --kek kek --version two
t 2 "export --kek of a key that does not exist" - export h --kek nope
t 4 "export --kek of a key that is no KEK" - export h --kek h
t 0 "a key that is not exportable" - key create fixed --type hmac-sha256
t 4 "export of a non-exportable key under a KEK" - export fixed --kek kek
"$PY" -c 'import sys; b = bytearray(open("v1.blob", "rb").read()); b[-1] ^= 1; open("bad.blob", "wb").write(b)'
t 6 "import a tampered KWP blob" - import bad --type hmac-sha256 --wrapped bad.blob
t 2 "the tampered import left no key" - key info bad

# ---------------------------------------------------------------- derive
head -c 32 /dev/urandom >ikm
t 0 "import an HMAC key for derive" - key import d --type hmac-sha256 --raw ikm --usage derive
t 0 "derive --hex" - derive d 42 --salt pepper --info "tenant 1" --hex
cp out d1.hex
check "42 bytes in hex" is_hex d1.hex 84
"$PY" - ikm pepper "tenant 1" 42 >want.hex <<'EOF'
import hashlib, hmac, sys
ikm = open(sys.argv[1], "rb").read()
salt, info, n = sys.argv[2].encode(), sys.argv[3].encode(), int(sys.argv[4])
prk = hmac.new(salt, ikm, hashlib.sha256).digest()
okm, t, i = b"", b"", 1
while len(okm) < n:
    t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
    okm += t
    i += 1
print(okm[:n].hex())
EOF
check "derive is HKDF-SHA-256 (RFC 5869) of the key" cmp -s d1.hex want.hex
t 0 "derive again" - derive d 42 --salt pepper --info "tenant 1" --hex
check "the same salt and info give the same bytes" cmp -s out d1.hex
t 0 "derive with another info" - derive d 42 --salt pepper --info "tenant 2" --hex
check "another info gives other bytes" test "$(cat out)" != "$(cat d1.hex)"
t 0 "derive binary" - derive d 42 --salt pepper --info "tenant 1"
check "binary output of 42 bytes" test "$(wc -c <out)" -eq 42
t 0 "derive --json" - derive d 42 --salt pepper --info "tenant 1" --json
check "--json: name, length and the same secret" \
    test "$(json_get out 'd["name"] + str(d["length"]) + d["secret_hex"]')" = "d42$(cat d1.hex)"
t 0 "derive --text" - derive d 16 --text
check "--text is the km1: form" grep -q '^km1:' out
t 0 "derive the largest length" - derive d 8160
check "8160 bytes" test "$(wc -c <out)" -eq 8160
t 1 "derive 0 bytes" - derive d 0
t 1 "derive 8161 bytes" - derive d 8161
t 1 "derive without a length" - derive d
t 1 "derive a length that is no number" - derive d 12x
t 2 "derive from a key that does not exist" - derive nope 16
t 0 "an AES key" - key create aes --type aes-256-gcm
t 4 "derive from an AES key" - derive aes 16
t 0 "an HMAC key without the derive usage" - key create macky --type hmac-sha256 --usage mac,mac-verify
t 4 "derive from a key without the derive usage" - derive macky 16

# ---------------------------------------------------------------- sign-digest
t 0 "an EC key" - key create ec --type ec-p256
t 0 "its public key" - key public ec
cp out ec.pem
openssl dgst -sha256 -binary msg >msg.sha256
t 0 "sign-digest" msg.sha256 sign-digest ec --digest sha256
cp out ec.sig
check "openssl verifies the signature of the message" \
    sh -c 'openssl dgst -sha256 -verify ec.pem -signature ec.sig msg >/dev/null'
t 0 "kmctl verify --raw verifies it as a message signature" msg verify ec ec.sig --raw
t 0 "sign-digest --p1363" msg.sha256 sign-digest ec --digest SHA256 --p1363
check "P1363: r||s, 64 bytes" test "$(wc -c <out)" -eq 64
t 0 "sign-digest --json" msg.sha256 sign-digest ec --digest sha256 --json
check "--json: name, digest, signature_hex" test "$(json_get out 'd["name"] + d["digest"]')" = ecsha256
json_get out 'd["signature_hex"]' | "$PY" -c 'import sys; open("j.sig", "wb").write(bytes.fromhex(sys.stdin.read().strip()))'
check "the JSON signature verifies too" \
    sh -c 'openssl dgst -sha256 -verify ec.pem -signature j.sig msg >/dev/null'
t 0 "sign-digest --version 1 (the primary)" msg.sha256 sign-digest ec --digest sha256 --version 1
t 0 "an RSA key" - key create rsa --type rsa-2048
t 0 "its public key" - key public rsa
cp out rsa.pem
openssl dgst -sha384 -binary msg >msg.sha384
t 0 "sign-digest --pkcs1 sha384" msg.sha384 sign-digest rsa --digest sha384 --pkcs1
cp out rsa.sig
check "openssl verifies the PKCS#1 v1.5 signature" \
    sh -c 'openssl dgst -sha384 -verify rsa.pem -signature rsa.sig msg >/dev/null'
t 0 "sign-digest RSA-PSS sha384" msg.sha384 sign-digest rsa --digest sha384
cp out pss.sig
check "openssl verifies the PSS signature (salt = digest length)" \
    sh -c 'openssl dgst -sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -verify rsa.pem -signature pss.sig msg >/dev/null'
# bad input
t 1 "sign-digest without --digest" msg.sha256 sign-digest ec
t 8 "sign-digest --digest md5" msg.sha256 sign-digest ec --digest md5
t 8 "sign-digest --digest sha1" msg.sha256 sign-digest ec --digest sha1
head -c 31 msg.sha256 >short
t 1 "a digest one byte short" short sign-digest ec --digest sha256
t 1 "a sha256 digest given as sha384" msg.sha256 sign-digest ec --digest sha384
t 1 "a digest longer than any" msg sign-digest ec --digest sha256
t 1 "--p1363 on an RSA key" msg.sha256 sign-digest rsa --digest sha256 --p1363
t 0 "an Ed25519 key" - key create ed --type ed25519
t 4 "sign-digest with Ed25519 (messages only)" msg.sha256 sign-digest ed --digest sha256
t 4 "sign-digest with an AES key" msg.sha256 sign-digest aes --digest sha256
t 0 "rotate the EC key" - key rotate ec
t 4 "sign-digest --version 1, no longer the primary" msg.sha256 sign-digest ec --digest sha256 --version 1
check "the refusal names the primary" grep -q "primary" err
t 2 "sign-digest with a key that does not exist" msg.sha256 sign-digest nope --digest sha256

# ---------------------------------------------------------------- datakey decrypt
t 0 "a data key with its plaintext" - datakey aes --plaintext-file dk.plain
cp out dk.wrapped
t 0 "datakey decrypt" dk.wrapped datakey decrypt
check "datakey decrypt gives the data key back" cmp -s out dk.plain
t 6 "datakey decrypt with the wrong aad" dk.wrapped datakey decrypt --aad other

# ---------------------------------------------------------------- --audit-json, --audit-syslog
t 0 "--audit-json before the command" - --audit-json aud.jsonl key create audited --type aes-256-gcm
check "the file holds the key.create entry" grep -q '"op":"key.create".*audited' aud.jsonl
check "the file is private (0600)" test "$(stat -c %a aud.jsonl)" = 600
t 0 "--audit-json after the command, appending" - key rotate audited --audit-json=aud.jsonl
check "the rotation appended" grep -q '"op":"key.rotate"' aud.jsonl
check "each line is a JSON entry with a hash" \
    "$PY" -c 'import json, sys; [json.loads(l)["hash"] for l in open("aud.jsonl")]'
n1=$(wc -l <aud.jsonl)
t 0 "a command without the option" - key rotate audited
check "nothing appended without --audit-json" test "$(wc -l <aud.jsonl)" -eq "$n1"
t 0 "the entries are in the vault's log too" - audit show
check "the vault log has them" test "$(grep -c 'audited' out)" -ge 1
t 7 "--audit-json into a directory that does not exist" - --audit-json nodir/a.jsonl key create lost --type aes-256-gcm
check "the error names the file" grep -q "nodir/a.jsonl" err
t 2 "no change was made without its audit copy" - key info lost
t 1 "--audit-json with an empty name" - --audit-json "" key list
t 1 "--audit-json without a value" - key list --audit-json
t 0 "--audit-syslog" - --audit-syslog key create logged --type aes-256-gcm
t 0 "--audit-syslog with --audit-json" - --audit-syslog --audit-json aud.jsonl key rotate logged
check "the rotation of logged is in the file" grep -q '"op":"key.rotate".*"version":2' aud.jsonl
t 1 "--audit-syslog takes no value" - --audit-syslog=yes key list

# ---------------------------------------------------------------- audit level show, key perms, keyslot add passphrase
t 0 "audit level show" - audit level show
check "the default level is counters" test "$(cat out)" = counters
t 0 "audit level every" - audit level every
t 0 "audit level show --json" - audit level show --json
check "--json: the level set" test "$(json_get out 'd["level"]')" = every
t 1 "audit level still needs its argument" - audit level
t 1 "audit level show takes no argument" - audit level show every
: >aud2.jsonl
t 0 "an encryption at level every, with --audit-json" msg --audit-json aud2.jsonl encrypt aes
check "the data-path entry reaches the file" grep -q '"op":"key.use\|"op":"encrypt' aud2.jsonl
t 0 "audit level counters again" - audit level counters

t 0 "key perms of the owner" - key perms aes
check "the owner may do everything (agree-raw too: the owner holds it, it is not in all)" test "$(cat out)" = "encrypt,decrypt,sign,verify,mac,derive,export,agree-raw"
printf 'uma credential\n' >cred-uma
chmod 600 cred-uma
t 0 "a user principal" - principal add uma --role user --credential-file cred-uma
t 0 "grant it decrypt on aes" - key grant aes uma --perms decrypt,encrypt
t 0 "key perms as uma" - --principal uma --passphrase-file cred-uma key perms aes --json
check "uma's perms, as granted" test "$(json_get out '",".join(d["perms"]) + d["name"]')" = "encrypt,decryptaes"
t 0 "key perms as uma on a key without a grant" - --principal uma --passphrase-file cred-uma key perms ec
check "no permission shows as -" test "$(cat out)" = "-"
t 2 "key perms of a key that does not exist" - key perms nope

printf 'a second owner passphrase\n' >pass2
chmod 600 pass2
t 0 "keyslot add passphrase" - keyslot add passphrase --new-passphrase-file pass2 --kdf-cost 14
t 0 "the vault opens with the new passphrase" - --passphrase-file pass2 key info aes
t 0 "and still with the first" - key info aes
t 1 "keyslot add passphrase without the file" - keyslot add passphrase
t 1 "keyslot add passphrase from a file that does not exist" - keyslot add passphrase --new-passphrase-file nofile
t 4 "a user may not add a keyslot" - --principal uma --passphrase-file cred-uma keyslot add passphrase --new-passphrase-file pass2 --kdf-cost 14
printf 'wrong\n' >wrongpass
chmod 600 wrongpass
t 5 "a passphrase never added does not open it" - --passphrase-file wrongpass key info aes
t 0 "the keyslot addition is audited" - audit show
check "a keyslot entry" grep -q 'keyslot' out

# ---------------------------------------------------------------- card keys (pkcs11-card)
# a SoftHSM2 token playing a smart card: an EC key with its certificate (same
# CKA_ID), written with softhsm2-util and p11tool (gnutls-bin)
lib_need_softhsm
lib_need_tools p11tool
M=$LIB_P11_MODULE
lib_softhsm "$tmp/hsm" card 1234 5678 || lib_die "cannot make the SoftHSM2 token"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout card.key \
    -out card.crt -subj /CN=alice -days 30 2>/dev/null || lib_die "cannot make the card certificate"
openssl pkcs8 -topk8 -nocrypt -in card.key -out card.p8 || lib_die "pkcs8"
softhsm2-util --import card.p8 --token card --label alice --id 01 --pin 5678 >/dev/null \
    || lib_die "cannot import the card key"
GNUTLS_PIN=5678 p11tool --provider "$M" --login --write --load-certificate card.crt --label alice \
    --id 01 "pkcs11:token=card" >/dev/null 2>&1 || lib_die "cannot write the card certificate"
openssl x509 -in card.crt -pubkey -noout >card.pub
export KM_PKCS11_PIN=5678
t 0 "backend tokens --json" - backend tokens --module "$M" --json
check "--json: the card token and its id" test "$(json_get out 'd["tokens"][0]["label"] + str(len(d["tokens"])) + str("/card" in d["tokens"][0]["id"])')" = card1True
t 0 "backend tokens (text form unchanged)" - backend tokens --module "$M"
check "ID<tab>LABEL" grep -q "	card\$" out
t 0 "backend certificates" - backend certificates --module "$M"
check "one certificate-bound key, with its label and token" \
    sh -c 'test "$(wc -l <out)" -eq 1 && grep -q "	/CN=alice on card	card\$" out'
CID=$(cut -f1 out)
t 0 "backend certificates --json" - backend certificates --module "$M" --json
check "--json: the same id" test "$(json_get out 'd["certificates"][0]["id"]')" = "$CID"
t 7 "backend certificates of a module that does not load" - backend certificates --module /nonexistent.so
t 0 "backend add pkcs11-card" - backend add pkcs11-card --module "$M"
t 0 "key link --json" - key link card --cert-id "$CID" --json
check "key link --json: name and id" test "$(json_get out 'd["name"] + str(len(d["id"]))')" = card32
t 0 "key info of the card key" - key info card --json
check "protection pkcs11-card, type from the certificate, sign and verify only" \
    test "$(json_get out 'd["protection"] + " " + d["type"] + " " + ",".join(d["usage"]) if isinstance(d["usage"], list) else d["protection"] + " " + d["type"] + " " + d["usage"]')" = "pkcs11-card ec-p256 sign,verify"
t 0 "sign with the card (PIN from KM_PKCS11_PIN)" msg sign card --raw
cp out card.sig
check "openssl verifies the card's signature with the certificate's key" \
    sh -c 'openssl dgst -sha256 -verify card.pub -signature card.sig msg >/dev/null'
t 0 "verify with the card key" msg verify card card.sig --raw
t 3 "key link the same name twice" - key link card --cert-id "$CID"
t 2 "key link a certificate id that is on no token" - key link ghost --cert-id "SoftHSM\\x20project/SoftHSM\\x20v2/0000000000000000/card/01"
t 1 "key link a malformed certificate id" - key link bad --cert-id "not an id"
t 1 "key link without --cert-id" - key link bad
t 1 "key link with an unknown usage" - key link bad --cert-id "$CID" --usage fly
KM_PKCS11_PIN=0000 "$KMCTL" sign card --raw <msg >out 2>err
check "a wrong card PIN is refused (5), not retried" test $? -eq 5
unset KM_PKCS11_PIN
"$KMCTL" sign card --raw <msg >out 2>err
check "no PIN: refused (5)" test $? -eq 5
check "the error says a PIN is needed" grep -q "PIN" err

# ---------------------------------------------------------------- --json of the other listings
t 0 "version --json" - version --json
check "--json: kmctl and libkm versions" test -n "$(json_get out 'd["kmctl"] and d["libkm"]')"
t 0 "version (text form unchanged)" - version
check "kmctl X (libkm Y)" grep -q '^kmctl .* (libkm .*)$' out
t 0 "backend list --json" - backend list --json
check "--json: the built-in backends" test "$(json_get out '" ".join(d["backends"][:2])')" = "software pkcs11"
t 0 "backend list (text form unchanged)" - backend list
check "one name per line, software first" test "$(head -1 out)" = software
t 0 "request create --json" - request create destroy --target aes --version 1 --json
RID=$(json_get out 'd["id"]')
check "--json: the request id" test "${#RID}" -eq 32
t 0 "request show of that id" - request show "$RID" --json
t 0 "request create (text form unchanged)" - request create destroy --target aes --version 1
check "the bare id" grep -Eqx '[0-9a-f]{32}' out

# ---------------------------------------------------------------- the grammar stays
t 0 "help lists derive and sign-digest" - help
check "derive in help" grep -q "kmctl derive NAME N" out
check "sign-digest in help" grep -q "kmctl sign-digest NAME --digest" out
check "key perms, audit level show, keyslot add passphrase in help" \
    sh -c 'grep -q "kmctl key perms NAME" out && grep -q "kmctl audit level show" out && grep -q "kmctl keyslot add passphrase --new-passphrase-file FILE" out'
check "export shows --kek and --version" grep -q "kmctl export NAME \[--wrap-with PUBKEY.pem\] \[--kek KEKNAME\] \[--version N\]" out
check "the global audit options in the usage" grep -q "\[--audit-json FILE\] \[--audit-syslog\]" out
t 0 "audit verify" - audit verify

lib_summary
