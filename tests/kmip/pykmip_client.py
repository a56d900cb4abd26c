#!/usr/bin/python3
"""pykmip_client.py - PyKMIP's own client, for tests/check_kmip.c: asks the
KMIP server about an object as a second, independent client would.

    pykmip_client.py DIR PORT CERT KEY get UID     prints the key bytes as hex
    pykmip_client.py DIR PORT CERT KEY state UID   prints the State (ACTIVE, ...)
    pykmip_client.py DIR PORT CERT KEY sensitive UID
                                                   prints the Sensitive attribute
                                                   (True, False; NONE when unset)
    pykmip_client.py DIR PORT CERT KEY newest -    prints the unique identifier of
                                                   CERT's newest object
Each prints NOTFOUND when the server has no such object (PyKMIP deletes a
destroyed object), DENIED when it belongs to another client (PyKMIP shows an
object only to its owner under its default policy).

DIR holds ca.crt. Exit status 0, or 1 with the error on stderr.
"""
import sys
import warnings

warnings.simplefilter("ignore")

from kmip.core import enums  # noqa: E402
from kmip.pie import client as pie_client  # noqa: E402
from kmip.pie import exceptions as pie_exc  # noqa: E402


def main():
    d, port, cert, key, what, uid = sys.argv[1:7]
    c = pie_client.ProxyKmipClient(
        hostname="127.0.0.1", port=int(port), cert=cert, key=key, ca=d + "/ca.crt",
        ssl_version="PROTOCOL_TLSv1_2", config_file="/dev/null",
        kmip_version=enums.KMIPVersion.KMIP_1_4)
    with c:
        try:
            if what == "get":
                print(c.get(uid).value.hex())
            elif what == "newest":
                uids = c.locate()
                print(max(uids, key=int) if uids else "NOTFOUND")
            elif what == "sensitive":
                attrs = c.get_attributes(uid, ["Sensitive"])
                print(attrs[1][0].attribute_value.value if attrs[1] else "NONE")
            elif what == "state":
                attrs = c.get_attributes(uid, ["State"])
                print(attrs[1][0].attribute_value.value.name)
            else:
                raise SystemExit("unknown request " + what)
        except pie_exc.KmipOperationFailure as e:
            if e.reason == enums.ResultReason.ITEM_NOT_FOUND:
                print("NOTFOUND")
                return 0
            if e.reason == enums.ResultReason.PERMISSION_DENIED:
                print("DENIED")
                return 0
            sys.stderr.write("pykmip_client: %s\n" % e)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
