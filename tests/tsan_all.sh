#!/bin/sh
# tests/tsan_all.sh - every C suite under ThreadSanitizer (issue 10, docs/RELIABILITY.md D).
# Run from a build directory configured with --enable-tsan (and the backends):
#   mkdir build-tsan && cd build-tsan && ../configure --enable-tsan --enable-pkcs11 --enable-tpm2
#   make && sh ../tests/tsan_all.sh
# Builds every tests/check_* program, runs each in one process (CK_FORK=no, so that TSan
# sees the library's threads and locks across tests) and prints one line per suite:
#   tsan: check_x rc=N reports=N seconds=N checks=...
# Exits 1 when a suite fails or has a report. check_hygiene is left out (a memory scanner,
# no threads: it scans the whole address space, and under TSan each scan reads about 6 GiB
# of shadow mappings, minutes per scan).
# check_p11helper runs with tests/tsan-p11helper.supp and detect_deadlocks=0 (pkcs11-helper
# 1.29 destroys mutexes it still holds; see that file): data races are still reported and
# counted; the line says how many mutex-misuse reports inside pkcs11-helper were suppressed.
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
total=0
clean=0
for p in $progs; do
    total=$((total + 1))
    n=$(basename "$p")
    log="tests/tsan-$n.log"
    opts="halt_on_error=0"
    note=""
    if [ "$n" = check_p11helper ]; then
        opts="$opts detect_deadlocks=0 print_suppressions=1 suppressions=$src/tests/tsan-p11helper.supp"
    fi
    t0=$(date +%s)
    CK_FORK=no TSAN_OPTIONS="$opts ${TSAN_OPTIONS:-}" timeout 900 "./$p" >"$log" 2>&1
    rc=$?
    t1=$(date +%s)
    reports=$(grep -c 'WARNING: ThreadSanitizer' "$log")
    checks=$(grep -E '^[0-9]+%: Checks' "$log" | tail -n 1)
    if [ "$n" = check_p11helper ]; then
        sup=$(sed -n 's/^ThreadSanitizer: Matched \([0-9]*\) suppressions.*/\1/p' "$log" | head -n 1)
        note=" (deadlock detector off; ${sup:-0} pkcs11-helper mutex-misuse reports suppressed)"
    fi
    echo "tsan: $n rc=$rc reports=$reports seconds=$((t1 - t0)) ${checks:-no result line}$note"
    if [ "$rc" -ne 0 ] || [ "$reports" -ne 0 ]; then
        status=1
    else
        clean=$((clean + 1))
    fi
done
echo "tsan: $total suites, $clean passed with no report, $((total - clean)) failed or reported"
exit $status
