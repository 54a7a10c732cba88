"""Database-level backup and restore jobs with agent and server in one process.

This is what ``mailtape backup``/``restore``, the demo and the scenario engine run: the agent
(``reference/agent``) talks to Exchange through the backup API, the backup server
(``reference/server``) writes and reads the media, and the two meet through the in-process
data-set session (``reference/transfer.py``) — the same seam the NDMP data connection fills when
they run on different machines.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from reference.agent.database_backup import ANNOTATION, GroupBackupResult, StorageGroupBackup
from reference.agent.database_restore import RestoreResult, StorageGroupRestore
from reference.errors import MailtapeError, NotFoundError
from reference.protocols.exchange import ExchangeBackupApi, ExchangeError
from reference.server.restore_plan import restore_chain

log = logging.getLogger("mailtape.jobs")


class ExchangeRefused(MailtapeError):
    """Exchange answered an API call with an error (the message carries its HRESULT)."""


def storage_group_names(api: ExchangeBackupApi) -> list[str]:
    """The storage groups the backup API offers (HrESEBackupPrepare, then End)."""
    context = api.backup_prepare(ANNOTATION)
    try:
        return [instance.name for instance in context.instances]
    finally:
        context.end()


def resolve_storage_groups(api: ExchangeBackupApi, wanted: list[str] | None) -> list[str]:
    """Check names before anything starts, so an unknown name changes nothing anywhere."""
    available = storage_group_names(api)
    if not wanted:
        return available
    by_lower = {name.lower(): name for name in available}
    chosen = []
    for name in wanted:
        if name.lower() not in by_lower:
            raise NotFoundError(f"storage group {name!r} not found on {api.server_name} "
                                f"(it has: {', '.join(repr(n) for n in available)})")
        chosen.append(by_lower[name.lower()])
    return chosen


async def backup_storage_groups(
    site,
    api: ExchangeBackupApi,
    storage_groups: list[str] | None,
    level: str,
    *,
    databases: list[str] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> list[GroupBackupResult]:
    """Back up storage groups concurrently (one data set each, on as many drives as are free).

    A failed group does not stop the others; its result has status ``failed`` and ``error``.
    """
    names = resolve_storage_groups(api, storage_groups)
    jobs = [
        StorageGroupBackup(api, name, level, open_session=site.server.open_session, runtime=site.runtime,
                           databases=databases, progress=progress,
                           base_available=has_full_backup(site.catalog, api.server_name, name))
        for name in names
    ]
    outcomes = await asyncio.gather(*(job.run() for job in jobs), return_exceptions=True)
    await site.server.drain()
    results = []
    for job, outcome in zip(jobs, outcomes):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, (MailtapeError, ExchangeError, OSError)):
                raise outcome
            log.error("backup of %s failed: %s", job.storage_group, outcome)
            job.result.status = "failed"
            job.result.error = str(outcome)
        results.append(job.result)
    return results


def has_full_backup(catalog, server: str, storage_group: str) -> bool:
    """Whether the catalog holds a restorable full backup an incremental or differential can build on."""
    return any(s.kind == "database" and s.backup_type == "full" and s.status == "ok"
               for s in catalog.data_sets(server, storage_group))


class _ReadBack:
    """The server's read-back as the agent's restore consumes it: objects and their bytes.

    Blocking work (loading and walking cartridges, tape reads, SHA-256) runs through ``runtime``:
    on the real clock each object's bytes flow through a :class:`_Pipeline` (tape reads and hashing
    in two worker threads, so hashing never waits for the event loop or the agent's writes); in
    simulation every call is inline, in order, and waits for the drive's timeline as before.
    ``settle`` stops and waits for pipelines an abandoned object left running, so the reader is
    never closed under a read."""

    def __init__(self, site, reader, set_ids: list[int]):
        self.runtime = site.runtime
        self.timeline = site.media.drives.timeline(reader.mounter.drive)
        self.reader = reader
        self.set_ids = set_ids
        self._pipelines: list[_Pipeline] = []
        self._threads: ThreadPoolExecutor | None = None  # the pipelines' own two threads

    async def objects(self) -> AsyncIterator["_TapeObject"]:
        chain = self.reader.read_chain(self.set_ids)
        while True:
            item = await self.runtime.call(next, chain, None, timeline=self.timeline)
            if item is None:
                return
            _set_id, record, stream = item
            yield _TapeObject(record.path, record.kind, record.size, stream, self)

    async def pipeline(self, stream) -> "_Pipeline":
        """A pipeline for the next object; one left running by an object the agent did not finish
        is stopped first (its threads are this one's: own executor, never the shared one, so no
        other job's blocking calls can starve a pipeline of its second thread)."""
        await self.settle(close=False)
        if self._threads is None:
            self._threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="restore")
        pipeline = _Pipeline(self._threads, stream)
        self._pipelines.append(pipeline)
        return pipeline

    async def settle(self, close: bool = True) -> None:
        pipelines, self._pipelines = self._pipelines, []
        for pipeline in pipelines:
            await pipeline.stop()
        if close and self._threads is not None:
            self._threads.shutdown(wait=True)
            self._threads = None


