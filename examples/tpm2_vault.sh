#!/bin/sh
# Runs examples/tpm2_vault against a temporary swtpm started here (TPM 2.0,
# state in a temporary directory, 127.0.0.1 on a free port pair), stopped by
# its PID at the end. A missing swtpm is a failure, not a skip.
# make check sets top_builddir; by hand from a build directory:
#   top_builddir=. ../examples/tpm2_vault.sh
set -eu
: "${top_builddir:=.}" "${PYTHON:=/usr/bin/python3}"
prog="$top_builddir/examples/tpm2_vault"
[ -x "$prog" ] || { echo "tpm2_vault.sh: $prog is not built"; exit 1; }
for t in swtpm tpm2_dictionarylockout; do
    command -v "$t" >/dev/null 2>&1 || {
        echo "tpm2_vault.sh: $t is not installed (apt-get install swtpm swtpm-tools tpm2-tools)"
        exit 1; }
done

dir=$(mktemp -d /tmp/km-tpm2-example.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
mkdir "$dir/tpm"

# a free pair of ports: the server on P, the control channel on P + 1
port=$("$PYTHON" - <<'EOF'
import random, socket
for _ in range(200):
    p = 20000 + 2 * random.randrange(15000)
    try:
        for q in (p, p + 1):
            s = socket.socket()
            s.bind(("127.0.0.1", q))
            s.close()
    except OSError:
        continue
    print(p)
    break
EOF
)
[ -n "$port" ] || { echo "tpm2_vault.sh: no free port pair"; exit 1; }
swtpm socket --tpm2 --tpmstate dir="$dir/tpm" \
    --server type=tcp,port="$port",bindaddr=127.0.0.1 \
    --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
    --flags not-need-init,startup-clear --pid file="$dir/tpm/pid" --daemon
i=0
while [ ! -s "$dir/tpm/pid" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
pid=$(cat "$dir/tpm/pid")
tcti="swtpm:host=127.0.0.1,port=$port"
# wait until it answers; a test TPM gets no long dictionary-attack lockout
i=0
until TPM2TOOLS_TCTI="$tcti" tpm2_dictionarylockout --setup-parameters --max-tries=1000 \
        --recovery-time=1 --lockout-recovery-time=1 >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "tpm2_vault.sh: swtpm on port $port does not answer"; exit 1; }
    sleep 0.05
done
KM_TPM2_CONFIG="tcti=$tcti"
TSS2_LOG="all+NONE"
export KM_TPM2_CONFIG TSS2_LOG
"$prog" "$dir"
