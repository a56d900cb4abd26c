#!/bin/bash
# The km OpenSSL provider driven by the real `openssl` tool, against a fresh
# vault made with the build tree's kmctl, the provider loaded from the build
# tree (-provider-path):
#   - pkeyutl signs with km:NAME (EC P-256, P-384, Ed25519, RSA PKCS#1 v1.5 and
#     PSS, a pre-hashed digest) and the signature verifies with the public key
#     kmctl exports; a changed message does not verify;
#   - req -new -x509 -key km:NAME makes a certificate that verifies and carries
#     libkm's public key;
#   - s_server -key km:NAME on 127.0.0.1 completes TLS 1.3 and TLS 1.2
#     handshakes with s_client, with either provider loaded first;
#   - pkeyutl -decrypt with RSA-OAEP (SHA-256); other paddings are refused;
#   - an EC P-256 key in a SoftHSM2 token (--protection pkcs11) signs;
#   - a suspended and a revoked key refuse to sign, with libkm's reason;
#   - the provider's openssl.cnf section (vault, passphrase_file) replaces
#     KM_VAULT and KM_PASSPHRASE; km:NAME;version=N pins a version.
# make check sets top_srcdir and top_builddir; by hand from a build directory:
#   top_srcdir=.. top_builddir=. ../tests/openssl/provider.sh
# Exits 1 on any failure; never skips (a missing openssl is a failure).
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
top_builddir=$(cd "$top_builddir" && pwd)
KMCTL="$top_builddir/src/kmctl/kmctl"
MODDIR="$top_builddir/bindings/openssl/.libs"
OPENSSL=${OPENSSL:-openssl}
. "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"
lib_init provider

SAN_ENV=()
# every openssl run is bounded: a hang is a failure, never a stuck make check
ossl() { timeout 60 env ${SAN_PRELOAD:+"LD_PRELOAD=$SAN_PRELOAD"} "$OPENSSL" "$@"; }

command -v "$OPENSSL" >/dev/null 2>&1 || { echo "FAIL - no openssl tool on PATH (apt-get install openssl)"; exit 1; }
[ -x "$KMCTL" ] || { echo "FAIL - $KMCTL is not built"; exit 1; }
[ -f "$MODDIR/km.so" ] || { echo "FAIL - $MODDIR/km.so is not built"; exit 1; }

# A sanitizer build: openssl is not instrumented, so the runtime is preloaded
# into openssl only (lib_san_preload). Leak detection stays as the caller set it
# (quickstart: on): the provider frees everything at teardown, and the openssl
# commands used here do too.
lib_san_preload
if [ -n "$SAN_PRELOAD" ]; then SAN_ENV=("LD_PRELOAD=$SAN_PRELOAD"); fi

lib_tmpdir
SERVER_PID=
lib_on_exit 'if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi'
cd "$tmp" || exit 1

# no system or user configuration leaks in: this test's own, empty, openssl.cnf
printf 'openssl_conf = openssl_init\n[openssl_init]\n' > empty.cnf
export OPENSSL_CONF="$tmp/empty.cnf"
unset KM_VAULT KM_PASSPHRASE
export KM_VAULT="$tmp/vault" KM_PASSPHRASE="correct horse battery staple"

P=(-provider-path "$MODDIR" -provider km -provider default)
P_DEFAULT_FIRST=(-provider-path "$MODDIR" -provider default -provider km)

"$KMCTL" init --kdf-cost 14 >/dev/null || { echo "FAIL - kmctl init"; exit 1; }
TYPES="ec-p256 ec-p384 ed25519 rsa-2048"
for t in $TYPES; do
    "$KMCTL" key create "$t" --type "$t" >/dev/null && "$KMCTL" key public "$t" > "$t.pub.pem" \
        || { echo "FAIL - kmctl key create/public $t"; exit 1; }
done
"$KMCTL" key create rsa-wrap --type rsa-2048 >/dev/null && "$KMCTL" key public rsa-wrap > rsa-wrap.pub.pem \
    || { echo "FAIL - kmctl key create rsa-wrap"; exit 1; }
