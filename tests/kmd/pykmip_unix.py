#!/usr/bin/python3
"""pykmip_unix.py - PyKMIP's own client (python3-pykmip) driving kmd over its
Unix socket, for tests/check_kmd.c. PyKMIP's client speaks TLS over TCP only;
the one thing replaced here is its transport: KMIPProxy.open connects an
AF_UNIX socket instead (kmd authenticates the peer by its uid). Every
request and response is PyKMIP's own encoding and decoding.

    pykmip_unix.py SOCKET VERSION SCRIPT...
    pykmip_unix.py tls:PORT:DIR:NAME VERSION SCRIPT...

The second form is PyKMIP's client unchanged, over TLS to kmd's TLS listener on
127.0.0.1:PORT, with DIR/NAME.crt and DIR/NAME.key (NAME "-": no client
certificate) and DIR/ca.crt; a connection that fails prints "open: ERROR ...".

VERSION is 1.4 or 2.0. SCRIPT is a list of steps, each printed on its own
line as "step: result" ("step: FAIL <ResultReason>" for a refused one):
    discover | query | create:NAME:ALG:LEN[:USAGE,USAGE...] (CryptographicUsageMask
    names; PyKMIP's default is ENCRYPT,DECRYPT) | locate:NAME | attrs:NAME
    locatetype:OBJECT_TYPE | locatealg:ALG (counts of the objects Locate finds)
    activate:NAME | revoke:NAME | destroy:NAME | gcm:NAME:TEXT | mac:NAME:TEXT
    sign:NAME:TEXT | pair:NAME:ALG:LEN (CreateKeyPair) | getpub:NAME (Get of the
    pair's public key: its DER length and format) | register:NAME:HEX (an AES key)
    | get:NAME (Get of the key itself) | gcmlocal:NAME:HEX:TEXT (Encrypt through
    kmd, then decrypt here with the key bytes HEX and the `cryptography` package:
    the registered bytes are the key, and the fields are libkm's format v1)
    | rekey:NAME:NEW (ReKey: NEW names the new object) | mask:NAME (its Cryptographic Usage Mask names) | locateattr:KIND:VALUE
    (count Locate finds by state / length / group) | registerkek:NAME:HEX (an AES-256
    key that only wraps: usage WRAP_KEY,UNWRAP_KEY) | registerexp:NAME:HEX (an exportable
    AES key: ENCRYPT,DECRYPT,EXPORT) | getwrapped:NAME:KEK[:KEKHEX] (Get wrapped with KEK;
    with KEKHEX unwrapped here (RFC 5649) and printed in hex)
NAME is looked up with Locate first (create prints the new identifier).
"""
import socket
import sys
import warnings

warnings.simplefilter("ignore")

from kmip.core import enums  # noqa: E402
from kmip.pie import client as pie_client  # noqa: E402
from kmip.pie import exceptions as pie_exc  # noqa: E402
from kmip.pie import objects  # noqa: E402
from kmip.services import kmip_client  # noqa: E402
from kmip.services.kmip_protocol import KMIPProtocol  # noqa: E402


