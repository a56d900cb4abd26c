#!/bin/sh
# Runs examples/pkcs11_sign against a temporary SoftHSM2 token made here
# (its own SOFTHSM2_CONF and token directory, removed at the end).
# A missing SoftHSM2 is a failure, not a skip. make check sets top_builddir;
# by hand from a build directory:  top_builddir=. ../examples/pkcs11_sign.sh
set -eu
: "${top_builddir:=.}"
MODULE=/usr/lib/softhsm/libsofthsm2.so
prog="$top_builddir/examples/pkcs11_sign"
[ -x "$prog" ] || { echo "pkcs11_sign.sh: $prog is not built"; exit 1; }
[ -f "$MODULE" ] && command -v softhsm2-util >/dev/null 2>&1 || {
    echo "pkcs11_sign.sh: SoftHSM2 is not installed (apt-get install softhsm2)"; exit 1; }

dir=$(mktemp -d /tmp/km-pkcs11-example.XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$dir/tokens" > "$dir/softhsm2.conf"
SOFTHSM2_CONF="$dir/softhsm2.conf"
export SOFTHSM2_CONF
# an example token and PINs: a real deployment's PIN comes from its operator
softhsm2-util --init-token --free --label releases --so-pin 9876 --pin 1234 >/dev/null
KM_PKCS11_CONFIG="module=$MODULE;token=pkcs11:token=releases;pin=1234"
export KM_PKCS11_CONFIG
"$prog" "$dir"
