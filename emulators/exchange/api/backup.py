"""``HrESEBackup*``: the backup context (HCCX) and the per-instance backup state machine (spec §1).

State per instance (held in ``Instance.backup_state`` so two contexts exclude each other)::

    IDLE --Setup(FULL)--> DB_PHASE --GetLogAndPatchFiles--> LOG_PHASE --[Truncate]--> InstanceEnd --> IDLE
    IDLE --Setup(LOGS_ONLY)--> LOG_PREP --GetLogAndPatchFiles--> LOG_PHASE ...
"""

from __future__ import annotations

import copy
import os
import uuid
from dataclasses import dataclass, field
from typing import NoReturn

from reference.protocols.exchange import (
    DATABASE_MOUNTED,
    BackupType,
    DatabaseBackupInfo,
    InstanceBackupInfo,
    InstanceEnd,
)

from .. import errors
from .. import events as ev
from ..engine.instance import R_BACKUP, R_BACKUP_UPDATE, Instance
from ..engine.logstream import log_generation_from_name
from ..ondisk.structs import BkInfo, LgPos, LogTime, Trailer
from .streams import DatabaseStream, LogFileStream, PageVerifyError

DB_PHASE, LOG_PREP, LOG_PHASE = "db", "log_prep", "logs"


@dataclass
class InstanceBackup:
    """What the engine keeps for one running backup of one instance."""

    context: "BackupContext"
    instance: Instance
    sg_name: str
    backup_type: BackupType
    phase: str
    copy_mic: int
    mark: LgPos
    time_mark: LogTime
    copy_mac: int = 0
    delete_mic: int = 0
    delete_mac: int = 0
    log_list: list[str] = field(default_factory=list)
    copied_files: dict[int, set[int]] = field(default_factory=dict)  # dbid -> file indexes read to EOF
    failed_dbs: set[int] = field(default_factory=set)
    copied_logs: set[int] = field(default_factory=set)
    truncated: bool = False
    aborted_by_server: bool = False
    trailer_gen_high: dict[int, int] = field(default_factory=dict)

    @property
    def logs_only(self) -> bool:
        return self.backup_type == BackupType.LOGS_ONLY

    @property
    def hold_generation(self) -> int:
        return self.copy_mic


@dataclass
class _Handle:
    kind: str  # "db" | "log"
    stream: object
    dbid: int = 0
    file_index: int = 0
    generation: int = 0


