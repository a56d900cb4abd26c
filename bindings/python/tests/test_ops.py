"""Issue 23's operations through the Python binding: AES-CMAC keys, random bytes."""

import subprocess

import pytest

import km

RFC4493_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
RFC4493_MSG = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
RFC4493_TAG = bytes.fromhex("070a16b46b4d4144f79bdd9dd04a287c")


@pytest.mark.parametrize("ktype", ["aes-128-cmac", "aes-192-cmac", "aes-256-cmac"])
def test_cmac_generated_key(vault, ktype):
    assert ktype in km.KEY_TYPES
    k = vault.create_key("c", ktype)
    tag = k.mac(b"ledger line 42")
    assert len(tag) == 24 + 16
    assert k.mac_verify(b"ledger line 42", tag)
    assert not k.mac_verify(b"ledger line 43", tag)
    raw = k.mac(b"ledger line 42", raw=True)
    assert raw == tag[24:]
    assert k.mac_verify(b"ledger line 42", raw, raw=True)
    assert not k.mac_verify(b"ledger line 42", raw[:15], raw=True)  # never truncated
    with pytest.raises(km.UsageError):
        k.encrypt(b"x")
    with pytest.raises(km.UsageError):
        k.derive(32)


def test_cmac_rfc4493_known_answer(vault):
    k = vault.import_key("c", "aes-128-cmac", RFC4493_KEY)
    assert k.mac(RFC4493_MSG, raw=True) == RFC4493_TAG
    assert k.mac_verify(RFC4493_MSG, RFC4493_TAG, raw=True)
    with pytest.raises(km.InvalidArgument):
        vault.import_key("c2", "aes-128-cmac", RFC4493_KEY + b"\0")


def test_cmac_agrees_with_openssl(vault, tmp_path):
    key = bytes(range(32))
    k = vault.import_key("c", "aes-256-cmac", key)
    msg = b"x" * 1000
    (tmp_path / "m").write_bytes(msg)
    ref = subprocess.run(["openssl", "mac", "-cipher", "AES-256-CBC", "-macopt",
                          "hexkey:" + key.hex(), "-binary", "-in", str(tmp_path / "m"), "CMAC"],
                         check=True, capture_output=True).stdout
    assert k.mac(msg, raw=True) == ref


def test_random(vault):
    a = vault.random(32)
    b = vault.random(32, protection="software")
    assert isinstance(a, bytes) and len(a) == 32 and a != b
    assert len(vault.random(km.RANDOM_MAX)) == km.RANDOM_MAX
    for bad in (0, -1, km.RANDOM_MAX + 1):
        with pytest.raises(km.InvalidArgument):
            vault.random(bad)
    with pytest.raises(TypeError):
        vault.random("8")
    with pytest.raises(km.Unsupported):
        vault.random(8, protection="no-such-backend")
    with pytest.raises(km.InvalidArgument):
        vault.random(8, protection="a\0b")


def test_rsa_oaep_label_digest_and_empty(vault, tmp_path):
    k = vault.create_key("r", "rsa-2048", rsa_oaep_digest="sha384")
    ct = k.rsa_oaep_encrypt(b"data key", label=b"order 42")
    assert len(ct) == 256
    pt = k.rsa_oaep_decrypt(ct, label=b"order 42")
    assert isinstance(pt, km.Secret) and bytes(pt) == b"data key"
    with pytest.raises(km.IntegrityError):
        k.rsa_oaep_decrypt(ct, label=b"order 43")
    with pytest.raises(km.IntegrityError):
        k.rsa_oaep_decrypt(ct[:-1], label=b"order 42")
    empty = k.rsa_oaep_decrypt(k.rsa_oaep_encrypt(b""))
    assert bytes(empty) == b""
    # SHA-384 is recorded: 256 - 2 * 48 - 2 = 158 bytes fit, 159 do not
    k.rsa_oaep_encrypt(b"x" * 158)
    with pytest.raises(km.InvalidArgument):
        k.rsa_oaep_encrypt(b"x" * 159)
    # openssl encrypts to the public key with the same parameters
    (tmp_path / "pub.pem").write_bytes(k.public_key("der"))
    (tmp_path / "m").write_bytes(b"from openssl")
    subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", str(tmp_path / "pub.pem"),
                    "-in", str(tmp_path / "m"), "-out", str(tmp_path / "c"),
                    "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha384",
                    "-pkeyopt", "rsa_mgf1_md:sha384", "-pkeyopt",
                    "rsa_oaep_label:" + b"L".hex()], check=True, capture_output=True)
    assert bytes(k.rsa_oaep_decrypt((tmp_path / "c").read_bytes(), label=b"L")) == b"from openssl"
    with pytest.raises(km.InvalidArgument):
        vault.create_key("r2", "rsa-2048", rsa_oaep_digest="md5")
    with pytest.raises(km.InvalidArgument):
        vault.create_key("e", "ec-p256", rsa_oaep_digest="sha512")


