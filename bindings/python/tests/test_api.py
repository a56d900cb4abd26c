"""Tests of the rest of the C API through km: open options, secrets, policy, data keys,
rewrap, derivation, agreement, wrapped export/import, lifecycle, vault administration."""

import gc
import hashlib
import json
import os
import subprocess
import time

import pytest

import km
from km import _ffi
from conftest import COST, INCLUDE, PASS, openv  # conftest.py: km from the source tree


def header_define(name):
    for f in os.listdir(os.path.join(INCLUDE, "km")):
        if f.endswith(".h"):
            for line in open(os.path.join(INCLUDE, "km", f)):
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "#define" and parts[1] == name:
                    return int(parts[2].rstrip("u"), 0)
    raise AssertionError("%s is not in include/km" % name)


# ---------------------------------------------------------------- options structs

def test_options_versions_and_constants_match_the_headers():
    for name in ("KM_OPEN_OPTIONS_VERSION", "KM_KEY_OPTIONS_VERSION", "KM_OPEN_CREATE",
                 "KM_OPEN_EXCL", "KM_OPEN_STRICT_REFRESH", "KM_OPEN_FIPS", "KM_SHARES_MAX",
                 "KM_SIG_RAW", "KM_SIG_P1363", "KM_SIG_PKCS1", "KM_DERIVE_MAX",
                 "KM_DATAKEY_LEN", "KM_DATAKEY_WRAPPED_LEN", "KM_KDF_COST_DEFAULT",
                 "KM_KDF_COST_MIN", "KM_KDF_COST_MAX", "KM_DECRYPT_ALLOW_COMPROMISED",
                 "KM_CIPHERTEXT_HEADER", "KM_TAG_HEADER", "KM_AGREE_RAW_MAX"):
        assert getattr(_ffi, name) == header_define(name), name
    assert km.DATAKEY_WRAPPED_LEN == _ffi.KM_DATAKEY_WRAPPED_LEN
    # the ctypes structs end with the newest version's last member
    assert _ffi.km_open_options._fields_[-1][0] == "tls_key"
    assert _ffi.km_key_options._fields_[-1][0] == "rsa_oaep_digest"


def test_open_options_v2_v3_fields(tmp_path):
    with openv(tmp_path / "v", key_cache_max=2, strict_refresh=True, refresh_ms=10) as v:
        for i in range(5):  # more keys than the cache keeps: evicted and reloaded
            v.create_key("k%d" % i, "aes-256-gcm")
        cts = [v.key("k%d" % i).encrypt(b"%d" % i) for i in range(5)]
        assert [v.decrypt(c) for c in cts] == [b"%d" % i for i in range(5)]
    with pytest.raises(TypeError):  # neither a passphrase, nor a slot, nor shares
        km.Vault.open(tmp_path / "v")
    with pytest.raises(km.AuthError):  # no such principal's keyslot
        openv(tmp_path / "v", create=False, principal="nobody")
    with pytest.raises(km.AuthError) as ei:  # the vault has no keyslot of that backend
        km.Vault.open(tmp_path / "v", slot_backend="no-such-backend", slot_config=b"x")
    assert "no-such-backend" in ei.value.message


def test_open_fips_profile(tmp_path):
    with openv(tmp_path / "f", fips=True) as v:
        assert v.get_policy()["profile"] == "fips"
        with pytest.raises(km.PolicyError):
            v.create_key("x", "x25519")  # not FIPS approved
    with openv(tmp_path / "d") as v:
        assert v.get_policy()["profile"] == "default"
        v.create_key("x", "x25519")


# ---------------------------------------------------------------- secrets

