"""The km package through kmd (libkm's client mode, docs/KMD.md): Vault.open
("kmd:SOCKET") with no passphrase runs every call in kmd as the principal kmd
maps this process's uid to. What the package makes through kmd opens in the
vault itself and the other way round (the same bytes); the vault's own
administration is refused (Unsupported); a removed principal is refused at its
next call. Each test starts its own kmd (temporary directory, socket, stopped
by PID)."""

import os
import signal
import subprocess
import time

import pytest

import km
from conftest import COST, PASS, openv

KMD = os.path.join(os.path.dirname(os.environ.get("KM_LIBRARY", "")), "..", "src", "kmd", "kmd")


@pytest.fixture
def kmd(tmp_path):
    """A vault with principal 'ann' (admin), a kmd serving our uid as ann:
    yields (owner's Vault, the kmd: URI)."""
    if not os.access(KMD, os.X_OK):
        pytest.fail("kmd is not built: %s" % KMD)
    owner = openv(tmp_path / "vault")
    owner.add_principal("ann", ["admin"], b"ann's credential", kdf_cost=COST)
    pw = tmp_path / "pass"
    pw.write_bytes(PASS + b"\n")
    pw.chmod(0o600)
    sock = tmp_path / "kmd.sock"
    conf = tmp_path / "kmd.conf"
    conf.write_text("vault = lmdb:%s\nsocket = %s\npassphrase_file = %s\nrefresh_ms = 10\n"
                    "principal.%d = ann\n" % (tmp_path / "vault", sock, pw, os.getuid()))
    log = open(tmp_path / "kmd.log", "wb")
    p = subprocess.Popen([KMD, "--config", str(conf)], stderr=log)
    try:
        for _ in range(100):
            if sock.exists():
                break
            if p.poll() is not None:
                pytest.fail("kmd exited: %s" % (tmp_path / "kmd.log").read_text())
            time.sleep(0.1)
        yield owner, "kmd:%s" % sock
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()
        owner.close()


def test_same_bytes_both_ways(kmd):
    owner, uri = kmd
    with km.Vault.open(uri) as v:
        assert v.whoami()[0] == "ann"
        k = v.create_key("py", "aes-256-gcm")
        ct = k.encrypt(b"through kmd", aad=b"a")
        assert owner.decrypt(ct, aad=b"a") == b"through kmd"
        ct2 = owner.key("py").encrypt(b"embedded")
        assert v.decrypt(ct2) == b"embedded"
        with pytest.raises(km.IntegrityError):
            v.decrypt(ct, aad=b"b")
        plain, wrapped = k.generate_data_key(aad=b"d")
        assert owner.decrypt_data_key(wrapped, aad=b"d") == plain
        h = v.create_key("pyh", "hmac-sha256")
        assert h.mac(b"m") == owner.key("pyh").mac(b"m")
        s = v.create_key("pys", "ec-p256")
        sig = s.sign(b"msg")
        assert owner.key("pys").verify(b"msg", sig)
        assert "py" in [name for name, *_ in v.keys()]
        assert k.rotate() == 2
        assert v.decrypt(ct, aad=b"a") == b"through kmd"


def test_refusals_and_removed_principal(kmd):
    owner, uri = kmd
    with km.Vault.open(uri) as v:
        with pytest.raises(km.Unsupported) as ei:
            v.rekey(b"new passphrase", kdf_cost=COST)
        assert "kmd's user" in ei.value.message
        with pytest.raises(km.AccessDenied):
            km.Vault.open(uri, principal="root")
        with pytest.raises(km.InvalidArgument):
            km.Vault.open(uri, passphrase=PASS)
        k = v.create_key("r", "aes-256-gcm")
        owner.remove_principal("ann")
        time.sleep(0.05)
        with pytest.raises(km.AccessDenied):
            k.encrypt(b"x")
