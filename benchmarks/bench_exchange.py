"""Exchange emulator: (1) reading a database backup stream with every page verified, against a
plain ``readinto`` of the same file (target: >= 1000 MB/s from page cache); (2) populating a
store with ``bulk_load`` (logged and paged like any put), against writing the same bytes twice
(log + database) with plain file writes (target: <= 30 s per GiB on 2 cores).

For these two rows ``target`` applies to ``value`` (MB/s at least, seconds at most), ``ratio``
is value / baseline. Run directly (``python benchmarks/bench_exchange.py [--quick]``) or via ``run()``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

BUFFER = 1024 * 1024
SG = "First Storage Group"


def _populate(root: str, mib: int):
    from emulators.clock import VirtualClock
    from emulators.exchange import ExchangeServer

    server = ExchangeServer.create(root, clock=VirtualClock())
    db = server.database(SG, server.storage_group(SG).databases[0].name)
    value = os.urandom(64 * 1024)
    n = mib * 1024 * 1024 // len(value)
    start = time.perf_counter()
    db.bulk_load("stream.body", ((b"msg%08d" % i, value) for i in range(n)))
    server.flush()
    elapsed = time.perf_counter() - start
    return server, elapsed, n * len(value)


def _plain_write(path: str, nbytes: int) -> float:
    value = os.urandom(BUFFER)
    start = time.perf_counter()
    for name in ("a", "b"):
        with open(path + name, "wb") as f:
            for _ in range(nbytes // BUFFER):
                f.write(value)
    return time.perf_counter() - start


def _read_stream(server) -> tuple[float, int]:
    api = server.backup_api()
    ctx = api.backup_prepare()
    info = ctx.instances[0]
    ctx.setup(info.instance_id, 1)
    buf = bytearray(BUFFER)
    total = 0
    start = time.perf_counter()
    for stream in info.databases[0].streams:
        h, _size = ctx.open_file(stream)
        while n := ctx.read_file(h, buf):
            total += n
        ctx.close_file(h)
    elapsed = time.perf_counter() - start
    ctx.end()
    return elapsed, total


def _read_plain(paths: list[str]) -> tuple[float, int]:
    buf = bytearray(BUFFER)
    total = 0
    start = time.perf_counter()
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n
    return time.perf_counter() - start, total


def run(quick: bool = False) -> list[dict]:
    mib = 128 if quick else 1024
    reps = 3 if quick else 5
    work = tempfile.mkdtemp(prefix="bench_exchange.")
    try:
        server, load_s, loaded = _populate(os.path.join(work, "srv"), mib)
        plain_s = _plain_write(os.path.join(work, "plain"), loaded)
        os.remove(os.path.join(work, "plaina"))
        os.remove(os.path.join(work, "plainb"))
        paths = [server.abspath(p) for p in server.storage_group(SG).databases[0].files]
        best_stream, best_plain, nbytes = float("inf"), float("inf"), 1
        for _ in range(reps):
            t, nbytes = _read_stream(server)
            best_stream = min(best_stream, t)
            t, _ = _read_plain(paths)
            best_plain = min(best_plain, t)
        server.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gib = loaded / 2**30
    stream_mbs = nbytes / best_stream / 1e6
    plain_mbs = nbytes / best_plain / 1e6
    return [
        {"name": "exchange_backup_stream_verified_read", "value": round(stream_mbs, 1), "unit": "MB/s",
         "baseline": round(plain_mbs, 1), "ratio": round(stream_mbs / plain_mbs, 3), "target": 1000.0},
        {"name": "exchange_bulk_load_per_gib", "value": round(load_s / gib, 2), "unit": "s/GiB",
         "baseline": round(plain_s / gib, 2), "ratio": round(load_s / max(plain_s, 1e-9), 3), "target": 30.0},
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['name']}: {row['value']} {row['unit']} (baseline {row['baseline']}, ratio {row['ratio']}, "
              f"target {row['target']})")
