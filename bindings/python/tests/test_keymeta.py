"""A key's names and metadata after creation (issue 22): rename, aliases
(moved between keys), description, tags, the filtered sorted listing."""

import pytest

import km
from conftest import COST, openv


def test_rename(vault):
    k = vault.create_key("orders", "aes-256-gcm")
    ct = k.encrypt(b"data")
    k.rename("orders-2026")
    assert k.name == "orders-2026"
    with pytest.raises(km.NotFound):
        vault.key("orders")
    assert vault.key("orders-2026").id == k.id
    assert vault.decrypt(ct) == b"data"
    other = vault.create_key("other", "aes-256-gcm")
    with pytest.raises(km.AlreadyExists):
        other.rename("orders-2026")
    with pytest.raises(km.InvalidArgument):
        other.rename("km:mine")
    with pytest.raises(km.InvalidArgument):
        other.rename("")
    vault.create_key("orders", "aes-256-gcm")  # the old name is free
    audit = list(vault.audit_entries())
    assert any(e["op"] == "key.meta" and "renamed 'orders' to 'orders-2026'" in e["detail"]
               for e in audit)


def test_aliases(vault):
    old = vault.create_key("key-2025", "aes-256-gcm")
    new = vault.create_key("key-2026", "aes-256-gcm")
    old.add_alias("payments")
    assert vault.key("payments").id == old.id
    assert old.info()["aliases"] == ["payments"]
    with pytest.raises(km.AlreadyExists):
        new.add_alias("payments")  # another key's: moves only when asked
    with pytest.raises(km.AlreadyExists):
        new.add_alias("key-2025", move=True)  # a name never moves
    new.add_alias("payments", move=True)
    assert vault.key("payments").id == new.id
    assert old.info()["aliases"] == []
    with pytest.raises(km.InvalidArgument):
        vault.remove_alias("key-2026")
    vault.remove_alias("payments")
    with pytest.raises(km.NotFound):
        vault.remove_alias("payments")
    for i in range(16):
        old.add_alias("a%d" % i)
    with pytest.raises(km.LimitReached):
        old.add_alias("one-more")


def test_description_and_tags(tmp_path):
    path = tmp_path / "v"
    with openv(path) as v:
        k = v.create_key("tagged", "ec-p256")
        info = k.info()
        assert info["description"] is None and info["tags"] == {} and info["aliases"] == []
        k.set_description("build signing key")
        k.set_tag("team", "release")
        k.set_tag("env", "prod")
        k.set_tag("env", "staging")
        with pytest.raises(km.NotFound):
            k.remove_tag("absent")
        with pytest.raises(km.InvalidArgument):
            k.set_tag("has space", "x")
        with pytest.raises(km.InvalidArgument):
            k.set_description("two\nlines")
        k.rotate()  # kept through a rotation
    with openv(path, create=False) as v:
        info = v.key("tagged").info()
        assert info["description"] == "build signing key"
        assert info["tags"] == {"env": "staging", "team": "release"}
        assert list(info["tags"]) == ["env", "team"]
        k = v.key("tagged")
        k.remove_tag("env")
        k.set_description(None)
        info = k.info()
        assert info["description"] is None and info["tags"] == {"team": "release"}


def test_list_keys(vault):
    vault.create_key("zeta", "aes-256-gcm").set_tag("env", "prod")
    vault.create_key("alpha", "ec-p256").set_tag("env", "dev")
    mid = vault.create_key("Mid", "aes-256-gcm")
    mid.suspend(1)
    mid.add_alias("aaa")  # aliases are not listed
    names = lambda **f: [n for n, _, _ in vault.list_keys(**f)]  # noqa: E731
    assert names() == ["Mid", "alpha", "zeta"]
    assert names(type="aes-256-gcm") == ["Mid", "zeta"]
    assert names(state="suspended") == ["Mid"]
    assert names(state="active") == ["alpha", "zeta"]
    assert names(tag="env") == ["alpha", "zeta"]
    assert names(tag="env=prod") == ["zeta"]
    assert names(protection="software", type="ec-p256") == ["alpha"]
    assert names(protection="pkcs11") == []
    with pytest.raises(km.InvalidArgument):
        vault.list_keys(state="sleepy")
    assert sorted(vault.list_keys()) == sorted(vault.keys())