def test_secrets_are_bytearrays_wiped_on_close(tmp_path):
    v = openv(tmp_path / "v")
    kek = v.create_key("kek", "aes-256-gcm")
    plain, wrapped = kek.generate_data_key(aad=b"file 1")
    assert isinstance(plain, bytearray) and isinstance(plain, km.Secret)
    assert len(plain) == km.DATAKEY_LEN and any(plain)
    assert "Secret" in repr(plain) and plain.hex() not in repr(plain)  # repr never shows it
    copy = bytes(plain)
    with v.decrypt_data_key(wrapped, aad=b"file 1") as again:
        assert again == copy
    assert again == bytearray(len(copy))  # wiped at the end of the with block
    v.close()
    assert plain == bytearray(km.DATAKEY_LEN)  # wiped when the vault closed
    s = km.Secret(b"abc")
    s.wipe()
    assert s == bytearray(3)


# ---------------------------------------------------------------- policy

def test_policy_get_set_report(vault):
    p = vault.get_policy()
    assert p["version"] == 1
    assert json.loads(vault.policy_json()) == p
    k = vault.create_key("old", "aes-256-gcm")
    vault.set_policy({"version": 1, "algorithms": {"aes-256-gcm": {"allowed": False}}})
    assert vault.get_policy()["algorithms"]["aes-256-gcm"]["allowed"] is False
    with pytest.raises(km.PolicyError) as ei:
        vault.create_key("new", "aes-256-gcm")
    assert "aes-256-gcm" in ei.value.message
    report = vault.policy_report()
    assert [name for name, _ in report] == ["old"] and report[0][1]
    with pytest.raises(km.PolicyError):
        k.encrypt(b"x")  # may no longer protect
    vault.set_policy(json.dumps({"version": 1}))  # str works too
    assert vault.policy_report() == []
    with pytest.raises(km.InvalidArgument):
        vault.set_policy('{"version": 1, "no_such_rule": 1}')
    with pytest.raises(km.Unsupported):
        vault.set_policy(b'{"version": 2}')


def test_key_own_policy_may_only_tighten(vault):
    k = vault.create_key("short", "aes-256-gcm",
                         policy={"version": 1, "rotation": {"required": True, "max_days": 30}})
    assert vault.decrypt(k.encrypt(b"x")) == b"x"
    with pytest.raises(km.InvalidArgument):
        vault.create_key("bad", "aes-256-gcm", policy="{not json")


# ---------------------------------------------------------------- envelope encryption

def test_data_keys(vault):
    kek = vault.create_key("kek", "aes-256-gcm")
    plain, wrapped = kek.generate_data_key(aad=b"ctx")
    assert len(wrapped) == km.DATAKEY_WRAPPED_LEN and isinstance(wrapped, bytes)
    assert vault.decrypt_data_key(wrapped, aad=b"ctx") == plain
    with pytest.raises(km.IntegrityError):
        vault.decrypt_data_key(wrapped, aad=b"other")
    bad = bytearray(wrapped)
    bad[-1] ^= 1
    with pytest.raises(km.IntegrityError):
        vault.decrypt_data_key(bytes(bad), aad=b"ctx")
    none, wrapped2 = kek.generate_data_key(plaintext=False)
    assert none is None and len(vault.decrypt_data_key(wrapped2)) == km.DATAKEY_LEN
    with pytest.raises(km.UsageError):
        vault.create_key("sig", "ed25519").generate_data_key()


def test_rewrap_moves_data_to_the_primary_version(vault):
    k = vault.create_key("k", "aes-256-gcm")
    ct = k.encrypt(b"payload", aad=b"a")
    _, wrapped = k.generate_data_key(aad=b"d")
    plain = vault.decrypt_data_key(wrapped, aad=b"d")
    assert k.rotate() == 2
    new = vault.rewrap(ct, aad=b"a")
    assert len(new) == len(ct) and new != ct
    assert int.from_bytes(new[20:24], "big") == 2  # the header names version 2
    assert vault.decrypt(new, aad=b"a") == b"payload"
    new_w = vault.rewrap(wrapped, aad=b"d")
    assert vault.decrypt_data_key(new_w, aad=b"d") == plain
    k.revoke("superseded", version=1)
    k.schedule_destroy(1, 7)
    with pytest.raises(km.StateError):
        vault.decrypt(ct, aad=b"a")  # version 1 may no longer process
    assert vault.decrypt(new, aad=b"a") == b"payload"
    with pytest.raises(km.IntegrityError):
        vault.rewrap(new, aad=b"wrong")


