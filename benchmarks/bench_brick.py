"""Brick-level engine on the Exchange emulator's mailbox store: (0) a full pass through the engine
alone (read, SHA-256, single-instance, state; objects dropped) against merely reading every item
(target: ratio >= 0.5); (1) a full brick-level pass
packaged as an MTF data set (hash, single-instance, JSON records, DataSetWriter with SHA-256),
against the baseline of merely reading every item through the same store (target: ratio >= 0.5,
i.e. the engine and packaging at most double the cost of reading); (2) an incremental pass with
nothing changed, against the full pass (target: ratio <= 0.1, value = seconds).

Run directly (``python benchmarks/bench_brick.py [--quick]``) or via ``run()``.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _populate(root: str, items: int, size: int):
    from emulators.clock import VirtualClock
    from emulators.exchange.mailbox_store import ServerMailboxStore
    from emulators.exchange.server import ExchangeServer
    from reference.protocols.mailbox import NewItem

    server = ExchangeServer.create(root, profile="2003", storage_groups=1, databases=1, clock=VirtualClock(),
                                   seed=1, log_file_size=1 << 20)
    store = ServerMailboxStore.for_server(server)
    store.create_mailbox("bench")
    rng = random.Random(7)
    folders = [("Inbox",), ("Inbox", "Projects"), ("Sent Items",), ("Archive", "2004")]
    for folder in folders:
        store.create_folder("bench", folder)
    for n in range(items):
        body = rng.randbytes(size // 2).hex().encode()[:size]
        content = (f"From: a@b\r\nSubject: bench {n}\r\nMessage-ID: <bench-{n}@mailtape>\r\n\r\n").encode() + body
        store.append_item("bench", folders[n % len(folders)], NewItem(content, frozenset({"\\Seen"}), 1.1e9 + n))
    return server, store


def _read_all(store) -> tuple[float, int]:
    start, total = time.perf_counter(), 0
    for info in store.list_folders("bench"):
        for item in store.list_items("bench", info.path):
            total += len(store.read_item("bench", info.path, item.uid))
    return time.perf_counter() - start, total


def _engine_only(store):
    from reference.agent.brick import BrickBackup, Selection
    start = time.perf_counter()
    BrickBackup(store, Selection(mailboxes=("bench",))).run()
    return time.perf_counter() - start


def _brick_pass(store, base=None):
    from reference.agent.brick import BrickBackup, Selection
    from reference.agent.brick.mtf import write_brick_set
    from reference.format import DataSetWriter

    written = [0]

    def sink(chunk) -> None:
        written[0] += len(chunk)
    start = time.perf_counter()
    job = BrickBackup(store, Selection(mailboxes=("bench",)), base)
    writer = DataSetWriter(sink, name="brick bench")
    write_brick_set(job.objects(), writer)
    writer.end()
    return time.perf_counter() - start, job


def run(quick: bool = False) -> list[dict]:
    items, size = (200, 20_000) if quick else (1000, 50_000)
    work = tempfile.mkdtemp(prefix="bench_brick.")
    try:
        server, store = _populate(os.path.join(work, "srv"), items, size)
        best_read = best_full = best_incr = best_engine = float("inf")
        nbytes, state = 1, None
        for _ in range(3):
            t, nbytes = _read_all(store)
            best_read = min(best_read, t)
            t, job = _brick_pass(store)
            best_full, state = min(best_full, t), job.state
            t, _ = _brick_pass(store, state)
            best_incr = min(best_incr, t)
            best_engine = min(best_engine, _engine_only(store))
        server.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    full_mbs, read_mbs = nbytes / best_full / 1e6, nbytes / best_read / 1e6
    engine_mbs = nbytes / best_engine / 1e6
    return [
        {"name": "brick_full_pass_engine_only", "value": round(engine_mbs, 1), "unit": "MB/s",
         "baseline": round(read_mbs, 1), "ratio": round(engine_mbs / read_mbs, 3), "target": 0.5},
        {"name": "brick_full_pass_to_mtf", "value": round(full_mbs, 1), "unit": "MB/s",
         "baseline": round(read_mbs, 1), "ratio": round(full_mbs / read_mbs, 3), "target": 0.5},
        {"name": "brick_incremental_nothing_changed", "value": round(best_incr, 4), "unit": "s",
         "baseline": round(best_full, 4), "ratio": round(best_incr / best_full, 3), "target": 0.1},
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['name']}: {row['value']} {row['unit']} (baseline {row['baseline']}, ratio {row['ratio']}, "
              f"target {row['target']})")
