"""Brick-level (mailbox / folder / item) backup and restore jobs through the backup server.

The agent side is the brick engine (``reference/agent/brick``); the server side is the same
``site.server.open_session(info)`` data path the database-level jobs use (``reference/jobs.py``):

* :func:`backup_mailboxes` runs one :class:`BrickBackup` pass, packages it as **one MTF data set**
  (``write_brick_set``: a VOLB per mailbox, a DIRB per folder, ``*.records.jsonl`` and ``*.eml``
  FILEs, plus a last VOLB holding ``BackupMetadata.json`` for catalog rebuilds), streams it to the
  server, waits for the commit receipt and **only then** saves the incremental base
  (``SITE/brick-state/<store id>.json``). Any failure aborts the session: nothing is committed, the
  job is recorded ``failed``, the base is untouched, so the next backup still has a complete chain.
* :func:`restore_mailboxes` picks the chain (last full + later incrementals, or full + one
  differential; point in time by set id or time), reads the records back from tape (SHA-256
  checked against the catalog), rebuilds the :class:`BrickCatalog` view and runs the brick
  restore; the item bodies the selection needs are read from tape at the first append (none at
  all for a dry run or when everything is already there).

The blocking pass (store reads, MTF packaging) runs in a helper thread that strictly alternates
with the event loop (:class:`_LockStep`): the loop sends what the pass produced, then lets it go on.
Only one side runs at a time, so the virtual clock and the emulators see one thread at a time and
memory stays bounded by :data:`SEND_BATCH` plus one message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reference.agent.brick import (
    BackupState,
    BrickBackup,
    BrickCatalog,
    RestoreOptions,
    run_restore,
)
from reference.agent.brick.backup import BackupSummary
from reference.agent.brick.model import DATASET, ITEM, MAILBOX, BrickObject
from reference.agent.brick.mtf import write_brick_set
from reference.agent.brick.restore import RestoreResult
from reference.agent.brick.selection import Selection
from reference.errors import CorruptDataError, MailtapeError, NotFoundError, UsageError
from reference.format.writer import DataSetWriter
from reference.server.catalog import DataSetRecord
from reference.server.restore_plan import restore_chain
from reference.transfer import CommitReceipt, DataSetTrailer, ObjectEntry

log = logging.getLogger("mailtape.brick_jobs")

KIND = "mailbox"
DEFAULT_STORAGE_GROUP = "Mailboxes"
LEVELS = ("full", "incremental", "differential", "copy")
SET_FORMAT = "mailtape-brick-set/1"
METADATA_DEVICE = "mailtape Backup Metadata"
METADATA_NAME = "BackupMetadata.json"
STATE_DIR = "brick-state"
SEND_BATCH = 4 << 20
"""Bytes the pass may produce before the loop sends them to the server (memory bound)."""

Progress = Callable[[BrickObject], None]
"""progress(object) — called for every object of the pass (mailbox, folder, item, ...)."""


class BrickJobError(MailtapeError):
    """A brick-level backup or restore job failed (the message says which and why)."""


# -- the incremental base ------------------------------------------------------------------------


def store_id(server: str, storage_group: str) -> str:
    """A file-name-safe key for one backed-up store (server + storage group)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{server}-{storage_group}").strip("_")[:80]
    digest = hashlib.sha256(f"{server}\0{storage_group}".encode()).hexdigest()[:10]
    return f"{readable}-{digest}"


@dataclass
class BaseRecord:
    """A saved BackupState and the catalog data set it describes."""

    set_id: int
    level: str
    selection: dict
    state: BackupState