def test_rewrap_batch_reports_each_item(vault):
    k = vault.create_key("k", "aes-256-gcm")
    cts = [k.encrypt(b"m%d" % i, aad=b"a%d" % i) for i in range(4)]
    k.rotate()
    bad = bytearray(cts[2])
    bad[-1] ^= 1
    items = [cts[0], cts[1], bytes(bad), cts[3]]
    out = vault.rewrap_batch(items, aads=[b"a%d" % i for i in range(4)])
    assert isinstance(out[2], km.IntegrityError)
    for i in (0, 1, 3):
        assert isinstance(out[i], bytes)
        assert vault.decrypt(out[i], aad=b"a%d" % i) == b"m%d" % i
        assert int.from_bytes(out[i][20:24], "big") == 2
    assert vault.rewrap_batch([]) == []
    plain = [k.encrypt(b"x"), k.encrypt(b"y")]
    assert [vault.decrypt(c) for c in vault.rewrap_batch(plain)] == [b"x", b"y"]
    with pytest.raises(km.InvalidArgument):
        vault.rewrap_batch(plain, aads=[b""])


# ---------------------------------------------------------------- derive / agree

def test_derive_is_deterministic_hkdf(vault):
    k = vault.create_key("tenant-root", "hmac-sha256")
    a = k.derive(32, salt=b"s", info=b"tenant 1")
    assert isinstance(a, km.Secret) and len(a) == 32
    assert k.derive(32, salt=b"s", info=b"tenant 1") == a
    assert k.derive(32, salt=b"s", info=b"tenant 2") != a
    assert len(k.derive(km.DERIVE_MAX)) == km.DERIVE_MAX
    with pytest.raises(km.InvalidArgument):
        k.derive(km.DERIVE_MAX + 1)
    with pytest.raises(km.UsageError):
        vault.create_key("aes", "aes-256-gcm").derive(32)


def test_derive_matches_hkdf_of_imported_key(vault):
    ikm = bytes(range(32))
    k = vault.import_key("imp", "hmac-sha256", ikm)
    prk = __import__("hmac").new(b"salt", ikm, hashlib.sha256).digest()
    okm = __import__("hmac").new(prk, b"info" + b"\x01", hashlib.sha256).digest()
    assert bytes(k.derive(32, salt=b"salt", info=b"info")) == okm  # RFC 5869


@pytest.mark.parametrize("ktype", ["x25519", "ec-p256", "ec-p384"])
def test_agree_both_sides_get_the_same_secret(vault, ktype):
    a = vault.create_key("a", ktype)
    b = vault.create_key("b", ktype)
    s1 = a.agree(b.public_key("der"), 32, info=b"session")
    s2 = b.agree(a.public_key("pem"), 32, info=b"session")  # PEM accepted too
    assert s1 == s2 and len(s1) == 32
    assert a.agree(b.public_key("der"), 32, info=b"other") != s1
    other = vault.create_key("c", "ec-p521" if ktype != "ec-p521" else "ec-p256")
    with pytest.raises(km.InvalidArgument):
        a.agree(other.public_key("der"))


# ---------------------------------------------------------------- export / import

