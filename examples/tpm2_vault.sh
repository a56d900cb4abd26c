#!/bin/sh
# Runs examples/tpm2_vault against a temporary swtpm started here (TPM 2.0,
# state in a temporary directory, 127.0.0.1 on a free port pair), stopped by
# its PID at the end (tests/lib.sh). A missing swtpm is a failure, not a skip.
# make check sets top_builddir; by hand from a build directory:
#   top_builddir=. ../examples/tpm2_vault.sh
set -eu
: "${top_builddir:=.}" "${PYTHON:=/usr/bin/python3}"
. "$(dirname "$0")/../tests/lib.sh"
lib_init tpm2_vault
prog="$top_builddir/examples/tpm2_vault"
[ -x "$prog" ] || lib_die "$prog is not built"
lib_need_swtpm

lib_tmpdir
lib_swtpm_start "$tmp/tpm" || lib_die "cannot start swtpm"
KM_TPM2_CONFIG="tcti=$tcti"
TSS2_LOG="all+NONE"
export KM_TPM2_CONFIG TSS2_LOG
"$prog" "$tmp"
