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
from dataclasses import asdict
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

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
ENV_TRAILER = "MAILTAPE_TRAILER"  # base64(zlib(JSON)) of the data-set trailer, for a mailtape DMA

_END = object()
IMAGE_MODES = ("medium", "set")


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
        level = (env.get("LEVEL") or "full").lower()
        if level not in LEVELS:
            raise MailtapeError(f"env LEVEL={level!r}: one of {', '.join(LEVELS)}")
        try:
            set_number = int(env.get("MTF_SET_NUMBER") or "1")
        except ValueError:
            raise MailtapeError(f"env MTF_SET_NUMBER={env.get('MTF_SET_NUMBER')!r} is not a number") from None
        image = (env.get("MTF_IMAGE") or "medium").lower()
        if image not in IMAGE_MODES:
            raise MailtapeError(f"env MTF_IMAGE={image!r}: one of {', '.join(IMAGE_MODES)}")
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
        from reference.format.sources import open_medium

        env = job.env
        fd, spool = tempfile.mkstemp(suffix=".bkf", prefix="ndmp-recover-", dir=self.spool_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            if os.path.getsize(spool) == 0:
                raise MailtapeError("the recover stream is empty")
            medium = open_medium(spool)
            try:
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
            finally:
                medium.close()
        finally:
            Path(spool).unlink(missing_ok=True)
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


def make_agent_server(api, runtime: Runtime, credentials, *, host: str = "127.0.0.1", port: int = 0,
                      allow_remote: bool = False, spool_dir: str | None = None):
    """An NdmpServer offering the ``exchange`` butype over ``api``; returns (server, butypes).
    The host name it reports (CONFIG_GET_HOST_INFO) is the Exchange server's name, which a DMA
    records as the data set's server."""
    from reference.ndmp.data import DataService
    from reference.ndmp.server import NdmpServer, ServerConfig

    agent = ExchangeButypes(api, runtime, spool_dir=spool_dir)
    server = NdmpServer(ServerConfig(host=host, port=port, credentials=credentials, allow_remote=allow_remote,
                                     hostname=api.server_name, product_name="mailtape Exchange agent"))
    server.add_service(DataService(agent.butypes(), fs_info=agent.fs_info))
    return server, agent
