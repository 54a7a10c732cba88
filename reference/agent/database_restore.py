"""Database-level restore of one storage group through the Exchange restore API.

The call order is the real one (ese-backup-api.md §2.1, and Bacula's exchange-fd): open →
get environment → per database ``add_database`` (Exchange answers with the destination paths,
silently redirected into the Recovery Storage Group when one holds the database) → for every file
``open_file`` (Exchange answers hrRestoreAtFileLevel: we write the file ourselves; streams to the
destinations, logs into the restore log path) → ``save_environment`` → ``complete`` with the
storage group as target (roll-forward into the current logs) or ``None`` (point-in-time) → close.

Objects arrive from the backup server in data-set order (full first, then each later set of the
chain), each as a catalog entry plus its verified bytes; this module never touches media.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ntpath
import os
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol

from reference.agent.database_backup import ANNOTATION, DATABASE_INFO_NAME, LOG_DIRECTORY, METADATA_NAME
from reference.errors import MailtapeError
from reference.protocols.exchange import (
    ExchangeBackupApi,
    ExchangeError,
    RestoreClose,
    RestoreComplete,
)
from reference.runtime import Runtime

log = logging.getLogger("mailtape.agent")

HR_RESTORE_AT_FILE_LEVEL = 0xC7FF0FA5
WRITE_BATCH = 4 << 20
"""Restored bytes gathered per write; per-64-KiB-chunk thread hand-offs cost more than they save."""


class RestoreObject(Protocol):
    """What the server hands over per object: where it sat in the set, and its bytes."""

    path: str
    kind: str
    size: int

    def chunks(self) -> AsyncIterator[bytes]: ...


@dataclass
class RestoreResult:
    storage_group: str
    mode: str
    sets: int = 0
    databases: list[str] = field(default_factory=list)
    destinations: dict[str, list[str]] = field(default_factory=dict)
    logs: int = 0
    bytes: int = 0
    recovery_hr: int | None = None
    redirected_to_rsg: bool = False
    status: str = "running"
    error: str | None = None


class StorageGroupRestore:
    """Restore a chain of data sets of one storage group. ``await run(objects)``.

    ``databases`` limits the restore to some stores (None = every store in the sets).
    ``mode`` is ``roll-forward`` (replay the storage group's current logs after the restored ones)
    or ``point-in-time`` (stop after the restored logs, as NTBackup's "Last Backup Set" with
    ``eseutil /cc /t``).
    """

    def __init__(self, api: ExchangeBackupApi, storage_group: str, *, runtime: Runtime,
                 mode: str = "roll-forward", databases: list[str] | None = None, mount: bool = True,
                 progress=None):
        if mode not in ("roll-forward", "point-in-time"):
            raise MailtapeError(f"unknown restore mode {mode!r} (roll-forward or point-in-time)")
        self.api = api
        self.storage_group = storage_group
        self.runtime = runtime
        self.mode = mode
        self.selected = {name.lower() for name in databases} if databases else None
        self.mount = mount
        self.progress = progress or (lambda name, count: None)
        self.result = RestoreResult(storage_group, mode)
        self._destinations: dict[str, dict[str, tuple[str, str]]] = {}  # database → {basename → (source, destination)}
        self._added: set[str] = set()

    async def run(self, objects: AsyncIterator[RestoreObject]) -> RestoreResult:
        call = self.runtime.call
        context = await call(self.api.restore_open, ANNOTATION, self.storage_group, None)
        closed = False
        try:
            environment = await call(context.get_environment)
            log_path = environment.restore_log_path
            async for obj in objects:
                await self._restore_object(context, obj, log_path)
            if not self._added:
                raise MailtapeError(f"the backup holds no database of {self.storage_group!r} to restore"
                                    + (f" named {sorted(self.selected)}" if self.selected else ""))
            await call(context.save_environment)
            target = self.storage_group if self.mode == "roll-forward" else None
            flags = RestoreComplete.ATTACH_DBS if self.mount else RestoreComplete.NONE
            self.result.recovery_hr = await call(context.complete, log_path, log_path, target, flags)
            self.result.redirected_to_rsg = bool(getattr(context, "redirected", False))
            await call(context.close, RestoreClose.NORMAL)
            closed = True
            self.result.status = "ok"
            return self.result
        except BaseException as error:
            self.result.status = "failed"
            self.result.error = str(error)
            raise
        finally:
            if not closed:
                try:
                    await call(context.close, RestoreClose.ABORT)
                except ExchangeError as close_error:
                    log.debug("restore close(ABORT): %s", close_error)

    async def _restore_object(self, context, obj: RestoreObject, log_path: str) -> None:
        directory, _, name = obj.path.rpartition("/")
        if obj.kind == "metadata" and name == METADATA_NAME:
            self.result.sets += 1
            await self._drain(obj)
            return
        if obj.kind == "metadata" and name == DATABASE_INFO_NAME:
            info = json.loads(await self._read_all(obj))
            if self.selected is not None and info["display_name"].lower() not in self.selected:
                return
            await self._add_database(context, info)
            return
        if obj.kind == "stream":
            database = directory
            if database not in self._destinations:
                await self._drain(obj)  # a database not selected (or whose info came first and was skipped)
                return
            source, destination = self._destinations[database].get(name.lower(), (None, None))
            if destination is None:
                raise MailtapeError(f"backup stream {obj.path!r} matches none of the streams Exchange expects "
                                    f"for {database!r}: {sorted(self._destinations[database])}")
            await self._announce(context, source)
            await self._write_file(obj, destination)
            return
        if obj.kind == "log" and directory == LOG_DIRECTORY:
            await self._announce(context, name)
            await self._write_file(obj, os.path.join(log_path, name))
            self.result.logs += 1
            return
        log.info("skipping object %s (%s) that a database restore does not need", obj.path, obj.kind)
        await self._drain(obj)

    async def _add_database(self, context, info: dict) -> None:
        name = info["display_name"]
        streams = tuple(info["streams"])
        destinations = await self.runtime.call(context.add_database, name, uuid.UUID(info["guid"]), streams)
        if len(destinations) != len(streams):
            raise MailtapeError(f"Exchange returned {len(destinations)} destinations for the {len(streams)} streams of {name!r}")
        self._destinations[name] = {ntpath.basename(s).lower(): (s, d) for s, d in zip(streams, destinations)}
        if name not in self._added:
            self._added.add(name)
            self.result.databases.append(name)
        self.result.destinations[name] = list(destinations)

    async def _announce(self, context, path: str) -> None:
        """HrESERestoreOpenFile: Exchange answers "restore at file level" — we then write the file."""
        try:
            await self.runtime.call(context.open_file, path)
        except ExchangeError as answer:
            if answer.hr != HR_RESTORE_AT_FILE_LEVEL:
                raise

    async def _write_file(self, obj: RestoreObject, destination: str) -> None:
        """Write the object's chunks to ``destination`` (replacing what is there).

        Why not ``open(destination, "wb")``: truncating a non-empty file to zero makes ext4 start
        write-back of the whole new file at close (``auto_da_alloc``), ~15 % of a restore; the
        file is overwritten in place and then cut to the bytes written (same content, also when
        the object fails part-way). Chunks are gathered into ``WRITE_BATCH`` bytes and written
        with one ``writev``; on the real clock that write runs in a worker thread while the next
        batch is read and hashed (one batch in flight: bounded memory). Read-only chunks are held
        as they are, writable ones copied (a producer may reuse those). In simulation the writes
        stay inline and deterministic."""
        os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
        fd = os.open(destination, os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        loop = None if self.runtime.simulated else asyncio.get_running_loop()
        written = 0  # bytes received
        on_disk = 0  # bytes written to the file
        batch: list = []
        batched = 0
        pending = None

        def write_all(chunks: list) -> None:
            nonlocal on_disk
            views = [memoryview(c).cast("B") for c in chunks]
            while views:
                done = os.writev(fd, views[:1024])
                on_disk += done
                while views and done >= len(views[0]):
                    done -= len(views[0])
                    views.pop(0)
                if done:
                    views[0] = views[0][done:]

        async def flush() -> None:
            nonlocal pending, batch, batched
            if pending is not None:
                await pending
                pending = None
            if batch:
                chunks, batch, batched = batch, [], 0
                if loop is None:
                    write_all(chunks)
                else:
                    pending = loop.run_in_executor(None, write_all, chunks)

        try:
            async for chunk in obj.chunks():
                if not memoryview(chunk).readonly:
                    chunk = bytes(chunk)
                batch.append(chunk)
                batched += len(chunk)
                written += len(chunk)
                if batched >= WRITE_BATCH:
                    await flush()
                self.progress(obj.path, len(chunk))
            await flush()  # the last batch ...
            await flush()  # ... and its write
        finally:
            try:
                failed = False
                if pending is not None:  # never close the file under a running write
                    await asyncio.wait([pending])
                    failed = pending.cancelled() or pending.exception() is not None
                if batch and not failed:  # the object failed part-way: keep what was received
                    try:
                        write_all(batch)
                    except OSError:
                        pass  # the error being raised already says the restore failed
            finally:
                try:
                    os.ftruncate(fd, on_disk)
                finally:
                    os.close(fd)
        if written != obj.size:
            raise MailtapeError(f"{obj.path}: restored {written} bytes, the catalog says {obj.size}")
        self.result.bytes += written

    @staticmethod
    async def _read_all(obj: RestoreObject) -> bytes:
        parts = [chunk async for chunk in obj.chunks()]
        return b"".join(bytes(p) for p in parts)

    @staticmethod
    async def _drain(obj: RestoreObject) -> None:
        async for _ in obj.chunks():
            pass
