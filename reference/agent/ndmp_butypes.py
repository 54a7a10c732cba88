"""The Exchange agent as an NDMP Data server: butype ``exchange`` (database level).

The lead's :class:`StorageGroupBackup` talks to a data-set *session* (``set_number``, ``send``,
``finish``, ``abort``; reference/transfer.py). Here that session is :class:`NdmpDataSetSession`:
``send`` hands MTF chunks to the NDMP data connection (a bounded queue drained by the Data service's
worker thread), and ``finish`` returns only when the DMA sends ``MAILTAPE_DATA_COMMIT`` — the data
set is on its media and in its catalog — so log truncation happens exactly there, never earlier.

A DMA that never sends the commit (stock ndmjob, any commercial DMA) ends the job with DATA_STOP
or by closing the connection; the session then fails ``finish`` and the backup ends the Exchange
instance with ``InstanceEnd.ERROR``: no truncation, no backup recorded in the database headers
(see docs/ndmp.md, "The exchange butype"). Level ``copy`` never truncates, so an uncommitted copy
ends with SUCCESS (a copy backup changes nothing Exchange relies on).

The same agent serves the brick-level ``mailbox`` butype (:class:`MailboxButypes`): the data set
reference/brick_jobs.py writes in-process, with the incremental base kept on the agent and saved
only on MAILTAPE_DATA_COMMIT.

All Exchange API work runs on one agent event-loop thread (:class:`AgentLoop`), on the emulator's
clock, so concurrent NDMP connections never call the emulator from two threads at once.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import os
import queue
import tempfile
import threading
import zlib
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Iterator

from emulators.clock import new_event_loop
from reference.agent.database_backup import DATABASE_INFO_NAME, LOG_DIRECTORY, METADATA_NAME, StorageGroupBackup
from reference.agent.database_restore import StorageGroupRestore
from reference.agent.levels import LEVELS
from reference.errors import MailtapeError
from reference.ndmp import constants as c
from reference.ndmp.data import Butype, DataJob
from reference.runtime import Runtime
from reference.transfer import CommitReceipt, DataSetTrailer, TransferAborted

log = logging.getLogger("mailtape.agent.ndmp")

QUEUE_CHUNKS = 16  # chunks in flight between the agent loop and the data connection (bounded memory)
POLL = 0.2  # seconds between abort checks while waiting for the agent
COMMIT_WAIT = 600.0  # how long MAILTAPE_DATA_COMMIT waits for truncation and InstanceEnd
ENV_TRAILER = "MAILTAPE_TRAILER"
ENV_STATE_DIR = "MAILTAPE_AGENT_STATE"  # the mailbox butype's state folder (until serve has --state)  # base64(zlib(JSON)) of the data-set trailer, for a mailtape DMA

_END = object()
IMAGE_MODES = ("medium", "set")



def stream_options(env: dict, levels) -> tuple[str, int, str]:
    """LEVEL, MTF_SET_NUMBER and MTF_IMAGE from a backup's environment, checked."""
    level = (env.get("LEVEL") or "full").lower()
    if level not in levels:
        raise MailtapeError(f"env LEVEL={level!r}: one of {', '.join(levels)}")
    try:
        set_number = int(env.get("MTF_SET_NUMBER") or "1")
    except ValueError:
        raise MailtapeError(f"env MTF_SET_NUMBER={env.get('MTF_SET_NUMBER')!r} is not a number") from None
    image = (env.get("MTF_IMAGE") or "medium").lower()
    if image not in IMAGE_MODES:
        raise MailtapeError(f"env MTF_IMAGE={image!r}: one of {', '.join(IMAGE_MODES)}")
    return level, set_number, image