def test_metadata_needs_admin(tmp_path):
    path = tmp_path / "v"
    with openv(path) as v:
        v.add_principal("uma", ["user"], b"uma's passphrase", kdf_cost=COST)
        v.create_key("guarded", "aes-256-gcm").grant("uma", list(km.PERMS))
    with km.Vault.open(path, passphrase=b"uma's passphrase", principal="uma") as u:
        k = u.key("guarded")
        with pytest.raises(km.AccessDenied):
            k.rename("mine")
        with pytest.raises(km.AccessDenied):
            k.add_alias("mine")
        with pytest.raises(km.AccessDenied):
            k.set_tag("owner", "uma")
        assert k.name == "guarded"


def test_set(vault):
    k = vault.create_key("settings", "aes-256-gcm", exportable=True)
    assert k.info()["rotate_days"] == 0 and k.info()["policy"] is None
    k.set(rotate_days=30, usage=["decrypt"])
    info = k.info()
    assert info["rotate_days"] == 30 and info["usage"] == ["decrypt"]
    with pytest.raises(km.UsageError):
        k.encrypt(b"x")
    with pytest.raises(km.InvalidArgument):
        k.set(usage=["decrypt", "encrypt"])  # only narrower
    with pytest.raises(km.PolicyError):
        k.set(rotate_days=800)  # the vault policy's rotation.max_days
    k.set(exportable=False)
    assert "exportable" not in k.info()["flags"]
    with pytest.raises(km.PolicyError):
        k.set(exportable=True)  # never back
    k.set(policy={"version": 1, "rotation": {"max_days": 60}})
    assert k.info()["policy"]["rotation"]["max_days"] == 60
    with pytest.raises(km.PolicyError):
        k.set(policy={"version": 1, "rotation": {"max_days": 365}})  # looser
    with pytest.raises(km.PolicyError):
        k.set(policy={"version": 1, "rotation": {"max_days": 20}})  # the 30-day rotation breaks it
    k.set(deletion_protection=True)
    assert "deletion-protected" in k.info()["flags"]
    k.set(deletion_protection=False)
    with pytest.raises(km.InvalidArgument):
        k.set()


def test_exportable_device_key_refused(vault):
    with pytest.raises(km.Unsupported):
        vault.create_key("dev", "aes-256-gcm", protection="pkcs11", exportable=True)


def test_deletion_protection_under_dual_control(tmp_path):
    path = tmp_path / "v"
    with openv(path) as v:
        v.add_principal("carl", ["custodian"], b"carl's passphrase", kdf_cost=COST)
        k = v.create_key("kept", "aes-256-gcm", activate_at=4000000000)
        k.set(deletion_protection=True)
        with pytest.raises(km.StateError):
            k.schedule_destroy(1, 7)
        v.set_policy({"version": 1, "dual_control": {"policy-change": 1, "principal-change": 1}})
    with openv(path, create=False) as v:
        k = v.key("kept")
        with pytest.raises(km.AccessDenied):
            k.set(deletion_protection=False)
        rid = v.request("policy-change", "kept", b"deletion-protection=off")
        with km.Vault.open(path, passphrase=b"carl's passphrase", principal="carl") as c:
            c.approve(rid)
        k.set(deletion_protection=False)
        k.schedule_destroy(1, 7)


