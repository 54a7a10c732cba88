"""NDMP data-connection throughput on loopback vs a plain socket copy of the same bytes.

NDMP: a Data server (asyncio control, worker-thread producer) streams a butype's chunks over a
DATA_LISTEN data connection to a reader; timed from DATA_START_BACKUP to the reader's EOF.
Baseline: a thread ``sendall``-ing the same chunks over a loopback TCP socket to the same reader.
Target: NDMP >= 0.7x the baseline. Best of a few runs for both, measured in the same process.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time

from reference.ndmp import constants as c
from reference.ndmp import messages as m
from reference.ndmp.auth import Credentials
from reference.ndmp.client import NdmpClient
from reference.ndmp.data import Butype, DataService
from reference.ndmp.runner import ServerThread
from reference.ndmp.server import NdmpServer, ServerConfig

CHUNK = 256 * 1024
TARGET = 0.7


def _drain(sock: socket.socket) -> int:
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    while True:
        n = sock.recv_into(view)
        if n == 0:
            return total
        total += n


def _baseline(block: bytes, count: int) -> float:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def send() -> None:
            with socket.create_connection(("127.0.0.1", port)) as s:
                for _ in range(count):
                    s.sendall(block)

        start = time.perf_counter()
        sender = threading.Thread(target=send)
        sender.start()
        conn, _ = listener.accept()
        with conn:
            got = _drain(conn)
        elapsed = time.perf_counter() - start
        sender.join()
    assert got == len(block) * count
    return got / elapsed


def _ndmp(st: ServerThread, block: bytes, count: int) -> float:
    cl = NdmpClient(*st.address).login("bench", "bench")
    try:
        reply = cl.call(c.Message.DATA_LISTEN, m.DataListenRequest(c.AddrType.TCP))
        a = reply.connect_addr[1][0]
        with socket.create_connection((str(ipaddress.IPv4Address(a.ip_addr)), a.port)) as s:
            start = time.perf_counter()
            cl.call(c.Message.DATA_START_BACKUP, m.DataStartBackupRequest("bench", [m.Pval("COUNT", str(count))]))
            got = _drain(s)
            elapsed = time.perf_counter() - start
        halted = cl.wait_for_post(c.Message.NOTIFY_DATA_HALTED)
        assert halted.body.reason == c.DataHaltReason.SUCCESSFUL
        cl.call(c.Message.DATA_STOP)
    finally:
        cl.close()
    assert got == len(block) * count
    return got / elapsed


def run(quick: bool = False) -> list[dict]:
    block = os.urandom(CHUNK)
    count = 256 if quick else 1024  # 64 MiB or 256 MiB
    rounds = 3

    def produce(job):
        for _ in range(int(job.env["COUNT"])):
            yield block

    def make() -> NdmpServer:
        server = NdmpServer(ServerConfig(credentials=Credentials({"bench": "bench"})))
        server.add_service(DataService([Butype("bench", produce)]))
        return server

    with ServerThread(make) as st:
        _ndmp(st, block, 8)  # warm up: worker thread pool, first connection
        _baseline(block, 8)
        ndmp = base = 0.0
        for _ in range(rounds):  # interleaved, so both see the same machine load
            ndmp = max(ndmp, _ndmp(st, block, count))
            base = max(base, _baseline(block, count))
    ratio = ndmp / base
    return [{
        "name": "ndmp_data_connection_throughput",
        "value": round(ndmp / 1e6, 1),
        "unit": "MB/s",
        "baseline": round(base / 1e6, 1),
        "ratio": round(ratio, 3),
        "target": TARGET,
    }]


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
