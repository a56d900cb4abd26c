#!/bin/sh
# kmctl_kmd.sh - kmctl through kmd (libkm's client mode, docs/KMD.md): the
# commands of a principal run with --vault kmd:SOCKET, as the principal kmd
# maps our uid to; what kmctl makes through kmd opens with kmctl on the vault
# itself and the other way round (the same bytes); the vault's own
# administration is refused with exit 8. Starts its own kmd on a socket in a
# temporary directory and stops it by PID.
# Run by make check (top_builddir and top_srcdir come from the environment).
set -u
: "${top_builddir:=.}" "${top_srcdir:=.}"
. "$(dirname "$0")/lib.sh"
lib_init kmctl_kmd
LIB_SHOW_ERR=1
KMCTL="$top_builddir/src/kmctl/kmctl"
KMD="$top_builddir/src/kmd/kmd"
[ -x "$KMCTL" ] || lib_die "$KMCTL is not built"
[ -x "$KMD" ] || lib_die "$KMD is not built"

lib_tmpdir
cd "$tmp" || exit 1
case $KMCTL in /*) ;; *) KMCTL="$OLDPWD/$KMCTL" ;; esac
case $KMD in /*) ;; *) KMD="$OLDPWD/$KMD" ;; esac

unset KM_VAULT KM_PASSPHRASE KM_PRINCIPAL
VAULT="$tmp/vault"
printf 'kmctl kmd passphrase\n' >pass
chmod 600 pass
own() { "$KMCTL" --vault "$VAULT" --passphrase-file "$tmp/pass" "$@"; }
printf 'attack at dawn\n' >msg

own init --kdf-cost 14 >/dev/null 2>err || lib_die "init failed: $(cat err)"
printf 'cred of ann\n' >cred-ann
chmod 600 cred-ann
own principal add ann --role admin --credential-file "$tmp/cred-ann" >/dev/null 2>err \
    || lib_die "principal add failed: $(cat err)"
cat >kmd.conf <<CONF
vault = lmdb:$VAULT
socket = $tmp/kmd.sock
passphrase_file = $tmp/pass
refresh_ms = 10
principal.$(id -u) = ann
CONF
"$KMD" --config "$tmp/kmd.conf" 2>kmd.log &
kmd_pid=$!
lib_on_exit "kill $kmd_pid 2>/dev/null; wait $kmd_pid 2>/dev/null"
i=0
while [ ! -S "$tmp/kmd.sock" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
[ -S "$tmp/kmd.sock" ] || lib_die "kmd did not start: $(cat kmd.log)"
export KM_VAULT="kmd:$tmp/kmd.sock"

t 0 "whoami through kmd" - whoami
check "kmd serves us as ann" grep -q "^ann	admin$" out
t 0 "key create through kmd" - key create k1 --type aes-256-gcm
t 0 "key create ec through kmd" - key create s1 --type ec-p256
t 0 "key create hmac through kmd" - key create h1 --type hmac-sha256
t 0 "key list through kmd" - key list
check "key list shows the keys" grep -q k1 out
t 0 "key info through kmd" - key info k1 --json
check "key info names the owner" grep -q '"owner": *"ann"' out
t 0 "encrypt through kmd" msg encrypt k1 --aad a1
cp out ct.kmd
t 0 "decrypt through kmd" ct.kmd decrypt --aad a1
check "the plaintext is back" cmp -s out msg
own decrypt --aad a1 <ct.kmd >out 2>err
check "kmctl on the vault decrypts what kmd encrypted" cmp -s out msg
own encrypt k1 <msg >ct.own 2>err
t 0 "decrypt through kmd what kmctl on the vault encrypted" ct.own decrypt
check "the same plaintext" cmp -s out msg
t 6 "decrypt with the wrong aad through kmd" ct.kmd decrypt --aad a2
t 0 "mac through kmd" msg mac h1
cp out tag.kmd
own mac h1 <msg >tag.own 2>err
check "the MAC tag is the same bytes both ways" cmp -s tag.kmd tag.own
t 0 "sign through kmd" msg sign s1
cp out sig.kmd
own verify s1 sig.kmd <msg >/dev/null 2>err
check "kmctl on the vault verifies kmd's signature" [ $? -eq 0 ]
t 0 "datakey through kmd" - datakey k1
t 0 "key rotate through kmd" - key rotate k1
t 0 "decrypt the old ciphertext after rotate" ct.kmd decrypt --aad a1
t 0 "random through kmd" - random 32
check "random writes 32 bytes" [ "$(wc -c <out)" -eq 32 ]
t 0 "policy show through kmd" - policy show
t 0 "audit verify through kmd" - audit verify
t 0 "audit show through kmd" - audit show
check "the audit names ann via the peer" grep -q "ann via uid:" out
t 0 "key tag through kmd" - key tag k1 team=orders
t 0 "key create k2 through kmd" - key create k2 --type aes-256-gcm
t 0 "key suspend through kmd" - key suspend k2
t 4 "encrypt with a suspended key through kmd" msg encrypt k2
t 0 "key resume through kmd" - key resume k2
t 0 "encrypt after resume through kmd" msg encrypt k2
t 0 "maintain through kmd" - maintain
t 2 "key info of no such key through kmd" - key info nonesuch
check "kmd's reason reaches kmctl" grep -q nonesuch err

# what is not for a client of kmd
t 8 "vault rekey is refused through kmd" - vault rekey --new-passphrase-file "$tmp/pass"
check "the refusal says why" grep -q "kmd's user" err
t 8 "keyslot remove passphrases is refused through kmd" - keyslot remove passphrases
t 1 "init through kmd is refused" - init
t 4 "naming another principal is refused" - --principal root whoami
kill "$kmd_pid"; wait "$kmd_pid" 2>/dev/null
t 7 "kmd gone: exit 7, no hang" - whoami
check "the error says kmd is not there" grep -q "kmd" err

lib_summary
