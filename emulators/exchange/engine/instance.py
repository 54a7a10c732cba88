"""One ESE instance = one storage group: its log stream, checkpoint and mounted databases.

Write path: a transaction's operations are encoded as one COMMIT log record, appended to the
current generation (durable), then appended to the page files' record heaps in memory. Dirty
heap bytes are flushed to pages when the checkpoint would lag more than the profile's checkpoint
depth behind the log tip (or memory use grows), on dismount and at shutdown; the checkpoint file
then advances. Mount runs soft recovery when a database was left dirty.
"""

from __future__ import annotations

import os
import struct
import threading
from typing import Callable, Iterable, Iterator

from .. import errors
from ..ondisk.structs import (
    DBSTATE_CLEAN_SHUTDOWN,
    DBSTATE_DIRTY_SHUTDOWN,
    AttachEntry,
    CheckpointHeader,
    LgPos,
    LogTime,
    Signature,
)
from .database import MountedDatabase, route_table
from .logstream import LogCorrupt, LogStream, parse_generation, records_of
from .pagefile import PageFile

R_COMMIT, R_ATTACH, R_DETACH, R_BACKUP, R_TERM, R_BACKUP_UPDATE = 1, 2, 3, 4, 5, 6
OPHDR = struct.Struct("<BBBHI")
DIRTY_LIMIT = 64 * 1024 * 1024


def encode_commit(ops) -> bytes:
    out = [struct.pack("<I", len(ops))]
    for op, dbid, table, key, value in ops:
        tb = table.encode("utf-8")
        out.append(OPHDR.pack(op, dbid, len(tb), len(key), len(value)))
        out.append(tb)
        out.append(key)
        if value:
            out.append(value)
    return b"".join(out)


def decode_commit(body) -> Iterator[tuple[int, int, str, bytes, bytes]]:
    (n,) = struct.unpack_from("<I", body, 0)
    pos = 4
    for _ in range(n):
        op, dbid, tlen, klen, vlen = OPHDR.unpack_from(body, pos)
        pos += OPHDR.size
        table = bytes(body[pos : pos + tlen]).decode("utf-8", "replace")
        pos += tlen
        key = bytes(body[pos : pos + klen])
        pos += klen
        value = bytes(body[pos : pos + vlen])
        pos += vlen
        yield op, dbid, table, key, value


def apply_records(records: Iterable[tuple[int, int, int, bytes]], targets: dict[int, list[PageFile]],
                  route: Callable[[list[PageFile], str], PageFile]) -> int:
    """Redo: apply COMMIT operations for the given dbids whose LSN is newer than the page file's
    ``lsn_flushed``. Returns the number of operations applied."""
    applied = 0
    for _gen, lsn, rtype, body in records:
        if rtype != R_COMMIT:
            continue
        for op, dbid, table, key, value in decode_commit(body):
            files = targets.get(dbid)
            if files is None:
                continue
            pf = route(files, table)
            if lsn > pf.header.lsn_flushed:
                pf.append(lsn, op, table, key, value)
                applied += 1
    return applied


