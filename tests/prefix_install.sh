#!/usr/bin/env bash
# tests/prefix_install.sh - libkm installed the way a user of an autotools
# library installs it: `./configure --prefix=P && make install` (out of tree,
# default options), then with no environment set up beyond P's site directory
# on PYTHONPATH:
#  - P/bin/kmctl lists the pkcs11 and tpm2 backends (configure's auto default
#    built them: their -dev packages are installed);
#  - the system python3 imports km and opens a vault through P's libkm;
#  - `python3 -m pip install ./bindings/python` (offline: --no-build-isolation
#    with Debian's setuptools) gives a km package that works with the soname.
# Run by `./quickstart test` after the suites (it builds libkm once more).
#   tests/prefix_install.sh [SRCDIR]
set -euo pipefail
src=$(cd "${1:-$(dirname "$0")/..}" && pwd)
py=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d /tmp/km-prefix.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "prefix_install: FAIL: $*" >&2; exit 1; }
P=$tmp/prefix
mkdir "$tmp/build"
(cd "$tmp/build" && "$src/configure" --quiet --prefix="$P" PYTHON="$py" >/dev/null \
    && make -s -j"$(nproc 2>/dev/null || echo 2)" >/dev/null 2>"$tmp/make.err" \
    && make -s install >/dev/null 2>>"$tmp/make.err") || { tail -n 30 "$tmp/make.err"; fail "configure/make install"; }

env -u LD_LIBRARY_PATH -u KM_LIBRARY "$P/bin/kmctl" backend list > "$tmp/backends" || fail "kmctl backend list"
for b in software pkcs11 tpm2; do
    grep -qx "$b" "$tmp/backends" || fail "P/bin/kmctl does not list '$b': $(tr '\n' ' ' < "$tmp/backends")"
done
echo "prefix_install: P/bin/kmctl lists $(tr '\n' ' ' < "$tmp/backends")"

site=$(dirname "$(dirname "$(find "$P" -path '*/km/__init__.py' | head -n 1)")")
[ -d "$site/km" ] || fail "no km package under $P"
cat > "$tmp/use.py" <<'PY'
import sys, km
want = sys.argv[2]
assert km.__file__.startswith(want), (km.__file__, want)
from km import _ffi
with km.Vault.open(sys.argv[1], passphrase=b"prefix test", create=True) as v:
    k = v.create_key("t", "aes-256-gcm")
    assert v.decrypt(k.encrypt(b"data", aad=b"a"), aad=b"a") == b"data"
print("  km", km.version(), "from", km.__file__, "backends", km.backends())
PY
(cd "$tmp" && env -u LD_LIBRARY_PATH -u KM_LIBRARY PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 \
    "$py" "$tmp/use.py" "$tmp/v1" "$site") || fail "import km with P's site directory on the path"
echo "prefix_install: the system python3 imports km from P's site directory and uses P's libkm"

# pip: the same package from bindings/python (finds libkm through the soname)
cp -r "$src/bindings/python" "$tmp/pysrc"   # pip builds in the source dir: keep the tree clean
"$py" -m pip install -q --no-build-isolation --no-deps --target "$tmp/pip" "$tmp/pysrc" \
    >"$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log"; fail "pip install ./bindings/python"; }
(cd "$tmp" && env -u KM_LIBRARY PYTHONPATH="$tmp/pip" LD_LIBRARY_PATH="$P/lib" PYTHONDONTWRITEBYTECODE=1 \
    "$py" "$tmp/use.py" "$tmp/v2" "$tmp/pip") || fail "import km installed by pip"
echo "prefix_install: python3 -m pip install ./bindings/python works (libkm through the soname)"
