"""The Exchange backup/restore protocol: the streaming API of ``esebcli2.dll``, in snake_case.

Each method mirrors one ``HrESEBackup*`` / ``HrESERestore*`` function of the Exchange 2000/2003/2007
SDK (spec ``ese-backup-api.md`` §1.2 and §2.1), with the same arguments minus the out-pointers, and
the same call order rules. Implemented by the emulator (``emulators.exchange``); a real client
(over the Windows DLL) implements the same protocol so the agent runs unchanged against it.

Every failure raises :class:`ExchangeError` carrying the real HRESULT and, where the engine
produced it, the JET error number and symbol (for example ``hr=0xC8000209 jet=-521
JET_errInvalidBackupSequence``). Agents decide on those numbers, never on message text.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class BackupType(enum.IntEnum):
    """``btBackupType`` of ``HrESEBackupSetup``."""

    FULL = 0x01
    LOGS_ONLY = 0x02
    FULL_WITH_ALL_LOGS = 0x03
    SNAPSHOT = 0x04


class InstanceEnd(enum.IntEnum):
    """``fFlags`` of ``HrESEBackupInstanceEnd``."""

    ERROR = 0
    SUCCESS = 1


class RestoreComplete(enum.IntFlag):
    """``fFlags`` of ``HrESERestoreComplete``."""

    NONE = 0
    ATTACH_DBS = 0x1
    NOWAIT = 0x10000
    KEEP_LOG_FILES = 0x20000


class RestoreClose(enum.IntEnum):
    NORMAL = 0
    ABORT = 1


DATABASE_MOUNTED = 0x10
"""``fDatabaseFlags`` bit of DATABASE_BACKUP_INFO."""


def hresult_for_jet(jet_error: int) -> int:
    """The HRESULT an ESE error or warning surfaces as (spec §1.5): -N → 0xC8000000|N, +N → 0x88000000|N."""
    if jet_error < 0:
        return 0xC8000000 | (-jet_error)
    return 0x88000000 | jet_error


class ExchangeError(Exception):
    """A failed API call, as the real API reports it."""

    def __init__(self, hr: int, message: str, jet: int | None = None, symbol: str | None = None):
        self.hr = hr & 0xFFFFFFFF
        self.jet = jet
        self.symbol = symbol
        self.detail = message
        parts = [f"hr=0x{self.hr:08X}"]
        if jet is not None:
            parts.append(f"jet={jet}")
        if symbol:
            parts.append(symbol)
        super().__init__(f"{message} ({' '.join(parts)})")


@dataclass(frozen=True)
class DatabaseBackupInfo:
    """``DATABASE_BACKUP_INFO``: one store of a storage group."""

    display_name: str
    streams: tuple[str, ...]
    """Full paths of the database's files (``.edb`` and, on 2000/2003, ``.stm``)."""
    guid: uuid.UUID
    flags: int = 0

    @property
    def mounted(self) -> bool:
        return bool(self.flags & DATABASE_MOUNTED)


@dataclass(frozen=True)
class InstanceBackupInfo:
    """``INSTANCE_BACKUP_INFO``: one storage group (an ESE instance with its own log stream)."""

    instance_id: int
    name: str
    databases: tuple[DatabaseBackupInfo, ...]


