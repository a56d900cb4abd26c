#!/usr/bin/python3
"""bench_pykmip.py - the kmip-server pair of `make bench-kmd` (tests/bench/bench_kmd.c):
PyKMIP's own client doing AES-GCM Encrypts of 64 bytes (36-byte AAD, 16-byte tag) on one
persistent connection, against kmd (its Unix socket; kmd draws the nonce) and against the
PyKMIP server (TLS 1.2 on 127.0.0.1; the client sends a 12-byte nonce, which that server
needs), same client code otherwise. Starts the PyKMIP server itself in SCRATCH (certificates
and configuration from tests/kmip/pykmip.sh) and stops it by its PID.

    bench_pykmip.py KMD_SOCKET KMD_UID SCRATCH KMIP_TESTDIR SECONDS ROUNDS [KMD_PID]

prints "kmd=<ops/s> pykmip=<ops/s>" (median of ROUNDS interleaved rounds of SECONDS each),
and with KMD_PID " kmd_us=<us> pykmip_us=<us>": each server's own CPU time per request (all
its threads, from /proc/PID/task/*/schedstat, summed over the rounds and divided by the
requests): the server's cost without the client's, which bounds the ops/s of both sides.
"""
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import types
import warnings

warnings.simplefilter("ignore")

from kmip.core import attributes, enums  # noqa: E402
from kmip.core.messages import contents, messages, payloads  # noqa: E402
from kmip.pie import client as pie_client  # noqa: E402
from kmip.services.kmip_protocol import KMIPProtocol  # noqa: E402

PARAMS = attributes.CryptographicParameters(
    block_cipher_mode=enums.BlockCipherMode.GCM,
    cryptographic_algorithm=enums.CryptographicAlgorithm.AES, tag_length=16)
DATA = os.urandom(64)
AAD = os.urandom(36)


def encrypts(proxy, uid, seconds, with_iv):
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        for _ in range(16):
            pl = payloads.EncryptRequestPayload(
                unique_identifier=uid, cryptographic_parameters=PARAMS, data=DATA,
                iv_counter_nonce=os.urandom(12) if with_iv else None, auth_additional_data=AAD)
            item = messages.RequestBatchItem(
                operation=contents.Operation(enums.Operation.ENCRYPT), request_payload=pl)
            resp = proxy._send_and_receive_message(proxy._build_request_message(None, [item]))
            bi = resp.batch_items[0]
            if bi.result_status.value != enums.ResultStatus.SUCCESS:
                raise SystemExit("bench_pykmip: encrypt failed: %s" % bi.result_message)
        n += 16
    return n / (time.monotonic() - t0)


def cpu_ns(pid):
    """CPU time of every thread of process `pid` so far (ns); threads gone are not counted."""
    total = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def timed(proxy, uid, seconds, with_iv, pid, acc):
    """encrypts(), adding the server's CPU ns and the request count to acc when pid is set."""
    c0 = cpu_ns(pid) if pid else 0
    t0 = time.monotonic()
    rate = encrypts(proxy, uid, seconds, with_iv)
    if pid:
        acc[0] += cpu_ns(pid) - c0
        acc[1] += rate * (time.monotonic() - t0)
    return rate


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    sock, kuid, scratch, testdir, seconds, rounds = sys.argv[1:7]
    seconds, rounds = float(seconds), int(rounds)
    kpid = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    pki = os.path.join(scratch, "pykmip")
    os.makedirs(pki, exist_ok=True)
    port = free_port()
    subprocess.run(["sh", testdir + "/pykmip.sh", "certs", pki], check=True)
    subprocess.run(["sh", testdir + "/pykmip.sh", "conf", pki, str(port)], check=True)
    server = subprocess.Popen(["/usr/bin/python3", "/usr/bin/pykmip-server", "-f",
                               pki + "/server.conf", "-l", pki + "/server.log"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        tls = pie_client.ProxyKmipClient(
            hostname="127.0.0.1", port=port, cert=pki + "/client.crt", key=pki + "/client.key",
            ca=pki + "/ca.crt", ssl_version="PROTOCOL_TLSv1_2", config_file="/dev/null",
            kmip_version=enums.KMIPVersion.KMIP_1_4)

        def unix_open(self):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock)
            self.socket = s
            self.protocol = KMIPProtocol(s)

        with tls:
            puid = tls.create(enums.CryptographicAlgorithm.AES, 256)
            tls.activate(puid)
            local = pie_client.ProxyKmipClient(config_file="/dev/null",
                                               kmip_version=enums.KMIPVersion.KMIP_1_4)
            local.proxy.open = types.MethodType(unix_open, local.proxy)
            with local:
                k, p, kc, pc = [], [], [0, 0.0], [0, 0.0]
                encrypts(local.proxy, kuid, 0.1, False)
                encrypts(tls.proxy, puid, 0.1, True)
                for _ in range(rounds):
                    k.append(timed(local.proxy, kuid, seconds, False, kpid, kc))
                    p.append(timed(tls.proxy, puid, seconds, True, kpid and server.pid, pc))
        line = "kmd=%.1f pykmip=%.1f" % (statistics.median(k), statistics.median(p))
        if kpid and kc[1] > 0 and pc[1] > 0:
            line += " kmd_us=%.2f pykmip_us=%.2f" % (kc[0] / kc[1] / 1e3, pc[0] / pc[1] / 1e3)
        print(line)
    finally:
        os.kill(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
