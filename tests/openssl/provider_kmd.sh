#!/bin/bash
# The km OpenSSL provider with its keys in kmd (libkm's client mode,
# docs/KMD.md, docs/OPENSSL.md): the provider's vault is "kmd:SOCKET", so
# every signature of a TLS server is made in kmd as the principal kmd maps the
# server's uid to; the server process never holds the vault's master key nor
# a passphrase. openssl req makes a certificate with km:NAME, s_server
# -key km:NAME completes TLS 1.3 and TLS 1.2 handshakes with s_client, the
# audit names the principal via the peer, and a suspended key refuses.
# Starts its own kmd (temporary directory, socket) and stops it by PID.
# make check sets top_srcdir and top_builddir; by hand from a build directory:
#   top_srcdir=.. top_builddir=. ../tests/openssl/provider_kmd.sh
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
top_builddir=$(cd "$top_builddir" && pwd)
KMCTL="$top_builddir/src/kmctl/kmctl"
KMD="$top_builddir/src/kmd/kmd"
MODDIR="$top_builddir/bindings/openssl/.libs"
OPENSSL=${OPENSSL:-openssl}
. "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"
lib_init provider_kmd
# a sanitizer build: the runtimes preloaded into openssl only (lib.sh)
lib_san_preload
ossl() { timeout 60 env ${SAN_PRELOAD:+"LD_PRELOAD=$SAN_PRELOAD"} "$OPENSSL" "$@"; }

command -v "$OPENSSL" >/dev/null 2>&1 || { echo "FAIL - no openssl tool on PATH (apt-get install openssl)"; exit 1; }
[ -x "$KMCTL" ] || { echo "FAIL - $KMCTL is not built"; exit 1; }
[ -x "$KMD" ] || { echo "FAIL - $KMD is not built"; exit 1; }
[ -f "$MODDIR/km.so" ] || { echo "FAIL - $MODDIR/km.so is not built"; exit 1; }

lib_tmpdir
SERVER_PID= KMD_PID=
lib_on_exit 'for p in $SERVER_PID $KMD_PID; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done'
cd "$tmp" || exit 1
printf 'openssl_conf = openssl_init\n[openssl_init]\n' > empty.cnf
export OPENSSL_CONF="$tmp/empty.cnf"
unset KM_VAULT KM_PASSPHRASE KM_PRINCIPAL

# the vault and kmd, owned by "kmd's user" (here: the test); our uid is ann
printf 'provider kmd passphrase\n' > pass
chmod 600 pass
printf 'cred of ann\n' > cred-ann
chmod 600 cred-ann
own() { "$KMCTL" --vault "$tmp/vault" --passphrase-file "$tmp/pass" "$@"; }
own init --kdf-cost 14 >/dev/null 2>err || { echo "FAIL - kmctl init: $(cat err)"; exit 1; }
own principal add ann --role admin --credential-file "$tmp/cred-ann" >/dev/null 2>err \
    || { echo "FAIL - principal add: $(cat err)"; exit 1; }
own audit level every >/dev/null 2>err || { echo "FAIL - audit level: $(cat err)"; exit 1; }
cat > kmd.conf <<CONF
vault = lmdb:$tmp/vault
socket = $tmp/kmd.sock
passphrase_file = $tmp/pass
refresh_ms = 10
principal.$(id -u) = ann
CONF
"$KMD" --config "$tmp/kmd.conf" 2> kmd.log &
KMD_PID=$!
for i in $(seq 100); do [ -S "$tmp/kmd.sock" ] && break; sleep 0.1; done
[ -S "$tmp/kmd.sock" ] || { echo "FAIL - kmd did not start: $(cat kmd.log)"; exit 1; }

# from here on the server side sees only kmd's socket
export KM_VAULT="kmd:$tmp/kmd.sock"
P=(-provider-path "$MODDIR" -provider km -provider default)
for t in ec-p256 rsa-2048; do
    "$KMCTL" key create "web-$t" --type "$t" >/dev/null 2>err \
        || { echo "FAIL - key create through kmd: $(cat err)"; exit 1; }
    if ossl req "${P[@]}" -new -x509 -key "km:web-$t" -subj "/CN=kmd-$t" -days 2 \
        -out "web-$t.crt" 2> err && ossl verify -CAfile "web-$t.crt" "web-$t.crt" >/dev/null 2>&1; then
        ok "req -x509 -key km:web-$t (key in kmd) makes a certificate that verifies"
    else
        bad "req -key km:web-$t through kmd: $(tr '\n' ' ' < err)"
    fi
done

start_server() {
    local log=$1 try i; shift
    for try in 1 2 3 4 5; do
        PORT=$((20000 + (RANDOM % 20000)))
        rm -f "$log"
        ossl s_server "$@" -accept "127.0.0.1:$PORT" -naccept 1 -www > "$log" 2>&1 &
        SERVER_PID=$!
        for i in $(seq 100); do
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
# handshake NAME VERSION: s_server's private key in kmd, s_client verifies
handshake() {
    local t=$1 v=$2 want
    want=$([ "$v" = tls1_3 ] && echo TLSv1.3 || echo TLSv1.2)
    if ! start_server srv.log "${P[@]}" -key "km:$t" -cert "$t.crt" "-$v"; then
        bad "s_server -key km:$t (kmd) did not start: $(tr '\n' ' ' < srv.log)"
        return
    fi
    echo Q | ossl s_client -connect "127.0.0.1:$PORT" "-$v" -CAfile "$t.crt" \
        -verify_return_error -brief > cli.log 2>&1
    stop_server
    if grep -q "Protocol version: $want" cli.log && grep -q 'Verification: OK' cli.log; then
        ok "$want handshake with s_server -key km:$t, the key in kmd"
    else
        bad "$want handshake with s_server -key km:$t (kmd): client: $(tr '\n' ' ' < cli.log) server: $(tr '\n' ' ' < srv.log)"
    fi
}
for t in web-ec-p256 web-rsa-2048; do
    for v in tls1_3 tls1_2; do handshake "$t" "$v"; done
done

# kmd signed: the vault's audit names ann via the server's uid
own audit show > audit.txt 2>err
if grep -q "ann via uid:$(id -u)" audit.txt && grep "ann via uid" audit.txt | grep -q sign; then
    ok "the audit names the principal via the peer for the server's signatures"
else
    bad "no audit entry of a signature by ann via uid: $(tail -3 audit.txt)"
fi

# a key suspended on the vault refuses the next handshake's signature
own key suspend web-ec-p256 >/dev/null 2>&1
sleep 0.1
if ossl req "${P[@]}" -new -x509 -key "km:web-ec-p256" -subj /CN=x -out x.crt 2> err; then
    bad "a suspended key in kmd still signs"
elif grep -q "KM_E_STATE" err; then
    ok "a suspended key in kmd refuses, with libkm's reason from kmd"
else
    bad "suspended key: not libkm's reason: $(tr '\n' ' ' < err)"
fi

lib_summary
