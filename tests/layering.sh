#!/bin/sh
# The layering check (docs/ARCHITECTURE.md, "The layering check"): every
# #include "..." and every km__ call of the library goes down a layer, never
# up; backends use only the backend interface, the public headers and the
# primitives; OpenSSL only in the primitives, the software backend and the
# provider. The map of files to layers is tests/layers.map, today's known
# violations tests/layers.debt (the check fails on a new one and on a line
# that no longer occurs). The engine is tests/layering.py (standard library).
# make check sets top_srcdir and PYTHON; by hand from the source tree:
#   tests/layering.sh [--verbose]      tests/layering.sh --print-debt
set -eu
: "${top_srcdir:=.}" "${PYTHON:=/usr/bin/python3}"
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
exec "$PYTHON" "$top_srcdir/tests/layering.py" --root "$top_srcdir" "$@"
