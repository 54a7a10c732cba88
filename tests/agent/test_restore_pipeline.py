"""The restore data path (reference/jobs.py ``_ReadBack``/``ReadPipeline``, reference/server/readback.py
``ObjectStream``): tape reads, the check's hash and file writes pipelined on the real clock, inline in
simulation; a spanned set restored with each cartridge loaded once (issue 6); a corrupted byte
fails the restore before recovery or mount touches the data (issue 10 item 3 keeps verification).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from emulators.clock import RealClock, VirtualClock
from emulators.exchange import ExchangeServer
from emulators.exchange.api.restore import RestoreContext
from emulators.exchange.mailbox_store import ServerMailboxStore, snapshot
from emulators.exchange.workload import populate
from reference.errors import CorruptDataError
from reference.jobs import backup_storage_groups, restore_storage_group
from reference.restore_feed import ReadPipeline
from reference.runtime import Runtime
from reference.server.catalog import Catalog
from reference.server.site import create_site, open_site

SG1 = "First Storage Group"


class Site:
    """Exchange with one store in SG1 and mail, a library with small cartridges; the site runs on
    ``clock`` (VirtualClock: simulation, inline; None: the real clock, worker threads)."""

    def __init__(self, root, clock, cartridge_mb: int = 2, mail_mb: float = 3.0):
        exchange_clock = clock or VirtualClock()
        create_site(root, drives=1, slots=6, cartridges=6, capacity_bytes=cartridge_mb << 20, settings={"seed": 5})
        self.exchange = ExchangeServer.create(root / "exchange", clock=exchange_clock, seed=5, log_file_size=64 << 10)
        populate(ServerMailboxStore.for_server(self.exchange), int(mail_mb * (1 << 20)), seed=5, mailboxes=4,
                 clock=exchange_clock)
        self.exchange.flush()
        self.site = open_site(root, clock=clock)
        self.api = self.exchange.backup_api()

    def full(self):
        [result] = self.site.runtime.run(backup_storage_groups(self.site, self.api, [SG1], "full"))
        assert result.status == "ok"
        return result

    def mail(self) -> dict:
        store = ServerMailboxStore.for_server(self.exchange)
        return snapshot(store, [m for m, (sg, _db) in store.directory().items() if sg == SG1])

    def lose_databases(self) -> None:
        for db in self.exchange.storage_group(SG1).databases:
            self.exchange.dismount(SG1, db.name)
            for rel in db.files:
                os.remove(self.exchange.abspath(rel))
            self.exchange.set_allow_restore_overwrite(SG1, db.name, True)

    def restore(self):
        return self.site.runtime.run(restore_storage_group(self.site, self.api, SG1, mode="roll-forward"))

    def close(self):
        self.site.close()
        if self.exchange.running:
            self.exchange.shutdown()


@pytest.fixture(params=["simulation", "real-clock"])
def site(request, tmp_path):
    s = Site(tmp_path / "site", VirtualClock() if request.param == "simulation" else None)
    yield s
    s.close()


def _count_loads(site):
    loads = []
    original = site.site.changer.load

    def counting(slot, drive=0):
        loads.append(site.site.changer.status().slot(slot).barcode)
        return original(slot, drive)

    site.site.changer.load = counting
    return loads


def test_a_set_cataloged_without_xxh3_restores_bit_exact_checking_sha256(site, monkeypatch):
    """Sets cataloged by ``catalog rebuild`` have no XXH3-128: the restore checks SHA-256 (on the
    real clock in the pipeline's separate hasher thread) and gives the mail back just the same."""
    real = Catalog.objects
    monkeypatch.setattr(Catalog, "objects",
                        lambda self, set_id: [dataclasses.replace(o, xxh3="") for o in real(self, set_id)])
    site.full()
    truth = site.mail()
    site.lose_databases()
    restored, _chain = site.restore()
    assert restored.status == "ok" and site.mail() == truth


def test_a_spanned_set_restores_bit_exact_loading_each_cartridge_once(site):
    """Issue 6: the spanned full is read in one pass, cartridge by cartridge (it used to be loaded
    twice: once to walk, once to extract); the mail is back exactly as it was."""
    result = site.full()
    assert len(result.receipt.barcodes) >= 2, "3 MiB of mail on 2 MiB cartridges must span"
    truth = site.mail()
    site.lose_databases()
    site.site.media.unload(0)
    loads = _count_loads(site)
    restored, chain = site.restore()
    assert restored.status == "ok" and len(chain) == 1
    assert loads == list(result.receipt.barcodes)
    assert site.mail() == truth


@pytest.mark.parametrize("cataloged", ["xxh3", "sha256-only"])
def test_a_corrupted_byte_fails_the_restore_before_recovery(site, monkeypatch, cataloged):
    """A byte flipped in a database stream on the cartridge: the object's XXH3-128 differs from the
    catalog, the restore fails with the read-back's error, and Exchange's recovery (``complete``:
    replay, mount) is never called."""
    if cataloged == "sha256-only":  # a set cataloged by ``catalog rebuild``: no XXH3-128, SHA-256 checked
        real = Catalog.objects
        monkeypatch.setattr(Catalog, "objects",
                            lambda self, set_id: [dataclasses.replace(o, xxh3="") for o in real(self, set_id)])
    result = site.full()
    db = site.exchange.storage_group(SG1).databases[0]
    edb = site.exchange.abspath(db.files[0])
    with open(edb, "rb") as f:
        f.seek(os.path.getsize(edb) // 2)
        needle = f.read(64)
    images = [site.site.changer.cartridge_path(b) for b in result.receipt.barcodes]
    for image in images:
        raw = bytearray(image.read_bytes())
        at = raw.find(needle)
        if at > 0:
            raw[at + 7] ^= 0x40
            image.write_bytes(raw)
            break
    else:
        pytest.fail("the database page is not on any cartridge of the set")
    site.lose_databases()
    completed = []
    original = RestoreContext.complete
    monkeypatch.setattr(RestoreContext, "complete",
                        lambda self, *a, **k: completed.append(a) or original(self, *a, **k))
    check = "XXH3-128" if cataloged == "xxh3" else "SHA-256"
    with pytest.raises(CorruptDataError, match=f"{check} of the data read back does not match the catalog"):
        site.restore()
    assert completed == []


class _Stream:
    """An ObjectStream stand-in: ``count`` batches, optionally a read error after ``fail_at``."""

    def __init__(self, count: int, fail_at: int | None = None, size: int = 1 << 16, fast_check: bool = False):
        self.count, self.fail_at, self.size = count, fail_at, size
        self.fast_check = fast_check  # True: the pipeline hashes on its reader thread
        self.given = 0
        self.hashed = 0
        self.finished = False

    def read_raw(self):
        if self.fail_at is not None and self.given == self.fail_at:
            raise CorruptDataError("read error at logical block 9: Input/output error", where="X")
        if self.given == self.count:
            return None
        self.given += 1
        return memoryview(bytes([self.given % 256]) * self.size).toreadonly()

    def hash(self, view):
        self.hashed += 1

    def finish(self):
        self.finished = True


def _run(coro):
    """Run ``coro(executor)`` on the real clock with a pipeline's two threads."""
    runtime = Runtime(RealClock())
    executor = ThreadPoolExecutor(max_workers=2)
    try:
        return runtime, runtime.run(coro(executor))
    finally:
        executor.shutdown(wait=True)
        runtime.close()


@pytest.fixture(params=[False, True], ids=["hasher-thread", "hash-on-reader"])
def fast_check(request) -> bool:
    """Both pipeline shapes: SHA-256 (a hasher thread) and XXH3-128 (hashed by the reader)."""
    return request.param


def test_pipeline_hands_over_every_batch_in_order_then_finishes(fast_check):
    async def consume(executor):
        stream = _Stream(40, fast_check=fast_check)
        got = [bytes(v[:1])[0] async for v in ReadPipeline(executor, stream).batches()]
        return stream, got

    _runtime, (stream, got) = _run(consume)
    assert got == [(i + 1) % 256 for i in range(40)]
    assert stream.hashed == 40 and stream.finished


def test_pipeline_read_error_arrives_after_the_batches_before_it(fast_check):
    async def consume(executor):
        stream = _Stream(40, fail_at=5, fast_check=fast_check)
        got = []
        with pytest.raises(CorruptDataError, match="read error at logical block 9"):
            async for view in ReadPipeline(executor, stream).batches():
                got.append(view)
        return stream, got

    _runtime, (stream, got) = _run(consume)
    assert len(got) == 5 and stream.hashed == 5 and not stream.finished


def test_an_abandoned_pipeline_stops_and_holds_at_most_its_depth(fast_check):
    """The agent stops after one batch (its write failed): ``stop`` ends both threads; meanwhile
    the reader ran ahead by at most the pipeline's bound, not the whole object."""
    async def consume(executor):
        stream = _Stream(1000, fast_check=fast_check)
        pipeline = ReadPipeline(executor, stream)
        batches = pipeline.batches()
        await batches.__anext__()
        await asyncio.sleep(0.2)
        ahead = stream.given
        await pipeline.stop()
        assert pipeline.done()
        return stream, ahead

    _runtime, (stream, ahead) = _run(consume)
    assert ahead <= 1 + ReadPipeline.RAW_DEPTH + ReadPipeline.READY_DEPTH + 2
    assert not stream.finished
