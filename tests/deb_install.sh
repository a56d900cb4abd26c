#!/usr/bin/env bash
# tests/deb_install.sh - the Debian packages as a user gets them: installs the
# six .debs that `./quickstart deb` built (build-deb/), runs what each is for,
# then purges them again. As root, on a Debian 12 machine (it changes the
# system's packages while it runs: a maintainer check, not part of make check).
#   ./quickstart deb && tests/deb_install.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
debs=()
for p in libkm0 libkm-dev kmctl python3-km libkm-openssl-provider kmd; do
    f=$(ls "$here"/build-deb/${p}_*.deb 2>/dev/null | head -n 1)
    [ -n "$f" ] || { echo "deb_install: build-deb/${p}_*.deb missing (./quickstart deb)" >&2; exit 1; }
    debs+=("$f")
done
[ "$(id -u)" -eq 0 ] || { echo "deb_install: run as root" >&2; exit 1; }
tmp=$(mktemp -d /tmp/km-deb.XXXXXX)
cleanup() {
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq libkm0 libkm-dev kmctl python3-km \
        libkm-openssl-provider kmd >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${debs[@]}" >"$tmp/apt.log" 2>&1 \
    || { cat "$tmp/apt.log"; exit 1; }
echo "deb_install: installed ${#debs[@]} packages"
cd "$tmp"   # nothing from the source tree on any path
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$tmp" sh -c '
set -e
umask 077
printf "deb install test passphrase" > pass
kmctl --vault "$PWD/vault" --passphrase-file pass init
kmctl --vault "$PWD/vault" --passphrase-file pass key create k --type aes-256-gcm >/dev/null
printf hello | kmctl --vault "$PWD/vault" --passphrase-file pass encrypt k > ct
kmctl --vault "$PWD/vault" --passphrase-file pass decrypt < ct | grep -qx hello
kmctl backend list | tr "\n" " "; echo
/usr/bin/python3 -c "import km; print(\"python3: km\", km.version(), km.__file__, km.backends())"
openssl list -providers -provider km -provider default | tee providers
grep -qi "km" providers
pkg-config --cflags --libs libkm
printf "#include <km.h>\nint main(void){return km_init();}\n" > t.c
cc t.c -o t $(pkg-config --cflags --libs libkm) && ./t
test -f /usr/share/doc/kmd/examples/kmd.conf.example && test -f /usr/lib/sysusers.d/kmd.conf && test -f /usr/lib/tmpfiles.d/kmd.conf
printf "vault = lmdb:%s/vault\nsocket = %s/kmd.sock\npassphrase_file = %s/pass\n" "$PWD" "$PWD" "$PWD" > kmd.conf
/usr/sbin/kmd --config kmd.conf --check-config
/usr/sbin/kmd --config kmd.conf 2> kmd.log & pid=$!
i=0; while [ ! -S kmd.sock ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
test -S kmd.sock || { cat kmd.log; kill $pid; exit 1; }
kill $pid; wait $pid || true
echo "kmd: started on $PWD/kmd.sock and stopped"
'
echo "deb_install: kmctl init/encrypt/decrypt, python3 -c 'import km', openssl list -providers -provider km, a program built with pkg-config, kmd --check-config and a start: passed"
