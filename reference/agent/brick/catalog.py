"""The restore view: what a chain of brick-level data sets (full, then incrementals) says a
mailbox looked like at the end of its last set (point in time = the last set you pass in).

Objects are applied in order: a ``complete`` folder forgets earlier items, ITEM adds or replaces
an item by uid, UPDATE changes its flags, EXPUNGED and FOLDER_GONE remove. Bodies are found by
sha256 anywhere in the chain (single-instance) and verified against it when read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from reference.errors import CorruptDataError, NotFoundError

from .model import (DATASET, EXPUNGED, FOLDER, FOLDER_GONE, ITEM, MAILBOX, UPDATE, BrickObject, Content,
                    display_path, sha256_hex)


@dataclass(frozen=True)
class CatalogItem:
    folder: tuple[str, ...]
    uid: int
    flags: tuple[str, ...]
    internal_date: float
    message_id: str | None
    size: int
    sha256: str
    message_class: str = "IPM.Note"


@dataclass
class CatalogFolder:
    path: tuple[str, ...]
    meta: dict
    items: dict[int, CatalogItem]


class BrickCatalog:
    def __init__(self) -> None:
        self._mailboxes: dict[str, dict[tuple[str, ...], CatalogFolder]] = {}
        self._contents: dict[str, Content] = {}
        self.sets: list[dict] = []

    @classmethod
    def from_sets(cls, sets: Iterable[Iterable[BrickObject]]) -> "BrickCatalog":
        catalog = cls()
        for objects in sets:
            catalog.apply(objects)
        return catalog

    def apply(self, objects: Iterable[BrickObject]) -> None:
        """Apply one data set (in the order it was written)."""
        for obj in objects:
            self._apply(obj)

    def _apply(self, obj: BrickObject) -> None:
        if obj.kind == DATASET:
            self.sets.append(dict(obj.meta))
        elif obj.kind == MAILBOX:
            self._mailboxes.setdefault(obj.mailbox, {})
        elif obj.kind == FOLDER:
            folders = self._mailboxes.setdefault(obj.mailbox, {})
            old = folders.get(obj.folder)
            keep = {} if (old is None or obj.meta.get("complete")) else old.items
            folders[obj.folder] = CatalogFolder(obj.folder, dict(obj.meta), keep)
        elif obj.kind == ITEM:
            meta = obj.meta
            if meta.get("stored"):
                if obj.content is None:
                    raise CorruptDataError(f"item uid {meta['uid']} is marked stored but has no content",
                                           _where(obj))
                self._contents.setdefault(meta["sha256"], obj.content)
            self._folder(obj).items[int(meta["uid"])] = CatalogItem(
                obj.folder, int(meta["uid"]), tuple(meta["flags"]), float(meta["internal_date"]),
                meta.get("message_id"), int(meta["size"]), meta["sha256"],
                meta.get("message_class", "IPM.Note"))
        elif obj.kind == UPDATE:
            items = self._folder(obj).items
            uid = int(obj.meta["uid"])
            if uid in items:
                items[uid] = replace(items[uid], flags=tuple(obj.meta["flags"]))
        elif obj.kind == EXPUNGED:
            self._folder(obj).items.pop(int(obj.meta["uid"]), None)
        elif obj.kind == FOLDER_GONE:
            folders = self._mailboxes.get(obj.mailbox, {})
            for path in [p for p in folders if p[:len(obj.folder)] == obj.folder]:
                del folders[path]
        else:
            raise CorruptDataError(f"unknown brick object kind {obj.kind!r}", _where(obj))

    def _folder(self, obj: BrickObject) -> CatalogFolder:
        try:
            return self._mailboxes[obj.mailbox][obj.folder]
        except KeyError:
            raise CorruptDataError(f"{obj.kind} record before its folder record", _where(obj)) from None

    # -- queries ---------------------------------------------------------------------------------

    def mailboxes(self) -> list[str]:
        return sorted(self._mailboxes)

    def folders(self, mailbox: str) -> list[CatalogFolder]:
        if mailbox not in self._mailboxes:
            raise NotFoundError(f"mailbox {mailbox!r} is not in this backup (have: {', '.join(self.mailboxes())})")
        return [self._mailboxes[mailbox][p] for p in sorted(self._mailboxes[mailbox])]

    def items(self, mailbox: str, folder: tuple[str, ...]) -> list[CatalogItem]:
        for entry in self.folders(mailbox):
            if entry.path == folder:
                return [entry.items[uid] for uid in sorted(entry.items)]
        raise NotFoundError(f"folder {display_path(folder)!r} of mailbox {mailbox!r} is not in this backup")

    def content(self, item: CatalogItem) -> bytes:
        """The item's octets, checked against its sha256."""
        source = self._contents.get(item.sha256)
        where = f"backup of {display_path(item.folder)} uid {item.uid}"
        if source is None:
            raise CorruptDataError(f"body sha256 {item.sha256[:16]}… is in no data set of the chain "
                                   "(an earlier set is missing?)", where)
        data = source() if callable(source) else source
        if sha256_hex(data) != item.sha256:
            raise CorruptDataError(f"body does not match its sha256 {item.sha256[:16]}…", where)
        return data


def _where(obj: BrickObject) -> str:
    return f"brick object {obj.kind} {display_path(obj.path)}"
