"""Backup levels as users name them, and how each maps onto the Exchange backup API.

ese-backup-api.md §1.3: full and copy read the databases (``BACKUP_TYPE_FULL``); incremental and
differential read only logs (``BACKUP_TYPE_LOGS_ONLY``). Full and incremental truncate the logs
afterwards; copy and differential never do, so they leave the chain intact.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference.errors import UsageError
from reference.protocols.exchange import BackupType


@dataclass(frozen=True)
class Level:
    name: str
    api_type: BackupType
    truncates: bool

    @property
    def reads_databases(self) -> bool:
        return self.api_type == BackupType.FULL


LEVELS = {
    "full": Level("full", BackupType.FULL, truncates=True),
    "copy": Level("copy", BackupType.FULL, truncates=False),
    "incremental": Level("incremental", BackupType.LOGS_ONLY, truncates=True),
    "differential": Level("differential", BackupType.LOGS_ONLY, truncates=False),
}


def level(name: str) -> Level:
    try:
        return LEVELS[name.lower()]
    except KeyError:
        raise UsageError(f"unknown backup type {name!r} (choose full, incremental, differential or copy)") from None


JET_ERR_INVALID_BACKUP = -526
"""LOGS_ONLY refused because circular logging is on."""
JET_ERR_MISSING_FULL_BACKUP = -560
"""LOGS_ONLY refused because some database has no previous full backup."""
HR_CIRCULAR_LOGGING = 0xC7FF07DB
HR_FULL_BACKUP_NOT_TAKEN = 0xC7FF07DE