def test_export_import_kwp_between_vaults(tmp_path):
    kek_material = os.urandom(32)
    with openv(tmp_path / "a") as va, openv(tmp_path / "b") as vb:
        kek_a = va.import_key("kek", "aes-256-kwp", kek_material, key_id=b"K" * 16)
        vb.import_key("kek", "aes-256-kwp", kek_material, key_id=b"K" * 16)
        src = va.create_key("shared", "aes-256-gcm", exportable=True)
        ct = src.encrypt(b"across vaults")
        blob = src.export_wrapped(kek=kek_a)
        dst = vb.import_wrapped("shared", "aes-256-gcm", blob, format="kwp", key_id=src.id)
        assert dst.id == src.id
        assert vb.decrypt(ct) == b"across vaults"
        bad = bytearray(blob)
        bad[-1] ^= 1
        with pytest.raises(km.IntegrityError):
            vb.import_wrapped("shared2", "aes-256-gcm", bytes(bad))
        with pytest.raises(km.PolicyError):  # not exportable
            va.create_key("stay", "aes-256-gcm").export_wrapped(kek=kek_a)
        with pytest.raises(km.InvalidArgument):
            src.export_wrapped()


def test_export_to_another_vaults_wrapping_key(tmp_path):
    with openv(tmp_path / "a") as va, openv(tmp_path / "b") as vb:
        pem = vb.wrapping_key()
        assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
        der = vb.wrapping_key("der")
        assert der[0] == 0x30 and len(der) > 500  # RSA-4096 SPKI
        src = va.create_key("signer", "ed25519", exportable=True)
        sig = src.sign(b"m", raw=True)
        blob = src.export_wrapped(recipient=pem)
        dst = vb.import_wrapped("signer", "ed25519", blob, format="rsa-oaep-kwp")
        assert dst.verify(b"m", sig, raw=True)
        assert dst.public_key() == src.public_key()
        with pytest.raises(km.InvalidArgument):
            vb.import_wrapped("x", "ed25519", blob, format="nope")


def test_session_key_never_touches_the_vault(vault):
    s = vault.session_key("aes-256-gcm")
    ct = s.encrypt(b"ephemeral")
    assert s.decrypt(ct) == b"ephemeral"
    assert vault.keys() == []


# ---------------------------------------------------------------- signatures

def test_sign_digest_verifies_as_a_message_signature(vault):
    k = vault.create_key("ec", "ec-p256")
    d = hashlib.sha256(b"tls transcript").digest()
    sig = k.sign_digest(d, "sha256")
    assert k.verify(b"tls transcript", sig, raw=True)
    sig = k.sign_digest(d, "SHA256", p1363=True)
    assert len(sig) == 64 and k.verify(b"tls transcript", sig, raw=True, p1363=True)
    with pytest.raises(km.InvalidArgument):
        k.sign_digest(d[:31])
    with pytest.raises(km.Unsupported):
        k.sign_digest(hashlib.sha1(b"x").digest(), "sha1")


def test_rsa_decrypt_of_oaep_from_openssl(vault, tmp_path):
    k = vault.create_key("rsa", "rsa-2048")
    (tmp_path / "pub.pem").write_bytes(k.public_key())
    secret = os.urandom(32)
    (tmp_path / "in").write_bytes(secret)
    subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", str(tmp_path / "pub.pem"),
                    "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                    "-pkeyopt", "rsa_mgf1_md:sha256", "-in", str(tmp_path / "in"),
                    "-out", str(tmp_path / "out")], check=True)
    got = k.rsa_decrypt((tmp_path / "out").read_bytes())
    assert isinstance(got, km.Secret) and bytes(got) == secret
    with pytest.raises(km.IntegrityError):
        k.rsa_decrypt(bytes(256))


# ---------------------------------------------------------------- lifecycle