class BackupContext:
    """One client session (``HCCX``); walks instances sequentially (Setup ... InstanceEnd, ...)."""

    def __init__(self, api, instances: tuple[InstanceBackupInfo, ...]):
        self.api = api
        self.server = api.server
        self.instances = instances
        self.current: InstanceBackup | None = None
        self._handles: dict[int, _Handle] = {}
        self._next_handle = 1
        self._ended = False

    # -- helpers ----------------------------------------------------------------------------

    def _current(self) -> InstanceBackup:
        """The instance backup this context is in, healthy or stopped by the server."""
        if self._ended:
            raise errors.library_error(errors.HR_INVALID_HANDLE, "backup context already ended")
        st = self.current
        if st is None or st.instance.backup_state is not st:
            self.current = None
            raise errors.jet_error(errors.NoBackup, "no backup in progress on this context")
        return st

    def _live(self) -> InstanceBackup:
        st = self._current()
        if st.aborted_by_server:
            raise errors.jet_error(errors.BackupAbortByServer, f"backup of {st.sg_name!r} was stopped by the server")
        return st

    def _missing_log(self, st: InstanceBackup, path: str, jet: errors.JetCode) -> NoReturn:
        """A log generation the backup needs is gone: event 'file missing', backup aborted, ``jet``."""
        self.server.events.emit(ev.FILE_MISSING, f"The file {path} is missing and could not be backed-up.")
        self._abort(st)
        raise errors.jet_error(jet, f"The file {path} is missing and could not be backed-up")

    def _abort(self, st: InstanceBackup) -> None:
        """ErrBKExternalBackupCleanUp(abort): no header change, lock released."""
        for h in list(self._handles):
            self._handles.pop(h).stream.close()
        if st.instance.backup_state is st:
            try:
                st.instance.log_record(R_BACKUP, b"\x02")  # abort record
            except errors.ExchangeError:
                pass
            st.instance.backup_state = None
            self.server.events.emit(ev.BACKUP_ABORTED, f"{st.sg_name}: The backup procedure has been stopped prematurely.")
        if self.current is st:
            self.current = None

    def _sg_config(self, instance_id: int):
        for sg in self.server.storage_groups:
            if sg.instance_id == instance_id and not sg.recovery:
                return sg
        return None

    # -- HrESEBackupSetup -------------------------------------------------------------------

    def setup(self, instance_id: int, backup_type: BackupType) -> None:
        if self._ended:
            raise errors.library_error(errors.HR_INVALID_HANDLE, "backup context already ended")
        sg = self._sg_config(instance_id)
        if sg is None:
            raise errors.library_error(errors.HR_INVALID_PARAM, f"no instance with id {instance_id}")
        inst = self.server.instance(sg.name)
        if self.current is not None and self.current.instance.backup_state is self.current:
            if self.current.instance is inst:
                raise errors.jet_error(errors.BackupInProgress, f"a backup of {sg.name!r} is already in progress")
            raise errors.jet_error(errors.InvalidBackupSequence,
                                   f"instance {self.current.sg_name!r} still in backup on this context (call InstanceEnd)")
        try:
            btype = BackupType(backup_type)
        except ValueError:
            raise errors.jet_error(errors.InvalidGrbit, f"unknown backup type {backup_type!r}") from None
        with inst.lock:
            if not inst.running:
                raise errors.jet_error(errors.BackupNotAllowedYet, f"storage group {sg.name!r} is not running")
            if inst.log_write_failed:
                raise errors.jet_error(errors.LogWriteFail, f"storage group {sg.name!r}: a log write failed earlier")
            if btype == BackupType.SNAPSHOT:
                raise errors.jet_error(errors.InvalidGrbit, "snapshot backups go through VSS, not the streaming API")
            if btype == BackupType.LOGS_ONLY and inst.log.circular:
                raise errors.jet_error(errors.InvalidBackup,
                                       "An incremental backup cannot be performed when circular logging is enabled")
            if inst.log.disk_full:
                raise errors.jet_error(errors.LogDiskFull, f"storage group {sg.name!r}: log disk is full")
            if inst.backup_state is not None:
                raise errors.jet_error(errors.BackupInProgress, f"a backup of {sg.name!r} is already in progress")
            if btype == BackupType.LOGS_ONLY:
                for db in inst.databases.values():
                    if db.files[0].header.full_prev.gen_low == 0:
                        self.server.events.emit(ev.MISSING_FULL_BACKUP, f"Database {db.name} cannot be incrementally "
                                                "backed-up. You must first perform a full backup before performing an incremental backup.")
                        raise errors.jet_error(
                            errors.MissingFullBackup,
                            f"Database {db.name!r} cannot be incrementally backed-up. You must first perform a full backup",
                        )
            now = LogTime.from_seconds(self.server.clock.now())
            if btype == BackupType.LOGS_ONLY:
                copy_mic, phase = 0, LOG_PREP
            elif btype == BackupType.FULL_WITH_ALL_LOGS:
                gens = inst.log.generations_on_disk()
                copy_mic, phase = (gens[0] if gens else inst.log.gen), DB_PHASE
            else:
                copy_mic, phase = inst.checkpoint_generation, DB_PHASE
            st = InstanceBackup(self, inst, sg.name, btype, phase, copy_mic, inst.log.position, now)
            inst.backup_state = st
            self.current = st
            self.server.events.emit(ev.INCREMENTAL_BACKUP_STARTING if btype == BackupType.LOGS_ONLY
                                    else ev.FULL_BACKUP_STARTING,
                                    f"{sg.name}: {'An incremental' if btype == BackupType.LOGS_ONLY else 'A full'} backup is starting.")

    # -- files ------------------------------------------------------------------------------

    def _find_db_stream(self, st: InstanceBackup, path: str):
        norm = os.path.normcase(os.path.abspath(path))
        sg = self.server.storage_group(st.sg_name)
        for db in sg.databases:
            for i, rel in enumerate(db.files):
                if os.path.normcase(self.server.abspath(rel)) == norm:
                    return db, i
        return None

    def open_file(self, path: str, read_hint: int = 65536, sections: int = 1) -> tuple[int, int]:
        st = self._live()
        if sections != 1:
            raise errors.library_error(errors.HR_BAD_CSECTION_PARAMETER, f"cSections must be 1, not {sections}")
        found = self._find_db_stream(st, path)
        if found is not None:
            return self._open_db(st, *found)
        if st.phase == LOG_PHASE:
            norm = os.path.normcase(os.path.abspath(path))
            for p in st.log_list:
                if os.path.normcase(p) == norm:
                    return self._open_log(st, p)
        elif (os.path.normcase(os.path.dirname(os.path.abspath(path))) == os.path.normcase(st.instance.log_dir)
              and path.lower().endswith(".log")):
            raise errors.jet_error(errors.InvalidBackupSequence, f"{path}: log list not requested yet")
        raise errors.library_error(errors.HR_BAD_FILE_NAME_TO_BACKUP, f"{path}: not a file of this backup")

    def _open_db(self, st: InstanceBackup, dbcfg, file_index: int) -> tuple[int, int]:
        if st.logs_only:
            raise errors.jet_error(errors.InvalidBackupSequence, "database files cannot be read in a LOGS_ONLY backup")
        if st.phase != DB_PHASE:
            raise errors.jet_error(errors.InvalidBackupSequence, "database files must be read before the log list is requested")
        if self.server.profile.one_database_stream_at_a_time and any(h.kind == "db" for h in self._handles.values()):
            raise errors.jet_error(errors.InvalidBackupSequence, "only one database file of a storage group may be open at a time")
        inst = st.instance
        with inst.lock:
            db = inst.databases.get(dbcfg.dbid)
            if db is None:
                st.failed_dbs.add(dbcfg.dbid)
                self.server.events.emit(ev.DATABASE_BACKUP_ERROR, f"Error (-1203) during backup of a database (file "
                                        f"{self.server.abspath(dbcfg.files[file_index])}). The database will be unable to restore.")
                raise errors.jet_error(errors.DatabaseNotFound,
                                       f"The database is not mounted or does not exist: {dbcfg.name!r}")
            pf = db.files[file_index]
            hdr = copy.copy(pf.header)
            hdr.full_cur = BkInfo(st.mark, st.time_mark, st.copy_mic, 0)
            header_page = bytes(hdr.pack(pf.cb))
            pgno_last = pf.header.pgno_last
        profile = self.server.profile
        trailer_factory = None
        if profile.trailer_page:
            def trailer_factory(st=st, pf=pf, inst=inst, dbid=dbcfg.dbid):
                gen_high = inst.log.gen
                st.trailer_gen_high[dbid] = gen_high
                t = Trailer(BkInfo(st.mark, st.time_mark, st.copy_mic, gen_high), pf.header.sign_db,
                            inst.sign_log, pf.header.gen_min_required, pf.header.gen_max_required, inst.log.gen)
                return bytes(t.pack(pf.cb))
        stream = DatabaseStream(pf.path, pf.cb, header_page, pgno_last, trailer_factory, self.server.clock, inst.lock)
        self.server.events.emit(ev.FILE_BACKUP_STARTING, f"Starting the copy or backup of the file {pf.path} (size {stream.size})")
        return self._new_handle(_Handle("db", stream, dbcfg.dbid, file_index)), stream.size

    def _open_log(self, st: InstanceBackup, path: str) -> tuple[int, int]:
        gen = log_generation_from_name(path)[1]
        if not os.path.exists(path):
            self.server.events.emit(ev.FILE_MISSING, f"The file {path} is missing and could not be backed-up.")
            self._abort(st)
            code = self.server.profile.missing_file_to_backup
            raise errors.jet_error(code, f"The file {path} is missing and could not be backed-up")
        stream = LogFileStream(path, gen)
        return self._new_handle(_Handle("log", stream, generation=gen)), stream.size

    def _new_handle(self, h: _Handle) -> int:
        n = self._next_handle
        self._next_handle += 1
        self._handles[n] = h
        return n

    def _handle(self, handle: int) -> _Handle:
        h = self._handles.get(handle)
        if h is None:
            raise errors.library_error(errors.HR_INVALID_HANDLE, f"invalid file handle {handle}")
        return h

    def read_file(self, handle: int, buffer) -> int:
        st = self._live()
        h = self._handle(handle)
        if h.kind == "db":
            try:
                return h.stream.read_into(buffer)
            except PageVerifyError as e:
                self._handles.pop(handle).stream.close()
                st.failed_dbs.add(h.dbid)
                self.server.events.emit(ev.PAGE_CHECKSUM_MISMATCH, f"The database page read from the file "
                                        f"{h.stream.path} at offset {e.offset} for {self.server.profile.page_size} bytes "
                                        "failed verification due to a page checksum mismatch. The read operation will fail with error -1018.")
                self.server.events.emit(ev.DATABASE_BACKUP_ERROR, f"Error (-1018) during backup of a database (file "
                                        f"{h.stream.path}). The database will be unable to restore.")
                raise errors.jet_error(
                    errors.ReadVerifyFailure,
                    f"{h.stream.path}: the read operation failed verification due to a page checksum mismatch at {e}",
                ) from None
        try:
            return h.stream.read_into(buffer)
        except errors.ExchangeError:
            self.server.events.emit(ev.LOG_RANGE_CHECKSUM_MISMATCH, f"The log range read from the file {h.stream.path} "
                                    "failed verification due to a range checksum mismatch. The read operation will fail with error -612.")
            self._abort(st)
            raise

    def close_file(self, handle: int) -> None:
        st = self._live()
        h = self._handles.pop(handle, None)
        if h is None:
            raise errors.library_error(errors.HR_INVALID_HANDLE, f"invalid file handle {handle}")
        h.stream.close()
        done = h.stream.pos >= h.stream.size
        if h.kind == "db":
            if done:
                st.copied_files.setdefault(h.dbid, set()).add(h.file_index)
        elif done:
            st.copied_logs.add(h.generation)

    # -- logs -------------------------------------------------------------------------------

    def get_log_and_patch_files(self) -> list[str]:
        st = self._live()
        if self._handles:
            raise errors.jet_error(errors.InvalidBackupSequence, "files are still open")
        if st.phase == LOG_PHASE:
            return list(st.log_list)
        inst = st.instance
        profile = self.server.profile
        with inst.lock:
            inst.log_record(R_BACKUP, b"\x01")
            st.copy_mac = inst.log.roll()
            on_disk = inst.log.archived_generations()
            lowest = on_disk[0] if on_disk else st.copy_mac
            if st.logs_only:
                st.copy_mic = lowest
                for db in inst.databases.values():
                    h = db.files[0].header
                    last = max(h.full_prev.gen_high, h.inc_prev.gen_high)
                    if st.copy_mic > last + 1:
                        self._missing_log(st, inst.log.archive_path(last + 1), profile.missing_file_to_backup)
            present = set(on_disk)
            for gen in range(st.copy_mic, st.copy_mac):
                if gen not in present:
                    self._missing_log(st, inst.log.archive_path(gen), profile.missing_file_to_backup)
            st.delete_mic = lowest
            mac = min(inst.checkpoint_generation, st.copy_mac)
            if not st.logs_only:
                for dbid, db in inst.databases.items():
                    if not self._db_fully_copied(st, dbid):
                        mac = min(mac, db.files[0].header.full_prev.gen_high)
            st.delete_mac = mac
            st.log_list = [inst.log.archive_path(g) for g in range(st.copy_mic, st.copy_mac)]
            st.phase = LOG_PHASE
            self.server.events.emit(ev.LOG_BACKUP_RANGE, f"Starting the backup of log files (range "
                                    f"{inst.log.archive_path(st.copy_mic)} - {inst.log.archive_path(st.copy_mac - 1)}).")
            return list(st.log_list)

    def _db_fully_copied(self, st: InstanceBackup, dbid: int) -> bool:
        db = st.instance.databases.get(dbid)
        if db is None or dbid in st.failed_dbs:
            return False
        return st.copied_files.get(dbid, set()) >= set(range(len(db.files)))

    def get_truncate_log_files(self) -> list[str]:
        st = self._live()
        if st.phase != LOG_PHASE:
            raise errors.jet_error(errors.InvalidBackupSequence, "log list not requested yet")
        log = st.instance.log
        return [log.archive_path(g) for g in range(st.delete_mic, st.delete_mac) if os.path.exists(log.archive_path(g))]

    def truncate_logs(self) -> None:
        st = self._live()
        if self._handles or st.phase != LOG_PHASE:
            raise errors.jet_error(errors.InvalidBackupSequence,
                                   "files are still open" if self._handles else "log list not requested yet")
        missing = [g for g in range(st.copy_mic, st.copy_mac) if g not in st.copied_logs]
        if missing:
            self.server.events.emit(ev.TRUNCATION_FAILED, "Log truncation failed because not all log files "
                                    "required for recovery were successfully copied.")
            raise errors.jet_error(
                errors.LogFileNotCopied,
                "Log truncation failed because not all log files required for recovery were successfully copied "
                f"(first missing generation {missing[0]:#x})",
            )
        log = st.instance.log
        with st.instance.lock:
            for g in range(st.delete_mic, st.delete_mac):
                if g >= log.gen:
                    break
                try:
                    os.remove(log.archive_path(g))
                except FileNotFoundError:
                    pass
        st.truncated = True

    def get_dependency_info(self) -> str:
        self._live()
        return ""

    # -- end --------------------------------------------------------------------------------

    def instance_end(self, flags: InstanceEnd) -> None:
        st = self._current()
        if st.aborted_by_server or InstanceEnd(flags) != InstanceEnd.SUCCESS or st.phase != LOG_PHASE:
            self._abort(st)
            return
        if self._handles:
            self._abort(st)
            return
        self._update_headers(st)
        st.instance.backup_state = None
        self.current = None
        self.server.events.emit(ev.BACKUP_COMPLETED, f"{st.sg_name}: The backup procedure has been successfully completed.")

    def _update_headers(self, st: InstanceBackup) -> None:
        inst = st.instance
        has_cd = self.server.profile.header_has_copy_diff
        gen_high = st.copy_mac - 1
        with inst.lock:
            for dbid, db in inst.databases.items():
                if st.logs_only:
                    info = BkInfo(st.mark, st.time_mark, st.copy_mic, gen_high)
                elif self._db_fully_copied(st, dbid):
                    info = BkInfo(st.mark, st.time_mark, st.copy_mic, gen_high)
                else:
                    continue
                for pf in db.files:
                    h = pf.header
                    if not st.logs_only and st.truncated:
                        h.full_prev = info
                        h.inc_prev = BkInfo()
                        h.diff_prev = BkInfo()
                    elif not st.logs_only:
                        if has_cd:
                            h.copy_prev = info
                    elif st.truncated:
                        h.inc_prev = info
                    elif has_cd:
                        h.diff_prev = info
                    pf.write_header()
            if st.truncated:
                key = "inc" if st.logs_only else "full"
                inst.chk_backup[key] = (st.mark, st.time_mark)
            try:
                inst.log_record(R_BACKUP_UPDATE, bytes([int(st.backup_type)]))
            except errors.ExchangeError:
                pass
            inst.write_checkpoint()

    def end(self) -> None:
        if self._ended:
            return
        st = self.current
        if st is not None and st.instance.backup_state is st:
            self._abort(st)
        self._ended = True


def instance_infos(server) -> tuple[InstanceBackupInfo, ...]:
    out = []
    for sg in server.storage_groups:
        if sg.recovery:
            continue  # a Recovery Storage Group cannot be backed up
        inst = server.instance(sg.name)
        dbs = tuple(
            DatabaseBackupInfo(
                display_name=d.name,
                streams=tuple(server.abspath(p) for p in d.files),
                guid=uuid.UUID(d.guid),
                flags=DATABASE_MOUNTED if d.dbid in inst.databases else 0,
            )
            for d in sg.databases
        )
        out.append(InstanceBackupInfo(instance_id=sg.instance_id, name=sg.name, databases=dbs))
    return tuple(out)
