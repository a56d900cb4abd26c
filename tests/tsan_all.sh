#!/bin/sh
# tests/tsan_all.sh - every C suite under ThreadSanitizer (issue 10, TESTING.md D).
# Run from a build directory configured with --enable-tsan (and the backends):
#   mkdir build-tsan && cd build-tsan && ../configure --enable-tsan --enable-pkcs11 --enable-tpm2
#   make && sh ../tests/tsan_all.sh
# Builds every tests/check_* program, runs each in one process (CK_FORK=no, so that TSan
# sees the library's threads and locks across tests) and prints one line per suite:
#   tsan: check_x rc=N reports=N checks=...
# Exits 1 when a suite fails or has a report. check_hygiene is left out (a memory scanner,
# no threads: it scans the whole address space, which takes minutes under TSan's shadow).
# check_p11helper is run but not counted (see docs/RELIABILITY.md: pkcs11-helper 1.29
# destroys locked mutexes inside the library and TSan's deadlock detector overflows).
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
progs=""
for f in "$src"/tests/check_*.c; do
    n=$(basename "$f" .c)
    [ "$n" = check_hygiene ] && continue
    progs="$progs tests/$n"
done
${MAKE:-make} -s $progs >/dev/null || { echo "tsan: cannot build the suites"; exit 1; }
status=0
for p in $progs; do
    n=$(basename "$p")
    log="tests/tsan-$n.log"
    CK_FORK=no TSAN_OPTIONS="halt_on_error=0 ${TSAN_OPTIONS:-}" timeout 900 "./$p" >"$log" 2>&1
    rc=$?
    reports=$(grep -c 'WARNING: ThreadSanitizer' "$log")
    checks=$(grep -E '^[0-9]+%: Checks' "$log" | tail -n 1)
    echo "tsan: $n rc=$rc reports=$reports ${checks:-no result line}"
    if [ "$n" = check_p11helper ]; then
        continue
    fi
    if [ "$rc" -ne 0 ] || [ "$reports" -ne 0 ]; then
        status=1
    fi
done
exit $status