def test_lifecycle_destroy_and_cancel(vault):
    k = vault.create_key("k", "aes-256-gcm")
    ct = k.encrypt(b"x")
    with pytest.raises(km.StateError):  # an ACTIVE version is never destroyed directly
        k.schedule_destroy(1, 7)
    k.rotate()
    k.revoke("superseded", version=1)
    states = {v["version"]: v["state"] for v in k.versions()}
    assert states == {1: "deactivated", 2: "active"}
    assert vault.decrypt(ct) == b"x"  # a deactivated version still processes
    with pytest.raises(km.PolicyError):  # below the policy's minimum grace (7 days)
        k.schedule_destroy(1, 1)
    k.schedule_destroy(1, 7)
    v1 = k.versions()[0]
    assert v1["state"] == "destroy-pending"
    assert abs(v1["destroy_after"] - (time.time() + 7 * 86400)) < 120
    with pytest.raises(km.StateError):
        vault.decrypt(ct)
    k.cancel_destroy(1)
    assert k.versions()[0]["state"] == "deactivated"
    assert vault.decrypt(ct) == b"x"
    assert set(km.REVOKE_REASONS) >= {"key-compromise", "superseded", "unspecified"}
    with pytest.raises(km.InvalidArgument):
        k.revoke("no-such-reason", version=2)


# ---------------------------------------------------------------- vault administration

def test_rekey_compact_and_passphrases(tmp_path):
    path = tmp_path / "v"
    with openv(path) as v:
        k = v.create_key("k", "aes-256-gcm")
        ct = k.encrypt(b"kept")
        vid = v.id
        v.add_passphrase(b"second", kdf_cost=COST)
        v.rekey(b"new passphrase", kdf_cost=COST)
        assert v.decrypt(ct) == b"kept"
        k.close()
    for old in (PASS, b"second"):  # rekey replaced every keyslot
        with pytest.raises(km.AuthError):
            openv(path, passphrase=old, create=False)
    with openv(path, passphrase=b"new passphrase", create=False) as v:
        assert v.id == vid
        size = os.path.getsize(path / "data.mdb")
        v.compact()
        assert os.path.getsize(path / "data.mdb") <= size
        assert v.decrypt(ct) == b"kept"
        with openv(path, passphrase=b"new passphrase", create=False):
            with pytest.raises(km.Busy):  # another context has it open
                v.compact()


def test_set_backend_validates(vault):
    with pytest.raises(km.InvalidArgument):
        vault.set_backend("software", "x")
    with pytest.raises(km.Unsupported):
        vault.set_backend("no-such-backend", "x")


def test_shamir_shares_open_the_vault(tmp_path):
    if "km_vault_add_shares" not in _ffi._FUNCTIONS:
        pytest.fail("km_vault_add_shares is in vault.h but not declared in _ffi.py")
    path = tmp_path / "v"
    with openv(path) as v:
        ct = v.create_key("k", "aes-256-gcm").encrypt(b"x")
        shares = v.add_shares(2, 3)
        assert len(shares) == 3 and all(isinstance(s, km.Secret) for s in shares)
        assert all(bytes(s).startswith(b"kms1:") for s in shares)
        texts = [bytes(s) for s in shares]
    assert all(not any(s) for s in shares)  # wiped when the vault closed
    with km.Vault.open(path, shares=[texts[0], texts[2]]) as v:
        assert v.decrypt(ct) == b"x"
    with pytest.raises(km.AuthError):
        km.Vault.open(path, shares=[texts[1]])  # fewer than m
    with km.Vault.open(path, shares=texts[1:]) as v:
        v.remove_passphrases()
    with pytest.raises(km.AuthError):
        openv(path, create=False)
    gc.collect()


# ---------------------------------------------------------------- backup / restore

def test_backup_and_restore(tmp_path):
    with openv(tmp_path / "v") as v:
        ct = v.create_key("k", "aes-256-gcm").encrypt(b"saved")
        v.backup(tmp_path / "backup.mdb")
        with pytest.raises(km.AlreadyExists):
            v.backup(tmp_path / "backup.mdb")
        vid = v.id
    km.restore(tmp_path / "backup.mdb", tmp_path / "restored")
    with openv(tmp_path / "restored", create=False) as r:
        assert r.id == vid and r.decrypt(ct) == b"saved"
    with pytest.raises(km.AlreadyExists):
        km.restore(tmp_path / "backup.mdb", tmp_path / "restored")
    (tmp_path / "junk").write_bytes(b"not a vault" * 100)
    with pytest.raises(km.CorruptVault):
        km.restore(tmp_path / "junk", tmp_path / "r2")