class StateStore:
    """``SITE/brick-state/<store id>.json`` (base for the next incremental: the state after the
    last full, incremental or differential) and ``<store id>.full.json`` (base for differentials:
    the last full). Spec brick-level-imap.md §6: incremental = since the last backup of any type,
    differential = since the last full."""

    def __init__(self, site_root: Path, server: str, storage_group: str, *, directory: Path | None = None):
        """``directory``: keep the files there instead of ``SITE/brick-state`` (the NDMP agent keeps
        its base beside the Exchange root, reference/agent/ndmp_butypes.py)."""
        self.dir = Path(directory) if directory is not None else Path(site_root) / STATE_DIR
        self.key = store_id(server, storage_group)

    def path(self, which: str) -> Path:
        return self.dir / (f"{self.key}.json" if which == "incremental" else f"{self.key}.full.json")

    def load(self, which: str) -> BaseRecord | None:
        path = self.path(which)
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return BaseRecord(int(raw["set_id"]), raw["level"], raw["selection"],
                              BackupState.from_json(raw["state"], str(path)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptDataError(f"cannot read brick-level backup state ({exc})", str(path)) from None

    def save(self, which: str, record: BaseRecord) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path(which)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"set_id": record.set_id, "level": record.level, "selection": record.selection,
                                   "state": record.state.to_json()}, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)


# -- backup --------------------------------------------------------------------------------------


@dataclass
class MailboxBackupResult:
    server: str
    storage_group: str
    requested_level: str
    level: str
    status: str = "running"  # ok | warning | failed
    job_id: int | None = None
    summary: BackupSummary = field(default_factory=BackupSummary)
    mailbox_names: list[str] = field(default_factory=list)
    items: int = 0
    objects: int = 0
    bytes_on_media: int = 0
    warnings: list[str] = field(default_factory=list)
    receipt: CommitReceipt | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        s = self.summary
        return {
            "server": self.server, "storage_group": self.storage_group, "requested_level": self.requested_level,
            "level": self.level, "status": self.status, "error": self.error, "job": self.job_id,
            "mailboxes": s.mailboxes, "folders": s.folders, "items": self.items,
            "items_stored": s.items_stored, "items_single_instance": s.items_referenced,
            "bytes_stored": s.bytes_stored, "bytes_read": s.bytes_read,
            "single_instance_bytes_saved": max(0, s.bytes_read - s.bytes_stored),
            "flag_updates": s.flag_updates, "expunged": s.expunged, "folders_gone": s.folders_gone,
            "filtered_out": s.filtered_out, "uidvalidity_resets": s.uidvalidity_changes,
            "objects": self.objects, "bytes_on_media": self.bytes_on_media,
            "data_set": self.receipt.data_set_id if self.receipt else None,
            "cartridges": list(self.receipt.barcodes) if self.receipt else [],
            "warnings": self.warnings,
        }


def store_identity(store) -> tuple[str, str]:
    """(server, storage group) under which a store's brick-level backups are cataloged: the
    Exchange server name and ``Mailboxes``; for IMAP ``imap://host:port`` and ``Mailboxes (logins)``
    (so separately backed-up groups of accounts never share a chain)."""
    logins = getattr(store, "_stores", None)
    stores = list(logins.values()) if isinstance(logins, dict) else [store]
    urls = [getattr(s, "url", None) for s in stores]
    if all(u is not None and hasattr(u, "host") for u in urls):
        return imap_identity(urls, [getattr(s, "mailbox_name", u.user) for s, u in zip(stores, urls)])
    name = getattr(store, "server_name", None)
    if not name:
        raise UsageError(f"cannot tell which server {type(store).__name__} is: pass server_name")
    return name, DEFAULT_STORAGE_GROUP


def imap_identity(urls, mailboxes=None) -> tuple[str, str]:
    """:func:`store_identity` of IMAP logins (parsed URLs) before they are opened."""
    servers = sorted({f"{u.scheme}://{u.host}:{u.port}" for u in urls})
    users = sorted(mailboxes or [u.user for u in urls])
    return " ".join(servers), f"{DEFAULT_STORAGE_GROUP} ({', '.join(users)})"


