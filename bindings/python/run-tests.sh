#!/bin/sh
# Runs the Python bindings' pytest suite (bindings/python/tests, which also runs
# examples/python_example.py) against the libkm of this build tree.
# make check sets top_srcdir, top_builddir and PYTHON (see bindings/python/python.mk);
# by hand from a build directory:  top_srcdir=.. top_builddir=. ../bindings/python/run-tests.sh
set -eu
: "${top_srcdir:=.}" "${top_builddir:=.}" "${PYTHON:=/usr/bin/python3}"
lib="$top_builddir/.libs/libkm.so.0"
[ -f "$lib" ] || { echo "run-tests: $lib is not built"; exit 1; }
if ! "$PYTHON" -c 'import pytest' 2>/dev/null; then
    echo "run-tests: $PYTHON has no pytest (apt-get install python3-pytest, or configure PYTHON=/usr/bin/python3)"
    exit 1
fi
KM_LIBRARY=$(cd "$(dirname "$lib")" && pwd)/libkm.so.0
top_srcdir=$(cd "$top_srcdir" && pwd)
# nothing is written into the source tree (read-only under make distcheck)
PYTHONDONTWRITEBYTECODE=1
export KM_LIBRARY top_srcdir PYTHONDONTWRITEBYTECODE
# A sanitizer build of libkm (make check in build-asan/): the interpreter is
# not instrumented, so the sanitizer runtime is preloaded; leak detection is
# off because the interpreter itself keeps memory until exit.
case "${KM_SAN_FLAGS:-}" in
*-fsanitize=address*)
    cc=${CC:-cc}
    LD_PRELOAD="$($cc -print-file-name=libasan.so) $($cc -print-file-name=libubsan.so)"
    ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
    export LD_PRELOAD ASAN_OPTIONS
    ;;
esac
exec "$PYTHON" -m pytest -q -p no:cacheprovider "$top_srcdir/bindings/python/tests"