printf 'a message signed by a key that never leaves libkm\n' > msg
printf 'a message signed by a key that never leaves libkm!\n' > msg2

# digest used with each type (Ed25519 takes none)
dgst_of() { case "$1" in ec-p384) echo sha384;; ed25519) echo "";; *) echo sha256;; esac; }
# sign NAME OUT [extra pkeyutl args...]
sign() {
    local name=$1 out=$2 d; shift 2
    d=$(dgst_of "${name%%;*}")
    ossl pkeyutl "${P[@]}" -sign -inkey "km:$name" -rawin ${d:+-digest "$d"} "$@" -in msg -out "$out"
}
# verify TYPE SIG FILE [extra pkeyutl args...]: with the public key kmctl exported
verify() {
    local t=$1 sig=$2 file=$3 d; shift 3
    d=$(dgst_of "$t")
    ossl pkeyutl -verify -pubin -inkey "$t.pub.pem" -rawin ${d:+-digest "$d"} "$@" \
        -in "$file" -sigfile "$sig" >/dev/null 2>&1
}

# ------------------------------------------------------------ sign / verify
for t in $TYPES; do
    if sign "$t" "sig.$t" 2> err; then
        if verify "$t" "sig.$t" msg; then ok "pkeyutl -sign -inkey km:$t verifies with kmctl's public key"
        else bad "signature of km:$t does not verify"; fi
        if verify "$t" "sig.$t" msg2; then bad "signature of km:$t verifies a changed message"
        else ok "signature of km:$t does not verify a changed message"; fi
    else
        bad "pkeyutl -sign -inkey km:$t: $(tr '\n' ' ' < err)"
    fi
done

# RSA: PSS (salt = digest length, SHA-384) and PKCS#1 v1.5 (explicit)
PSS=(-pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:digest)
if ossl pkeyutl "${P[@]}" -sign -inkey km:rsa-2048 -rawin -digest sha384 "${PSS[@]}" -in msg -out sig.pss 2> err \
   && ossl pkeyutl -verify -pubin -inkey rsa-2048.pub.pem -rawin -digest sha384 "${PSS[@]}" -in msg -sigfile sig.pss >/dev/null 2>&1; then
    ok "RSA-PSS (SHA-384) signature verifies"
else bad "RSA-PSS signature: $(tr '\n' ' ' < err)"; fi
if sign rsa-2048 sig.v15 -pkeyopt rsa_padding_mode:pkcs1 2> err \
   && verify rsa-2048 sig.v15 msg -pkeyopt rsa_padding_mode:pkcs1; then
    ok "RSA PKCS#1 v1.5 signature verifies"
else bad "RSA PKCS#1 v1.5 signature: $(tr '\n' ' ' < err)"; fi
if verify rsa-2048 sig.v15 msg "${PSS[@]}"; then bad "a PKCS#1 v1.5 signature verifies as PSS"
else ok "a PKCS#1 v1.5 signature does not verify as PSS"; fi

# a pre-hashed digest (EVP_PKEY_sign), as TLS 1.2 and CMS use it
ossl dgst -sha256 -binary msg > msg.sha256
if ossl pkeyutl "${P[@]}" -sign -inkey km:ec-p256 -in msg.sha256 -out sig.pre 2> err \
   && ossl pkeyutl -verify -pubin -inkey ec-p256.pub.pem -in msg.sha256 -sigfile sig.pre >/dev/null 2>&1; then
    ok "ECDSA over a pre-computed SHA-256 digest verifies"
else bad "ECDSA over a digest: $(tr '\n' ' ' < err)"; fi

# openssl dgst -sign (EVP_DigestSign, streaming), and verification by the provider itself
if ossl dgst "${P[@]}" -sha384 -sign km:ec-p256 -out sig.dgst msg 2> err \
   && ossl dgst -sha384 -verify ec-p256.pub.pem -signature sig.dgst msg >/dev/null 2>&1; then
    ok "dgst -sha384 -sign km:ec-p256 verifies (SHA-384 with a P-256 key, as TLS 1.2 may ask)"
