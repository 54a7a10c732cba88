"""The backup server: one data set per drive at a time, several drives at once, commit then ack.

``await server.open_session(info)`` (what the agent's ``open_session`` callback is) picks a free
drive (waiting for one if all are busy), has the media manager load and check a cartridge of the
pool, assigns the set number, and starts a writer task:

    receive chunks → MediaWriter.feed (spanning on early warning) → end_set (FM ESET FM)
    → catalog DataSetRecord (every object: cartridge, tape file, block, FLA, size, SHA-256,
      extents) → Catalog.commit_data_set → session.commit(CommitReceipt)

Any failure (agent abort, device error, wrong cartridge, no cartridge) → ``session.fail(error)``,
the job is recorded failed and nothing is committed, so the agent keeps its logs. Blocking
device work goes through :meth:`Runtime.call` (worker threads in production, inline on the
virtual clock in simulation); catalog writes stay on the event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Awaitable, Callable

from reference.errors import MailtapeError
from reference.runtime import Runtime
from reference.server.catalog import BACKUP_TYPES, Catalog, DataSetRecord, ObjectRecord
from reference.server.media import DEFAULT_POOL, MediaManager, WriteMount
from reference.server.pacing import pace_for_drive
from reference.transfer import CommitReceipt, DataSetTrailer, LocalSession, TransferAborted

log = logging.getLogger("mailtape.server")


class ServerError(MailtapeError):
    """The server could not take or finish a data set."""


def begin_raw_set(writer) -> None:
    """Open a data set on the media writer for bytes that arrive already formatted (the agent's
    DataSetWriter output). The format library's public ``begin_set`` builds its own writer; a
    server receiving finished bytes needs only the set state (see report: public API wanted)."""
    opener = getattr(writer, "begin_raw_set", None) or getattr(writer, "_start_set")
    opener()


class BackupServer:
    """See the module docstring. ``media`` owns the library; ``catalog`` records everything."""

    def __init__(self, catalog: Catalog, media: MediaManager, runtime: Runtime, *,
                 pool: str = DEFAULT_POOL, max_buffered: int = 64 << 20, pacing: str = "auto"):
        self.catalog = catalog
        self.media = media
        self.runtime = runtime
        self.pool = pool
        self.max_buffered = max_buffered
        self.pacing = pacing  # reference/server/pacing.py: auto | off | a media generation
        self._free = list(media.drives.numbers)
        self._drive_freed: asyncio.Condition | None = None
        self.tasks: set[asyncio.Task] = set()

    # -- drives -------------------------------------------------------------------------------

    async def _acquire_drive(self) -> int:
        if self._drive_freed is None:
            self._drive_freed = asyncio.Condition()
        async with self._drive_freed:
            while not self._free:
                await self._drive_freed.wait()
            return self._free.pop(0)

    async def _release_drive(self, drive: int) -> None:
        async with self._drive_freed:
            self._free.append(drive)
            self._free.sort()
            self._drive_freed.notify()

    # -- sessions -----------------------------------------------------------------------------

    async def open_session(self, info: dict) -> LocalSession:
        """Start one data set for the agent; see the module docstring. ``info``: kind, server,
        storage_group, backup_type, started (and optionally pool, job_id)."""
        clock = self.runtime.clock
        backup_type = info.get("backup_type", "full")
        if backup_type not in BACKUP_TYPES:
            raise ServerError(f"unknown backup type {backup_type!r} (one of {', '.join(BACKUP_TYPES)})")
        own_job = info.get("job_id") is None
        job_id = info.get("job_id") or self.catalog.start_job(
            "backup", f"{info.get('server', '?')}/{info.get('storage_group', '?')}", backup_type,
            started=clock.now())
        drive = await self._acquire_drive()
        try:
            mount = await self.runtime.call(self.media.mount_for_write, info.get("pool") or self.pool, drive,
                                            next_set_number=self.catalog.next_set_number)
        except BaseException as error:
            await self._release_drive(drive)
            if own_job:
                self.catalog.finish_job(job_id, "failed", message=str(error), ended=clock.now())
            raise
        session = pace_for_drive(LocalSession(mount.writer.next_set_number, self.max_buffered), clock,
                                 self.media.drives, drive, self.pacing)  # reference/server/pacing.py
        session.job_id = job_id
        session.drive = drive
        task = asyncio.get_running_loop().create_task(self._write_set(session, mount, dict(info), job_id, own_job))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return session

    async def drain(self) -> None:
        """Wait until every writer task has finished (committed or failed)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def _write_set(self, session: LocalSession, mount: WriteMount, info: dict, job_id: int,
                         own_job: bool) -> None:
        call = self.runtime.call
        clock = self.runtime.clock
        closed = False
        failure: BaseException | None = None
        try:
            begin_raw_set(mount.writer)
            timeline = self.media.drives.timeline(mount.drive)
            while True:
                chunk = await session.receive()
                if chunk is None:
                    break
                await call(mount.writer.feed, chunk, timeline=timeline)
            if session.aborted is not None:
                raise TransferAborted(f"the agent abandoned data set {session.set_number}: {session.aborted}")
            trailer: DataSetTrailer = session.trailer
            if trailer is None:
                raise ServerError(f"data set {session.set_number} ended without a trailer")
            if trailer.eset.set_number != session.set_number:
                raise ServerError(f"data set numbered {trailer.eset.set_number}, but the server assigned "
                                  f"{session.set_number}")
            await call(mount.writer.end_set, trailer.eset, timeline=timeline)
            await call(mount.device.close)
            closed = True
            record = self._record(info, trailer, mount, job_id, session.set_number, clock.now())
            set_id = self.catalog.commit_data_set(record)
            for device in mount.devices:
                row = self.catalog.medium(device.barcode)
                self.catalog.update_medium(device.barcode, data_sets=row["data_sets"] + 1)
            warnings = list(mount.warnings) + list(trailer.metadata.get("warnings", []))
            if own_job:
                self.catalog.finish_job(job_id, "warning" if warnings else "ok", level=record.backup_type,
                                        bytes=record.bytes, objects=len(record.objects), warnings=warnings,
                                        ended=clock.now())
            barcodes = tuple(dict.fromkeys(d.barcode for d in mount.devices))
            session.commit(CommitReceipt(set_id, barcodes, sum(d.bytes for d in mount.devices)))
            log.info("data set %d (%s) committed as catalog set %d on %s", session.set_number,
                     info.get("storage_group"), set_id, ", ".join(barcodes))
        except BaseException as error:
            failure = error
            log.warning("data set %d failed: %s", session.set_number, error)
            if session.aborted is None:  # an agent that abandoned the set waits for nothing
                await session.fail(error)
            if own_job:
                self.catalog.finish_job(job_id, "failed", message=str(error), warnings=list(mount.warnings),
                                        ended=clock.now())
            if isinstance(error, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
        finally:
            try:
                self.media.release(mount, closed=closed, error=failure)
            finally:
                await self._release_drive(mount.drive)

    def _record(self, info: dict, trailer: DataSetTrailer, mount: WriteMount, job_id: int, set_number: int,
                completed: float) -> DataSetRecord:
        originals: dict[int, tuple[str, int, int, int]] = {}
        continued: dict[int, list[str]] = defaultdict(list)
        for device in mount.devices:
            for fla, file_id, continuation, tape_file, block in device.files_seen:
                if continuation:
                    continued[file_id].append(device.barcode)
                else:
                    originals[fla] = (device.barcode, tape_file, block, file_id)  # a header repeated
                    # after early warning is the one the data follows: the later one wins
        objects = []
        for entry in trailer.objects:
            placed = originals.get(entry.fla)
            if placed is None:
                raise ServerError(f"object {entry.path!r} (FLA {entry.fla}) was not seen on the media")
            barcode, tape_file, block, file_id = placed
            extents = list(dict.fromkeys([barcode] + continued.get(file_id, [])))
            objects.append(ObjectRecord(entry.path, entry.kind, entry.size, entry.sha256, barcode, tape_file,
                                        block, entry.fla, entry.database, extents, entry.xxh3))
        first = mount.devices[0]
        return DataSetRecord(
            set_number=set_number, family_id=mount.family_id, kind=info.get("kind", "database"),
            server=info.get("server", ""), storage_group=info.get("storage_group", ""),
            backup_type=trailer.backup_type or info.get("backup_type", "full"),
            started=info.get("started", completed), completed=completed, first_barcode=first.barcode,
            first_file=mount.first_file, bytes=sum(o.size for o in objects), objects=objects,
            log_gen_low=trailer.log_gen_low, log_gen_high=trailer.log_gen_high, metadata=trailer.metadata,
            job_id=job_id, cartridges=list(dict.fromkeys(d.barcode for d in mount.devices)),
        )


class JobEngine:
    """Submit, run and follow jobs; status and exit status live in the catalog's jobs table."""

    def __init__(self, catalog: Catalog, runtime: Runtime):
        self.catalog = catalog
        self.runtime = runtime
        self.tasks: dict[int, asyncio.Task] = {}

    def submit(self, kind: str, target: str, work: Callable[[int], Awaitable[dict | None]],
               level: str | None = None) -> int:
        """Start ``work(job_id)`` as a task; it may return ``{"status", "bytes", "objects",
        "warnings", "message", "level"}``; an exception fails the job with its message."""
        job_id = self.catalog.start_job(kind, target, level, started=self.runtime.clock.now())
        self.tasks[job_id] = asyncio.get_running_loop().create_task(self._run(job_id, work))
        return job_id

    async def _run(self, job_id: int, work) -> dict:
        clock = self.runtime.clock
        try:
            outcome = await work(job_id) or {}
        except Exception as error:  # noqa: BLE001 - every failure becomes the job's status
            self.catalog.finish_job(job_id, "failed", message=str(error), ended=clock.now())
            return self.catalog.job(job_id)
        warnings = list(outcome.get("warnings", []))
        status = outcome.get("status") or ("warning" if warnings else "ok")
        self.catalog.finish_job(job_id, status, level=outcome.get("level"), bytes=outcome.get("bytes", 0),
                                objects=outcome.get("objects", 0), message=outcome.get("message"),
                                warnings=warnings, ended=clock.now())
        return self.catalog.job(job_id)

    async def wait(self, job_id: int) -> dict:
        task = self.tasks.get(job_id)
        if task is not None:
            await task
        return self.catalog.job(job_id)

    async def run(self, kind: str, target: str, work, level: str | None = None) -> dict:
        return await self.wait(self.submit(kind, target, work, level))

    def status(self, job_id: int) -> dict:
        return self.catalog.job(job_id)

    def history(self, limit: int = 100) -> list[dict]:
        return self.catalog.jobs(limit)
