"""What the binding tests share: km loaded from the source tree (and the build
tree's libkm when KM_LIBRARY is not set), the test passphrase and scrypt cost,
openv() and the per-test `vault` fixture (a fresh vault in tmp_path)."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bindings/python: the package from the source tree
if "KM_LIBRARY" not in os.environ:  # by hand, in a tree built in ./build
    _built = os.path.join(HERE, "..", "..", "..", "build", ".libs", "libkm.so.0")
    if os.path.exists(_built):
        os.environ["KM_LIBRARY"] = os.path.abspath(_built)

import km  # noqa: E402

PASS = b"correct horse battery staple"
COST = 14  # the smallest scrypt cost: keeps the suites fast
INCLUDE = os.path.join(os.environ.get("top_srcdir", os.path.join(HERE, "..", "..", "..")),
                       "include")


def openv(path, passphrase=PASS, create=True, **kw):
    """Opens (by default creating) the vault at `path` with PASS and the cheapest cost."""
    return km.Vault.open(path, passphrase=passphrase, create=create, kdf_cost=COST, **kw)


@pytest.fixture
def vault(tmp_path):
    with openv(tmp_path / "vault") as v:
        yield v