class _Pipeline:
    """One object's batches: tape reads → SHA-256 → the agent, pipelined and bounded.

    A reader thread calls ``stream.read_raw`` into a queue of ``RAW_DEPTH`` batches; a hasher
    thread hashes them in order and hands them to the event loop, at most ``READY_DEPTH`` ahead
    of the agent. So the tape read of batch N+2, the hash of N+1 and the agent's write of N
    overlap (hashlib, preadv and writev release the GIL), and at most RAW_DEPTH + READY_DEPTH + 2
    batches (20 MiB at 4 MiB) are held besides the two the agent writes. After the last batch the hasher
    runs ``stream.finish`` (size and SHA-256 against the catalog): its error reaches the agent
    after every batch, exactly where the plain iterator raises it."""

    RAW_DEPTH = 1
    READY_DEPTH = 2
    POLL = 0.05  # seconds; how soon an abandoned pipeline's threads notice ``stop``

    def __init__(self, executor: ThreadPoolExecutor, stream):
        self.stream = stream
        self._loop = asyncio.get_running_loop()
        self._raw: queue.Queue = queue.Queue(maxsize=self.RAW_DEPTH)
        self._ready: asyncio.Queue = asyncio.Queue()
        self._room = threading.Semaphore(self.READY_DEPTH)
        self._stopped = False
        self._threads = [self._loop.run_in_executor(executor, self._read),
                         self._loop.run_in_executor(executor, self._hash)]

    def done(self) -> bool:
        return all(t.done() for t in self._threads)

    async def stop(self) -> None:
        self._stopped = True
        await asyncio.wait(self._threads)

    async def batches(self) -> AsyncIterator[memoryview]:
        while True:
            item = await self._ready.get()
            self._room.release()
            if item is None or isinstance(item, BaseException):
                await asyncio.wait(self._threads)  # both threads end right after the last item
                if item is None:
                    return
                raise item
            yield item

    # -- worker threads --

    def _read(self) -> None:
        try:
            while True:
                view = self.stream.read_raw()
                if not self._put(view) or view is None:
                    return
        except BaseException as error:  # a read error reaches the agent after the batches before it
            self._put(error)

    def _put(self, item) -> bool:
        while not self._stopped:
            try:
                self._raw.put(item, timeout=self.POLL)
                return True
            except queue.Full:
                continue
        return False

    def _hash(self) -> None:
        while not self._stopped:
            try:
                item = self._raw.get(timeout=self.POLL)
            except queue.Empty:
                continue
            if item is None:
                try:
                    self.stream.finish()
                except BaseException as error:
                    item = error
                self._emit(item)
                return
            if isinstance(item, BaseException):
                self._emit(item)
                return
            self.stream.hash(item)
            while not self._room.acquire(timeout=self.POLL):
                if self._stopped:
                    return
            self._emit(item)

    def _emit(self, item) -> None:
        if not self._stopped:
            self._loop.call_soon_threadsafe(self._ready.put_nowait, item)


@dataclass
class _TapeObject:
    """An object read back by the server, as the agent's restore consumes it."""

    path: str
    kind: str
    size: int
    _stream: object
    _source: _ReadBack

    async def chunks(self) -> AsyncIterator[memoryview]:
        stream, source = self._stream, self._source
        if source.runtime.simulated:  # inline and in order: deterministic virtual time
            while (view := await source.runtime.call(stream.read_raw, timeline=source.timeline)) is not None:
                stream.hash(view)
                yield view
            stream.finish()
            return
        pipeline = await source.pipeline(stream)
        async for view in pipeline.batches():
            yield view


async def restore_storage_group(
    site,
    api: ExchangeBackupApi,
    storage_group: str,
    *,
    mode: str = "roll-forward",
    set_id: int | None = None,
    at: float | None = None,
    databases: list[str] | None = None,
    mount: bool = True,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[RestoreResult, list]:
    """Restore ``storage_group`` from the chain the catalog picks; returns (result, chain)."""
    [name] = resolve_storage_groups(api, [storage_group])
    chain = restore_chain(site.catalog, api.server_name, name, at=at, set_id=set_id)
    clock = site.runtime.clock
    job_id = site.catalog.start_job("restore", f"{api.server_name}/{name}", mode, started=clock.now())
    reader = site.reader()
    readback = None
    restore = StorageGroupRestore(api, name, runtime=site.runtime, mode=mode, databases=databases, mount=mount,
                                  progress=progress)
    try:
        readback = _ReadBack(site, reader, [s.id for s in chain])
        result = await restore.run(readback.objects())
    except ExchangeError as error:
        site.catalog.finish_job(job_id, "failed", message=str(error), ended=clock.now())
        raise ExchangeRefused(f"restore of {name!r}: Exchange refused: {error}") from error
    except BaseException as error:
        site.catalog.finish_job(job_id, "failed", message=str(error), ended=clock.now())
        raise
    finally:
        if readback is not None:
            await readback.settle()  # never close the drive under a read still running
        reader.close()
    site.catalog.finish_job(job_id, "ok", level=mode, bytes=result.bytes,
                            objects=result.logs + sum(len(d) for d in result.destinations.values()),
                            ended=clock.now())
    return result, chain
