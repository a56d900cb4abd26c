# tests/lib.sh - what the test scripts share (POSIX sh; sourced, never run):
# a temporary directory removed on exit, the pass/fail count, a free port
# pair, a SoftHSM2 token with its own configuration, and swtpm instances
# stopped by their recorded PIDs. A missing SoftHSM2 or swtpm is a failure
# (lib_need_* exit 1), never a skip.
#
#   . "$(dirname "$0")/lib.sh"          (from tests/; adjust the path elsewhere)
#   lib_init NAME                      the script's name, for messages
#   lib_tmpdir                         $tmp: a fresh directory, removed on exit
#                                      (swtpm instances stopped first)
#   lib_on_exit 'COMMAND'              one more thing the exit does (before the above)
#   ok [WHAT] / bad WHAT / lib_summary the count; lib_summary prints it and
#                                      returns 1 when anything failed
#   check WHAT CMD...                  ok when CMD succeeds, else bad WHAT
#   t CODE WHAT INPUT ARGS...          runs "$KMCTL" ARGS with stdin INPUT (- = none),
#                                      stdout to ./out, stderr to ./err; ok when it
#                                      exits with CODE
#   lib_need_tools TOOL...             exit 1 unless every tool is on PATH
#   lib_need_softhsm / lib_need_swtpm  exit 1 unless installed
#   lib_softhsm DIR LABEL SO_PIN PIN   DIR/softhsm2.conf and DIR/tokens, exported
#                                      as SOFTHSM2_CONF, and a token LABEL in it
#   lib_free_port_pair                 prints P, with P and P + 1 free on 127.0.0.1
#   lib_swtpm_start STATEDIR           starts a swtpm there on a free port pair,
#                                      records its PID, waits until it answers,
#                                      short dictionary-attack lockout; sets $tcti
#   lib_swtpm_stop PID                 stops that swtpm (SIGTERM, waits)

LIB_P11_MODULE=/usr/lib/softhsm/libsofthsm2.so
lib_name=${lib_name:-test}
lib_pids=
lib_exit_cmds=
passed=0
failed=0
tmp=

lib_init() {
    lib_name=$1
}

# ok [WHAT]: one check passed (WHAT is printed when given)
ok() {
    passed=$((passed + 1))
    [ $# -eq 0 ] || echo "ok   - $*"
}

# bad WHAT: one check failed; with LIB_SHOW_ERR=1 the first lines of ./err follow
bad() {
    failed=$((failed + 1))
    echo "FAIL - $*"
    if [ "${LIB_SHOW_ERR:-0}" = 1 ] && [ -s err ]; then
        sed 's/^/    stderr: /' err | head -5
    fi
}

check() {
    lib_what=$1
    shift
    if "$@"; then ok; else bad "$lib_what"; fi
}

t() {
    lib_want=$1 lib_what=$2 lib_in=$3
    shift 3
    [ "$lib_in" = - ] && lib_in=/dev/null
    "$KMCTL" "$@" <"$lib_in" >out 2>err
    lib_got=$?
    if [ "$lib_got" -eq "$lib_want" ]; then ok; else bad "$lib_what: exit $lib_got, wanted $lib_want"; fi
    return 0
}

lib_summary() {
    echo "$lib_name: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

lib_die() {
    echo "$lib_name: $*" >&2
    echo "FAIL - $lib_name: $*"
    exit 1
}

lib_need_tools() {
    for lib_t in "$@"; do
        command -v "$lib_t" >/dev/null 2>&1 || lib_die "$lib_t is not installed"
    done
}

lib_need_softhsm() {
    [ -f "$LIB_P11_MODULE" ] && command -v softhsm2-util >/dev/null 2>&1 \
        || lib_die "SoftHSM2 ($LIB_P11_MODULE, softhsm2-util) is not installed (apt-get install softhsm2)"
}

lib_need_swtpm() {
    command -v swtpm >/dev/null 2>&1 && command -v tpm2_dictionarylockout >/dev/null 2>&1 \
        || lib_die "swtpm or tpm2-tools is not installed (apt-get install swtpm swtpm-tools tpm2-tools)"
}

lib_on_exit() {
    lib_exit_cmds="$lib_exit_cmds
$1"
}

lib_cleanup() {
    eval "$lib_exit_cmds"
    for lib_p in $lib_pids; do
        lib_swtpm_stop "$lib_p"
    done
    [ -n "$tmp" ] && rm -rf "$tmp"
    return 0
}

# lib_san_preload: sets SAN_PRELOAD to the sanitizer runtimes an uninstrumented
# program (openssl) needs preloaded to load a module of a sanitizer build (make
# check exports KM_SAN_FLAGS), into that program only (not into grep or mktemp,
# which never free); empty otherwise. POSIX sh (lib.sh is also read by dash).
# Use: env ${SAN_PRELOAD:+"LD_PRELOAD=$SAN_PRELOAD"} PROGRAM ...
lib_san_preload() {
    SAN_PRELOAD=
    case "${KM_SAN_FLAGS:-}" in
    *-fsanitize=address*)
        SAN_PRELOAD="$(${CC:-cc} -print-file-name=libasan.so) $(${CC:-cc} -print-file-name=libubsan.so)"
        ;;
    esac
}

lib_tmpdir() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/km-$lib_name.XXXXXX") || lib_die "mktemp failed"
    trap lib_cleanup EXIT
    trap 'exit 1' INT TERM
}

