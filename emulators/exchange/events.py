"""The application event log entries ESE writes around backup and restore (ESE-msg IDs, spec §1-2).

Kept in memory on the server (``server.events``) so tests and scenarios can check that, for
example, a -1018 page produced event 474 and the database was reported with event 217.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

FULL_BACKUP_STARTING = 210
INCREMENTAL_BACKUP_STARTING = 211
BACKUP_COMPLETED = 213
DATABASE_BACKUP_ERROR = 217
FILE_BACKUP_STARTING = 220
LOG_BACKUP_RANGE = 223
MISSING_FULL_BACKUP = 206
FILE_MISSING = 459
PAGE_CHECKSUM_MISMATCH = 474
LOG_RANGE_CHECKSUM_MISMATCH = 477
TRUNCATION_FAILED = 520
BACKUP_ABORTED = 219  # "The backup procedure has been stopped prematurely" (emulator's id choice)
RESTORE_PATCH_MISMATCH = 430
RESTORE_LOG_TOO_HIGH = 431
RESTORE_LOG_TOO_LOW = 432
RESTORE_BAD_SIGNATURE = 433
RESTORE_NOT_CONTIGUOUS = 434


@dataclass(frozen=True)
class Event:
    time: float
    event_id: int
    source: str
    message: str


class EventLog:
    def __init__(self, clock, maxlen: int = 10000):
        self.clock = clock
        self.entries: deque[Event] = deque(maxlen=maxlen)

    def emit(self, event_id: int, message: str, source: str = "ESE") -> None:
        self.entries.append(Event(self.clock.now(), event_id, source, message))

    def ids(self) -> list[int]:
        return [e.event_id for e in self.entries]

    def __iter__(self):
        return iter(list(self.entries))