else bad "dgst -sign: $(tr '\n' ' ' < err)"; fi
if ossl pkeyutl "${P[@]}" -verify -inkey km:ed25519 -rawin -in msg -sigfile sig.ed25519 >/dev/null 2>&1 \
   && ! ossl pkeyutl "${P[@]}" -verify -inkey km:ed25519 -rawin -in msg2 -sigfile sig.ed25519 >/dev/null 2>&1; then
    ok "pkeyutl -verify -inkey km:ed25519 accepts the signature and refuses a changed message"
else bad "pkeyutl -verify with a km: key"; fi

# ------------------------------------------------------------ certificates
for t in $TYPES; do
    if ossl req "${P[@]}" -new -x509 -key "km:$t" -subj "/CN=libkm $t" -days 2 -out "$t.crt" 2> err; then
        if ossl verify -CAfile "$t.crt" "$t.crt" >/dev/null 2>&1 \
           && ossl x509 -in "$t.crt" -noout -pubkey | cmp -s - "$t.pub.pem"; then
            ok "req -new -x509 -key km:$t: the certificate verifies and holds libkm's public key"
        else bad "the certificate of km:$t does not verify or holds another key"; fi
    else
        bad "req -new -x509 -key km:$t: $(tr '\n' ' ' < err)"
    fi
done

# ------------------------------------------------------------ TLS
# start_server LOG ARGS...: s_server on a free 127.0.0.1 port; sets PORT and SERVER_PID
start_server() {
    local log=$1 try i; shift
    for try in 1 2 3 4 5; do
        PORT=$((20000 + (RANDOM % 20000)))
        rm -f "$log" # else the wait below could see the previous server's ACCEPT
        ossl s_server "$@" -accept "127.0.0.1:$PORT" -naccept 1 -www > "$log" 2>&1 &
        SERVER_PID=$!
        for i in $(seq 100); do   # at most 10 s to open the vault and listen
            grep -q '^ACCEPT' "$log" && return 0
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        stop_server
        grep -qi 'address already in use\|bind' "$log" || return 1
    done
    return 1
}
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
}
# handshake NAME VERSION ORDER: TLS 1.3 or 1.2 against s_server -key km:NAME
handshake() {
    local t=$1 v=$2 order=$3 want
    local -a prov
    if [ "$order" = km-first ]; then prov=("${P[@]}"); else prov=("${P_DEFAULT_FIRST[@]}"); fi
    want=$([ "$v" = tls1_3 ] && echo TLSv1.3 || echo TLSv1.2)
    if ! start_server srv.log "${prov[@]}" -key "km:$t" -cert "$t.crt" "-$v"; then
        bad "s_server -key km:$t ($order) did not start: $(tr '\n' ' ' < srv.log)"
        return
    fi
    echo Q | ossl s_client -connect "127.0.0.1:$PORT" "-$v" -CAfile "$t.crt" \
        -verify_return_error -brief > cli.log 2>&1
    stop_server
    if grep -q "Protocol version: $want" cli.log && grep -q 'Verification: OK' cli.log; then
        ok "$want handshake with s_server -key km:$t ($order)"
    else
        bad "$want handshake with s_server -key km:$t ($order): client: $(tr '\n' ' ' < cli.log) server: $(tr '\n' ' ' < srv.log)"
    fi
}
for t in $TYPES; do
    for v in tls1_3 tls1_2; do handshake "$t" "$v" km-first; done
done
# the other order: the default provider first (another cause of TLS 1.2 failures)
for t in ec-p256 rsa-2048; do
    for v in tls1_3 tls1_2; do handshake "$t" "$v" default-first; done
done

# ------------------------------------------------------------ RSA-OAEP
OAEP=(-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256)
head -c 32 /dev/urandom > secret
ossl pkeyutl -encrypt -pubin -inkey rsa-wrap.pub.pem "${OAEP[@]}" -in secret -out secret.ct 2>/dev/null
if ossl pkeyutl "${P[@]}" -decrypt -inkey km:rsa-wrap "${OAEP[@]}" -in secret.ct -out secret.pt 2> err \
   && cmp -s secret secret.pt; then
    ok "pkeyutl -decrypt (RSA-OAEP SHA-256) with km:rsa-wrap gives the plaintext back"
