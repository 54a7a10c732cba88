"""What a brick-level backup remembers between passes (the incremental base).

Per folder, keyed by (mailbox, folder path): the folder identity (uid_validity), the highest uid
and modseq seen, and every live item (uid → sha256, Message-ID, internal date, size, flags), so the
next pass can find expunged items, detect flag changes without CONDSTORE and re-map UIDs after a
UIDVALIDITY change without reading bodies again. ``contents`` are the sha256 of every body stored
in the chain since the last full backup (the single-instance index across sets).
JSON on disk; a differential backup simply passes the full backup's state again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from reference.errors import CorruptDataError

STATE_VERSION = 1


@dataclass
class ItemState:
    sha256: str | None
    """None when the item was outside the date filter and not backed up."""
    message_id: str | None
    internal_date: float
    size: int
    flags: list[str]

    def to_json(self) -> list:
        return [self.sha256, self.message_id, self.internal_date, self.size, self.flags]

    @classmethod
    def from_json(cls, raw: list) -> "ItemState":
        sha, mid, date, size, flags = raw
        return cls(sha, mid, float(date), int(size), list(flags))


@dataclass
class FolderState:
    uid_validity: int
    last_uid: int = 0
    highest_modseq: int = 0
    items: dict[int, ItemState] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"uid_validity": self.uid_validity, "last_uid": self.last_uid,
                "highest_modseq": self.highest_modseq,
                "items": {str(uid): item.to_json() for uid, item in sorted(self.items.items())}}

    @classmethod
    def from_json(cls, raw: dict) -> "FolderState":
        return cls(int(raw["uid_validity"]), int(raw["last_uid"]), int(raw["highest_modseq"]),
                   {int(uid): ItemState.from_json(v) for uid, v in raw["items"].items()})


@dataclass
class BackupState:
    folders: dict[tuple[str, tuple[str, ...]], FolderState] = field(default_factory=dict)
    contents: set[str] = field(default_factory=set)
    level: str = "full"
    created: float = 0.0

    def folders_of(self, mailbox: str) -> dict[tuple[str, ...], FolderState]:
        return {folder: fs for (mbx, folder), fs in self.folders.items() if mbx == mailbox}

    def to_json(self) -> dict:
        return {"version": STATE_VERSION, "level": self.level, "created": self.created,
                "folders": [{"mailbox": mbx, "folder": list(folder), **fs.to_json()}
                            for (mbx, folder), fs in sorted(self.folders.items())],
                "contents": sorted(self.contents)}

    @classmethod
    def from_json(cls, raw: dict, where: str = "brick state") -> "BackupState":
        if raw.get("version") != STATE_VERSION:
            raise CorruptDataError(f"unsupported brick state version {raw.get('version')!r}", where)
        try:
            folders = {(entry["mailbox"], tuple(entry["folder"])): FolderState.from_json(entry)
                       for entry in raw["folders"]}
            return cls(folders, set(raw["contents"]), raw["level"], float(raw["created"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptDataError(f"malformed brick state ({exc})", where) from None

    def save(self, path: Path) -> None:
        tmp = Path(path).with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), ensure_ascii=False))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "BackupState":
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise CorruptDataError(f"cannot read brick state ({exc})", str(path)) from None
        return cls.from_json(raw, str(path))
