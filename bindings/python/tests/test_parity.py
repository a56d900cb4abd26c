"""The operations kmctl gained for parity (issue 22's export forms, issue 23
item 8), through the Python binding: export of a chosen version, derive and
sign_digest with their bad inputs, the audit sinks of a context."""

import hashlib
import hmac
import json
import os

import pytest

import km
from conftest import openv


def test_export_version_moves_each_version(tmp_path):
    """Each version travels on its own (export_wrapped(version=N), then
    import_wrapped(..., key_id=, version=N)): the receiving vault decrypts the
    data of both versions."""
    kek_material = os.urandom(32)
    with openv(tmp_path / "a") as va, openv(tmp_path / "b") as vb:
        kek_a = va.import_key("kek", "aes-256-kwp", kek_material, key_id=b"K" * 16)
        vb.import_key("kek", "aes-256-kwp", kek_material, key_id=b"K" * 16)
        src = va.create_key("data", "aes-256-gcm", exportable=True)
        ct1 = src.encrypt(b"under one")
        src.rotate()
        ct2 = src.encrypt(b"under two")
        b1 = src.export_wrapped(kek=kek_a, version=1)
        b2 = src.export_wrapped(kek=kek_a, version=2)
        assert b1 != b2
        vb.import_wrapped("data", "aes-256-gcm", b1, key_id=src.id, version=1)
        assert vb.decrypt(ct1) == b"under one"
        with pytest.raises(km.NotFound):  # version 2 not moved yet
            vb.decrypt(ct2)
        vb.import_wrapped("data", "aes-256-gcm", b2, key_id=src.id, version=2)
        assert vb.decrypt(ct2) == b"under two"
        with pytest.raises(km.AlreadyExists):  # the same version twice
            vb.import_wrapped("data", "aes-256-gcm", b2, key_id=src.id, version=2)
        with pytest.raises(km.NotFound):
            src.export_wrapped(kek=kek_a, version=3)
        with pytest.raises(km.InvalidArgument):
            src.export_wrapped(kek=kek_a, recipient=vb.wrapping_key(), version=1)


def test_export_version_to_a_wrapping_key(vault, tmp_path):
    """The RSA form takes a version too: version 1 of an HMAC key gives
    version 1's tags in the receiving vault."""
    with openv(tmp_path / "b") as vb:
        src = vault.create_key("h", "hmac-sha256", exportable=True)
        t1 = src.mac(b"m", raw=True)
        src.rotate()
        assert src.mac(b"m", raw=True) != t1
        blob = src.export_wrapped(recipient=vb.wrapping_key(), version=1)
        dst = vb.import_wrapped("h1", "hmac-sha256", blob, format="rsa-oaep-kwp")
        assert dst.mac(b"m", raw=True) == t1


def test_derive_is_hkdf_of_the_key(vault):
    ikm = os.urandom(32)
    k = vault.import_key("d", "hmac-sha256", ikm, usage=["derive"])
    prk = hmac.new(b"pepper", ikm, hashlib.sha256).digest()
    okm = hmac.new(prk, b"tenant" + b"\x01", hashlib.sha256).digest()
    assert bytes(k.derive(32, salt=b"pepper", info=b"tenant")) == okm
    with pytest.raises(km.InvalidArgument):
        k.derive(0)
    with pytest.raises(km.UsageError):
        vault.create_key("m", "hmac-sha256", usage=["mac"]).derive(16)


def test_sign_digest_versions_and_bad_digests(vault):
    k = vault.create_key("ec", "ec-p256")
    d = hashlib.sha256(b"msg").digest()
    assert k.verify(b"msg", k.sign_digest(d, "sha256", version=1), raw=True)
    with pytest.raises(km.InvalidArgument):
        k.sign_digest(d[:31], "sha256")
    with pytest.raises(km.Unsupported):
        k.sign_digest(hashlib.sha1(b"msg").digest(), "sha1")
    k.rotate()
    with pytest.raises(km.StateError):  # version 1 is no longer the primary
        k.sign_digest(d, "sha256", version=1)
    assert k.verify(b"msg", k.sign_digest(d, "sha256", version=2), raw=True)
    with pytest.raises(km.UsageError):
        vault.create_key("ed", "ed25519").sign_digest(d, "sha256")


def test_audit_sink_file_gets_this_contexts_entries(vault, tmp_path):
    path = tmp_path / "audit.jsonl"
    vault.audit_to_file(str(path))
    vault.create_key("sunk", "aes-256-gcm")
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert any(e["op"] == "key.create" and "sunk" in e["detail"] for e in entries)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(km.StorageError):
        vault.audit_to_file(str(tmp_path / "no" / "dir" / "f"))