def unix_open(path):
    def open_(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(path)
        self.socket = s
        self.protocol = KMIPProtocol(self.socket)
    return open_


class _Opened:
    """Closes an already opened client at the end."""
    def __init__(self, c):
        self.c = c

    def __enter__(self):
        return self.c

    def __exit__(self, *a):
        try:
            self.c.close()
        except Exception:  # noqa: BLE001 - a refused connection may fail to close cleanly
            pass


def main():
    path, version = sys.argv[1], sys.argv[2]
    v = enums.KMIPVersion.KMIP_2_0 if version == "2.0" else enums.KMIPVersion.KMIP_1_4
    if path.startswith("tls:"):
        _, port, d, name = path.split(":")
        cert = key = None
        if name != "-":
            cert, key = "%s/%s.crt" % (d, name), "%s/%s.key" % (d, name)
        c = pie_client.ProxyKmipClient(
            hostname="127.0.0.1", port=int(port), cert=cert, key=key, ca=d + "/ca.crt",
            ssl_version="PROTOCOL_TLSv1_2", config_file="/dev/null", kmip_version=v)
    else:
        kmip_client.KMIPProxy.open = unix_open(path)
        c = pie_client.ProxyKmipClient(config_file="/dev/null", kmip_version=v)
    uids = {}
    try:
        c.open()
    except Exception as e:  # noqa: BLE001 - the refusal is the result
        print("open: ERROR %s %s" % (type(e).__name__, e), flush=True)
        return 3

    def uid(name):
        if name not in uids:
            found = c.locate(attributes=[c.attribute_factory.create_attribute(
                enums.AttributeType.NAME, name)])
            if not found:
                raise pie_exc.KmipOperationFailure(
                    enums.ResultStatus.OPERATION_FAILED, enums.ResultReason.ITEM_NOT_FOUND,
                    "not located")
            uids[name] = found[0]
        return uids[name]

    with _Opened(c):
        for step in sys.argv[3:]:
            a = step.split(":")
            try:
                if a[0] == "discover":
                    r = c.proxy.discover_versions()
                    out = " ".join("%d.%d" % (p.major, p.minor)
                                   for p in r.protocol_versions)
                elif a[0] == "query":
                    r = c.proxy.query(query_functions=[
                        enums.QueryFunction.QUERY_OPERATIONS])
                    out = str(len(r.operations))
                elif a[0] == "create":
                    alg = getattr(enums.CryptographicAlgorithm, a[2])
                    mask = None
                    if len(a) > 4:
                        mask = [getattr(enums.CryptographicUsageMask, m) for m in a[4].split(",")]
                    uids[a[1]] = c.create(alg, int(a[3]), name=a[1],
                                          cryptographic_usage_mask=mask)
                    out = uids[a[1]]
                elif a[0] == "rekey":
                    uids[a[2]] = c.rekey(uid(a[1]))
                    out = uids[a[2]]
                elif a[0] == "mask":
                    _, attrs = c.get_attributes(uid(a[1]), ["Cryptographic Usage Mask"])
                    m = attrs[0].attribute_value.value
                    out = ",".join(e.name for e in enums.CryptographicUsageMask if m & e.value)
                elif a[0] == "locateattr":
                    f = c.attribute_factory
                    kind = {"state": (enums.AttributeType.STATE,
                                      lambda v: getattr(enums.State, v)),
                            "length": (enums.AttributeType.CRYPTOGRAPHIC_LENGTH, int),
                            "group": (enums.AttributeType.OBJECT_GROUP, str)}[a[1]]
                    out = str(len(c.locate(attributes=[f.create_attribute(kind[0],
                                                                          kind[1](a[2]))])))
                elif a[0] in ("registerkek", "registerexp"):
                    mask = ([enums.CryptographicUsageMask.WRAP_KEY,
                             enums.CryptographicUsageMask.UNWRAP_KEY] if a[0] == "registerkek"
                            else [enums.CryptographicUsageMask.ENCRYPT,
                                  enums.CryptographicUsageMask.DECRYPT,
                                  enums.CryptographicUsageMask.EXPORT])
                    key = objects.SymmetricKey(enums.CryptographicAlgorithm.AES,
                                               len(a[2]) * 4, bytes.fromhex(a[2]), mask,
                                               name=a[1])
                    uids[a[1]] = c.register(key)
                    out = uids[a[1]]
                elif a[0] == "getwrapped":
                    spec = {"wrapping_method": enums.WrappingMethod.ENCRYPT,
                            "encryption_key_information": {
                                "unique_identifier": uid(a[2]),
                                "cryptographic_parameters": {
                                    "block_cipher_mode":
                                        enums.BlockCipherMode.AES_KEY_WRAP_PADDING}},
                            "encoding_option": enums.EncodingOption.NO_ENCODING}
                    k = c.get(uid(a[1]), key_wrapping_specification=spec)
                    out = "%s %d %s" % (type(k).__name__, len(k.value),
                                        k.key_wrapping_data["encryption_key_information"]
                                        ["unique_identifier"] == uid(a[2]))
                    if len(a) > 3:
                        from cryptography.hazmat.primitives.keywrap import \
                            aes_key_unwrap_with_padding
                        out += " " + aes_key_unwrap_with_padding(bytes.fromhex(a[3]),
                                                                 k.value).hex()
                elif a[0] == "locatetype":
                    f = c.attribute_factory
                    out = str(len(c.locate(attributes=[
                        f.create_attribute(enums.AttributeType.OBJECT_TYPE,
                                           getattr(enums.ObjectType, a[1]))])))
                elif a[0] == "locatealg":
                    f = c.attribute_factory
                    out = str(len(c.locate(attributes=[
                        f.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_ALGORITHM,
                                           getattr(enums.CryptographicAlgorithm, a[1]))])))
                elif a[0] == "locate":
                    out = ",".join(c.locate(attributes=[
                        c.attribute_factory.create_attribute(enums.AttributeType.NAME, a[1])]))
                elif a[0] == "attrs":
                    _, attrs = c.get_attributes(uid(a[1]), ["State", "Cryptographic Length"])
                    out = " ".join(str(x.attribute_value.value).replace("State.", "")
                                   for x in attrs)
                elif a[0] == "activate":
                    c.activate(uid(a[1]))
                    out = "ok"
                elif a[0] == "revoke":
                    c.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid(a[1]))
                    out = "ok"
                elif a[0] == "destroy":
                    c.destroy(uid(a[1]))
                    out = "ok"
                elif a[0] == "gcm":
                    params = {"block_cipher_mode": enums.BlockCipherMode.GCM,
                              "cryptographic_algorithm": enums.CryptographicAlgorithm.AES}
                    ct, iv = c.encrypt(a[2].encode(), uid(a[1]), params)
                    pt = c.decrypt(ct, uid(a[1]), params, iv)
                    bad = bytes([ct[0] ^ 1]) + ct[1:]
                    try:
                        c.decrypt(bad, uid(a[1]), params, iv)
                        tampered = "ACCEPTED"
                    except pie_exc.KmipOperationFailure as e:
                        tampered = e.reason.name
                    out = "%s %d %s" % (pt.decode(), len(iv), tampered)
                elif a[0] == "mac":
                    _, m = c.mac(a[2].encode(), uid(a[1]),
                                 enums.CryptographicAlgorithm.HMAC_SHA256)
                    out = "%d" % len(m)
                elif a[0] == "sign":
                    sig = c.sign(a[2].encode(), uid(a[1]))
                    ok = c.signature_verify(a[2].encode(), sig, uid(a[1]))
                    out = "%d %s" % (len(sig), ok.name)
                elif a[0] == "pair":
                    alg = getattr(enums.CryptographicAlgorithm, a[2])
                    pub, priv = c.create_key_pair(alg, int(a[3]), private_name=a[1])
                    uids[a[1]] = priv
                    uids[a[1] + "/pub"] = pub
                    out = "%s %s" % (priv, pub)
                elif a[0] == "getpub":
                    k = c.get(uids[a[1] + "/pub"])
                    out = "%s %s %d" % (type(k).__name__, k.key_format_type.name, len(k.value))
                elif a[0] == "get":
                    k = c.get(uid(a[1]))
                    out = "%s %d" % (type(k).__name__, len(k.value))
                elif a[0] == "register":
                    key = objects.SymmetricKey(enums.CryptographicAlgorithm.AES,
                                               len(a[2]) * 4, bytes.fromhex(a[2]), name=a[1])
                    uids[a[1]] = c.register(key)
                    out = uids[a[1]]
                elif a[0] == "gcmlocal":
                    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
                    params = {"block_cipher_mode": enums.BlockCipherMode.GCM}
                    ct, iv = c.encrypt(a[3].encode(), uid(a[1]), params)
                    alg = {16: 1, 24: 2, 32: 3}[len(a[2]) // 2]
                    header = b"KM\x01" + bytes([alg]) + bytes.fromhex(uid(a[1])) + iv
                    pt = AESGCM(bytes.fromhex(a[2])).decrypt(iv[4:], ct, header)
                    out = pt.decode()
                elif a[0] == "rng":
                    r = c.proxy.send_request_payload(
                        enums.Operation.RNG_RETRIEVE,
                        __import__("kmip.core.messages.payloads", fromlist=["x"])
                        .RNGRetrieveRequestPayload(data_length=int(a[1])))
                    out = str(len(r.data))
                else:
                    raise SystemExit("unknown step " + step)
            except pie_exc.KmipOperationFailure as e:
                out = "FAIL " + e.reason.name
                if "-v" in sys.argv[0:1] or __import__("os").environ.get("KMD_VERBOSE"):
                    out += " (%s)" % e.message
            except Exception as e:  # noqa: BLE001 - the client's own errors, reported
                out = "ERROR %s %s" % (type(e).__name__, e)
            print("%s: %s" % (step, out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
