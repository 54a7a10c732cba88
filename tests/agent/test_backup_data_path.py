"""The backup data path on the real clock (issue 10 items 1, 2, 4): Exchange reads straight into
the session's transfer buffers, SHA-256 (and, on a third thread, CSUM + XXH3-128) of each piece
while the next is read, buffers lent to the server without a copy and recycled. Whatever the
timing, every byte that was hashed is the byte that went to tape: a restore (which checks the
XXH3-128) gives the mail back and ``verify`` (SHA-256, CSUM) finds the media right.
"""

from __future__ import annotations

import os
import time

import pytest

from emulators.clock import VirtualClock
from emulators.exchange import ExchangeServer
from emulators.exchange.mailbox_store import ServerMailboxStore, snapshot
from emulators.exchange.workload import populate
from reference.agent.database_backup import StorageGroupBackup
from reference.format.writer import FileStream
from reference.jobs import backup_storage_groups, restore_storage_group
from reference.server.readback import MediaReader
from reference.server.site import create_site, open_site
from reference.transfer import LocalSession

SG1 = "First Storage Group"


def _site(root, max_buffered: int, clock=None):
    create_site(root, drives=1, slots=6, cartridges=6, capacity_bytes=2 << 20,
                settings={"seed": 9, "max_buffered": max_buffered})
    exchange = ExchangeServer.create(root / "exchange", clock=VirtualClock(), seed=9, log_file_size=64 << 10)
    populate(ServerMailboxStore.for_server(exchange), 2 << 20, seed=9, mailboxes=3, clock=exchange.clock)
    exchange.flush()
    return exchange, open_site(root, clock=clock)


def _mail(exchange) -> dict:
    store = ServerMailboxStore.for_server(exchange)
    return snapshot(store, [m for m, (sg, _db) in store.directory().items() if sg == SG1])


class CopyingSession:
    """A session that lends no buffers (like the NDMP data connection): ``send`` copies, so the
    agent reuses its own buffer as soon as ``send`` returns."""

    def __init__(self, inner):
        self._inner = inner
        self.set_number = inner.set_number

    async def send(self, chunk):
        await self._inner.send(bytes(chunk))

    async def finish(self, trailer):
        return await self._inner.finish(trailer)

    async def abort(self, reason):
        await self._inner.abort(reason)


@pytest.mark.parametrize("lend", [True, False], ids=["lent-buffers", "copying-session"])
@pytest.mark.parametrize("max_buffered", [64 << 10, 256 << 10])
def test_slow_hashing_and_recycled_buffers_still_put_the_hashed_bytes_on_tape(tmp_path, monkeypatch, max_buffered,
                                                                             lend):
    """A tiny pool (buffers come round again within a file), or one reused buffer, and a hash
    that lags behind the reads: the agent must finish a piece's hash before its memory is read
    into again. A set that spans cartridges restores bit-exact (XXH3-128 checked) and verifies
    (SHA-256 and CSUM of the media against the data): both hashes, on their two threads, saw the
    bytes that went to tape."""
    for part in ("hash_strong", "hash_fast"):
        real = getattr(FileStream, part)

        def slow(self, data, real=real):
            time.sleep(0.001)  # the tape write and the next read get ahead of the hash
            real(self, data)

        monkeypatch.setattr(FileStream, part, slow)
    exchange, site = _site(tmp_path / "site", max_buffered)
    try:
        api = exchange.backup_api()

        async def open_session(info):
            session = await site.server.open_session(info)
            return session if lend else CopyingSession(session)

        async def backup():
            job = StorageGroupBackup(api, SG1, "full", open_session=open_session, runtime=site.runtime)
            try:
                return await job.run()
            finally:
                await site.server.drain()

        result = site.runtime.run(backup())
        assert result.status == "ok" and len(result.receipt.barcodes) >= 2
        reader = MediaReader(site.catalog, site.media)
        try:
            report = reader.verify()
        finally:
            reader.close()
        assert report.ok, [str(p) for p in report.problems]
        truth = _mail(exchange)
        for db in exchange.storage_group(SG1).databases:
            exchange.dismount(SG1, db.name)
            for rel in db.files:
                os.remove(exchange.abspath(rel))
            exchange.set_allow_restore_overwrite(SG1, db.name, True)
        restored, _chain = site.runtime.run(restore_storage_group(site, api, SG1, mode="roll-forward"))
        assert restored.status == "ok"
        assert _mail(exchange) == truth
    finally:
        site.close()
        exchange.shutdown()


def test_the_agent_fills_lent_buffers_and_the_server_gets_them_whole(tmp_path, monkeypatch):
    """On the real clock the agent reads into the session's pool (no agent-side buffer, no copy
    in ``send``): every chunk the server receives but the last of a set is a whole pool buffer."""
    received: list[tuple[bool, int]] = []
    real_receive = LocalSession.receive

    async def watching(self):
        chunk = await real_receive(self)
        if chunk is not None:
            received.append((isinstance(chunk, memoryview) and id(chunk.obj) in self._pooled, len(chunk)))
        return chunk

    monkeypatch.setattr(LocalSession, "receive", watching)
    exchange, site = _site(tmp_path / "site", 256 << 10)
    try:
        [result] = site.runtime.run(backup_storage_groups(site, exchange.backup_api(), [SG1], "copy"))
        assert result.status == "ok"
        assert received and all(lent for lent, _n in received)
        assert {n for _lent, n in received[:-1]} == {256 << 10}
    finally:
        site.close()
        exchange.shutdown()