def test_rsa_pkcs1_signatures(vault):
    k = vault.create_key("r", "rsa-2048")
    sig = k.sign(b"pay bob", pkcs1=True)
    assert k.verify(b"pay bob", sig, pkcs1=True)
    assert not k.verify(b"pay bob", sig)            # not a PSS signature
    assert not k.verify(b"pay eve", sig, pkcs1=True)
    assert k.sign(b"pay bob", pkcs1=True, raw=True) == sig[24:]   # deterministic
    ec = vault.create_key("ec", "ec-p256")
    with pytest.raises(km.InvalidArgument):
        ec.sign(b"m", pkcs1=True)


@pytest.mark.parametrize("ktype", ["aes-128-siv", "aes-192-siv", "aes-256-siv"])
def test_siv_deterministic(vault, ktype):
    k = vault.create_key("d", ktype)
    a = k.encrypt(b"4111 1111 1111 1111", aad=b"cards")
    assert a == k.encrypt(b"4111 1111 1111 1111", aad=b"cards")
    assert a != k.encrypt(b"4111 1111 1111 1111", aad=b"other")
    assert a[3] == km.KEY_TYPES.index(ktype) + 1
    assert vault.decrypt(a, aad=b"cards") == b"4111 1111 1111 1111"
    with pytest.raises(km.IntegrityError):
        vault.decrypt(a, aad=b"other")
    bad = bytearray(a)
    bad[-1] ^= 1
    with pytest.raises(km.IntegrityError):
        vault.decrypt(bytes(bad), aad=b"cards")
    with pytest.raises(km.Unsupported):
        k.encrypt(b"")


def test_data_key_sizes(vault):
    kek = vault.create_key("kek", "aes-256-gcm")
    for t, n in (("aes-128-gcm", 16), ("aes-192-gcm", 24), ("hmac-sha384", 48),
                 ("hmac-sha512", 64)):
        plain, wrapped = kek.generate_data_key(b"a", type=t)
        assert len(plain) == n and len(wrapped) == km.CIPHERTEXT_OVERHEAD + n
        assert vault.decrypt_data_key(wrapped, b"a") == plain
        with pytest.raises(km.IntegrityError):
            vault.decrypt_data_key(wrapped, b"b")
    with pytest.raises(km.InvalidArgument):
        kek.generate_data_key(type="ec-p256")


@pytest.mark.parametrize("ktype", ["ec-p256", "ec-p384", "rsa-2048", "ed25519", "x25519"])
def test_data_key_pair(vault, ktype):
    kek = vault.create_key("kek", "aes-256-gcm")
    priv, wrapped, pub = kek.generate_data_key_pair(ktype, b"ctx")
    assert wrapped[1:2] == b"P"
    assert vault.decrypt_data_key_pair(wrapped, b"ctx") == priv
    with pytest.raises(km.IntegrityError):
        vault.decrypt_data_key_pair(wrapped, b"other")
    with pytest.raises(km.InvalidArgument):
        vault.decrypt_data_key(wrapped, b"ctx")
    imp = vault.import_key("imp", ktype, bytes(priv), format="pkcs8")
    assert imp.public_key(format="der") == pub
    none, wrapped2, pub2 = kek.generate_data_key_pair(ktype, plaintext=False)
    assert none is None and pub2 != pub


def test_rewrap_to_another_key_and_aad(vault):
    a = vault.create_key("a", "aes-256-gcm")
    b = vault.create_key("b", "aes-256-siv")
    ct = a.encrypt(b"payload", aad=b"old")
    ct2 = vault.rewrap(ct, b"old", to=b, new_aad=b"new")
    assert ct2[4:20] == b.id
    assert vault.decrypt(ct2, aad=b"new") == b"payload"
    # deterministic under the SIV key: the same again
    assert vault.rewrap(ct, b"old", to=b, new_aad=b"new") == ct2
    ct3 = vault.rewrap(ct, b"old", new_aad=b"")
    assert vault.decrypt(ct3) == b"payload"
    with pytest.raises(km.IntegrityError):
        vault.rewrap(ct, b"wrong", to=b)
    with pytest.raises(TypeError):
        vault.rewrap(ct, b"old", to="b")