@contextmanager
def spooled_medium(chunks: Iterable[bytes], spool_dir: str | None) -> Iterator:
    """A recover stream written to a temporary ``.bkf`` (the MTF reader needs random access) and
    opened as a medium; file and medium are gone afterwards."""
    from reference.format.sources import open_medium

    fd, spool = tempfile.mkstemp(suffix=".bkf", prefix="ndmp-recover-", dir=spool_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        if os.path.getsize(spool) == 0:
            raise MailtapeError("the recover stream is empty")
        medium = open_medium(spool)
        try:
            yield medium
        finally:
            medium.close()
    finally:
        Path(spool).unlink(missing_ok=True)

class _StreamSink:
    """A write-only "file" for :class:`BkfTarget`: blocks go to a list the butype yields from."""

    def __init__(self) -> None:
        self.pending: list = []
        self.position = 0

    def write(self, block) -> int:
        self.pending.append(block)
        self.position += len(block)
        return len(block)

    def tell(self) -> int:
        return self.position

    def take(self) -> list:
        out, self.pending = self.pending, []
        return out


class _MediumFramer:
    """Frames the agent's bare data set as a complete single-set MTF image (``MTF_IMAGE=medium``):
    TAPE + soft filemark, the set, then FM ESET FM as SFMBs, exactly as a ``.bkf`` holds it, so any
    DMA's tape holds something ``mailtape mtf verify`` reads. ``set`` passes the bytes through (our
    server's media writer adds the media header, ESET and filemarks itself)."""

    def __init__(self, set_number: int, now, seed: str) -> None:
        import random

        from reference.format.media import MediaWriter
        from reference.format.targets import BkfTarget

        self.sink = _StreamSink()
        # the media family id comes from a generator seeded by server, group, set and (virtual) time
        self.writer = MediaWriter(BkfTarget(self.sink, 1024, name="ndmp stream"), next_set_number=set_number,
                                  now=now, rng=random.Random(seed))
        self.writer.write_media_header()
        number = self.writer.begin_raw_set()
        assert number == set_number

    def feed(self, chunk: bytes) -> list:
        self.writer.feed(chunk)
        return self.sink.take()

    def end(self, eset) -> list:
        self.writer.end_set(eset)
        return self.sink.take()


class AgentLoop:
    """One event loop on its own thread, running on ``clock``; ``submit(coro)`` -> Future."""

    def __init__(self, clock) -> None:
        self.loop = new_event_loop(clock)
        self._thread = threading.Thread(target=self.loop.run_forever, name="agent-loop", daemon=True)
        self._thread.start()

    def submit(self, coro) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self, timeout: float = 60.0) -> None:
        """Let running jobs finish their clean-up (InstanceEnd), then stop the loop."""
        if self.loop.is_closed():
            return

        async def drain() -> None:
            # no asyncio timeout here: on a virtual-time loop it would fire at once (virtual time
            # jumps while the jobs wait for real I/O); the real-time bound is the result() below
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.submit(drain()).result(timeout)
        except Exception:  # noqa: BLE001 - closing anyway
            log.warning("agent: jobs still running at shutdown")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class NdmpDataSetSession:
    """The agent's data-set session over NDMP (same interface as reference.transfer.LocalSession)."""

    def __init__(self, set_number: int, loop: asyncio.AbstractEventLoop):
        self.set_number = set_number
        self.loop = loop
        self.chunks: queue.Queue = queue.Queue(QUEUE_CHUNKS)
        self.trailer: DataSetTrailer | None = None
        self.aborted: str | None = None
        self._receipt: asyncio.Future = loop.create_future()
        # a job that failed before opening its session never awaits the receipt: no asyncio warning
        self._receipt.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._failed: str | None = None

    # -- agent side (agent loop) --------------------------------------------------------------

    async def send(self, chunk) -> None:
        if self._failed:
            raise TransferAborted(self._failed)
        data = bytes(chunk)  # the writer reuses its buffers
        try:
            self.chunks.put_nowait(data)
        except queue.Full:
            await asyncio.get_running_loop().run_in_executor(None, self._put_blocking, data)

    def _put_blocking(self, item) -> None:
        while True:
            if self._failed:
                raise TransferAborted(self._failed)
            try:
                self.chunks.put(item, timeout=POLL)
                return
            except queue.Full:
                continue

    async def finish(self, trailer: DataSetTrailer) -> CommitReceipt:
        self.trailer = trailer
        await asyncio.get_running_loop().run_in_executor(None, self._put_blocking, _END)
        return await self._receipt

    async def abort(self, reason: str) -> None:
        self.aborted = reason
        try:
            self.chunks.put_nowait(_END)
        except queue.Full:
            pass

    # -- NDMP side (any thread) ---------------------------------------------------------------

    def commit(self, receipt: CommitReceipt) -> None:
        self.loop.call_soon_threadsafe(self._settle, receipt, None)

    def fail(self, reason: str) -> None:
        self._failed = reason
        self.loop.call_soon_threadsafe(self._settle, None, TransferAborted(reason))

    def _settle(self, receipt, error) -> None:
        if self._receipt.done():
            return
        if error is not None:
            self._receipt.set_exception(error)
        else:
            self._receipt.set_result(receipt)


