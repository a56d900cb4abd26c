#!/bin/sh
# kmctl_etcd.sh - kmctl with a vault on etcd (issue 21): a one-member etcd
# started here on free 127.0.0.1 ports (tests/etcd_cluster, stopped by its
# recorded PID); kmctl vault copy from LMDB to etcd and back, each copy opened
# with the source's passphrase, decrypting the source's ciphertexts, its audit
# log verified and holding the copy's entry; never over a vault; refused
# under dual control for exports.
# A missing etcd is a failure under CI=true, a loud skip (77) otherwise.
set -u
: "${top_builddir:=.}"
. "$(dirname "$0")/lib.sh"
lib_init kmctl_etcd
LIB_SHOW_ERR=1
B=$top_builddir
case $B in /*) ;; *) B="$PWD/$B" ;; esac
KMCTL="$B/src/kmctl/kmctl"
[ -x "$KMCTL" ] || lib_die "$KMCTL is not built"
if ! [ -x /usr/bin/etcd ]; then
    [ "${CI:-}" = true ] && lib_die "etcd is not installed (apt-get install etcd-server etcd-client)"
    echo "SKIP - $lib_name: etcd is not installed (apt-get install etcd-server etcd-client)"
    exit 77
fi
lib_tmpdir
cd "$tmp" || exit 1
lib_on_exit "\"$B/tests/etcd_cluster\" stop \"$tmp/etcd\""
EP=$("$B/tests/etcd_cluster" start "$tmp/etcd" 1) || lib_die "cannot start etcd"
unset KM_VAULT KM_ETCD_CA KM_ETCD_CERT KM_ETCD_KEY
export KM_PASSPHRASE="kmctl etcd passphrase"
E1="etcd://$EP/copies/one"

printf 'attack at dawn\n' >msg
t 0 "init an LMDB vault" - --vault "$tmp/a" init --kdf-cost 14
t 0 "a key in it" - --vault "$tmp/a" key create k --type aes-256-gcm
t 0 "encrypt under it" msg --vault "$tmp/a" encrypt k
cp out a.ct
t 0 "vault copy lmdb -> etcd" - vault copy "$tmp/a" "$E1"
t 0 "the etcd copy opens with the passphrase and decrypts" a.ct --vault "$E1" decrypt
check "the plaintext is the same" cmp -s out msg
t 0 "the etcd copy's audit log verifies" - --vault "$E1" audit verify
t 0 "its audit log" - --vault "$E1" audit show
check "the copy holds the copy's own audit entry" grep -q "vault copy to etcd" out
t 3 "a copy never goes over a vault" - vault copy "$tmp/a" "$E1"
t 0 "a key created on etcd" - --vault "$E1" key create k2 --type aes-256-gcm
t 0 "encrypt under it" msg --vault "$E1" encrypt k2
cp out b.ct
t 0 "vault copy etcd -> lmdb" - vault copy "$E1" "lmdb:$tmp/b"
t 0 "the LMDB copy decrypts the etcd vault's ciphertext" b.ct --vault "$tmp/b" decrypt
check "the plaintext is the same" cmp -s out msg
t 0 "and the first one's" a.ct --vault "$tmp/b" decrypt
t 0 "the LMDB copy's audit log verifies" - --vault "$tmp/b" audit verify
t 0 "keys of the LMDB copy" - --vault "$tmp/b" key list
check "k and k2 are there" sh -c 'grep -q "^k	" out && grep -q "^k2	" out'
printf "not the passphrase" >wrong; chmod 600 wrong
t 5 "a wrong passphrase does not open the etcd copy" - --vault "$E1" --passphrase-file wrong key list
printf '{"version": 1, "dual_control": {"export": 2, "principal-change": 2, "policy-change": 2}}\n' >dual.json
t 0 "dual control on exports" - --vault "$tmp/a" policy set dual.json
t 4 "vault copy refused under dual control without approvals" - vault copy "$tmp/a" "etcd://$EP/copies/two"
t 2 "nothing was copied" - --vault "etcd://$EP/copies/two" key list
t 1 "a bad destination URI" - vault copy "$tmp/a" "etcd://$EP"
lib_summary