lib_softhsm() {
    mkdir -p "$1/tokens" || return 1
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$1/tokens" >"$1/softhsm2.conf" || return 1
    SOFTHSM2_CONF="$1/softhsm2.conf"
    export SOFTHSM2_CONF
    softhsm2-util --init-token --free --label "$2" --so-pin "$3" --pin "$4" >/dev/null
}

lib_free_port_pair() {
    "${PYTHON:-python3}" - <<'EOF'
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
}

lib_swtpm_start() {
    mkdir -p "$1" || return 1
    lib_port=$(lib_free_port_pair)
    [ -n "$lib_port" ] || { echo "$lib_name: no free port pair" >&2; return 1; }
    swtpm socket --tpm2 --tpmstate dir="$1" \
        --server type=tcp,port="$lib_port",bindaddr=127.0.0.1 \
        --ctrl type=tcp,port=$((lib_port + 1)),bindaddr=127.0.0.1 \
        --flags not-need-init,startup-clear --pid file="$1/pid" --daemon || return 1
    lib_i=0
    while [ ! -s "$1/pid" ] && [ $lib_i -lt 200 ]; do sleep 0.05; lib_i=$((lib_i + 1)); done
    [ -s "$1/pid" ] || { echo "$lib_name: swtpm wrote no pid file" >&2; return 1; }
    lib_pids="$lib_pids $(cat "$1/pid")"
    tcti="swtpm:host=127.0.0.1,port=$lib_port"
    # wait until it answers; a test TPM gets no long dictionary-attack lockout
    lib_i=0
    until TPM2TOOLS_TCTI="$tcti" tpm2_dictionarylockout --setup-parameters --max-tries=1000 \
            --recovery-time=1 --lockout-recovery-time=1 >/dev/null 2>&1; do
        lib_i=$((lib_i + 1))
        [ $lib_i -lt 100 ] || { echo "$lib_name: swtpm on port $lib_port does not answer" >&2; return 1; }
        sleep 0.05
    done
}

lib_swtpm_stop() {
    # only a swtpm (the PID may have been reused since it stopped)
    grep -qa swtpm "/proc/$1/cmdline" 2>/dev/null || return 0
    kill "$1" 2>/dev/null || return 0
    lib_i=0
    while kill -0 "$1" 2>/dev/null && [ $lib_i -lt 100 ]; do sleep 0.05; lib_i=$((lib_i + 1)); done
    return 0
}