def _env_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").replace(";", ",").split(",") if v.strip()]


def _truthy(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() not in ("n", "no", "false", "0", "off")


def encode_trailer(trailer: DataSetTrailer) -> str:
    eset = asdict(trailer.eset)
    if eset.get("write_date") is not None:
        eset["write_date"] = eset["write_date"].isoformat()
    doc = {"eset": eset, "objects": [asdict(o) for o in trailer.objects], "backup_type": trailer.backup_type,
           "log_gen_low": trailer.log_gen_low, "log_gen_high": trailer.log_gen_high, "metadata": trailer.metadata}
    return base64.b64encode(zlib.compress(json.dumps(doc, sort_keys=True).encode(), 9)).decode("ascii")


def decode_trailer(text: str) -> DataSetTrailer:
    """The trailer a mailtape DMA rebuilds from env MAILTAPE_TRAILER (see :func:`encode_trailer`)."""
    import datetime as dt

    from reference.format.writer import EsetInfo
    from reference.transfer import ObjectEntry

    try:
        doc = json.loads(zlib.decompress(base64.b64decode(text, validate=True)))
        eset = dict(doc["eset"])
        if eset.get("write_date"):
            eset["write_date"] = dt.datetime.fromisoformat(eset["write_date"])
        return DataSetTrailer(EsetInfo(**eset), [ObjectEntry(**o) for o in doc["objects"]], doc["backup_type"],
                              doc["log_gen_low"], doc["log_gen_high"], doc["metadata"])
    except (ValueError, KeyError, TypeError, zlib.error) as error:
        raise MailtapeError(f"env {ENV_TRAILER} from the agent is not a valid trailer: {error}") from None


class ExchangeButypes:
    """The ``exchange`` butype over one Exchange backup API (emulator or real)."""

    def __init__(self, api, runtime: Runtime, *, spool_dir: str | None = None):
        self.api = api
        self.runtime = runtime
        self.agent = AgentLoop(runtime.clock)
        self.spool_dir = spool_dir
        self.results: collections.deque = collections.deque(maxlen=100)  # recent GroupBackupResults, newest last
        self.mailbox: MailboxButypes | None = None  # the brick-level butype, when a mailbox store is served

    def close(self) -> None:
        self.agent.close()

    def butypes(self) -> list[Butype]:
        return [Butype(
            name="exchange", backup=self.backup, recover=self.recover,
            default_env={"STORAGE_GROUP": "", "DATABASES": "", "LEVEL": "full", "MTF_SET_NUMBER": "1",
                         "MTF_IMAGE": "medium",
                         "RESTORE_MODE": "roll-forward", "MOUNT": "y"},
            attrs=(c.ButypeAttr.BACKUP_FH_FILE | c.ButypeAttr.RECOVER_FILELIST | c.ButypeAttr.BACKUP_UTF8
                   | c.ButypeAttr.RECOVER_UTF8 | c.ButypeAttr.BACKUP_INCREMENTAL))]

    def fs_info(self) -> list:
        """CONFIG_GET_FS_INFO: one entry per storage group (what a DMA can back up)."""
        from reference.jobs import storage_group_names
        from reference.ndmp import messages as m

        names = self.agent.submit(self._names(storage_group_names)).result(60)
        return [m.FsInfo(unsupported=0xFF, fs_type="exchange-storage-group", fs_logical_device=name,
                         fs_physical_device=self.api.server_name, fs_env=[m.Pval("BUTYPE", "exchange")],
                         fs_status="online") for name in names]

    async def _names(self, storage_group_names) -> list[str]:
        return await self.runtime.call(storage_group_names, self.api)

    # -- backup -------------------------------------------------------------------------------

    @staticmethod
    def _storage_group(env: dict[str, str]) -> str:
        names = _env_list(env.get("STORAGE_GROUP")) or _env_list((env.get("FILESYSTEM") or "").strip("/"))
        if len(names) != 1:
            raise MailtapeError("env STORAGE_GROUP must name exactly one storage group per NDMP backup "
                                f"(got {names or 'none'}); run one operation per group")
        return names[0]

    def backup(self, job: DataJob) -> Iterator[bytes]:
        env = job.env
        storage_group = self._storage_group(env)
        level, set_number, image = stream_options(env, LEVELS)
        session = NdmpDataSetSession(set_number, self.agent.loop)

        async def open_session(info: dict) -> NdmpDataSetSession:
            return session

        sg_backup = StorageGroupBackup(self.api, storage_group, level, open_session=open_session,
                                       runtime=self.runtime, databases=_env_list(env.get("DATABASES")) or None)
        running = self.agent.submit(sg_backup.run())
        running.add_done_callback(lambda f: self._finished(sg_backup, f))
        done_streaming = False

        def on_committed(commit_env: dict[str, str]) -> None:
            try:
                data_set_id = int(commit_env.get("BACKUP_ID") or 0)
            except ValueError:
                data_set_id = 0
            barcodes = tuple(_env_list(commit_env.get("BARCODES")))
            session.commit(CommitReceipt(data_set_id, barcodes, int(commit_env.get("BYTES_ON_MEDIA") or 0)))
            result = running.result(COMMIT_WAIT)  # truncation and InstanceEnd happen in there
            if LEVELS[result.level].truncates and not result.truncated:
                raise MailtapeError(f"{storage_group}: committed, but logs were not truncated")
            job.log(f"{storage_group}: committed as backup {data_set_id}; "
                    + ("logs truncated" if result.truncated else f"{result.level} backup, logs kept"))

        def on_released(committed: bool) -> None:
            if committed:
                return
            if not done_streaming:
                session.fail("the DMA stopped the backup before the data set was complete")
            elif sg_backup.result.level == "copy":
                log.info("%s: copy backup not committed by the DMA; ending it without truncation", storage_group)
                session.commit(CommitReceipt(0, (), 0))
            else:
                session.fail("the DMA ended the backup without MAILTAPE_DATA_COMMIT: logs are kept "
                             "and Exchange records no backup")

        job.on_committed = on_committed
        job.on_released = on_released
        offset = 0
        framer = None
        if image == "medium":
            import datetime as dt

            clock = self.runtime.clock
            framer = _MediumFramer(set_number, lambda: dt.datetime.fromtimestamp(
                clock.now(), tz=dt.timezone.utc).replace(tzinfo=None, microsecond=0),
                seed=f"{self.api.server_name}/{storage_group}/{set_number}/{clock.now()!r}")
            for block in framer.sink.take():
                offset += len(block)
                yield bytes(block)
        try:
            while True:
                try:
                    item = session.chunks.get(timeout=POLL)
                except queue.Empty:
                    job.check_abort()
                    if running.done():
                        running.result()  # raises the agent's error
                        raise MailtapeError("the backup ended without finishing its data set")
                    continue
                if item is _END:
                    break
                job.check_abort()
                if item:
                    for block in (framer.feed(item) if framer is not None else (item,)):
                        offset += len(block)
                        yield bytes(block)
            if session.aborted is not None:
                running.result(COMMIT_WAIT)  # the agent failed: raise its error
                raise MailtapeError(f"backup of {storage_group} abandoned: {session.aborted}")
            trailer = session.trailer
            assert trailer is not None
            if framer is not None:
                for block in framer.end(trailer.eset):
                    offset += len(block)
                    yield bytes(block)
            sg = "/" + sg_backup.storage_group
            backed_up = int(self.runtime.clock.now())
            for entry in trailer.objects:
                job.add_file(f"{sg}/{entry.path}", size=entry.size, fh_info=entry.fla, mtime=backed_up,
                             ftype=c.FileType.REG)
            env.update({
                "STORAGE_GROUP": sg_backup.storage_group, "SERVER": self.api.server_name,
                "BACKUP_LEVEL": trailer.backup_type, "MTF_SET_NUMBER": str(set_number),
                "MTF_BYTES": str(offset), "MTF_IMAGE": image, "OBJECTS": str(len(trailer.objects)),
                "LOG_GEN_LOW": "" if trailer.log_gen_low is None else str(trailer.log_gen_low),
                "LOG_GEN_HIGH": "" if trailer.log_gen_high is None else str(trailer.log_gen_high),
                "WARNINGS": str(len(trailer.metadata.get("warnings", []))),
                ENV_TRAILER: encode_trailer(trailer),
            })
            for warning in trailer.metadata.get("warnings", []):
                job.log(warning, c.LogType.WARNING)
            done_streaming = True
        finally:
            if not done_streaming:
                session.fail("the data connection or the DMA stopped the backup")

    def _finished(self, sg_backup: StorageGroupBackup, future: Future) -> None:
        self.results.append(sg_backup.result)
        error = future.exception()
        if error is None:
            log.info("%s: %s backup ended %s (truncated=%s)", sg_backup.storage_group, sg_backup.result.level,
                     sg_backup.result.status, sg_backup.result.truncated)
        else:
            log.warning("%s: backup ended without commit: %s (logs kept)", sg_backup.storage_group, error)

    # -- recover ------------------------------------------------------------------------------

    def recover(self, job: DataJob, chunks: Iterator[bytes]) -> None:
        """Spool the data set, read it with the MTF reader and feed StorageGroupRestore.

        Name list (optional): original_path ``/SG`` or ``/SG/Database`` selects what to restore,
        destination_path ``/TARGET_SG`` restores into another storage group (e.g. the Recovery
        Storage Group). Without one: env STORAGE_GROUP (default: the group in the data set)."""
        from reference.format.reader import MtfReader

        env = job.env
        with spooled_medium(chunks, self.spool_dir) as medium:
            reader = MtfReader([medium])
            catalog = reader.read()
            sets = [s for s in catalog.sets if s.objects]
            if not sets:
                raise MailtapeError("no MTF data set with objects in the recover stream")
            data_set = sets[0]
            source_sg = data_set.volumes[0].volume if data_set.volumes else ""
            target, databases = self._recover_target(job, source_sg)
            restore = StorageGroupRestore(self.api, target, runtime=self.runtime,
                                          mode=env.get("RESTORE_MODE") or "roll-forward",
                                          databases=databases, mount=_truthy(env.get("MOUNT"), True))
            objects = list(self._objects(reader, data_set))
            result = self.agent.submit(restore.run(self._aiter(objects))).result()
        env["RESTORED_DATABASES"] = ",".join(result.databases)
        env["RESTORED_LOGS"] = str(result.logs)
        env["RESTORED_TO"] = target
        for entry in job.nlist:
            wanted = entry.original_path.strip("/").split("/")
            ok = len(wanted) < 2 or any(d.lower() == wanted[1].lower() for d in result.databases)
            job.log_file(entry.original_path, c.RecoveryStatus.SUCCESSFUL if ok else c.RecoveryStatus.FAILED_NOT_FOUND)
        job.log(f"restored {', '.join(result.databases)} and {result.logs} logs into {target}")

    def _recover_target(self, job: DataJob, source_sg: str) -> tuple[str, list[str] | None]:
        target = (job.env.get("STORAGE_GROUP") or "").strip("/") or source_sg
        databases: list[str] = _env_list(job.env.get("DATABASES"))
        for entry in job.nlist:
            parts = [p for p in entry.original_path.split("/") if p]
            if len(parts) >= 2:
                databases.append(parts[1])
            dest = [p for p in (entry.destination_path or "").split("/") if p]
            if dest:
                target = dest[0]
        if not target:
            raise MailtapeError("no storage group to restore into (env STORAGE_GROUP or a name list)")
        return target, databases or None

    @staticmethod
    def _objects(reader, data_set) -> Iterator["_SpooledObject"]:
        for entry in data_set.objects:
            directory = "/".join(entry.path)
            path = f"{directory}/{entry.name}" if directory else entry.name
            if (not directory and entry.name == METADATA_NAME) or entry.name == DATABASE_INFO_NAME:
                kind = "metadata"
            elif directory == LOG_DIRECTORY:
                kind = "log"
            else:
                kind = "stream"
            if entry.incomplete or entry.damaged:
                raise MailtapeError(f"object {path!r} in the recover stream is damaged: {entry.damaged or 'incomplete'}")
            yield _SpooledObject(path, kind, entry.size, reader, entry)

    @staticmethod
    async def _aiter(objects: list) -> AsyncIterator[Any]:
        for obj in objects:
            yield obj


class _SpooledObject:
    def __init__(self, path: str, kind: str, size: int, reader, entry):
        self.path, self.kind, self.size = path, kind, size
        self._reader, self._entry = reader, entry

    async def chunks(self) -> AsyncIterator[bytes]:
        for view in self._reader.iter_object(self._entry):
            yield view


class MailboxButypes:
    """The ``mailbox`` butype (brick level) over one mailbox store, sharing the agent loop.

    Backup env: MAILBOXES (comma-separated fnmatch patterns, default ``*``), FOLDERS (display-path
    patterns, default ``*``), LEVEL full | incremental | differential | copy, MTF_SET_NUMBER,
    MTF_IMAGE medium | set, LAST_SET_ID (optional: the DMA's newest data set of this store; a base
    from another set turns an incremental into a full). The data set is the one
    :func:`reference.brick_jobs.backup_mailboxes` writes (same packer). The incremental base lives
    in ``state_dir`` and is saved only on MAILTAPE_DATA_COMMIT.

    Recover: the stream holds brick-level set(s); the name list selects mailboxes (original_path
    ``/MAILBOX``, destination_path ``/OTHER`` restores into another mailbox); env FOLDERS and
    CONFLICT (skip | replace | duplicate ...) as for ``mailtape restore``."""

    def __init__(self, store, agent: AgentLoop, runtime: Runtime, state_dir: str | os.PathLike,
                 *, spool_dir: str | None = None):
        from reference.brick_jobs import store_identity

        self.store = store
        self.agent = agent
        self.runtime = runtime
        self.state_dir = Path(state_dir)
        self.spool_dir = spool_dir
        self.server, self.storage_group = store_identity(store)

    def butype(self) -> Butype:
        return Butype(
            name="mailbox", backup=self.backup, recover=self.recover,
            default_env={"MAILBOXES": "*", "FOLDERS": "*", "LEVEL": "full", "MTF_SET_NUMBER": "1",
                         "MTF_IMAGE": "medium", "CONFLICT": "skip"},
            attrs=(c.ButypeAttr.BACKUP_FH_FILE | c.ButypeAttr.RECOVER_FILELIST | c.ButypeAttr.BACKUP_UTF8
                   | c.ButypeAttr.RECOVER_UTF8 | c.ButypeAttr.BACKUP_INCREMENTAL))

    def _states(self):
        from reference.brick_jobs import StateStore

        return StateStore(self.state_dir, self.server, self.storage_group, directory=self.state_dir)

    @staticmethod
    def _selection(env: dict[str, str], mailboxes: list[str] | None = None):
        from reference.agent.brick import Selection

        return Selection(mailboxes=tuple(mailboxes or _env_list(env.get("MAILBOXES")) or ["*"]),
                         folders=tuple(_env_list(env.get("FOLDERS")) or ["*"]))

    def _choose_base(self, level: str, selection, last_set: str | None, warnings: list[str]):
        """Effective level and base, from the agent's own state (the DMA's catalog is not here)."""
        if level in ("full", "copy"):
            return level, None
        base = self._states().load("incremental" if level == "incremental" else "full")
        reason = None
        if base is None:
            reason = "no committed previous full backup of this store on the agent"
        elif base.selection != selection.to_meta():
            reason = "the selection (mailboxes, folders) differs from the base backup's"
        elif last_set and level == "incremental" and last_set != str(base.set_id):
            reason = f"the DMA's newest data set is {last_set}, the agent's base is data set {base.set_id}"
        if reason is None:
            return level, base
        warnings.append(f"{level} backup of {self.server}/{self.storage_group} converted to a full backup: {reason}")
        return "full", None

    def backup(self, job: DataJob) -> Iterator[bytes]:
        import datetime as dt

        from reference.agent.brick import BrickBackup
        from reference.brick_jobs import LEVELS as BRICK_LEVELS
        from reference.brick_jobs import BaseRecord, LockStep, SetPacker

        env = job.env
        level, set_number, image = stream_options(env, BRICK_LEVELS)
        selection = self._selection(env)
        warnings: list[str] = []
        clock = self.runtime.clock
        effective, base = self._choose_base(level, selection, env.get("LAST_SET_ID"), warnings)
        pass_ = BrickBackup(self.store, selection, base.state if base else None,
                            level="full" if effective == "copy" else effective, clock=clock.now)
        packer = SetPacker(set_number, self.server, self.storage_group, effective, clock.now())
        producer = LockStep(lambda step: packer.run(pass_, step, None))
        producer.start()

        async def step() -> list:
            # on the agent loop: the pass and the exchange butype never touch the store together
            producer.step()
            return packer.take()

        def on_committed(commit_env: dict[str, str]) -> None:
            if effective == "copy":
                return
            try:
                data_set_id = int(commit_env.get("BACKUP_ID") or 0)
            except ValueError:
                raise MailtapeError(f"MAILTAPE_DATA_COMMIT BACKUP_ID={commit_env.get('BACKUP_ID')!r} "
                                    "is not a number") from None
            states = self._states()
            record = BaseRecord(data_set_id, effective, selection.to_meta(), pass_.state)
            states.save("incremental", record)
            if effective == "full":
                states.save("full", record)
            job.log(f"{self.server}/{self.storage_group}: {effective} backup committed as data set "
                    f"{data_set_id}; incremental base saved")

        job.on_committed = on_committed
        framer = None
        offset = 0
        if image == "medium":
            framer = _MediumFramer(set_number, lambda: dt.datetime.fromtimestamp(
                clock.now(), tz=dt.timezone.utc).replace(tzinfo=None, microsecond=0),
                seed=f"{self.server}/{self.storage_group}/{set_number}/{clock.now()!r}")
            for block in framer.sink.take():
                offset += len(block)
                yield bytes(block)

        def out(chunks: list) -> Iterator[bytes]:
            nonlocal offset
            for chunk in chunks:
                for block in (framer.feed(chunk) if framer is not None else (chunk,)):
                    offset += len(block)
                    yield bytes(block)

        try:
            while not producer.finished:
                job.check_abort()
                yield from out(self.agent.submit(step()).result())
            producer.raise_error()
            for change in pass_.summary.uidvalidity_changes:
                warnings.append(f"UIDVALIDITY of {change['mailbox']}:{'/'.join(change['folder'])} changed "
                                f"{change['old']}→{change['new']}")
            metadata = packer.metadata(pass_, selection, level, warnings)
            eset = packer.finish_metadata(metadata)
            yield from out(packer.take())
            if framer is not None:
                for block in framer.end(eset):
                    offset += len(block)
                    yield bytes(block)
        finally:
            producer.cancel()
        trailer = DataSetTrailer(eset, packer.objects, effective, metadata=metadata)
        backed_up = int(clock.now())
        for entry in trailer.objects:
            job.add_file(mailbox_history_name(self.storage_group, entry), size=entry.size, fh_info=entry.fla,
                         mtime=backed_up, ftype=c.FileType.REG)
        env.update({
            "SERVER": self.server, "STORAGE_GROUP": self.storage_group, "BACKUP_LEVEL": effective,
            "MTF_SET_NUMBER": str(set_number), "MTF_BYTES": str(offset), "MTF_IMAGE": image,
            "OBJECTS": str(len(trailer.objects)), "ITEMS": str(packer.items),
            "MAILBOXES_BACKED_UP": ",".join(packer.mailboxes), "WARNINGS": str(len(warnings)),
            ENV_TRAILER: encode_trailer(trailer),
        })
        for warning in warnings:
            job.log(warning, c.LogType.WARNING)

    def recover(self, job: DataJob, chunks: Iterator[bytes]) -> None:
        from reference.agent.brick import BrickCatalog, RestoreOptions, run_restore
        from reference.agent.brick.mtf import read_brick_sets
        from reference.format.reader import MtfReader

        env = job.env
        wanted: list[str] = []
        target = (env.get("TARGET_MAILBOX") or "").strip() or None
        for entry in job.nlist:
            parts = [p for p in entry.original_path.split("/") if p]
            if parts and parts[0] == self.storage_group and len(parts) > 1:
                parts = parts[1:]  # /Mailboxes/NAME as the file history names it
            if parts:
                wanted.append(parts[0])
            dest = [p for p in (entry.destination_path or "").split("/") if p]
            if dest:
                target = dest[-1]
        if target and len(set(wanted)) > 1:
            raise MailtapeError("a destination mailbox needs exactly one source mailbox in the name list")
        options = RestoreOptions(selection=self._selection(env, wanted), target_mailbox=target,
                                 conflict=(env.get("CONFLICT") or "skip").lower())
        with spooled_medium(chunks, self.spool_dir) as medium:
            reader = MtfReader([medium])
            sets = read_brick_sets(reader, reader.read())
            if not sets:
                raise MailtapeError("no brick-level (mailbox) data set in the recover stream")
            catalog = BrickCatalog.from_sets(sets)

            async def restore():
                return run_restore(catalog, self.store, options)

            result = self.agent.submit(restore()).result()
        counts = result.plan.counts()
        env["RESTORED_ITEMS"] = str(sum(n for op, n in counts.items() if op in ("append", "replace")))
        env["RESTORED_TO"] = target or ",".join(sorted(set(wanted))) or "*"
        env["FAILED_ITEMS"] = str(len(result.failed))
        for entry in job.nlist:
            job.log_file(entry.original_path, c.RecoveryStatus.SUCCESSFUL if result.ok
                         else c.RecoveryStatus.FAILED_UNDEFINED_ERROR)
        for action, reason in result.failed[:20]:
            job.log(f"{'/'.join(action.folder)}: {reason}", c.LogType.WARNING)
        job.log("; ".join(f"{n} {op}" for op, n in sorted(counts.items())) or "nothing to restore")
        if result.failed and not result.done:
            raise MailtapeError(f"mailbox restore failed: {len(result.failed)} items failed")


def mailbox_history_name(storage_group: str, entry) -> str:
    """The file-history name of a brick-level object: ``/Mailboxes/MAILBOX/PATH`` (the metadata
    volume's objects have no mailbox: ``/Mailboxes/PATH``)."""
    return "/".join(["", storage_group, *([entry.database] if entry.database else []), entry.path])


def default_state_dir(exchange_root: str) -> Path:
    """Where the agent keeps brick-level incremental bases unless told otherwise: beside the root."""
    root = Path(exchange_root).resolve()
    return root.parent / f"{root.name}.mailtape-state"


def make_agent_server(api, runtime: Runtime, credentials, *, host: str = "127.0.0.1", port: int = 0,
                      allow_remote: bool = False, spool_dir: str | None = None, mailbox_store=None,
                      state_dir: str | os.PathLike | None = None):
    """An NdmpServer offering the ``exchange`` butype over ``api`` and the ``mailbox`` butype over
    ``mailbox_store`` (default: the emulated server's mailboxes; incremental bases in ``state_dir``,
    else env MAILTAPE_AGENT_STATE, else beside the Exchange root); returns (server, butypes).
    The host name it reports (CONFIG_GET_HOST_INFO) is the Exchange server's name, which a DMA
    records as the data set's server."""
    from reference.ndmp.data import DataService
    from reference.ndmp.server import NdmpServer, ServerConfig

    agent = ExchangeButypes(api, runtime, spool_dir=spool_dir)
    butypes = agent.butypes()
    emulated = getattr(api, "server", None)
    if mailbox_store is None and emulated is not None and hasattr(emulated, "storage_groups"):
        from emulators.exchange.mailbox_store import ServerMailboxStore

        mailbox_store = ServerMailboxStore.for_server(emulated)
    if mailbox_store is not None:
        state_dir = state_dir or os.environ.get(ENV_STATE_DIR) or (
            default_state_dir(emulated.root) if emulated is not None else None)
        if not state_dir:
            raise MailtapeError("the mailbox butype needs a state folder for its incremental bases")
        agent.mailbox = MailboxButypes(mailbox_store, agent.agent, runtime, state_dir, spool_dir=spool_dir)
        butypes.append(agent.mailbox.butype())
    server = NdmpServer(ServerConfig(host=host, port=port, credentials=credentials, allow_remote=allow_remote,
                                     hostname=api.server_name, product_name="mailtape Exchange agent"))
    server.add_service(DataService(butypes, fs_info=agent.fs_info))
    return server, agent