else bad "RSA-OAEP decrypt: $(tr '\n' ' ' < err)"; fi
head -c 1 secret.ct > secret.bad; tail -c +2 secret.ct | tr '\000-\377' '\001-\377\000' >> secret.bad
if ossl pkeyutl "${P[@]}" -decrypt -inkey km:rsa-wrap "${OAEP[@]}" -in secret.bad -out bad.pt > err 2>&1; then
    bad "an altered RSA-OAEP ciphertext decrypts"
elif grep -q 'KM_E_INTEGRITY' err; then ok "an altered RSA-OAEP ciphertext is refused (KM_E_INTEGRITY)"
else bad "an altered RSA-OAEP ciphertext: unexpected error: $(tr '\n' ' ' < err)"; fi
ossl pkeyutl -encrypt -pubin -inkey rsa-wrap.pub.pem -pkeyopt rsa_padding_mode:pkcs1 -in secret -out v15.ct 2>/dev/null
if ossl pkeyutl "${P[@]}" -decrypt -inkey km:rsa-wrap -in v15.ct -out v15.pt > err 2>&1; then
    bad "PKCS#1 v1.5 decryption is accepted"
elif grep -q 'RSA-OAEP' err; then ok "PKCS#1 v1.5 decryption is refused, naming RSA-OAEP"
else bad "PKCS#1 v1.5 decryption: unexpected error: $(tr '\n' ' ' < err)"; fi

# ------------------------------------------------------------ lifecycle
# refused KEY WHAT: signing fails and openssl's error output carries libkm's reason
refused() {
    local t=$1 what=$2
    if sign "$t" "sig.refused" > err 2>&1; then
        bad "$what key km:$t still signs"
    elif grep -q 'KM_E_STATE' err && grep -q "key '$t' has no version that may protect new data" err; then
        ok "$what key km:$t refuses to sign, with libkm's reason in openssl's errors"
    else
        bad "$what key km:$t: libkm's reason is not in openssl's errors: $(tr '\n' ' ' < err)"
    fi
}
"$KMCTL" key suspend ec-p256 >/dev/null || bad "kmctl key suspend"
refused ec-p256 suspended
"$KMCTL" key resume ec-p256 --version 1 >/dev/null || bad "kmctl key resume"
if sign ec-p256 sig.resumed 2> err && verify ec-p256 sig.resumed msg; then ok "the resumed key signs again"
else bad "the resumed key: $(tr '\n' ' ' < err)"; fi
"$KMCTL" key revoke rsa-2048 --reason superseded >/dev/null || bad "kmctl key revoke"
refused rsa-2048 revoked
# a long-running server sees a suspension made by kmctl at once
if start_server srv.log "${P[@]}" -key km:ed25519 -cert ed25519.crt -tls1_3; then
    "$KMCTL" key suspend ed25519 >/dev/null || bad "kmctl key suspend ed25519"
    echo Q | ossl s_client -connect "127.0.0.1:$PORT" -tls1_3 -CAfile ed25519.crt -brief > cli.log 2>&1
    stop_server
    if grep -q 'Protocol version' cli.log; then bad "a running server still signs with a key suspended after it started"
    elif grep -q "key 'ed25519' has no version that may protect new data" srv.log; then
        ok "a running server refuses the handshake once kmctl suspends its key, with libkm's reason"
    else bad "suspended under a running server: $(tr '\n' ' ' < srv.log)"; fi
else bad "s_server -key km:ed25519 did not start: $(tr '\n' ' ' < srv.log)"; fi