class Instance:
    def __init__(self, name: str, prefix: str, log_dir: str, system_dir: str, profile, log_size: int,
                 clock, computer: str, new_signature: Callable[[], Signature]):
        self.name = name
        self.prefix = prefix
        self.log_dir = log_dir
        self.system_dir = system_dir
        self.profile = profile
        self.clock = clock
        self.computer = computer
        self.new_signature = new_signature
        self.lock = threading.RLock()
        self.databases: dict[int, MountedDatabase] = {}
        self.oldest_unflushed: tuple[int, int, int] | None = None  # (lsn, gen, offset)
        self.log = LogStream(log_dir, prefix, profile, log_size, clock, self._attach_entries)
        self.log.on_roll.append(self._after_roll)
        self.backup_state = None  # set by the backup API while a backup holds this instance
        self.service_stopped = False
        self.log_write_failed = False
        self.chk_backup = {"full": (LgPos(), LogTime()), "inc": (LgPos(), LogTime())}
        self.running = False

    # -- paths ------------------------------------------------------------------------------

    @property
    def chk_path(self) -> str:
        return os.path.join(self.system_dir, f"{self.prefix}.chk")

    @property
    def sign_log(self) -> Signature:
        return self.log.header.sign_log

    # -- lifecycle --------------------------------------------------------------------------

    def create(self, circular: bool) -> None:
        os.makedirs(self.log_dir, exist_ok=True)
        os.makedirs(self.system_dir, exist_ok=True)
        self.log.create(self.new_signature(), circular)
        for name in self.profile.reserve_log_names:
            path = os.path.join(self.log_dir, name.format(prefix=self.prefix))
            with open(path, "wb") as f:
                f.truncate(self.log.size)
        self.running = True
        self.write_checkpoint()

    def start(self, circular: bool) -> None:
        """Open the existing log stream (or begin a new one when no logs are left)."""
        os.makedirs(self.log_dir, exist_ok=True)
        if os.path.exists(self.log.current_path):
            try:
                self.log.open()
            except LogCorrupt as e:
                raise errors.jet_error(errors.LogFileCorrupt, str(e)) from None
        else:
            archived = self.log.archived_generations()
            if archived:
                last = parse_generation(self.log.archive_path(archived[-1]), archived[-1])
                self.log.next_lsn = max(last.header.lsn_first,
                                        max((lsn for _g, lsn, _t, _b in records_of([last])), default=0) + 1)
                self.log.circular = circular
                self.log._write_new_current(archived[-1] + 1, last.header.tm_create, last.header.sign_log)
            else:
                self.log.create(self.new_signature(), circular)
        self.log.circular = circular
        self.running = True
        self.write_checkpoint()

    def _stop_backup(self) -> None:
        """JetTerm stops a running backup: its later calls fail -801."""
        if self.backup_state is not None:
            self.backup_state.aborted_by_server = True

    def shutdown(self) -> None:
        with self.lock:
            self._stop_backup()
            for dbid in list(self.databases):
                self.dismount(dbid)
            if self.running and self.log._fh is not None:
                try:
                    self.log.append(R_TERM, b"")
                except errors.ExchangeError:
                    pass
                self.write_checkpoint()
            self.log.close()
            self.running = False

    def crash(self) -> None:
        """Stop without flushing anything (simulated power loss): databases stay dirty on disk."""
        with self.lock:
            self._stop_backup()
            for db in self.databases.values():
                db.mounted = False
                for f in db.files:
                    f.close()
            self.databases.clear()
            self.log.close()
            self.running = False

    # -- transactions -----------------------------------------------------------------------

    def _check_writable(self) -> None:
        if not self.running:
            raise errors.jet_error(errors.LogWriteFail, f"storage group {self.name!r} is not running")
        if self.log_write_failed:
            raise errors.jet_error(errors.LogWriteFail, f"storage group {self.name!r}: log write failed earlier")

    def commit(self, ops) -> int:
        with self.lock:
            self._check_writable()
            for _op, dbid, table, *_ in ops:
                db = self.databases.get(dbid)
                if db is None or not db.mounted:
                    raise errors.jet_error(errors.DatabaseNotFound, f"database {dbid} is not mounted")
                db.file_for(table).load_tail()  # a bad last page fails the commit before it is logged
            body = encode_commit(ops)
            try:
                lsn, gen, off = self.log.append(R_COMMIT, body)
            except errors.ExchangeError as e:
                if e.jet == errors.LogDiskFull.number:
                    self.log_write_failed = True
                raise
            for op, dbid, table, key, value in ops:
                db = self.databases[dbid]
                db.file_for(table).append(lsn, op, table, key, value)
            if self.oldest_unflushed is None:
                self.oldest_unflushed = (lsn, gen, off)
            if self.dirty_bytes() > DIRTY_LIMIT:
                self.flush_all()
            return lsn

    def log_record(self, rtype: int, body: bytes = b"") -> int:
        with self.lock:
            self._check_writable()
            return self.log.append(rtype, body)[0]

    def dirty_bytes(self) -> int:
        return sum(f.dirty_bytes for db in self.databases.values() for f in db.files)

    # -- flushing and checkpoint ------------------------------------------------------------

    def flush_all(self) -> None:
        with self.lock:
            top = self.log.next_lsn - 1
            self.oldest_unflushed = None
            # a record being written across a roll right now started in an older generation
            needed = self.checkpoint_generation
            for db in self.databases.values():
                for f in db.files:
                    f.header.gen_min_required = needed
                    f.header.gen_max_required = self.log.gen
                    f.header.gen_max_committed = self.log.gen
                    f.flush(top)
            self.write_checkpoint()

    def _oldest_needed(self) -> tuple[int, int, int] | None:
        """(lsn, gen, offset) of the oldest record whose changes are not in the pages yet
        (including a record being written across a log roll right now)."""
        cands = [c for c in (self.oldest_unflushed, self.log.writing) if c is not None]
        return min(cands) if cands else None

    @property
    def checkpoint_generation(self) -> int:
        o = self._oldest_needed()
        return o[1] if o is not None else self.log.gen

    def checkpoint_position(self) -> LgPos:
        o = self._oldest_needed()
        return LgPos.at(o[1], o[2]) if o is not None else self.log.position

    def write_checkpoint(self) -> None:
        if self.log.header is None:
            return
        pos = self.checkpoint_position()
        self.log.checkpoint_pos = pos
        full, inc = self.chk_backup["full"], self.chk_backup["inc"]
        hdr = CheckpointHeader(
            checkpoint=pos, sign_log=self.sign_log, full_backup=full[0], full_backup_time=full[1],
            inc_backup=inc[0], inc_backup_time=inc[1], flags=1 if self.log.circular else 0,
            lsn_checkpoint=(self._oldest_needed() or (self.log.next_lsn,))[0],
            attach=self._attach_entries(),
        )
        os.makedirs(self.system_dir, exist_ok=True)
        tmp = self.chk_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(hdr.pack())
        os.replace(tmp, self.chk_path)
        self._circular_cleanup()

    def _after_roll(self, new_gen: int) -> None:
        if new_gen - self.checkpoint_generation >= self.profile.checkpoint_depth_generations:
            self.flush_all()
        else:
            self.write_checkpoint()

    def _circular_cleanup(self) -> None:
        if not self.log.circular:
            return
        keep_from = self.checkpoint_generation
        hold = getattr(self.backup_state, "hold_generation", None)
        if hold:
            keep_from = min(keep_from, hold)
        for gen in self.log.archived_generations():
            if gen < keep_from:
                try:
                    os.remove(self.log.archive_path(gen))
                except FileNotFoundError:
                    pass

    def _attach_entries(self) -> list[AttachEntry]:
        return [AttachEntry(db.dbid, db.files[0].header.sign_db, db.name) for db in self.databases.values()]

    # -- mount / dismount -------------------------------------------------------------------

    def mount(self, dbid: int, name: str, paths: list[str]) -> MountedDatabase:
        with self.lock:
            if dbid in self.databases:
                return self.databases[dbid]
            if not self.running:
                raise errors.jet_error(errors.LogWriteFail, f"storage group {self.name!r} is not running")
            files: list[PageFile] = []
            try:
                for p in paths:
                    if not os.path.exists(p):
                        raise errors.jet_error(errors.FileNotFound, f"{p}: database file not found")
                    files.append(PageFile.open(p, self.profile.page_size, self.profile.header_has_copy_diff))
                if any(f.header.dbstate == DBSTATE_DIRTY_SHUTDOWN for f in files):
                    self._soft_recover(dbid, files)
                top = self.log.next_lsn - 1
                now = LogTime.from_seconds(self.clock.now())
                for f in files:
                    f.header.lsn_flushed = top  # attach point: older records are not for this incarnation
                    f.header.dbstate = DBSTATE_DIRTY_SHUTDOWN
                    f.header.sign_log = self.sign_log
                    f.header.dbid = dbid
                    f.header.lgpos_attach = self.log.position
                    f.header.time_attach = now
                    f.header.gen_min_required = self.log.gen
                    f.header.gen_max_required = self.log.gen
                    f.flush(top)
            except BaseException:
                for f in files:
                    f.close()
                raise
            db = MountedDatabase(self, dbid, name, files)
            self.databases[dbid] = db
            # the attach record carries the lgposConsistent the database had (ESE ATCHCHK): hard
            # recovery compares it with the replayed database to detect another timeline (-551)
            self.log.append(R_ATTACH, bytes([dbid]) + files[0].header.sign_db.pack()
                            + files[0].header.lgpos_consistent.pack())
            self.write_checkpoint()
            return db

    def _soft_recover(self, dbid: int, files: list[PageFile]) -> None:
        for f in files:
            if f.header.dbstate == DBSTATE_DIRTY_SHUTDOWN and f.header.sign_log != self.sign_log:
                raise errors.jet_error(
                    errors.BadLogSignature,
                    f"{f.path}: database is dirty and its log signature does not match {self.prefix} logs",
                )
        start = min(f.header.gen_min_required or 1 for f in files)
        gens = []
        for gen in range(start, self.log.gen + 1):
            path = self.log.path_for(gen)
            if not os.path.exists(path):
                raise errors.jet_error(errors.MissingLogFile, f"{path}: log generation {gen:#x} needed for recovery is missing")
            try:
                g = parse_generation(path, gen, allow_torn=(gen == self.log.gen), keep=False)
            except LogCorrupt as e:
                raise errors.jet_error(errors.LogFileCorrupt, str(e)) from None
            if g.header.sign_log != self.sign_log:
                raise errors.jet_error(errors.BadLogSignature, f"{path}: log signature differs from the stream")
            gens.append(g)
        apply_records(records_of(g.reload() for g in gens), {files[0].header.dbid: files}, route_table)
        for f in files:
            f.flush(self.log.next_lsn - 1)

    def dismount(self, dbid: int) -> None:
        with self.lock:
            db = self.databases.get(dbid)
            if db is None:
                return
            top = self.log.next_lsn - 1
            now = LogTime.from_seconds(self.clock.now())
            consistent = self.log.position
            for f in db.files:
                f.flush(top)
                f.header.dbstate = DBSTATE_CLEAN_SHUTDOWN
                f.header.gen_min_required = f.header.gen_max_required = 0  # clean: no log needed
                f.header.lgpos_consistent = consistent
                f.header.time_consistent = now
                f.header.lgpos_detach = self.log.position
                f.header.time_detach = now
                f.write_header()
                f.close()
            db.mounted = False
            del self.databases[dbid]
            if self.oldest_unflushed is not None and not any(
                f.dirty_bytes for d in self.databases.values() for f in d.files
            ):
                self.oldest_unflushed = None
            try:
                self.log.append(R_DETACH, bytes([dbid]) + consistent.pack())
            except errors.ExchangeError:
                pass
            self.write_checkpoint()