def test_tls_options_reach_the_etcd_store(tmp_path):
    # a client certificate without a CA is refused before any connection
    with pytest.raises(km.InvalidArgument) as e:
        km.Vault.open("etcd://127.0.0.1:1/p", passphrase=PASS, tls_cert=tmp_path / "c.pem",
                      tls_key=tmp_path / "k.pem")
    assert "tls_ca" in str(e.value) or "scheme" in str(e.value)
    # with a CA, the member is tried (nobody listens there)
    try:
        km.Vault.open("etcd://127.0.0.1:1/p", passphrase=PASS, tls_ca=tmp_path / "ca.pem")
    except km.InvalidArgument as e:
        assert "scheme" in str(e)   # a libkm built without the etcd store
    except km.StorageError as e:
        assert "no member" in str(e)
    else:
        raise AssertionError("opened a vault where no etcd runs")


def test_copy_to_another_vault(tmp_path):
    with openv(tmp_path / "v") as v:
        ct = v.create_key("k", "aes-256-gcm").encrypt(b"moved")
        v.copy_to("lmdb:%s" % (tmp_path / "copy"))
        with pytest.raises(km.AlreadyExists):
            v.copy_to(tmp_path / "copy")
        vid = v.id
    with openv(tmp_path / "copy", create=False) as c:
        assert c.id == vid and c.decrypt(ct) == b"moved"
        assert c.audit_verify() > 0


# ---------------------------------------------------------------- principals, grants, dual control

def test_principals_and_grants(tmp_path):
    path = tmp_path / "v"
    with openv(path) as v:
        assert v.whoami() == ("owner", ["admin", "custodian", "user", "auditor"])
        v.add_principal("alice", ["user"], b"alice's passphrase", kdf_cost=COST)
        with pytest.raises(km.AlreadyExists):
            v.add_principal("alice", "user", b"x", kdf_cost=COST)
        assert [(n, r) for n, r, _ in v.principals()] == [("alice", ["user"])]
        k = v.create_key("orders", "aes-256-gcm")
        assert k.perms() == list(km.PERMS)
        ct = k.encrypt(b"for alice")
        k.grant("alice", ["decrypt"])
    with km.Vault.open(path, passphrase=b"alice's passphrase", principal="alice") as a:
        assert a.whoami() == ("alice", ["user"])
        ka = a.key("orders")
        assert ka.perms() == ["decrypt"]
        assert a.decrypt(ct) == b"for alice"
        with pytest.raises(km.AccessDenied):
            ka.encrypt(b"not granted")
        with pytest.raises(km.AccessDenied):  # a user may not create keys
            a.create_key("mine", "aes-256-gcm")
    with openv(path, create=False) as v:
        v.remove_principal("alice")
        assert v.principals() == []
    with pytest.raises(km.AuthError):
        km.Vault.open(path, passphrase=b"alice's passphrase", principal="alice")


def test_remove_principal_rotate_master(tmp_path):
    path = tmp_path / "v"
    with openv(path) as v:
        v.add_principal("bob", ["admin"], b"bob's passphrase", kdf_cost=COST)
        v.add_principal("eve", ["user"], b"eve's passphrase", kdf_cost=COST)
        ct = v.create_key("orders", "aes-256-gcm").encrypt(b"before")
        v.remove_principal("eve", rotate_master=True)
        assert [n for n, _, _ in v.principals()] == ["bob"]
        assert v.decrypt(ct) == b"before"
    with km.Vault.open(path, passphrase=b"bob's passphrase", principal="bob") as b:
        assert b.whoami() == ("bob", ["admin"])
    with pytest.raises(km.AuthError):
        km.Vault.open(path, passphrase=b"eve's passphrase", principal="eve")
    with openv(path, create=False) as v:
        assert v.decrypt(ct) == b"before"