def record_failed_job(site, target: str, level: str, error: BaseException | str, kind: str = "backup") -> int:
    """A job that failed before it could start (store unreachable, login refused) still shows in
    ``mailtape jobs``."""
    clock = site.runtime.clock
    job_id = site.catalog.start_job(kind, target, level, started=clock.now())
    site.catalog.finish_job(job_id, "failed", message=str(error), ended=clock.now())
    return job_id


def _identity(store, server_name: str | None, storage_group: str | None) -> tuple[str, str]:
    if server_name is None:
        guessed_server, guessed_group = store_identity(store)
        return guessed_server, storage_group or guessed_group
    return server_name, storage_group or DEFAULT_STORAGE_GROUP


def _choose_base(site, states: StateStore, server: str, storage_group: str, level: str,
                 selection: Selection, warnings: list[str]) -> tuple[str, BaseRecord | None]:
    """The effective level and its base; incremental/differential without a usable base → full."""
    if level in ("full", "copy"):
        return level, None
    base = states.load("incremental" if level == "incremental" else "full")
    reason = None
    if base is None:
        reason = "no previous full backup of this store"
    else:
        sets = {s.id: s for s in site.catalog.data_sets(server, storage_group) if s.kind == KIND}
        known = sets.get(base.set_id)
        if known is None or known.status != "ok":
            reason = f"its base (data set {base.set_id}) is no longer in the catalog or on media"
        elif base.selection != selection.to_meta():
            reason = "the selection (mailboxes, folders, dates) differs from the base backup's"
        else:
            newer_types = ("full",) if level == "differential" else ("full", "incremental", "differential")
            later = [s for s in sets.values() if s.id > base.set_id and s.backup_type in newer_types]
            if later:
                reason = (f"a newer {later[-1].backup_type} backup (data set {later[-1].id}) exists that "
                          "this base does not know")
    if reason is None:
        return level, base
    warning = f"{level} backup of {server}/{storage_group} converted to a full backup: {reason}"
    log.warning(warning)
    warnings.append(warning)
    return "full", None


async def backup_mailboxes(site, store, selection: Selection | None = None, level: str = "full", *,
                           server_name: str | None = None, storage_group: str | None = None,
                           progress: Progress | None = None) -> MailboxBackupResult:
    """One brick-level backup of ``store`` as one data set; see the module docstring.

    ``level``: full | incremental | differential | copy (a full pass that is no base for later
    backups). ``server_name``/``storage_group`` key the catalog chain and the incremental base
    (default: :func:`store_identity`). Raises :class:`BrickJobError` when the job fails (after
    recording it failed)."""
    if level not in LEVELS:
        raise UsageError(f"backup level must be one of {', '.join(LEVELS)}, not {level!r}")
    server_name, storage_group = _identity(store, server_name, storage_group)
    selection = selection or Selection()
    clock = site.runtime.clock
    catalog = site.catalog
    result = MailboxBackupResult(server_name, storage_group, level, level)
    result.job_id = job_id = catalog.start_job("backup", f"{server_name}/{storage_group}", level,
                                               started=clock.now())
    session = None
    producer = None
    try:
        states = StateStore(site.root, server_name, storage_group)
        effective, base = _choose_base(site, states, server_name, storage_group, level, selection,
                                       result.warnings)
        result.level = effective
        job = BrickBackup(store, selection, base.state if base else None,
                          level="full" if effective == "copy" else effective, clock=clock.now)
        session = await site.server.open_session({
            "kind": KIND, "server": server_name, "storage_group": storage_group, "backup_type": effective,
            "started": clock.now(), "job_id": job_id})
        packer = _Packer(session.set_number, server_name, storage_group, effective, clock.now())
        producer = _LockStep(lambda step: packer.run(job, step, progress))
        producer.start()
        while not producer.finished:
            producer.step()
            for chunk in packer.take():
                await session.send(chunk)
        producer.raise_error()
        summary = job.summary
        result.summary = summary
        result.mailbox_names = packer.mailboxes
        for change in summary.uidvalidity_changes:
            result.warnings.append(
                f"UIDVALIDITY of {change['mailbox']}:{'/'.join(change['folder'])} changed "
                f"{change['old']}→{change['new']} ({change['remapped']} re-mapped, {change['read']} re-read)")
        metadata = packer.metadata(job, selection, level, result.warnings)
        eset = packer.finish_metadata(metadata)
        for chunk in packer.take():
            await session.send(chunk)
        trailer = DataSetTrailer(eset, packer.objects, effective, metadata=metadata)
        receipt = await session.finish(trailer)
        result.receipt = receipt
        # The set is on tape and in the catalog: only now may it become the base of the next pass.
        if effective != "copy":
            record = BaseRecord(receipt.data_set_id, effective, selection.to_meta(), job.state)
            states.save("incremental", record)
            if effective == "full":
                states.save("full", record)
        result.items = packer.items
        result.objects = len(packer.objects)
        result.bytes_on_media = receipt.bytes_on_media
        result.status = "warning" if result.warnings else "ok"
        catalog.finish_job(job_id, result.status, level=effective, bytes=summary.bytes_stored,
                           objects=packer.items, warnings=result.warnings, ended=clock.now())
        return result
    except BaseException as error:
        result.status = "failed"
        result.error = str(error)
        if producer is not None:
            producer.cancel()
        if session is not None and result.receipt is None:
            await session.abort(str(error))
            await site.server.drain()
        message = f"brick-level {result.level} backup of {server_name}/{storage_group} failed: {error}"
        catalog.finish_job(job_id, "failed", level=result.level, message=message, warnings=result.warnings,
                           ended=clock.now())
        if isinstance(error, MailtapeError):
            raise BrickJobError(message + " (nothing was committed; the previous backups and the "
                                "incremental base are unchanged)") from error
        raise


