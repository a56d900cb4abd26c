#!/bin/sh
# kmctl_ops.sh - kmctl's commands of issue 23 (random, CMAC keys, ...) end to end
# against a fresh vault: output, exit codes, and agreement with openssl where it can tell.
# Run by make check (top_builddir and top_srcdir come from the environment).
set -u
: "${top_builddir:=.}" "${top_srcdir:=.}"
. "$(dirname "$0")/lib.sh"
lib_init kmctl_ops
LIB_SHOW_ERR=1
KMCTL="$top_builddir/src/kmctl/kmctl"
[ -x "$KMCTL" ] || lib_die "$KMCTL is not built"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
lib_need_tools openssl

lib_tmpdir
cd "$tmp" || exit 1
case $KMCTL in /*) ;; *) KMCTL="$OLDPWD/$KMCTL" ;; esac

unset KM_VAULT KM_PASSPHRASE
export KM_VAULT="$tmp/vault" KM_PASSPHRASE="kmctl ops passphrase"
hex() { od -An -tx1 "$@" 2>/dev/null | tr -d ' \n'; }
differ() { ! cmp -s "$1" "$2"; }
json_ok() { "$PY" -c 'import json, sys; d = json.loads(open(sys.argv[1]).read()); sys.exit("d" in d)' "$1"; }
tohex() { "$PY" -c 'import sys; open(sys.argv[2], "wb").write(bytes.fromhex(open(sys.argv[1]).read().strip()))' "$1" "$2"; }

printf 'attack at dawn\n' >msg
t 0 "init" - init --kdf-cost 14

# ---------------------------------------------------------------- random
t 0 "random 32" - random 32
check "random 32 writes 32 bytes" [ "$(wc -c <out)" -eq 32 ]
cp out r1
t 0 "random 32 again" - random 32
check "two draws differ" [ "$(hex r1)" != "$(hex out)" ]
t 0 "random --hex" - random 16 --hex
check "random --hex is 32 hex digits and a newline" grep -Eqx '[0-9a-f]{32}' out
t 0 "random --text" - random 10 --text
check "random --text is km1:" [ "$(head -c4 out)" = km1: ]
t 0 "random --protection software" - random 1048576 --protection software
check "random 1048576 writes them all" [ "$(wc -c <out)" -eq 1048576 ]
t 1 "random 0" - random 0
t 1 "random above the maximum" - random 1048577
t 1 "random of no number" - random lots
t 1 "random without N" - random
t 8 "random from a backend that is not registered" - random 8 --protection nonesuch
check "the refusal names the backend" grep -q nonesuch err
check "nothing is written on a refusal" [ ! -s out ]

# ---------------------------------------------------------------- CMAC
for bits in 128 192 256; do
    t 0 "create aes-$bits-cmac" - key create cm$bits --type aes-$bits-cmac
    t 0 "mac with aes-$bits-cmac" msg mac cm$bits
    check "a tagged CMAC is 24 + 16 bytes" [ "$(wc -c <out)" -eq 40 ]
    cp out cm$bits.tag
    t 0 "mac-verify with aes-$bits-cmac" msg mac-verify cm$bits cm$bits.tag
done
printf 'attack at dusk\n' >msg.bad
t 6 "mac-verify of another message" msg.bad mac-verify cm128 cm128.tag
t 1 "mac-verify with another CMAC key's tag (the header names another key: KM_E_INVALID)" msg mac-verify cm256 cm128.tag
t 4 "encrypt with a CMAC key (usage)" msg encrypt cm128
# an imported key agrees with openssl's CMAC
printf '2b7e151628aed2a6abf7158809cf4f3c' >cmac.hex
tohex cmac.hex cmac.key
t 0 "import a raw AES-128 CMAC key" - key import cmi --type aes-128-cmac --raw cmac.key
t 0 "mac --raw with the imported key" msg mac cmi --raw
cp out cmi.raw
openssl mac -cipher AES-128-CBC -macopt "hexkey:$(cat cmac.hex)" -binary -in msg CMAC >cmi.ref 2>/dev/null
check "kmctl's CMAC equals openssl mac CMAC" eval '[ -s cmi.ref ] && [ "$(hex cmi.raw)" = "$(hex cmi.ref)" ]'
t 0 "mac-verify --raw of openssl's tag" msg mac-verify cmi cmi.ref --raw
head -c 15 cmi.ref >cmi.short
t 6 "mac-verify --raw of a truncated CMAC" msg mac-verify cmi cmi.short --raw
head -c 20 /dev/zero >key20
t 1 "import a 20-byte CMAC key" - key import bad --type aes-128-cmac --raw key20
t 0 "help lists the CMAC types" - help
check "help lists aes-256-cmac" grep -q aes-256-cmac out

# ---------------------------------------------------------------- RSA
t 0 "create rsa-2048 with --oaep-digest sha384" - key create r384 --type rsa-2048 --oaep-digest sha384
t 1 "--oaep-digest md5" - key create rbad --type rsa-2048 --oaep-digest md5
t 1 "--oaep-digest on an EC key" - key create ebad --type ec-p256 --oaep-digest sha512
t 0 "key public" - key public r384
cp out r384.pem
printf 'the data key' >dk
t 0 "rsa-encrypt --label" dk rsa-encrypt r384 --label order-42
check "an RSA-2048 ciphertext is 256 bytes" [ "$(wc -c <out)" -eq 256 ]
cp out dk.ct
t 0 "rsa-decrypt --label" dk.ct rsa-decrypt r384 --label order-42
check "rsa-decrypt gives the plaintext back" cmp -s out dk
t 6 "rsa-decrypt with another label" dk.ct rsa-decrypt r384 --label order-43
t 6 "rsa-decrypt without the label" dk.ct rsa-decrypt r384
check "a refused decryption writes nothing" [ ! -s out ]
# openssl encrypts to the exported public key with OAEP-SHA-384 and the label; kmctl decrypts
LABELHEX=$("$PY" -c 'print(b"order-42".hex())')
openssl pkeyutl -encrypt -pubin -inkey r384.pem -in dk -out dk.ossl -pkeyopt rsa_padding_mode:oaep \
    -pkeyopt rsa_oaep_md:sha384 -pkeyopt rsa_mgf1_md:sha384 -pkeyopt "rsa_oaep_label:$LABELHEX" 2>/dev/null
t 0 "rsa-decrypt of openssl's OAEP-SHA-384 ciphertext" dk.ossl rsa-decrypt r384 --label order-42
check "it decrypts to what openssl encrypted" cmp -s out dk
# and openssl decrypts nothing of kmctl's: no private key leaves; but kmctl's ciphertext of the empty message
t 0 "rsa-encrypt of the empty message" /dev/null rsa-encrypt r384
cp out empty.ct
t 0 "rsa-decrypt of the empty message" empty.ct rsa-decrypt r384
check "the empty message decrypts to empty" [ ! -s out ]
t 4 "rsa-encrypt with an AES key" dk rsa-encrypt cm128
# PKCS#1 v1.5 signatures over the message
t 0 "sign --pkcs1 --raw" msg sign r384 --pkcs1 --raw
cp out p1.sig
openssl dgst -sha256 -verify r384.pem -signature p1.sig msg >/dev/null 2>&1
check "openssl verifies the PKCS#1 v1.5 signature" [ $? -eq 0 ]
t 0 "verify --pkcs1 --raw" msg verify r384 p1.sig --pkcs1 --raw
t 6 "verify of a PKCS#1 v1.5 signature as PSS" msg verify r384 p1.sig --raw
t 0 "create ec-p256" - key create ec --type ec-p256
t 1 "sign --pkcs1 with an EC key" msg sign ec --pkcs1

# ---------------------------------------------------------------- AES-SIV
t 0 "create aes-256-siv" - key create det --type aes-256-siv
printf '4111 1111 1111 1111' >card
t 0 "encrypt with aes-256-siv" card encrypt det --aad cards
cp out det1
t 0 "encrypt the same again" card encrypt det --aad cards
check "deterministic: equal plaintexts give equal ciphertexts" cmp -s out det1
t 0 "encrypt under another aad" card encrypt det --aad other
check "another aad gives another ciphertext" differ out det1
t 0 "decrypt the deterministic ciphertext" det1 decrypt --aad cards
check "it decrypts to the card number" cmp -s out card
t 6 "decrypt with the wrong aad" det1 decrypt --aad other
t 8 "encrypt an empty message with aes-256-siv" /dev/null encrypt det
t 0 "encrypt --text with aes-256-siv" card encrypt det --text
check "the km1: text form" [ "$(head -c4 out)" = km1: ]

# ---------------------------------------------------------------- data keys
t 0 "create a KEK" - key create kek --type aes-256-gcm
t 0 "create a second KEK" - key create kek2 --type aes-128-gcm
t 0 "datakey --type hmac-sha512" - datakey kek --type hmac-sha512 --aad env1 --plaintext-file dk64
check "a wrapped 64-byte data key is 116 bytes" [ "$(wc -c <out)" -eq 116 ]
cp out dk64.w
t 0 "datakey decrypt" dk64.w datakey decrypt --aad env1
check "datakey decrypt gives the data key" cmp -s out dk64
t 6 "datakey decrypt with the wrong aad" dk64.w datakey decrypt --aad env2
t 0 "datakey --type aes-128-gcm --text" - datakey kek --type aes-128-gcm --text
cp out dk16.txt
t 0 "datakey decrypt of the km1: form" dk16.txt datakey decrypt
check "a 16-byte data key" [ "$(wc -c <out)" -eq 16 ]
t 1 "datakey --type ec-p256" - datakey kek --type ec-p256
t 1 "datakey --type nonsense" - datakey kek --type nonsense
t 0 "datakey decrypt --plaintext-file" dk64.w datakey decrypt --aad env1 --plaintext-file dk64.again
check "the key file is the data key, mode 0600" eval 'cmp -s dk64 dk64.again && [ "$(stat -c %a dk64.again)" = 600 ]'
t 1 "datakey decrypt of a ciphertext" det1 datakey decrypt --aad cards
# data key pairs
for ty in ec-p256 rsa-2048 ed25519 x25519; do
    t 0 "datakey-pair --type $ty" - datakey-pair kek --type $ty --public-out pub.$ty --plaintext-file priv.$ty --aad p
    cp out w.$ty
    t 0 "datakey decrypt of the $ty private key" w.$ty datakey decrypt --aad p
    check "it is the private key given with --plaintext-file" cmp -s out priv.$ty
    openssl pkey -inform DER -in priv.$ty -pubout -outform DER -out pub.$ty.ossl 2>/dev/null
    check "openssl derives the returned public key from the private one ($ty)" cmp -s pub.$ty pub.$ty.ossl
done
t 1 "datakey-pair --public-out an existing file" - datakey-pair kek --type ec-p256 --public-out pub.ec-p256
t 1 "datakey-pair --type aes-256-gcm" - datakey-pair kek --type aes-256-gcm --public-out pub.x
# rewrap to another key and aad
t 0 "encrypt under kek" card encrypt kek --aad a1
cp out c1
t 0 "rewrap --to kek2 --new-aad a2" c1 rewrap --aad a1 --to kek2 --new-aad a2
cp out c2
t 0 "decrypt the rewrapped ciphertext with the new aad" c2 decrypt --aad a2
check "same plaintext" cmp -s out card
t 6 "the old aad no longer opens it" c2 decrypt --aad a1
t 4 "rewrap --to a key that does not encrypt" c1 rewrap --aad a1 --to ec
t 2 "rewrap --to a key that does not exist" c1 rewrap --aad a1 --to nokey

# ---------------------------------------------------------------- --batch
printf '%s\n' '{"plaintext":"hello","aad":"a"}' '{"plaintext_km1":"km1:AAEC"}' 'not json' \
    '{"plaintext":5}' '' '{"plaintext":"x","aad":"b"}' >enc.jsonl
t 1 "encrypt --batch with two bad lines" enc.jsonl encrypt kek --batch
cp out enc.out
check "one result line per item (the empty line skipped)" [ "$(wc -l <enc.out)" -eq 5 ]
check "the bad lines fail alone with their detail" grep -q '"index":2,"error":"KM_E_INVALID","detail":"line 3 is not a JSON object' enc.out
"$PY" -c 'import json, sys
aads = {0: "a", 1: "", 4: "b"}
for l in open("enc.out"):
    d = json.loads(l)
    if "ciphertext_km1" in d:
        print(json.dumps({"ciphertext_km1": d["ciphertext_km1"], "aad": aads[d["index"]]}))
print(json.dumps({"ciphertext_km1": d["ciphertext_km1"], "aad": "wrong"}))' >dec.jsonl
t 6 "decrypt --batch, the last with a wrong aad" dec.jsonl decrypt --batch
cp out dec.out
check "decrypt --batch gives the plaintexts back" grep -q '"index":0,"plaintext_km1":"km1:aGVsbG8","plaintext":"hello"' dec.out
check "binary plaintexts only in km1: form" grep -q '"index":1,"plaintext_km1":"km1:AAEC"}' dec.out
check "the wrong aad fails alone" grep -q '"index":3,"error":"KM_E_INTEGRITY"' dec.out
printf '%s\n' '{"message":"m1"}' '{"message":"m2"}' >msgs.jsonl
t 0 "sign --batch" msgs.jsonl sign ec --batch
"$PY" -c 'import json
s = [json.loads(l) for l in open("out")]
print(json.dumps({"message": "m1", "signature_km1": s[0]["signature_km1"]}))
print(json.dumps({"message": "m2", "signature_km1": s[0]["signature_km1"]}))' >ver.jsonl
t 6 "verify - --batch: one valid, one not" ver.jsonl verify ec - --batch
check "verify --batch says which" eval 'grep -q "\"index\":0,\"valid\":true" out && grep -q "\"index\":1,\"valid\":false" out'
t 1 "verify --batch with a signature file" ver.jsonl verify ec ver.jsonl --batch
t 0 "mac --batch with a CMAC key" msgs.jsonl mac cmi --batch --raw
"$PY" -c 'import json
s = [json.loads(l) for l in open("out")]
for m, d in zip(("m1", "m2"), s):
    print(json.dumps({"message": m, "tag_km1": d["tag_km1"]}))' >macv.jsonl
t 0 "mac-verify - --batch" macv.jsonl mac-verify cmi - --batch --raw
check "every tag valid" [ "$(grep -c '"valid":true' out)" -eq 2 ]
printf '%s\n' '{"plaintext":"p1"}' '{"plaintext":"p2"}' >pts.jsonl
t 4 "encrypt --batch with a key that does not encrypt" pts.jsonl encrypt ec --batch
check "every item says why" [ "$(grep -c 'KM_E_USAGE' out)" -eq 2 ]

# ---------------------------------------------------------------- JWK
for ty in ec-p384 rsa-2048 ed25519; do
    t 0 "create $ty for JWK" - key create j$ty --type $ty
    t 0 "key public --jwk ($ty)" - key public j$ty --jwk
    cp out j$ty.jwk
    check "the JWK is one JSON line without a private member" json_ok j$ty.jwk
    t 0 "import the JWK as a verify-only key ($ty)" - key import jv$ty --type $ty --raw j$ty.jwk --format jwk
    t 0 "key public of the imported one" - key public jv$ty --der
    cp out jv.der
    t 0 "key public of the original" - key public j$ty --der
    check "the same public key ($ty)" cmp -s out jv.der
    t 0 "sign with the original ($ty)" msg sign j$ty --raw
    cp out jsig
    t 0 "verify with the JWK-imported key ($ty)" msg verify jv$ty jsig --raw
done
printf '{"kty":"EC","crv":"P-256","x":"AQ","y":"AQ","d":"AQ"}' >priv.jwk
t 1 "import a private JWK" - key import jp --type ec-p256 --raw priv.jwk --format jwk
t 8 "key public --jwk of an AES key" - key public kek --jwk

# ---------------------------------------------------------------- agree (--raw)
# The peers are made by pyca/cryptography, which also computes the expected secrets
# (FFDHE: its X9.42 "DHX" encoding of the RFC 7919 groups).
"$PY" -c 'import cryptography' 2>/dev/null || lib_die "python3-cryptography is needed"
peer() { # peer TYPE MYPUB.der -> peer.der (public, SPKI DER) and want.hex (the shared secret)
    "$PY" - "$@" <<'PYEOF'
import sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import ec, x25519, dh
ty, mine = sys.argv[1], s.load_der_public_key(open(sys.argv[2], "rb").read())
if ty == "x25519":
    k = x25519.X25519PrivateKey.generate()
elif ty.startswith("ec-"):
    k = ec.generate_private_key({"ec-p256": ec.SECP256R1(), "ec-p384": ec.SECP384R1()}[ty])
else:
    k = dh.DHParameterNumbers(mine.public_numbers().parameter_numbers.p,
                              mine.public_numbers().parameter_numbers.g,
                              (mine.public_numbers().parameter_numbers.p - 1) // 2).parameters().generate_private_key()
z = k.exchange(ec.ECDH(), mine) if ty.startswith("ec-") else k.exchange(mine)
open("peer.der", "wb").write(k.public_key().public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo))
open("peer.pem", "wb").write(k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
open("want.hex", "w").write(z.hex())
if ty.startswith("ffdhe"):
    # the X9.42 form (OID dhpublicnumber 1.2.840.10046.2.1, DomainParameters p, g, q; RFC 3279
    # 2.3.3) of the same public value, as pyca/cryptography >= 40 writes FFDHE keys (Debian's
    # 38 writes the PKCS#3 form above)
    def der(tag, body):
        n = len(body)
        ln = bytes([n]) if n < 128 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes([tag]) + ln + body
    def integer(v):
        return der(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))
    pn = k.public_key().public_numbers()
    p, g = pn.parameter_numbers.p, pn.parameter_numbers.g
    alg = der(0x30, der(0x06, bytes.fromhex("2a8648ce3e0201")) + der(0x30, integer(p) + integer(g) + integer((p - 1) // 2)))
    open("peer-dhx.der", "wb").write(der(0x30, alg + der(0x03, b"\0" + integer(pn.y))))
PYEOF
}
for ty in ec-p256 ec-p384 x25519 ffdhe2048; do
    t 0 "create $ty with agree-raw" - key create ag$ty --type $ty --usage agree,agree-raw
    t 0 "key public --der ($ty)" - key public ag$ty --der
    cp out mine.der
    peer $ty mine.der || bad "pyca/cryptography made no $ty peer"
    cp peer.der peer-$ty.der
    t 0 "agree --raw ($ty)" - agree ag$ty peer.der --raw
    check "the raw secret is pyca/cryptography's ($ty)" [ "$(hex out)" = "$(cat want.hex)" ]
    t 0 "agree --raw --hex with a PEM peer ($ty)" - agree ag$ty peer.pem --raw --hex
    check "agree --hex prints the secret in hex ($ty)" [ "$(cat out)" = "$(cat want.hex)" ]
    t 0 "agree --raw --json ($ty)" - agree ag$ty peer.der --raw --json
    check "agree --json: secret_hex, raw, length ($ty)" "$PY" -c 'import json, sys
d = json.load(open("out"))
sys.exit(not (d["secret_hex"] == open("want.hex").read() and d["raw"] is True and d["key"] == sys.argv[1]
              and d["length"] == len(d["secret_hex"]) // 2))' ag$ty
    t 0 "agree (derived, 48 bytes, --info)" - agree ag$ty peer.der --length 48 --info ctx --hex
    check "the derived secret is HKDF-SHA-256 of the raw one ($ty)" "$PY" -c 'import sys
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes
z = bytes.fromhex(open("want.hex").read())
if sys.argv[1].startswith("ffdhe"):  # km_agree takes the FFDHE secret without leading zeros
    z = z.lstrip(b"\0")
w = HKDF(hashes.SHA256(), 48, None, b"ctx").derive(z)
sys.exit(open("out").read().strip() != w.hex())' $ty
done
openssl asn1parse -inform DER -in peer-dhx.der >asn1 2>&1
check "the DHX peer is X9.42 (OID dhpublicnumber)" grep -q 'X9.42 DH' asn1
t 0 "agree --raw with the X9.42 (DHX) peer" - agree agffdhe2048 peer-dhx.der --raw
check "the DHX peer gives pyca/cryptography's secret too" [ "$(hex out)" = "$(cat want.hex)" ]
"$PY" -c 'import sys; d = bytearray(open("peer-dhx.der", "rb").read()); i = d.rfind(bytes.fromhex("020102")); d[i + 2] = 5; open("dhx-g5.der", "wb").write(d)'
t 1 "agree --raw with a DHX peer whose generator is not the group's" - agree agffdhe2048 dhx-g5.der --raw
check "the refusal names the generator" grep -q "generator" err
t 0 "create ec-p256 without agree-raw" - key create agplain --type ec-p256
t 4 "agree --raw without the agree-raw usage" - agree agplain peer-ec-p256.der --raw
check "the refusal names agree-raw" grep -q "agree-raw" err
t 1 "agree --raw --length" - agree agec-p256 peer-ec-p256.der --raw --length 16
t 1 "agree --length 0" - agree agec-p256 peer-ec-p256.der --length 0
printf 'not a key' >junk.der
t 1 "agree with a peer that is not a key" - agree agec-p256 junk.der --raw
t 1 "agree with a peer of another curve" - agree agec-p256 mine.der --raw
check "nothing is written on a refusal" [ ! -s out ]
t 0 "agree.raw is in the audit log" - audit show --json
check "audit: agree.raw entries, no secret in them" "$PY" -c 'import json, sys
e = [x for x in json.load(open("out"))["entries"] if x["op"] == "agree.raw"]
w = open("want.hex").read()
sys.exit(not (len(e) >= 10 and all(w not in json.dumps(x) for x in e)))'
# a principal: all ordinary permissions, no agree-raw grant; then the grant
printf 'cred of ua\n' >"$tmp/cred-ua"; chmod 600 "$tmp/cred-ua"
t 0 "principal add (user)" - principal add ua --role user --credential-file "$tmp/cred-ua"
t 0 "grant all" - key grant agec-p256 ua --perms all
"$KMCTL" --principal ua --passphrase-file "$tmp/cred-ua" agree agec-p256 peer-ec-p256.der --raw >out 2>err
check "a principal without the agree-raw grant is denied (exit 4)" [ $? -eq 4 ]
check "the refusal names agree-raw" grep -q "agree-raw" err
t 0 "grant agree-raw" - key grant agec-p256 ua --perms all,agree-raw
t 0 "key grants shows agree-raw" - key grants agec-p256
check "key grants lists agree-raw" grep -q "agree-raw" out
"$KMCTL" --principal ua --passphrase-file "$tmp/cred-ua" agree agec-p256 peer-ec-p256.der --raw >out 2>err
agree_rc=$?
check "with the grant the principal agrees raw" eval '[ $agree_rc -eq 0 ] && [ "$(wc -c <out)" -eq 32 ]'
# policy: operations.agree-raw false, and operations.rsa-pkcs1v15-sign false
printf '{"version": 1, "operations": {"agree-raw": false, "rsa-pkcs1v15-sign": false}}' >ops.json
t 0 "create rsa-2048 for the PKCS#1 v1.5 rule" - key create agrsa --type rsa-2048
t 0 "sign --pkcs1 while the policy allows it" msg sign agrsa --pkcs1
cp out p1.sig
t 0 "policy set: agree-raw and PKCS#1 v1.5 signing forbidden" - policy set ops.json
t 0 "policy show" - policy show
check "policy show spells the operations out" grep -q '"rsa-pkcs1v15-sign": false' out
t 4 "agree --raw under a policy that forbids it" - agree agec-p256 peer-ec-p256.der --raw
check "the refusal names operations.agree-raw" grep -q "operations.agree-raw" err
t 0 "agree (derived) still works" - agree agec-p256 peer-ec-p256.der
t 4 "sign --pkcs1 under a policy that forbids it" msg sign agrsa --pkcs1
check "the refusal names operations.rsa-pkcs1v15-sign" grep -q "operations.rsa-pkcs1v15-sign" err
t 0 "sign (PSS) still works" msg sign agrsa
t 0 "verify --pkcs1 of an earlier signature still works" msg verify agrsa p1.sig --pkcs1
printf '{"version": 1, "operations": {"agree-raw": true}}' >loose.json
t 0 "create x25519 with agree-raw alone" - key create agloose --type x25519 --usage agree-raw
t 4 "a key policy may not re-allow agree-raw" - key set agloose --policy loose.json
check "the refusal says it loosens" grep -q "loosens" err
printf '{"version": 1}' >open.json
t 0 "policy set: open again" - policy set open.json
t 0 "key set --policy forbidding PKCS#1 v1.5 for one key" - key set agrsa --policy ops.json
t 4 "sign --pkcs1 under the key's own policy" msg sign agrsa --pkcs1
t 0 "agree --raw is back for the other key" - agree agec-p256 peer-ec-p256.der --raw

# ---------------------------------------------------------------- random --json
t 0 "random --json" - random 24 --json
check "random --json: bytes 24 and 48 hex digits" "$PY" -c 'import json, sys
d = json.load(open("out"))
bytes.fromhex(d["hex"])
sys.exit(not (d["bytes"] == 24 and len(d["hex"]) == 48 and set(d) == {"bytes", "hex"}))'
cp out rj1
t 0 "random --json again" - random 24 --json
check "two --json draws differ" differ out rj1
t 0 "random --json --protection software" - random 1 --json --protection software
check "random 1 --json: two hex digits" "$PY" -c 'import json, sys; sys.exit(len(json.load(open("out"))["hex"]) != 2)'
t 1 "random 0 --json" - random 0 --json
check "a refused random --json prints nothing" [ ! -s out ]
t 8 "random --json from a backend that is not registered" - random 8 --json --protection nonesuch
check "nothing is printed on a refusal" [ ! -s out ]

# ---------------------------------------------------------------- rewrap --batch
t 0 "create the rewrap key" - key create rwk --type aes-256-gcm
printf '%s\n' '{"plaintext":"first","aad":"a"}' '{"plaintext":"second"}' '{"plaintext":"third","aad":"c"}' >rwp.jsonl
t 0 "encrypt --batch three for rewrap" rwp.jsonl encrypt rwk --batch
cp out rwc.out
t 0 "rotate the rewrap key" - key rotate rwk
# a ciphertext of another vault (its key is unknown here)
t 0 "init another vault" - --vault "$tmp/vault2" init --kdf-cost 14
t 0 "a key of the other vault" - --vault "$tmp/vault2" key create rwk --type aes-256-gcm
t 0 "encrypt in the other vault" card --vault "$tmp/vault2" encrypt rwk --text --aad a
cp out other.txt
"$PY" -c 'import json
c = [json.loads(l)["ciphertext_km1"] for l in open("rwc.out")]
other = open("other.txt").read().strip()
for d in ({"ciphertext_km1": c[0], "aad": "a"}, {"ciphertext_km1": c[1]}):
    print(json.dumps(d))
print("not json")
print(json.dumps({"ciphertext_km1": c[2], "aad": "c", "new_aad_": "x"}))
print(json.dumps({"ciphertext_km1": other, "aad": "a"}))
print(json.dumps({"ciphertext_km1": c[2], "aad": "wrong"}))
print(json.dumps({"ciphertext_km1": 5}))
print(json.dumps({"aad": "a"}))' >rw.jsonl
t 1 "rewrap --batch with bad lines (first failure: the malformed line)" rw.jsonl rewrap --batch
cp out rw.out
check "rewrap --batch: one result per line" [ "$(wc -l <rw.out)" -eq 8 ]
check "the malformed line fails alone, with its detail" grep -q '"index":2,"error":"KM_E_INVALID","detail":"line 3 is not a JSON object' rw.out
check "an unknown member fails its line, named" grep -q '"index":3,"error":"KM_E_INVALID","detail":"unknown member \\"new_aad_\\"' rw.out
check "another vault's ciphertext fails alone: its key is not found" grep -q '"index":4,"error":"KM_E_NOTFOUND","detail":".' rw.out
check "the wrong aad fails alone" grep -q '"index":5,"error":"KM_E_INTEGRITY","detail":".' rw.out
check "a ciphertext that is no string fails alone" grep -q '"index":6,"error":"KM_E_INVALID","detail":"\\"ciphertext_km1\\" must be a km1: string' rw.out
check "a line without a ciphertext fails alone" grep -q '"index":7,"error":"KM_E_INVALID","detail":"\\"ciphertext\\" (or \\"ciphertext_km1\\") is missing' rw.out
"$PY" -c 'import base64, json, sys
c = [json.loads(l)["ciphertext_km1"] for l in open("rwc.out")]
r = [json.loads(l) for l in open("rw.out")]
def ver(t):  # the key version of a km1: ciphertext (FORMATS.md: bytes 20..23)
    b = base64.urlsafe_b64decode(t[4:] + "=" * (-len(t[4:]) % 4))
    return int.from_bytes(b[20:24], "big")
sys.exit(not ([ver(x) for x in c[:2]] == [1, 1] and [ver(x["ciphertext_km1"]) for x in r[:2]] == [2, 2]
              and set(r[0]) == {"index", "ciphertext_km1"}))'
check "the good lines are rewrapped under the key's version 2" [ $? -eq 0 ]
"$PY" -c 'import json
r = [json.loads(l) for l in open("rw.out")]
print(json.dumps({"ciphertext_km1": r[0]["ciphertext_km1"], "aad": "a"}))
print(json.dumps({"ciphertext_km1": r[1]["ciphertext_km1"]}))' >rwd.jsonl
t 0 "decrypt --batch of the rewrapped" rwd.jsonl decrypt --batch
check "the rewrapped ciphertexts decrypt to the plaintexts" "$PY" -c 'import json, sys
sys.exit([json.loads(l).get("plaintext") for l in open("out")] != ["first", "second"])'
# --to and new_aad: each item through km_rewrap_ex
"$PY" -c 'import json
c = [json.loads(l)["ciphertext_km1"] for l in open("rwc.out")]
print(json.dumps({"ciphertext_km1": c[0], "aad": "a", "new_aad": "n0"}))
print(json.dumps({"ciphertext_km1": c[1]}))
print(json.dumps({"ciphertext_km1": c[2], "aad": "c", "new_aad": ""}))
print(json.dumps({"ciphertext_km1": c[2], "aad": "wrong", "new_aad": "n3"}))' >rwt.jsonl
t 6 "rewrap --batch --to kek2 with new aads, one wrong aad" rwt.jsonl rewrap --batch --to kek2
cp out rwt.out
check "rewrap --batch --to: the wrong aad fails alone" grep -q '"index":3,"error":"KM_E_INTEGRITY"' rwt.out
check "rewrap --batch --to: three rewrapped" [ "$(grep -c ciphertext_km1 rwt.out)" -eq 3 ]
"$PY" -c 'import json
r = [json.loads(l) for l in open("rwt.out")]
for i, a in ((0, "n0"), (1, None), (2, None), (0, "a")):
    d = {"ciphertext_km1": r[i]["ciphertext_km1"]}
    if a is not None:
        d["aad"] = a
    print(json.dumps(d))' >rwtd.jsonl
t 6 "decrypt --batch of the --to results (the last with the old aad)" rwtd.jsonl decrypt --batch
check "new aads and kek2 open them" "$PY" -c 'import json, sys
r = [json.loads(l) for l in open("out")]
sys.exit([x.get("plaintext") for x in r[:3]] != ["first", "second", "third"])' 
check "the old aad no longer opens a line given a new one" grep -q '"index":3,"error":"KM_E_INTEGRITY"' out
t 4 "rewrap --batch --to a key that does not encrypt" rwt.jsonl rewrap --batch --to ec
check "every good item says why (usage)" [ "$(grep -c KM_E_USAGE out)" -eq 3 ]
t 2 "rewrap --batch --to a key that does not exist" rwt.jsonl rewrap --batch --to nokey
check "nothing is printed when --to is not found" [ ! -s out ]
t 1 "rewrap --batch --aad (the lines give it)" rwt.jsonl rewrap --batch --aad a
t 1 "rewrap --batch --new-aad (the lines give it)" rwt.jsonl rewrap --batch --new-aad a
t 0 "rewrap --batch of no lines" - rewrap --batch
check "no lines, no output" [ ! -s out ]
t 0 "help shows rewrap --batch" - help
check "the synopsis has rewrap ... [--batch]" grep -q 'kmctl rewrap .*\[--batch\]' out

lib_summary