def test_dual_control_destroy_needs_an_approval(tmp_path):
    path = tmp_path / "v"
    with openv(path) as v:
        v.add_principal("carol", "custodian", b"carol pass", kdf_cost=COST)
        v.set_policy({"version": 1, "dual_control": {"destroy": 1, "principal-change": 1,
                                                     "policy-change": 1}})
        k = v.create_key("k", "aes-256-gcm")
        k.rotate()
        k.revoke("superseded", version=1)
        with pytest.raises(km.AccessDenied):
            k.schedule_destroy(1, 7)
        params = (1).to_bytes(4, "big") + (7).to_bytes(4, "big")
        rid = v.request("destroy", "k", params)
        assert len(rid) == 16
        info = v.request_info(rid)
        assert info["op"] == "destroy" and info["key_name"] == "k"
        assert info["params"] == "destroy version 1 of key 'k' after 7 day(s) of grace"
        assert (info["approvals"], info["needed"], info["consumed"]) == (0, 1, False)
        with pytest.raises(km.AccessDenied):  # never by its own requester
            v.approve(rid)
        with km.Vault.open(path, passphrase=b"carol pass", principal="carol") as c:
            c.approve(rid)
            with pytest.raises(km.AlreadyExists):
                c.approve(rid)
        k.schedule_destroy(1, 7)
        assert k.versions()[0]["state"] == "destroy-pending"
        assert v.request_info(rid)["consumed"] is True
        with pytest.raises(km.InvalidArgument):
            v.request("no-such-op")


# ---------------------------------------------------------------- audit

def test_audit_log_entries_verify_and_anchor(tmp_path):
    with openv(tmp_path / "v") as v:
        k = v.create_key("k", "aes-256-gcm")
        k.rotate()
        entries = v.audit_entries()
        ops = [e["op"] for e in entries]
        assert "key.create" in ops
        created = entries[ops.index("key.create")]
        assert created["key_id"] == k.id and created["result"] == "KM_OK"
        assert created["principal"] == "owner"
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        js = v.audit_entries(as_json=True)
        assert len(js) == len(entries) and json.loads(js[0])["seq"] == 1
        assert v.audit_verify() == len(entries)
        head = v.audit_head()
        assert head[0] == len(entries) and len(head[1]) == 32
        k.suspend()
        assert v.audit_verify(anchor=head) == len(entries) + 1
        with pytest.raises(km.IntegrityError) as ei:  # an anchor the log does not hold
            v.audit_verify(anchor=(head[0], bytes(32)))
        assert ei.value.bad_seq == head[0]


def test_audit_level_sinks_and_alerts(tmp_path):
    with openv(tmp_path / "v") as v:
        assert v.audit_level == "counters"
        v.audit_level = "every"
        assert v.audit_level == "every"
        k = v.create_key("k", "aes-256-gcm")
        v.audit_to_file(tmp_path / "audit.jsonl")
        ct = k.encrypt(b"TOPSECRET-4711")
        v.audit_flush()
        assert "encrypt" in [e["op"] for e in v.audit_entries()]
        lines = (tmp_path / "audit.jsonl").read_text().splitlines()
        assert lines and all(json.loads(line)["seq"] for line in lines)
        assert b"TOPSECRET-4711" not in (tmp_path / "audit.jsonl").read_bytes()  # no plaintext
        v.audit_to_file(None)
        bad = bytearray(ct)
        bad[-1] ^= 1
        with pytest.raises(km.IntegrityError):
            v.decrypt(bytes(bad))
        v.audit_flush()
        whys = [why for _, why in v.audit_alerts()]
        assert "a ciphertext failed authentication" in whys
        with pytest.raises(km.InvalidArgument):
            v.audit_level = "loud"


def test_backends_lists_what_libkm_has():
    names = km.backends()
    assert names[0] == "software"
    assert len(names) == len(set(names))
    assert all(isinstance(n, str) and n for n in names)