class _Packer:
    """Builds the MTF data set (the pass, then the metadata volume) and lists its objects."""

    def __init__(self, set_number: int, server: str, storage_group: str, level: str, now: float):
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.server, self.storage_group, self.level = server, storage_group, level
        when = dt.datetime.fromtimestamp(now, tz=dt.UTC).replace(tzinfo=None)
        self.writer = DataSetWriter(self._sink, set_number=set_number,
                                    name=f"Mailboxes {storage_group} ({level})",
                                    description=f"brick-level {level} backup of {storage_group} on {server}",
                                    user="mailtape", write_date=when)
        self.dirs: dict[int, tuple[str, list[str]]] = {}
        self._volume = ""
        self.mailboxes: list[str] = []
        self.objects: list[ObjectEntry] = []
        self.items = 0
        self.dataset_meta: dict = {}

    def _sink(self, chunk) -> None:
        self.pending.append(bytes(chunk))  # the writer reuses its buffers
        self.pending_bytes += len(chunk)

    def take(self) -> list[bytes]:
        """What the pass produced since the last call, as one chunk: a mailbox set is mostly small
        pieces (three per message: header, body, trailer), and every chunk costs the server a
        fixed amount (queue, pacing, media-writer bookkeeping) that one ``SEND_BATCH`` join, a
        memcpy, does not."""
        batch, self.pending, self.pending_bytes = self.pending, [], 0
        return [b"".join(batch)] if len(batch) > 1 else batch

    # the writer interface write_brick_set uses, recording which mailbox/folder each DIRB is
    def begin_volume(self, device, volume="", machine="", **kwargs):
        self._volume = volume
        self.mailboxes.append(volume)
        return self.writer.begin_volume(device, volume, machine, **kwargs)

    def begin_directory(self, path, **kwargs):
        dir_id = self.writer.begin_directory(path, **kwargs)
        self.dirs[dir_id] = (self._volume, list(path))
        return dir_id

    def add_file(self, name, size, data, **kwargs):
        record = self.writer.add_file(name, size, data, **kwargs)
        mailbox, components = self.dirs[record.dir_id]
        kind = "item" if name.endswith(".eml") else "metadata"
        self.items += kind == "item"
        self.objects.append(ObjectEntry.written(record, "/".join(components + [name]), kind, mailbox))
        return record

    def run(self, job: BrickBackup, step: Callable[[], None], progress: Progress | None) -> None:
        def objects():
            for obj in job.objects():
                if obj.kind == DATASET:
                    self.dataset_meta = dict(obj.meta)
                if progress is not None:
                    progress(obj)
                yield obj
                if self.pending_bytes >= SEND_BATCH:
                    step()

        write_brick_set(objects(), self)

    def metadata(self, job: BrickBackup, selection: Selection, requested: str, warnings: list[str]) -> dict:
        s = job.summary
        return {
            "format": SET_FORMAT, "kind": KIND, "server": self.server, "storage_group": self.storage_group,
            "backup_type": self.level, "requested_level": requested, "selection": selection.to_meta(),
            "dataset": self.dataset_meta, "mailboxes": self.mailboxes,
            "summary": {"mailboxes": s.mailboxes, "folders": s.folders, "items_stored": s.items_stored,
                        "items_single_instance": s.items_referenced, "bytes_stored": s.bytes_stored,
                        "bytes_read": s.bytes_read, "flag_updates": s.flag_updates, "expunged": s.expunged,
                        "folders_gone": s.folders_gone, "uidvalidity_resets": len(s.uidvalidity_changes)},
            "warnings": list(warnings),
        }

    def finish_metadata(self, metadata: dict):
        """A last VOLB (another device: brick readers skip it) with BackupMetadata.json at its root,
        as database sets have, so a catalog rebuild knows kind, server and level."""
        self.writer.begin_volume(METADATA_DEVICE, self.storage_group, self.server)
        dir_id = self.writer.begin_directory([])
        self.dirs[dir_id] = ("", [])
        payload = json.dumps(metadata, indent=1, sort_keys=True, ensure_ascii=False).encode()
        record = self.writer.add_file(METADATA_NAME, len(payload), payload)
        self.objects.append(ObjectEntry.written(record, METADATA_NAME, "metadata"))
        return self.writer.end()


