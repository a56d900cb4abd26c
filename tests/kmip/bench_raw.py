#!/usr/bin/python3
"""bench_raw.py - the raw side of `make bench`'s kmip-encrypt pair: PyKMIP's
own client on one persistent connection, doing what libkm's kmip backend does
per km_encrypt of 64 bytes (an AES-GCM Encrypt with a fresh 12-byte nonce, a
36-byte AAD and a 16-byte tag). PyKMIP's client does not expose AAD and tag, so
the request payload is built here and sent through its KMIPProxy.

    bench_raw.py DIR PORT CERT KEY UID

reads a count N per line on stdin, performs N Encrypts, and answers
"ok CPU_SECONDS" (this process's user + system CPU time for them).
"""
import os
import sys
import time
import warnings

warnings.simplefilter("ignore")

from kmip.core import attributes, enums  # noqa: E402
from kmip.core.messages import contents, messages, payloads  # noqa: E402
from kmip.pie import client as pie_client  # noqa: E402


def main():
    d, port, cert, key, uid = sys.argv[1:6]
    c = pie_client.ProxyKmipClient(
        hostname="127.0.0.1", port=int(port), cert=cert, key=key, ca=d + "/ca.crt",
        ssl_version="PROTOCOL_TLSv1_2", config_file="/dev/null",
        kmip_version=enums.KMIPVersion.KMIP_1_4)
    params = attributes.CryptographicParameters(
        block_cipher_mode=enums.BlockCipherMode.GCM,
        cryptographic_algorithm=enums.CryptographicAlgorithm.AES, tag_length=16)
    data = os.urandom(64)
    aad = os.urandom(36)
    with c:
        proxy = c.proxy
        for line in sys.stdin:
            n = int(line)
            t0 = time.process_time()
            for _ in range(n):
                pl = payloads.EncryptRequestPayload(
                    unique_identifier=uid, cryptographic_parameters=params, data=data,
                    iv_counter_nonce=os.urandom(12), auth_additional_data=aad)
                item = messages.RequestBatchItem(
                    operation=contents.Operation(enums.Operation.ENCRYPT), request_payload=pl)
                resp = proxy._send_and_receive_message(
                    proxy._build_request_message(None, [item]))
                bi = resp.batch_items[0]
                if (bi.result_status.value != enums.ResultStatus.SUCCESS
                        or bi.response_payload.auth_tag is None):
                    sys.stderr.write("bench_raw: encrypt failed\n")
                    return 1
            sys.stdout.write("ok %.9f\n" % (time.process_time() - t0))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