def test_batch_encrypt_decrypt(vault):
    k = vault.create_key("k", "aes-256-gcm")
    pts = [b"row %d" % i for i in range(64)]
    aads = [b"a%d" % i for i in range(64)]
    cts = k.encrypt_batch(pts, aads)
    assert all(isinstance(c, bytes) and len(c) == len(p) + km.CIPHERTEXT_OVERHEAD
               for c, p in zip(cts, pts))
    assert [vault.decrypt(c, aad=a) for c, a in zip(cts, aads)] == pts
    bad = list(cts)
    bad[7] = bad[7][:-1] + bytes([bad[7][-1] ^ 1])
    res = k.decrypt_batch(bad, aads)
    assert isinstance(res[7], km.IntegrityError) and "item 7" in str(res[7])
    assert [r for i, r in enumerate(res) if i != 7] == [p for i, p in enumerate(pts) if i != 7]
    ec = vault.create_key("ec", "ec-p256")
    res = ec.encrypt_batch([b"x", b"y"])
    assert all(isinstance(r, km.UsageError) for r in res)
    assert k.encrypt_batch([]) == []
    with pytest.raises(km.InvalidArgument):
        k.encrypt_batch([b"x"], aads=[b"a", b"b"])


def test_batch_sign_verify_mac(vault):
    ec = vault.create_key("ec", "ed25519")
    msgs = [b"m%d" % i for i in range(8)]
    sigs = ec.sign_batch(msgs)
    assert ec.verify_batch(msgs, sigs) == [True] * 8
    sigs[2] = sigs[3]
    assert ec.verify_batch(msgs, sigs) == [True, True, False, True, True, True, True, True]
    h = vault.create_key("h", "hmac-sha256")
    tags = h.mac_batch(msgs, raw=True)
    assert all(len(t) == 32 for t in tags)
    assert h.mac_verify_batch(msgs, tags, raw=True) == [True] * 8
    res = h.mac_verify_batch(msgs, [b"short"] * 8, raw=True)
    assert res == [False] * 8


@pytest.mark.parametrize("ktype", ["ec-p256", "ec-p521", "rsa-2048", "ed25519"])
def test_jwk_round_trip(vault, ktype):
    import json
    k = vault.create_key("k", ktype)
    jwk = k.public_key(format="jwk")
    d = json.loads(jwk)
    assert d["kty"] in ("EC", "RSA", "OKP") and "d" not in d
    imp = vault.import_key("j", ktype, jwk, format="jwk")
    assert imp.public_key(format="der") == k.public_key(format="der")
    assert imp.verify(b"m", k.sign(b"m", raw=True), raw=True)
    d["d"] = "AQ"
    with pytest.raises(km.InvalidArgument):
        vault.import_key("p", ktype, json.dumps(d), format="jwk")


def test_jwk_x25519_exported(vault):
    import json
    d = json.loads(vault.create_key("x", "x25519").public_key(format="jwk"))
    assert d["kty"] == "OKP" and d["crv"] == "X25519" and len(d["x"]) == 43


# ---------------------------------------------------------------- raw agreement (agree-raw)

