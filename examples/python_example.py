#!/usr/bin/env python3
"""python_example.py - protect records with a libkm vault from Python: encrypt, rotate, data keys, rewrap, sign."""
# Run from a build tree: KM_LIBRARY=build/.libs/libkm.so.0 PYTHONPATH=bindings/python \
#   python3 examples/python_example.py [DIR]
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings",
                                "python"))
import km  # noqa: E402


def main(directory):
    path = os.path.join(directory, "vault")
    # kdf_cost 14 keeps the example quick; production vaults keep the default (17).
    with km.Vault.open(path, passphrase=b"an example passphrase", create=True,
                       kdf_cost=14) as vault:
        key = vault.create_key("records", "aes-256-gcm")
        record = b"patient 4711: penicillin allergy"
        stored = km.encode_text(key.encrypt(record, aad=b"record 4711"))

        key.rotate()  # new data uses version 2; version 1 still decrypts
        try:
            vault.decrypt(km.decode_text(stored), aad=b"record 4712")
            return "a ciphertext opened under the wrong aad"
        except km.IntegrityError:
            pass
        if vault.decrypt(km.decode_text(stored), aad=b"record 4711") != record:
            return "the record did not round-trip"

        # envelope encryption: a data key for local use, stored only wrapped.
        # dek is a km.Secret (a bytearray): wiped at the end of the with block.
        dek, wrapped = key.generate_data_key(aad=b"backup 2026-11")
        with dek:
            if len(dek) != 32:
                return "the data key is not 256 bits"
            with vault.decrypt_data_key(wrapped, aad=b"backup 2026-11") as again:
                if again != dek:
                    return "the data key did not unwrap"
        if any(dek):
            return "the data key was not wiped"
        # after the rotation above, rewrap moves the stored record to version 2
        moved = vault.rewrap(km.decode_text(stored), aad=b"record 4711")
        if vault.decrypt(moved, aad=b"record 4711") != record:
            return "the rewrapped record did not round-trip"

        signer = vault.create_key("releases", "ed25519")
        sig = signer.sign(b"release 1.0")
        if not signer.verify(b"release 1.0", sig) or signer.verify(b"release 1.1", sig):
            return "signature check failed"
        print("keys:", ", ".join("%s (%s)" % (n, t) for n, _, t in vault.keys()))
    print("python_example: all steps passed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(sys.argv[1]))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(tmp))