class _Cancelled(BaseException):
    """Raised inside the pass thread when the loop side gave up."""


class _LockStep:
    """Run a blocking producer in a thread that alternates strictly with the caller's thread.

    ``work(step)`` runs in the thread; it calls ``step()`` to hand control back (the caller then
    takes what was produced). The caller's :meth:`step` lets the producer run until it hands back
    or ends. Never are both running, so objects that are not thread-safe may be shared."""

    def __init__(self, work: Callable[[Callable[[], None]], None]):
        self._work = work
        self._go = threading.Semaphore(0)
        self._back = threading.Semaphore(0)
        self._cancelled = False
        self.finished = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="brick-pass", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _main(self) -> None:
        self._go.acquire()
        try:
            if not self._cancelled:
                self._work(self._handback)
        except _Cancelled:
            pass
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            self.error = error
        finally:
            self.finished = True
            self._back.release()

    def _handback(self) -> None:
        self._back.release()
        self._go.acquire()
        if self._cancelled:
            raise _Cancelled()

    def step(self) -> None:
        """Let the producer run to its next hand-back (or its end)."""
        self._go.release()
        self._back.acquire()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        if self._thread.is_alive() and not self.finished:
            self._cancelled = True
            self._go.release()
            self._thread.join()


# the packaging and the lock-step pass, shared with the NDMP agent's ``mailbox`` butype
SetPacker = _Packer
LockStep = _LockStep


# -- restore -------------------------------------------------------------------------------------


def mailbox_chain(catalog, server: str, storage_group: str, *, set_id: int | None = None,
                  at: float | None = None) -> list[DataSetRecord]:
    """The mailbox data sets to read, oldest first, for a point in time (``set_id``: that backup;
    ``at``: the newest one completed by then; neither: the newest): the brick-level chain rule of
    :mod:`reference.server.restore_plan` (spec brick-level-imap.md §6)."""
    return restore_chain(catalog, server, storage_group, set_id=set_id, at=at, kind=KIND)