# ------------------------------------------------------------ a PKCS#11 key
# an EC P-256 key made in a SoftHSM2 token (--protection pkcs11) signs through
# the provider (a message, and a pre-hashed digest: km_sign_digest in the token)
P11_MODULE=$LIB_P11_MODULE
if [ -f "$P11_MODULE" ] && command -v softhsm2-util >/dev/null 2>&1; then
    export KM_PKCS11_PIN=4321
    if lib_softhsm "$tmp/p11" kmprov 5678 4321 \
       && "$KMCTL" backend add pkcs11 --module "$P11_MODULE" --token-uri "pkcs11:token=kmprov" >/dev/null \
       && "$KMCTL" key create p11-ec --type ec-p256 --protection pkcs11 >/dev/null \
       && "$KMCTL" key public p11-ec > p11-ec.pub.pem; then
        if ossl pkeyutl "${P[@]}" -sign -inkey km:p11-ec -rawin -digest sha256 -in msg -out sig.p11 2> err \
           && ossl pkeyutl -verify -pubin -inkey p11-ec.pub.pem -rawin -digest sha256 -in msg -sigfile sig.p11 >/dev/null 2>&1 \
           && ! ossl pkeyutl -verify -pubin -inkey p11-ec.pub.pem -rawin -digest sha256 -in msg2 -sigfile sig.p11 >/dev/null 2>&1; then
            ok "pkeyutl -sign -inkey km:p11-ec (a SoftHSM2 key) verifies with kmctl's public key, not a changed message"
        else bad "pkeyutl -sign with a pkcs11 key: $(tr '\n' ' ' < err)"; fi
        if ossl pkeyutl "${P[@]}" -sign -inkey km:p11-ec -in msg.sha256 -out sig.p11pre 2> err \
           && ossl pkeyutl -verify -pubin -inkey p11-ec.pub.pem -in msg.sha256 -sigfile sig.p11pre >/dev/null 2>&1; then
            ok "ECDSA in the token over a pre-computed SHA-256 digest verifies"
        else bad "digest signing with a pkcs11 key: $(tr '\n' ' ' < err)"; fi
    else bad "SoftHSM2 token or kmctl pkcs11 key set-up failed"; fi
    unset SOFTHSM2_CONF KM_PKCS11_PIN
else
    bad "SoftHSM2 ($P11_MODULE, softhsm2-util) is not installed (apt-get install softhsm2)"
fi

# ------------------------------------------------------------ configuration and URIs
printf '%s\n' "$KM_PASSPHRASE" > pass.txt
chmod 600 pass.txt
cat > km.cnf <<EOF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
km = km_sect
[default_sect]
activate = 1
[km_sect]
module = $MODDIR/km.so
vault = $tmp/vault
passphrase_file = $tmp/pass.txt
activate = 1
EOF
if env -u KM_VAULT -u KM_PASSPHRASE OPENSSL_CONF="$tmp/km.cnf" timeout 60 env "${SAN_ENV[@]}" "$OPENSSL" pkeyutl -sign -inkey km:ec-p384 -rawin \
       -digest sha384 -in msg -out sig.cnf 2> err && verify ec-p384 sig.cnf msg; then
    ok "the provider's openssl.cnf section (vault, passphrase_file) opens the vault without KM_VAULT/KM_PASSPHRASE"
else bad "openssl.cnf configuration: $(tr '\n' ' ' < err)"; fi
# the passphrase file must be ours, a regular file, readable by nobody else
cnf_with() { # file: km.cnf with passphrase_file = $1 (and optional principal $2)
    sed -e "s|^passphrase_file = .*|passphrase_file = $1|" km.cnf > km2.cnf
    [ -n "${2:-}" ] && printf 'principal = %s\n' "$2" >> km2.cnf
    return 0
}
cnf_sign() { env -u KM_VAULT -u KM_PASSPHRASE -u KM_PRINCIPAL OPENSSL_CONF="$tmp/km2.cnf" timeout 60 \
    env "${SAN_ENV[@]}" "$OPENSSL" pkeyutl -sign -inkey km:ec-p384 -rawin -digest sha384 -in msg -out sig.c2 > err 2>&1; }