@dataclass
class RestoreEnvironment:
    """``RESTORE_ENVIRONMENT`` as saved in ``restore.env`` (spec §2.2)."""

    restore_log_path: str
    src_instance_name: str
    annotation: str = "Microsoft Information Store"
    databases: list[tuple[str, uuid.UUID, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)
    """(display name, guid, source streams, destination streams) per database added."""
    gen_low: int = 0
    gen_high: int = 0
    log_base_name: str | None = None
    restore_instance_system_path: str | None = None
    restore_instance_log_path: str | None = None
    target_instance_name: str | None = None
    time_last_restore: float = 0.0
    status_last_recover: int = 0
    hr_last_recover: int = 0
    time_last_recover: float = 0.0
    restore_server_name: str | None = None


@runtime_checkable
class BackupContext(Protocol):
    """The ``HCCX`` of a backup session (from :meth:`ExchangeBackupApi.backup_prepare`)."""

    instances: tuple[InstanceBackupInfo, ...]

    def setup(self, instance_id: int, backup_type: BackupType) -> None:
        """``HrESEBackupSetup``: lock the storage group for backup and start FULL or LOGS_ONLY."""

    def open_file(self, path: str, read_hint: int = 65536, sections: int = 1) -> tuple[int, int]:
        """``HrESEBackupOpenFile``: returns (file handle, stream length in bytes)."""

    def read_file(self, handle: int, buffer) -> int:
        """``HrESEBackupReadFile``: fill ``buffer`` (a writable buffer); 0 means end of stream."""

    def close_file(self, handle: int) -> None:
        """``HrESEBackupCloseFile``."""

    def get_log_and_patch_files(self) -> list[str]:
        """``HrESEBackupGetLogAndPatchFiles``: forces a log roll; full paths of the logs to read."""

    def get_truncate_log_files(self) -> list[str]:
        """``HrESEBackupGetTruncateLogFiles``: the logs truncation would delete."""

    def truncate_logs(self) -> None:
        """``HrESEBackupTruncateLogs``: delete logs no longer needed (only after all were read)."""

    def get_dependency_info(self) -> str:
        """``HrESEBackupGetDependencyInfo``."""

    def instance_end(self, flags: InstanceEnd) -> None:
        """``HrESEBackupInstanceEnd``: SUCCESS updates database headers; ERROR aborts."""

    def end(self) -> None:
        """``HrESEBackupEnd``: free the context (ends an open instance with ERROR)."""


@runtime_checkable
class RestoreContext(Protocol):
    """The ``HCCX`` of a restore session (from :meth:`ExchangeBackupApi.restore_open`)."""

    def get_environment(self) -> RestoreEnvironment:
        """``HrESERestoreGetEnvironment``."""

    def add_database(self, display_name: str, guid: uuid.UUID, streams: tuple[str, ...]) -> tuple[str, ...]:
        """``HrESERestoreAddDatabase``: returns the destination paths for the source streams."""

    def open_file(self, path: str, sections: int = 1) -> None:
        """``HrESERestoreOpenFile``: for files ESE answers hrRestoreAtFileLevel (the caller writes them)."""

    def save_environment(self) -> None:
        """``HrESERestoreSaveEnvironment``: write ``restore.env`` in the restore log path."""

    def complete(
        self,
        system_path: str | None,
        log_path: str | None,
        target_instance: str | None,
        flags: RestoreComplete = RestoreComplete.ATTACH_DBS,
    ) -> int:
        """``HrESERestoreComplete``: hard recovery. ``target_instance=None`` = point-in-time (no roll-forward).

        Returns the HRESULT of recovery (0, or a warning such as JET_wrnTargetInstanceRunning).
        """

    def close(self, flags: RestoreClose = RestoreClose.NORMAL) -> None:
        """``HrESERestoreClose``."""


@runtime_checkable
class ExchangeBackupApi(Protocol):
    """A server's backup/restore entry points (what ``esebcli2.dll`` connects to)."""

    server_name: str

    def backup_prepare(self, annotation: str = "Microsoft Information Store") -> BackupContext:
        """``HrESEBackupPrepare``: the storage groups (instances) of the service."""

    def restore_open(
        self, annotation: str, src_instance_name: str, restore_log_path: str | None = None
    ) -> RestoreContext:
        """``HrESERestoreOpen``: begin a restore of the storage group named at backup time."""

    def restore_reopen(self, annotation: str, restore_log_path: str) -> RestoreContext:
        """``HrESERestoreReopen``: resume a restore from its ``restore.env``."""

    def restore_load_environment(self, restore_log_path: str) -> RestoreEnvironment:
        """``HrESERestoreLoadEnvironment``."""