def set_source(catalog, set_id: int) -> tuple[str, str]:
    """(server, storage group) of a brick-level data set (to restore a backup into another store)."""
    row = catalog.data_set_row(set_id)
    if row["kind"] != KIND:
        raise NotFoundError(f"data set {set_id} is a {row['kind']} backup, not a brick-level (mailbox) one")
    return row["server"], row["storage_group"]


class _BodySpool:
    """Item bodies read back from tape, kept in a temporary file (memory stays bounded).

    ``fill`` reads the bodies from tape; it runs once, at the first body asked for, so a restore
    with nothing to append (a rerun, a dry run) reads no bodies at all."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(prefix="mailtape-brick-")  # noqa: SIM115 - closed by close()
        self.where: dict[tuple[int, str], tuple[int, int]] = {}
        self.fill: Callable[[], None] | None = None
        self._fill_error: MailtapeError | None = None
        self.damaged: dict[tuple[int, str], str] = {}

    def put(self, key: tuple[int, str], chunks) -> None:
        start = self.file.seek(0, 2)
        try:
            for chunk in chunks:
                self.file.write(chunk)
        except BaseException:
            self.file.truncate(start)
            raise
        self.where[key] = (start, self.file.tell() - start)

    def _filled(self) -> None:
        fill, self.fill = self.fill, None
        if fill is not None:
            try:
                fill()
            except MailtapeError as error:      # what was read before the damage stays usable
                self._fill_error = error

    def loader(self, key: tuple[int, str]) -> Callable[[], bytes]:
        def load() -> bytes:
            if key not in self.where:
                self._filled()
            if key in self.damaged:
                raise CorruptDataError(self.damaged[key])
            if key not in self.where:
                reason = f" ({self._fill_error})" if self._fill_error else ""
                raise CorruptDataError(f"item body could not be read back from the media{reason}",
                                       f"set {key[0]}: {key[1]}")
            start, size = self.where[key]
            self.file.seek(start)
            return self.file.read(size)
        return load

    def close(self) -> None:
        self.file.close()


@dataclass
class MailboxRestoreResult:
    result: RestoreResult
    chain: list[DataSetRecord]
    job_id: int
    bodies_read: int = 0
    bytes_read: int = 0


def _set_objects(record: DataSetRecord, files: list[tuple[str, str, bytes]], spool: _BodySpool,
                 bodies: dict[str, tuple[int, str]]) -> list[BrickObject]:
    """The BrickObjects of one set from its records files ((path, mailbox, bytes), in write order)."""
    meta = record.metadata
    objects = [BrickObject(DATASET, (), dict(meta.get("dataset", {})))]
    objects += [BrickObject(MAILBOX, (m,), {}) for m in meta.get("mailboxes", [])]
    current = None
    for path, mailbox, data in files:
        if mailbox != current:
            objects.append(BrickObject(MAILBOX, (mailbox,), {}))
            current = mailbox
        directory = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
        for line_no, line in enumerate(data.splitlines(), 1):
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise CorruptDataError(f"brick record is not JSON ({exc})",
                                       f"set {record.id}: {path} line {line_no}") from None
            content = None
            if "body" in entry:
                key = (record.id, directory + entry["body"])
                content = spool.loader(key)
                if entry["kind"] == ITEM:
                    bodies.setdefault(entry["meta"]["sha256"], key)
            objects.append(BrickObject(entry["kind"], (mailbox, *entry["folder"]), entry["meta"], content))
    return objects


def _needed_bodies(catalog: BrickCatalog, selection: Selection) -> set[str]:
    needed = set()
    for mailbox in catalog.mailboxes():
        if not selection.takes_mailbox(mailbox):
            continue
        for folder in catalog.folders(mailbox):
            if not selection.takes_folder(folder.path, folder.meta.get("folder_class", "IPF.Note")):
                continue
            needed.update(i.sha256 for i in folder.items.values() if selection.takes_date(i.internal_date))
    return needed


async def restore_mailboxes(site, store, options: RestoreOptions | None = None, *, set_id: int | None = None,
                            at: float | None = None, server_name: str | None = None,
                            storage_group: str | None = None, dry_run: bool = False,
                            progress: Callable | None = None) -> MailboxRestoreResult:
    """Restore from the brick-level chain of ``server_name``/``storage_group`` into ``store``.

    ``dry_run``: plan only (reads the records from tape and the target, changes nothing, reads no
    item bodies from tape). The job is recorded in the catalog (``failed`` when nothing could be
    done, ``warning`` when some items failed)."""
    options = options or RestoreOptions()
    if set_id is not None and server_name is None:
        server_name, storage_group = set_source(site.catalog, set_id)
    server_name, storage_group = _identity(store, server_name, storage_group)
    clock = site.runtime.clock
    chain = mailbox_chain(site.catalog, server_name, storage_group, set_id=set_id, at=at)
    job_id = site.catalog.start_job("restore", f"{server_name}/{storage_group}",
                                    "dry-run" if dry_run else options.conflict, started=clock.now())
    reader = site.reader()
    spool = _BodySpool()
    try:
        by_set: dict[int, list] = {s.id: [] for s in chain}
        for sid, obj, chunks in reader.read_chain([s.id for s in chain],
                                                  lambda o: o.path.endswith(".records.jsonl")):
            if obj.kind != "metadata" or not obj.database:
                raise MailtapeError(
                    f"data set {sid}: the catalog does not say which mailbox {obj.path!r} belongs to (a "
                    "catalog rebuilt from tape by a reader that does not know brick-level sets?); "
                    "restore from the original catalog")
            by_set[sid].append((obj.path, obj.database, b"".join(bytes(c) for c in chunks)))
        bodies: dict[str, tuple[int, str]] = {}
        catalog = BrickCatalog.from_sets(_set_objects(s, by_set[s.id], spool, bodies) for s in chain)
        outcome = MailboxRestoreResult(None, chain, job_id)  # type: ignore[arg-type]

        def read_bodies() -> None:
            wanted: dict[int, set[str]] = {}
            for sha in _needed_bodies(catalog, options.selection):
                if sha in bodies:
                    sid, path = bodies[sha]
                    wanted.setdefault(sid, set()).add(path)
            for sid in [s.id for s in chain if s.id in wanted]:
                for obj, chunks in reader.read_objects(sid, wanted[sid]):
                    try:
                        spool.put((sid, obj.path), chunks)
                    except CorruptDataError as error:     # this body is bad; the others may be fine
                        spool.damaged[(sid, obj.path)] = str(error)
                        continue
                    outcome.bodies_read += 1
                    outcome.bytes_read += obj.size

        spool.fill = None if dry_run else read_bodies
        result = run_restore(catalog, store, options, dry_run=dry_run, progress=progress)
        outcome.result = result
        counts = result.plan.counts()
        written = sum(n for op, n in counts.items() if op in ("append", "replace"))
        status = "ok" if result.ok else ("failed" if not result.done else "warning")
        message = "; ".join(f"{n} {op}" for op, n in sorted(counts.items())) or "nothing to do"
        warnings = [f"{'/'.join(a.folder)}: {reason}" for a, reason in result.failed[:50]]
        site.catalog.finish_job(job_id, status, level="dry-run" if dry_run else options.conflict,
                                bytes=outcome.bytes_read, objects=0 if dry_run else written,
                                message=message, warnings=warnings, ended=clock.now())
        return outcome
    except BaseException as error:
        site.catalog.finish_job(job_id, "failed", message=str(error), ended=clock.now())
        raise
    finally:
        reader.close()
        spool.close()