cp pass.txt pass-open.txt; chmod 640 pass-open.txt
cnf_with "$tmp/pass-open.txt"
if cnf_sign; then bad "a group-readable passphrase file is used"
elif grep -q 'readable' err; then ok "a group-readable passphrase file is refused"
else bad "group-readable passphrase file: unexpected error: $(tr '\n' ' ' < err)"; fi
ln -s "$tmp/pass.txt" pass-link.txt
cnf_with "$tmp/pass-link.txt"
if cnf_sign; then bad "a symlinked passphrase file is used"
elif grep -q 'symbolic link' err; then ok "a symlinked passphrase file is refused"
else bad "symlinked passphrase file: unexpected error: $(tr '\n' ' ' < err)"; fi
# as a principal: a user granted sign on the key signs; without the grant it is denied
printf 'pu-provider\n' > cred-pu; chmod 600 cred-pu
if "$KMCTL" principal add prov-user --role user --credential-file "$tmp/cred-pu" >/dev/null 2>err; then
    cnf_with "$tmp/cred-pu" prov-user
    if cnf_sign; then bad "a principal without a grant signs through the provider"
    elif grep -q 'DENIED\|denied' err; then ok "the provider opens as a principal: no grant, no signature"
    else bad "principal without grant: unexpected error: $(tr '\n' ' ' < err)"; fi
    if "$KMCTL" key grant ec-p384 prov-user --perms sign >/dev/null 2>err && cnf_sign && verify ec-p384 sig.c2 msg; then
        ok "the provider opens as a principal: with the sign grant it signs"
    else bad "principal with grant: $(tr '\n' ' ' < err)"; fi
else bad "kmctl principal add: $(tr '\n' ' ' < err)"; fi
if env -u KM_VAULT -u KM_PASSPHRASE timeout 60 env "${SAN_ENV[@]}" "$OPENSSL" pkeyutl "${P[@]}" -sign -inkey km:ec-p384 -rawin -digest sha384 \
       -in msg -out sig.none > err 2>&1; then
    bad "signing works with no vault configured"
elif grep -q 'no vault' err; then ok "no vault configured: a clear error"
else bad "no vault configured: unexpected error: $(tr '\n' ' ' < err)"; fi
if KM_PASSPHRASE=wrong ossl pkeyutl "${P[@]}" -sign -inkey km:ec-p384 -rawin -digest sha384 -in msg -out sig.w > err 2>&1; then
    bad "a wrong passphrase opens the vault"
elif grep -q 'KM_E_AUTH' err; then ok "a wrong passphrase: KM_E_AUTH from libkm"
else bad "wrong passphrase: unexpected error: $(tr '\n' ' ' < err)"; fi
if grep -a -q 'wrong' err; then bad "the passphrase appears in openssl's error output"; fi

"$KMCTL" key rotate ec-p384 >/dev/null || bad "kmctl key rotate"
"$KMCTL" key public ec-p384 --version 1 > ec-p384.v1.pem && "$KMCTL" key public ec-p384 > ec-p384.v2.pem
if ossl pkey "${P[@]}" -in "km:ec-p384;version=1" -pubout 2>/dev/null | cmp -s - ec-p384.v1.pem \
   && ossl pkey "${P[@]}" -in "km:ec-p384" -pubout 2>/dev/null | cmp -s - ec-p384.v2.pem; then
    ok "km:NAME;version=1 is version 1's public key, km:NAME the primary's"
else bad "km:NAME;version=N does not select the version"; fi
if sign "ec-p384;version=1" sig.v1 > err 2>&1; then bad "a non-primary version signs"
elif grep -q 'is not its primary version' err; then ok "signing with a pinned old version is refused (not the primary)"
else bad "pinned old version: unexpected error: $(tr '\n' ' ' < err)"; fi
if ossl pkey "${P[@]}" -in "km:no-such-key" -noout > err 2>&1; then bad "an unknown key name loads"
elif grep -q 'KM_E_NOTFOUND' err; then ok "an unknown key name: KM_E_NOTFOUND from libkm"
else bad "unknown key: unexpected error: $(tr '\n' ' ' < err)"; fi
if ossl pkey "${P[@]}" -in "km:ec-p256;v=1" -noout > err 2>&1; then bad "a malformed km: URI loads"
elif grep -q 'km: URI' err; then ok "a malformed km: URI is refused"
else bad "malformed URI: unexpected error: $(tr '\n' ' ' < err)"; fi
# the private key is never exported
if ossl pkey "${P[@]}" -in km:ec-p256 -out priv.pem > err 2>&1 && grep -q 'PRIVATE KEY' priv.pem; then
    bad "the private key of km:ec-p256 was exported"
else ok "openssl pkey cannot write out the private key of km:ec-p256"; fi

lib_summary