def _dhx_spki(public_key):
    """The X9.42 SubjectPublicKeyInfo (OID dhpublicnumber, DomainParameters p, g, q) of a
    pyca/cryptography DH public key: what pyca/cryptography >= 40 writes for FFDHE groups
    (Debian's 38 writes the PKCS#3 form); `g` and `dq` alter the parameters."""
    def der(tag, body):
        n = len(body)
        ln = bytes([n]) if n < 128 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + \
            n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes([tag]) + ln + body

    def integer(v):
        return der(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))

    pn = public_key.public_numbers()
    p, g = pn.parameter_numbers.p, pn.parameter_numbers.g
    alg = der(0x30, der(0x06, bytes.fromhex("2a8648ce3e0201"))
              + der(0x30, integer(p) + integer(g) + integer((p - 1) // 2)))
    return der(0x30, alg + der(0x03, b"\0" + integer(pn.y)))


def _peer(ktype, mine_der):
    """A pyca/cryptography peer for a libkm key: (its SPKI DER, the shared secret it computes)."""
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import dh, ec, x25519
    mine = s.load_der_public_key(mine_der)
    if ktype == "x25519":
        k = x25519.X25519PrivateKey.generate()
        z = k.exchange(mine)
    elif ktype.startswith("ec-"):
        k = ec.generate_private_key({"ec-p256": ec.SECP256R1(), "ec-p384": ec.SECP384R1(),
                                     "ec-p521": ec.SECP521R1()}[ktype])
        z = k.exchange(ec.ECDH(), mine)
    else:
        pn = mine.public_numbers().parameter_numbers
        k = dh.DHParameterNumbers(pn.p, pn.g, (pn.p - 1) // 2).parameters().generate_private_key()
        z = k.exchange(mine)
        z = z.rjust(pn.p.bit_length() // 8, b"\0")  # the prime's length (older pyca strips)
    return k, k.public_key().public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo), z


@pytest.mark.parametrize("ktype", ["ec-p256", "ec-p384", "ec-p521", "x25519", "ffdhe2048",
                                   "ffdhe3072"])
def test_agree_raw_matches_pyca(vault, ktype):
    k = vault.create_key("a", ktype, usage=["agree", "agree-raw"])
    priv, peer, want = _peer(ktype, k.public_key("der"))
    z = k.agree_raw(peer)
    assert bytes(z) == want
    if ktype.startswith("ffdhe"):
        assert bytes(k.agree_raw(_dhx_spki(priv.public_key()))) == want   # the X9.42 form
    entries = [e for e in vault.audit_entries() if e["op"] == "agree.raw"]
    assert len(entries) >= 1 and all(want.hex() not in str(e) for e in entries)


def test_agree_raw_refused(tmp_path):
    from conftest import COST, openv
    path = tmp_path / "v"
    with openv(path) as v:
        plain = v.create_key("plain", "x25519")             # default usage: no agree-raw
        assert "agree-raw" not in plain.info()["usage"]
        _, peer, _ = _peer("x25519", plain.public_key("der"))
        with pytest.raises(km.UsageError):
            plain.agree_raw(peer)
        k = v.create_key("k", "x25519", usage=["agree", "agree-raw"])
        with pytest.raises(km.InvalidArgument):
            k.agree_raw(b"not a key")
        with pytest.raises(km.InvalidArgument):             # another curve
            k.agree_raw(v.create_key("p", "ec-p256").public_key("der"))
        with pytest.raises(km.InvalidArgument):
            v.create_key("aes", "aes-256-gcm", usage=["encrypt", "agree-raw"])
        v.add_principal("uma", ["user"], b"uma's passphrase", kdf_cost=COST)
        k.grant("uma", ["derive", "encrypt", "decrypt", "sign", "verify", "mac", "export"])
    with km.Vault.open(path, passphrase=b"uma's passphrase", principal="uma") as u:
        with pytest.raises(km.AccessDenied):
            u.key("k").agree_raw(peer)
        assert len(u.key("k").agree(peer)) == 32             # the derived form: derive suffices
    with openv(path, create=False) as v:
        v.key("k").grant("uma", ["derive", "agree-raw"])
        v.set_policy('{"version": 1, "operations": {"agree-raw": false}}')
        with pytest.raises(km.PolicyError, match="operations.agree-raw"):
            v.key("k").agree_raw(peer)
        assert '"agree-raw": false' in v.policy_json()
        with pytest.raises(km.PolicyError, match="loosens"):
            v.create_key("loose", "x25519", usage=["agree-raw"],
                         policy='{"version": 1, "operations": {"agree-raw": true}}')
        v.set_policy('{"version": 1}')
    with km.Vault.open(path, passphrase=b"uma's passphrase", principal="uma") as u:
        assert "agree-raw" in u.key("k").perms()
        assert len(u.key("k").agree_raw(peer)) == 32


def test_ffdhe_dhx_with_other_parameters_refused(vault):
    k = vault.create_key("d", "ffdhe2048", usage=["agree-raw"])
    priv, _, _ = _peer("ffdhe2048", k.public_key("der"))
    good = _dhx_spki(priv.public_key())
    i = good.rfind(bytes.fromhex("020102"))                  # g = 2 -> 5
    bad = good[:i + 2] + b"\x05" + good[i + 3:]
    with pytest.raises(km.InvalidArgument, match="generator"):
        k.agree_raw(bad)


def test_policy_forbids_pkcs1_signatures(vault):
    k = vault.create_key("r", "rsa-2048")
    old = k.sign(b"m", pkcs1=True)
    vault.set_policy('{"version": 1, "operations": {"rsa-pkcs1v15-sign": false}}')
    k = vault.key("r")
    with pytest.raises(km.PolicyError, match="operations.rsa-pkcs1v15-sign"):
        k.sign(b"m", pkcs1=True)
    assert k.verify(b"m", k.sign(b"m"))                       # PSS still signs
    assert k.verify(b"m", old, pkcs1=True)                    # old signatures still verify
    vault.set_policy('{"version": 1}')
    own = vault.create_key("own", "rsa-2048",
                           policy='{"version": 1, "operations": {"rsa-pkcs1v15-sign": false}}')
    with pytest.raises(km.PolicyError):
        own.sign(b"m", pkcs1=True)
    assert vault.key("r").verify(b"m", vault.key("r").sign(b"m", pkcs1=True), pkcs1=True)
