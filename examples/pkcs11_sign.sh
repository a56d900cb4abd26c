#!/bin/sh
# Runs examples/pkcs11_sign against a temporary SoftHSM2 token made here
# (its own SOFTHSM2_CONF and token directory, removed at the end; tests/lib.sh).
# A missing SoftHSM2 is a failure, not a skip. make check sets top_builddir;
# by hand from a build directory:  top_builddir=. ../examples/pkcs11_sign.sh
set -eu
: "${top_builddir:=.}"
. "$(dirname "$0")/../tests/lib.sh"
lib_init pkcs11_sign
prog="$top_builddir/examples/pkcs11_sign"
[ -x "$prog" ] || lib_die "$prog is not built"
lib_need_softhsm

lib_tmpdir
# an example token and PINs: a real deployment's PIN comes from its operator
lib_softhsm "$tmp" releases 9876 1234
KM_PKCS11_CONFIG="module=$LIB_P11_MODULE;token=pkcs11:token=releases;pin=1234"
export KM_PKCS11_CONFIG
"$prog" "$tmp"
