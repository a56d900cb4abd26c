#!/bin/sh
# etcd_suites.sh - the vault-level suites (check_vault, check_api,
# check_lifecycle) run again with their vaults on a 3-member etcd cluster
# started here on 127.0.0.1 free ports (tests/etcd_cluster, data directories
# in a temporary directory, members stopped by their recorded PIDs):
# KM_TEST_ETCD turns tu_vault_uri into etcd://ENDPOINTS/km-test<dir>/vault.
# A missing etcd is a failure under CI=true, a loud skip (77) otherwise.
set -u
: "${top_builddir:=.}"
. "$(dirname "$0")/lib.sh"
lib_init etcd_suites
B=$top_builddir
case $B in /*) ;; *) B="$PWD/$B" ;; esac
if ! [ -x /usr/bin/etcd ]; then
    [ "${CI:-}" = true ] && lib_die "etcd is not installed (apt-get install etcd-server etcd-client)"
    echo "SKIP - $lib_name: etcd is not installed (apt-get install etcd-server etcd-client)"
    exit 77
fi
lib_tmpdir
# tmpfs when there is one: three members fsync every commit
base=$tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && base=$(mktemp -d /dev/shm/km-etcd.XXXXXX)
lib_on_exit "\"$B/tests/etcd_cluster\" stop \"$base/cluster\"; [ \"$base\" = \"$tmp\" ] || rm -rf \"$base\""
KM_TEST_ETCD=$("$B/tests/etcd_cluster" start "$base/cluster" 3) || lib_die "cannot start etcd"
export KM_TEST_ETCD
for s in check_vault check_api check_lifecycle check_format5; do
    if "$B/tests/$s" >"$tmp/$s.out" 2>&1; then
        ok "$s against etcd ($(tail -1 "$tmp/$s.out"))"
    else
        bad "$s against etcd"
        grep -v '^Running' "$tmp/$s.out" | head -20
    fi
done
lib_summary