def test_version_window_and_trim(vault):
    k = vault.create_key("win", "aes-256-gcm")
    cts = [k.encrypt(b"v1")]
    k.rotate()
    cts.append(k.encrypt(b"v2"))
    k.rotate()
    k.set(min_decryption_version=2, min_encryption_version=3)
    info = k.info()
    assert (info["min_decryption_version"], info["min_encryption_version"]) == (2, 3)
    with pytest.raises(km.StateError):
        vault.decrypt(cts[0])
    assert vault.decrypt(cts[1]) == b"v2"
    with pytest.raises(km.InvalidArgument):
        k.set(min_decryption_version=9)
    assert k.trim(grace_days=7) == 1
    assert [v["state"] for v in k.info()["versions"]] == ["destroy-pending", "active", "active"]
    assert k.trim() == 0


def test_purge_refused_before_destruction(vault):
    k = vault.create_key("young", "aes-256-gcm")
    with pytest.raises(km.StateError):
        k.purge()
    assert not k.closed
    assert vault.get_policy()["destruction"]["tombstone_days"] == 90


def test_import_further_versions(vault):
    kid = bytes(range(16))
    k = vault.import_key("mig", "aes-256-gcm", b"\x01" * 32, key_id=kid)
    ct1 = k.encrypt(b"one")
    k2 = vault.import_key("mig", "aes-256-gcm", b"\x03" * 32, key_id=kid, version=3)
    assert k2.id == kid
    assert [v["state"] for v in k2.info()["versions"]] == ["active", "destroyed", "active"]
    with pytest.raises(km.AlreadyExists):
        vault.import_key("mig", "aes-256-gcm", b"\x04" * 32, key_id=kid, version=3)
    assert vault.decrypt(ct1) == b"one"


def test_backup_restore(tmp_path):
    with openv(tmp_path / "a") as a, openv(tmp_path / "b") as b, openv(tmp_path / "c") as c:
        k = a.create_key("travel", "aes-256-gcm", exportable=True)
        ct = k.encrypt(b"old")
        k.rotate()
        k.set_tag("owner", "ops")
        blob = k.backup(recipient=b.wrapping_key())
        r = b.restore_key(blob)
        assert r.id == k.id and r.name == "travel"
        assert b.decrypt(ct) == b"old"
        assert r.info()["tags"] == {"owner": "ops"} and len(r.info()["versions"]) == 2
        with pytest.raises(km.AlreadyExists):
            b.restore_key(blob)
        with pytest.raises(km.IntegrityError):
            c.restore_key(blob)  # wrapped to vault b
        bad = bytearray(blob)
        bad[-20] ^= 1
        with pytest.raises(km.IntegrityError):
            b.restore_key(bytes(bad), name="other")
        pw = k.backup(passphrase="backup pass")
        with pytest.raises(km.IntegrityError):
            c.restore_key(pw, passphrase="wrong")
        r2 = c.restore_key(pw, passphrase="backup pass", name="travel-copy")
        assert r2.name == "travel-copy" and c.decrypt(ct) == b"old"
        with pytest.raises(km.PolicyError):
            a.create_key("plain", "aes-256-gcm").backup(passphrase="x")


def test_info_and_grants(tmp_path):
    path = tmp_path / "v"
    with openv(path) as v:
        v.add_principal("uma", ["user"], b"uma's passphrase", kdf_cost=COST)
        k = v.create_key("told", "aes-256-gcm")
        k.encrypt(b"x" * 100)
        k.rotate()
        k.revoke("key-compromise", version=1, compromise_date=1700000000)
        info = k.info()
        assert info["owner"] == "owner"
        v1 = info["versions"][0]
        assert v1["revoke_reason"] == "key-compromise" and v1["compromise_date"] == 1700000000
        assert v1["bytes"] >= 100
        k.grant("uma", ["decrypt"])
        k.grant("role:auditor", ["verify"])
        assert sorted(k.grants()) == [("role:auditor", ["verify"]), ("uma", ["decrypt"])]
    with km.Vault.open(path, passphrase=b"uma's passphrase", principal="uma") as u:
        assert u.key("told").grants() == [("uma", ["decrypt"])]
