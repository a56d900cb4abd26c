#!/bin/sh
# kmctl_kmip.sh - kmctl with a KMIP key server: a PyKMIP server started here
# (certificates by tests/kmip/pykmip.sh, a free port, temporary state, stopped
# by its PID at the end), backend add kmip, a key created with --protection
# kmip that encrypts and decrypts through the server and that PyKMIP's own
# client sees as Active; the kmip keyslot opening the vault with KM_KMIP_CONFIG
# and no passphrase. A missing PyKMIP is a failure, never a skip.
set -u
: "${top_builddir:=.}"
: "${top_srcdir:=.}"
KMCTL="$top_builddir/src/kmctl/kmctl"
case $KMCTL in /*) ;; *) KMCTL="$PWD/$KMCTL" ;; esac
KMIPDIR="$top_srcdir/tests/kmip"
case $KMIPDIR in /*) ;; *) KMIPDIR="$PWD/$KMIPDIR" ;; esac
[ -x "$KMCTL" ] || { echo "kmctl_kmip.sh: $KMCTL is not built"; exit 1; }
PY=/usr/bin/python3
[ -x /usr/bin/pykmip-server ] && "$PY" -c 'import kmip.pie.client' 2>/dev/null \
    || { echo "kmctl_kmip.sh: PyKMIP is not installed (apt-get install python3-pykmip)"; exit 1; }
command -v openssl >/dev/null 2>&1 || { echo "kmctl_kmip.sh: openssl is not installed"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kmctl-kmip.XXXXXX") || exit 1
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
cd "$tmp" || exit 1

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() {
    failed=$((failed + 1))
    echo "FAIL: $*"
    [ -s err ] && sed 's/^/    stderr: /' err | head -5
}
t() {
    want=$1 desc=$2 in=$3
    shift 3
    [ "$in" = - ] && in=/dev/null
    "$KMCTL" "$@" <"$in" >out 2>err
    got=$?
    if [ "$got" -eq "$want" ]; then ok; else bad "$desc: exit $got, wanted $want"; fi
}
check() {
    desc=$1
    shift
    if "$@"; then ok; else bad "$desc"; fi
}

sh "$KMIPDIR/pykmip.sh" certs "$tmp" || exit 1
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sh "$KMIPDIR/pykmip.sh" conf "$tmp" "$port" || exit 1
# the server's own PID (not a subshell's), its log at an absolute path
"$PY" /usr/bin/pykmip-server -f "$tmp/server.conf" -l "$tmp/server.log" >"$tmp/stdout.log" 2>&1 &
pid=$!
i=0
until "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 300 ] && kill -0 "$pid" 2>/dev/null || { echo "kmctl_kmip.sh: pykmip-server did not start"; tail -5 "$tmp/stdout.log"; exit 1; }
    sleep 0.2
done

export KM_VAULT="$tmp/vault" KM_PASSPHRASE="kmip test passphrase"
printf 'attack at dawn\n' >msg
t 0 "init" - init --kdf-cost 14
t 0 "backend list names kmip" - backend list
check "kmip is built in" grep -qx kmip out
t 1 "backend add kmip without --key" - backend add kmip --server "127.0.0.1:$port" --ca ca.crt --cert client.crt
t 1 "backend add kmip with a missing file" - backend add kmip --server "127.0.0.1:$port" --ca ca.crt --cert client.crt --key nosuch.key
t 1 "backend add kmip --protocol 1.2" - backend add kmip --server "127.0.0.1:$port" --ca ca.crt --cert client.crt --key client.key --protocol 1.2
chmod 644 client.key
t 0 "backend add kmip (key readable by others: a warning)" - backend add kmip --server "127.0.0.1:$port" --ca ca.crt --cert client.crt --key client.key
check "the warning names the key file" grep -q "readable by group or others" err
chmod 600 client.key
t 0 "backend add kmip" - backend add kmip --server "127.0.0.1:$port" --ca ca.crt --cert client.crt --key client.key --protocol 1.4 --timeout 5000
t 0 "key create --protection kmip" - key create K --type aes-256-gcm --protection kmip
t 0 "key info shows the protection" - key info K --json
check "protection kmip" grep -q '"protection": *"kmip"' out
t 0 "encrypt through the server" msg encrypt K
cp out K.ct
t 0 "decrypt through the server" K.ct decrypt
check "the KMIP key round-trips" cmp -s out msg
uid=$("$PY" "$KMIPDIR/pykmip_client.py" "$tmp" "$port" client.crt client.key newest -)
state=$("$PY" "$KMIPDIR/pykmip_client.py" "$tmp" "$port" client.crt client.key state "$uid")
check "PyKMIP's client sees the key Active" [ "$state" = ACTIVE ]
state=$("$PY" "$KMIPDIR/pykmip_client.py" "$tmp" "$port" client2.crt client2.key state "$uid")
check "another client certificate does not" [ "$state" = DENIED ]
t 8 "an ec key cannot be held by the server (unsupported)" - key create E --type ec-p256 --protection kmip
# the kmip keyslot: the vault opens with the key server and no passphrase
t 0 "keyslot add kmip" - keyslot add kmip --server "127.0.0.1:$port" --ca ca.crt --cert client.crt --key client.key
cfg="server=127.0.0.1:$port;ca=$tmp/ca.crt;cert=$tmp/client.crt;key=$tmp/client.key"
cfg2="server=127.0.0.1:$port;ca=$tmp/ca.crt;cert=$tmp/client2.crt;key=$tmp/client2.key"
(unset KM_PASSPHRASE; KM_KMIP_CONFIG="$cfg" "$KMCTL" decrypt <K.ct >out 2>err)
check "opened by the key server, it decrypts" cmp -s out msg
(unset KM_PASSPHRASE; KM_KMIP_CONFIG="$cfg2" "$KMCTL" key list >out 2>err)
check "another client certificate does not open it (exit 5)" [ $? -eq 5 ]
t 0 "audit records the keyslot" - audit show
check "the keyslot entry" grep -q '"op":"keyslot.add","result":"OK","detail":"kmip"' out
# the server stopped: a backend error (exit 7) within seconds, no hang
kill "$pid"
wait "$pid" 2>/dev/null
check "pykmip-server stopped" sh -c "! kill -0 $pid 2>/dev/null"
pid=
start=$(date +%s)
t 7 "decrypt with the server down" K.ct decrypt
check "failed within seconds" [ $(($(date +%s) - start)) -lt 10 ]

echo "kmctl_kmip.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
