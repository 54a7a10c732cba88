"""Online database-level backup of one storage group, driven through the Exchange backup API.

The call order is the real one (ese-backup-api.md §1.2): prepare → setup → for each database
stream open/read/close → get log files (forces a log roll) → for each log open/read/close →
**wait for the server's commit receipt** → truncate logs (full, incremental) → instance end.

Behaviours users of such agents rely on:

* incremental or differential while circular logging is on, or with no previous full backup, is
  converted to a full backup with a warning (the API's -526 / -560 answers at setup);
* a database that fails (unmounted -1203, bad page -1018) is reported and the rest of the group
  still backs up; any error while reading logs fails the group;
* logs are truncated only after the data set is on media and in the catalog; any failure before
  that ends the instance with ERROR, so every log stays and the next backup is still complete.

One storage group = one MTF data set: a VOLB for the group, a DIRB per store holding its
``DatabaseBackupInfo`` and its streams, a DIRB ``Log Files``, and ``BackupMetadata.json`` at the
root last (docs/format.md, "Exchange mapping").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import ntpath
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from reference.agent.levels import (
    HR_CIRCULAR_LOGGING,
    HR_FULL_BACKUP_NOT_TAKEN,
    JET_ERR_INVALID_BACKUP,
    JET_ERR_MISSING_FULL_BACKUP,
    LEVELS,
    Level,
    level as parse_level,
)
from reference.errors import CorruptDataError, MailtapeError, NotFoundError
from reference.format.writer import DataSetWriter
from reference.protocols.exchange import (
    BackupContext,
    BackupType,
    DatabaseBackupInfo,
    ExchangeBackupApi,
    ExchangeError,
    InstanceBackupInfo,
    InstanceEnd,
)
from reference.runtime import Runtime
from reference.transfer import TRANSFER_BUFFER, CommitReceipt, DataSetTrailer, ObjectEntry, PackingSink

log = logging.getLogger("mailtape.agent")

ANNOTATION = "Microsoft Information Store"
LOG_DIRECTORY = "Log Files"
METADATA_NAME = "BackupMetadata.json"
DATABASE_INFO_NAME = "DatabaseBackupInfo"
READ_SIZE = TRANSFER_BUFFER
"""Most bytes asked of Exchange per read (a read also never exceeds the free part of the
transfer buffer it goes into)."""


@dataclass
class DatabaseOutcome:
    name: str
    guid: str
    streams: list[str]
    status: str = "ok"  # ok | failed | not selected
    error: str | None = None
    bytes: int = 0


@dataclass
class GroupBackupResult:
    server: str
    storage_group: str
    requested_level: str
    level: str
    status: str = "running"  # ok | warning | failed
    warnings: list[str] = field(default_factory=list)
    databases: list[DatabaseOutcome] = field(default_factory=list)
    log_files: list[str] = field(default_factory=list)
    log_gen_low: int | None = None
    log_gen_high: int | None = None
    bytes: int = 0
    objects: int = 0
    receipt: CommitReceipt | None = None
    truncated: bool = False
    error: str | None = None


Progress = Callable[[str, int], None]
"""progress(current object, bytes just read) — for progress bars."""


def log_generation(path: str) -> int:
    """Generation of a log from its name: ``E00000A1.log`` → 0xA1, ``E000000001A.log`` → 0x1A."""
    stem = ntpath.basename(path).rsplit(".", 1)[0]
    try:
        return int(stem[3:], 16)
    except ValueError:
        raise MailtapeError(f"Exchange returned a log name without a generation: {path!r}") from None


class StorageGroupBackup:
    """Back up one storage group into one data set. Create, then ``await run()``."""

    def __init__(
        self,
        api: ExchangeBackupApi,
        storage_group: str,
        level: str,
        *,
        open_session: Callable[[dict], Awaitable[object]],
        runtime: Runtime,
        databases: list[str] | None = None,
        progress: Progress | None = None,
        read_size: int = READ_SIZE,
        base_available: bool = True,
    ):
        self.api = api
        self.requested = parse_level(level)
        self.storage_group = storage_group
        self.selected = databases
        self.open_session = open_session
        self.runtime = runtime
        self.progress = progress or (lambda name, n: None)
        self.base_available = base_available
        """False when the backup server holds no full backup to build an incremental on."""
        self.read_size = read_size
        self._sink: PackingSink | None = None
        self._session = None
        self.result = GroupBackupResult(api.server_name, storage_group, self.requested.name, self.requested.name)

    # -- the job ------------------------------------------------------------------------------

    async def run(self) -> GroupBackupResult:
        call = self.runtime.call
        context: BackupContext = await call(self.api.backup_prepare, ANNOTATION)
        instance_open = False
        try:
            instance = self._find_instance(context)
            databases = self._select_databases(instance)
            effective = await self._setup(context, instance)
            instance_open = True
            self.result.level = effective.name
            self._session = await self.open_session(self._session_info(effective))
            self._sink = PackingSink(self._session)
            writer = DataSetWriter(
                self._sink,
                set_number=self._session.set_number,
                name=f"{self.storage_group} ({effective.name})",
                description=f"Exchange {effective.name} backup of {self.storage_group} on {self.api.server_name}",
                user="mailtape",
                write_date=self._now(),
            )
            objects: list[ObjectEntry] = []
            writer.begin_volume(ANNOTATION, volume=self.storage_group, machine=self.api.server_name,
                                metadata={"storage_group": self.storage_group, "level": effective.name})
            await self._flush()
            if effective.reads_databases:
                for database in databases:
                    await self._backup_database(context, writer, database, objects)
            await self._backup_logs(context, writer, objects)
            metadata = self._metadata(instance, effective)
            payload = json.dumps(metadata, indent=1, sort_keys=True).encode()
            writer.begin_directory([])
            record = writer.add_file(METADATA_NAME, len(payload), payload, modified=self._now())
            objects.append(ObjectEntry.written(record, METADATA_NAME, "metadata"))
            eset = writer.end()
            await self._sink.flush(final=True)
            trailer = DataSetTrailer(eset, objects, effective.name, self.result.log_gen_low,
                                     self.result.log_gen_high, metadata)
            receipt = await self._session.finish(trailer)
            self.result.receipt = receipt
            # The data set is on media and in the catalog: only now may logs go.
            if effective.truncates:
                await call(context.truncate_logs)
                self.result.truncated = True
            await call(context.instance_end, InstanceEnd.SUCCESS)
            instance_open = False
            self.result.objects = len(objects)
            self.result.status = "warning" if self.result.warnings else "ok"
            return self.result
        except BaseException as error:
            self.result.status = "failed"
            self.result.error = str(error)
            if self._session is not None and self.result.receipt is None:
                await self._session.abort(str(error))
            if instance_open:
                try:
                    await call(context.instance_end, InstanceEnd.ERROR)
                except ExchangeError as end_error:  # already aborted by the server: nothing more to undo
                    log.debug("instance_end(ERROR) after failure: %s", end_error)
            raise
        finally:
            try:
                await call(context.end)
            except ExchangeError as end_error:
                log.debug("backup end: %s", end_error)

    # -- steps --------------------------------------------------------------------------------

    def _find_instance(self, context: BackupContext) -> InstanceBackupInfo:
        for instance in context.instances:
            if instance.name.lower() == self.storage_group.lower():
                self.storage_group = instance.name
                self.result.storage_group = instance.name
                return instance
        names = ", ".join(repr(i.name) for i in context.instances) or "none"
        raise NotFoundError(
            f"storage group {self.storage_group!r} not found on {self.api.server_name} (it has: {names})"
        )

    def _select_databases(self, instance: InstanceBackupInfo) -> list[DatabaseBackupInfo]:
        if not self.selected:
            return list(instance.databases)
        by_name = {db.display_name.lower(): db for db in instance.databases}
        chosen = []
        for name in self.selected:
            db = by_name.get(name.lower())
            if db is None:
                names = ", ".join(repr(d.display_name) for d in instance.databases)
                raise NotFoundError(f"database {name!r} not found in storage group {instance.name!r} (it has: {names})")
            chosen.append(db)
        return chosen

    async def _setup(self, context: BackupContext, instance: InstanceBackupInfo) -> Level:
        wanted = self.requested
        if wanted.api_type == BackupType.LOGS_ONLY and not self.base_available:
            # Exchange checks only the stores mounted now; the catalog knows whether a chain exists.
            return await self._convert_to_full(context, instance, wanted,
                                               "the backup catalog holds no full backup of this storage group")
        try:
            await self.runtime.call(context.setup, instance.instance_id, wanted.api_type)
            return wanted
        except ExchangeError as error:
            if wanted.api_type != BackupType.LOGS_ONLY:
                raise
            if error.jet == JET_ERR_INVALID_BACKUP or error.hr == HR_CIRCULAR_LOGGING:
                reason = "circular logging is enabled"
            elif error.jet == JET_ERR_MISSING_FULL_BACKUP or error.hr == HR_FULL_BACKUP_NOT_TAKEN:
                reason = "no previous full backup exists for every database"
            else:
                raise
        return await self._convert_to_full(context, instance, wanted, reason)

    async def _convert_to_full(self, context, instance: InstanceBackupInfo, wanted: Level, reason: str) -> Level:
        warning = f"{wanted.name} backup of {instance.name!r} converted to a full backup: {reason}"
        log.warning(warning)
        self.result.warnings.append(warning)
        full = LEVELS["full"]
        await self.runtime.call(context.setup, instance.instance_id, full.api_type)
        return full

    async def _backup_database(self, context, writer: DataSetWriter, database: DatabaseBackupInfo, objects) -> None:
        outcome = DatabaseOutcome(database.display_name, str(database.guid), list(database.streams))
        self.result.databases.append(outcome)
        writer.begin_directory([database.display_name])
        info = json.dumps({
            "display_name": database.display_name,
            "guid": str(database.guid),
            "streams": list(database.streams),
        }, sort_keys=True).encode()
        record = writer.add_file(DATABASE_INFO_NAME, len(info), info, modified=self._now())
        objects.append(ObjectEntry.written(record, f"{database.display_name}/{DATABASE_INFO_NAME}", "metadata",
                                           database.display_name))
        await self._flush()
        for stream_path in database.streams:
            try:
                entry = await self._copy_file(context, writer, stream_path, f"{database.display_name}/",
                                              "stream", database.display_name, per_database=True)
            except _DatabaseFailed as failure:
                outcome.status = "failed"
                outcome.error = str(failure)
                warning = f"database {database.display_name!r} was not backed up: {failure}"
                log.warning(warning)
                self.result.warnings.append(warning)
                return
            objects.append(entry)
            outcome.bytes += entry.size

    async def _backup_logs(self, context, writer: DataSetWriter, objects) -> None:
        log_files = await self.runtime.call(context.get_log_and_patch_files)
        self.result.log_files = list(log_files)
        generations = [log_generation(p) for p in log_files if p.lower().endswith((".log", ".jtx"))]
        if generations:
            self.result.log_gen_low, self.result.log_gen_high = min(generations), max(generations)
        writer.begin_directory([LOG_DIRECTORY])
        await self._flush()
        for path in log_files:
            objects.append(await self._copy_file(context, writer, path, f"{LOG_DIRECTORY}/", "log", None,
                                                 per_database=False))

    async def _copy_file(self, context, writer, path: str, prefix: str, kind: str, database: str | None,
                         per_database: bool) -> ObjectEntry:
        """Copy one API file into a FILE. Per-database errors raise _DatabaseFailed; others propagate."""
        call = self.runtime.call
        name = ntpath.basename(path)
        try:
            handle, size = await call(context.open_file, path)
        except ExchangeError as error:
            if per_database:
                raise _DatabaseFailed(str(error)) from error
            raise
        stream = writer.open_file(name, size, modified=self._now())
        reading = _Pipeline(self, stream)
        try:
            while True:
                count = await reading.next(context, handle)
                if count == 0:
                    break
                self.result.bytes += count
                self.progress(prefix + name, count)
            await call(context.close_file, handle)
            record = stream.close()
        except ExchangeError as error:
            await reading.settle()
            if not per_database:
                raise
            try:
                await call(context.close_file, handle)
            except ExchangeError:
                pass
            try:
                stream.close()  # zero-fills to the declared size and marks the object corrupt (CFIL)
            except CorruptDataError:
                pass
            await self._flush()
            raise _DatabaseFailed(str(error)) from error
        except BaseException:
            await reading.settle()
            raise
        await self._flush()
        return ObjectEntry.written(record, prefix + name, kind, database)

    @staticmethod
    def _read(context, handle, room) -> int:
        """One Exchange read straight into the transfer buffer (a worker call)."""
        return context.read_file(handle, room)

    async def _flush(self) -> None:
        """Send full transfer buffers; leave one with room for the next read."""
        await self._sink.flush()

    # -- helpers ------------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.runtime.clock.now(), tz=dt.timezone.utc).replace(tzinfo=None)

    def _session_info(self, effective: Level) -> dict:
        return {
            "kind": "database",
            "server": self.api.server_name,
            "storage_group": self.storage_group,
            "backup_type": effective.name,
            "started": self.runtime.clock.now(),
        }

    def _metadata(self, instance: InstanceBackupInfo, effective: Level) -> dict:
        return {
            "format": "mailtape-exchange-backup/1",
            "server": self.api.server_name,
            "storage_group": instance.name,
            "requested_level": self.requested.name,
            "backup_type": effective.name,
            "api_backup_type": effective.api_type.name,
            "log_files": self.result.log_files,
            "log_gen_low": self.result.log_gen_low,
            "log_gen_high": self.result.log_gen_high,
            "databases": [
                {"name": d.name, "guid": d.guid, "streams": d.streams, "status": d.status, "error": d.error}
                for d in self.result.databases
            ],
            "warnings": self.result.warnings,
        }


class _Pipeline:
    """Reads one file into the transfer buffers, hashing each piece while the next is read.

    Three stages run at once in production: an Exchange read (worker thread), the hashes of the
    piece read before it (SHA-256 on one worker thread, CSUM + XXH3-128 on another: SHA-256 is
    the slowest stage, so nothing else is put behind it; both release the GIL) and,
    on the server's side, the tape write of an earlier buffer. The hash and the tape write only
    read a buffer, so a full buffer is sent while its last piece is still being hashed; the one
    thing that must wait is writing into that memory again (the pool lent the buffer out anew,
    or a copying session's buffer is reused): then the hash is finished first. In simulation
    everything is inline, in the order it always was (read, hash, send).
    """

    def __init__(self, agent: "StorageGroupBackup", stream):
        self.agent = agent
        self.stream = stream
        self.hashing: asyncio.Future | None = None
        self._hashed_in: tuple[object, int] = (None, 0)  # (buffer memory, end of the piece)

    async def next(self, context, handle) -> int:
        """Read the next piece of the file (0 at its end); its hash may still be running."""
        agent, sink = self.agent, self.agent._sink
        runtime = agent.runtime
        await sink.flush()  # a buffer with room for the read
        memory, start = sink.position()
        if self.hashing is not None and memory is self._hashed_in[0] and start < self._hashed_in[1]:
            await self.settle()  # the read would overwrite what is being hashed
        room = sink.room()[:agent.read_size]
        count = await runtime.call(agent._read, context, handle, room)
        await self.settle()
        if count:
            data = room[:count]
            self.stream.write_reserved(data, hash_now=False)
            if runtime.simulated:
                self.stream.hash_data(data)
            else:
                self._hashed_in = (memory, start + count)
                self.hashing = asyncio.gather(runtime.call(self.stream.hash_strong, data),
                                              runtime.call(self.stream.hash_fast, data))
        return count

    async def settle(self) -> None:
        """Wait for the hash in flight (before the stream closes, before its memory is written
        again, or on any error)."""
        hashing, self.hashing = self.hashing, None
        if hashing is not None:
            await hashing


class _DatabaseFailed(Exception):
    """One database could not be read; the group goes on."""
