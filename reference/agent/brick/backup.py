"""The brick-level backup pass: walk mailboxes and folders of any MailboxStore, yield BrickObjects.

Full: every selected item. Incremental (or differential: pass the full backup's state as base):
per folder keyed by (path, uid_validity), items with uid > last uid are new; with a change counter
(CONDSTORE) only items changed since the last highest modseq are listed, else all are listed and
flags compared with the state; expunged items become EXPUNGED records. A changed UIDVALIDITY makes
the folder "complete" again: its items are re-listed and matched to the previous ones by
(Message-ID, internal date, size), so unchanged bodies are neither re-read nor stored again
(spec brick-level-imap.md §4 complaint 2). Within one set identical bodies are stored once
(single-instance); in an incremental, bodies already in the chain are referenced, not stored.

Memory: one item body at a time, plus the per-folder state (a few dozen bytes per item).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from reference.drivers.imap_errors import FolderIdentityChanged
from reference.protocols.mailbox import FolderInfo, ItemInfo, MailboxStore

from .model import (DATASET, EXPUNGED, FOLDER, FOLDER_GONE, FORMAT, ITEM, MAILBOX, UPDATE, BrickObject,
                    display_path, norm_message_id, sha256_hex, visible_flags)
from .selection import Selection
from .state import BackupState, FolderState, ItemState

LEVELS = ("full", "incremental", "differential")


@dataclass
class BackupSummary:
    mailboxes: int = 0
    folders: int = 0
    items_stored: int = 0
    """Items whose bytes are in this set."""
    items_referenced: int = 0
    """Items whose identical bytes were already stored (earlier in this set or in the chain)."""
    bytes_stored: int = 0
    bytes_read: int = 0
    flag_updates: int = 0
    expunged: int = 0
    folders_gone: int = 0
    filtered_out: int = 0
    remapped_without_reading: int = 0
    uidvalidity_changes: list[dict] = field(default_factory=list)


class BrickBackup:
    """One backup pass. Iterate :meth:`objects`; afterwards :attr:`state` is the next base."""

    def __init__(self, store: MailboxStore, selection: Selection = Selection(),
                 base: BackupState | None = None, *, level: str | None = None,
                 clock: Callable[[], float] = time.time):
        level = level or ("full" if base is None else "incremental")
        if level not in LEVELS:
            raise ValueError(f"backup level must be one of {LEVELS}, not {level!r}")
        if level != "full" and base is None:
            raise ValueError(f"a {level} backup needs the base state of an earlier backup")
        self.store, self.selection, self.level = store, selection, level
        self.base = base if level != "full" else None
        self.created = clock()
        self.state = BackupState(level=level, created=self.created)
        self.summary = BackupSummary()
        self._set_contents: set[str] = set()
        self._chain_contents: set[str] = set(self.base.contents) if self.base else set()

    # -- driving ---------------------------------------------------------------------------------

    def objects(self) -> Iterator[BrickObject]:
        yield BrickObject(DATASET, (), {"format": FORMAT, "level": self.level, "created": self.created,
                                        "selection": self.selection.to_meta()})
        for mailbox in sorted(self.store.list_mailboxes()):
            if self.selection.takes_mailbox(mailbox):
                yield from self._mailbox(mailbox)
        self.state.contents = self._chain_contents | self._set_contents

    def run(self, sink: Callable[[BrickObject], None] | None = None) -> BackupSummary:
        """Drive the pass, handing each object to ``sink`` (dropped when None: a dry count)."""
        for obj in self.objects():
            if sink is not None:
                sink(obj)
        return self.summary

    def _mailbox(self, mailbox: str) -> Iterator[BrickObject]:
        self.summary.mailboxes += 1
        yield BrickObject(MAILBOX, (mailbox,), {})
        present = set()
        for info in self.store.list_folders(mailbox):
            if not self.selection.takes_folder(info.path, info.folder_class):
                continue
            present.add(info.path)
            yield from self._folder(mailbox, info)
        if self.base is not None:
            for path in sorted(self.base.folders_of(mailbox)):
                if path not in present and self.selection.takes_folder(path, None):
                    self.summary.folders_gone += 1
                    yield BrickObject(FOLDER_GONE, (mailbox, *path), {})

    def _folder(self, mailbox: str, info: FolderInfo) -> Iterator[BrickObject]:
        self.summary.folders += 1
        prev = self.base.folders.get((mailbox, info.path)) if self.base else None
        for attempt in (1, 2):
            try:
                yield from self._folder_pass(mailbox, info, prev)
                return
            except FolderIdentityChanged:
                if attempt == 2:
                    raise
                info = self._refresh(mailbox, info)     # the retry sees the new identity: a reset

    def _refresh(self, mailbox: str, info: FolderInfo) -> FolderInfo:
        folder_info = getattr(self.store, "folder_info", None)
        if folder_info is not None:
            return folder_info(mailbox, info.path)
        return next(f for f in self.store.list_folders(mailbox) if f.path == info.path)

    # -- one folder ------------------------------------------------------------------------------

    def _folder_pass(self, mailbox: str, info: FolderInfo, prev: FolderState | None) -> Iterator[BrickObject]:
        path = info.path
        new = FolderState(info.uid_validity, highest_modseq=info.change_counter)
        reset = prev is not None and prev.uid_validity != info.uid_validity
        complete = prev is None or reset
        meta = {"uid_validity": info.uid_validity, "change_counter": info.change_counter,
                "item_count": info.item_count, "folder_class": info.folder_class,
                "complete": complete, "reset": reset}
        yield BrickObject(FOLDER, (mailbox, *path), meta)
        if info.uid_validity == 0:                       # \Noselect: a name in the hierarchy only
            self.state.folders[(mailbox, path)] = new
            return
        if complete:
            remap = _remap_index(prev) if reset else {}
            counts = {"remapped": 0, "read": 0}
            for item in self.store.list_items(mailbox, path):
                yield from self._capture(mailbox, path, item, new, remap, counts)
            if reset:
                self.summary.uidvalidity_changes.append({
                    "mailbox": mailbox, "folder": list(path), "old": prev.uid_validity,
                    "new": info.uid_validity, "remapped": counts["remapped"], "read": counts["read"]})
        else:
            yield from self._incremental(mailbox, info, prev, new)
        self.state.folders[(mailbox, path)] = new

    def _incremental(self, mailbox: str, info: FolderInfo, prev: FolderState,
                     new: FolderState) -> Iterator[BrickObject]:
        path = info.path
        new.items = {uid: ItemState(**vars(item)) for uid, item in prev.items.items()}
        new.last_uid = prev.last_uid
        by_modseq = prev.highest_modseq > 0 and info.change_counter > 0
        listed: set[int] = set()
        added = 0
        for item in self.store.list_items(mailbox, path, prev.highest_modseq if by_modseq else 0):
            listed.add(item.uid)
            known = new.items.get(item.uid)
            if item.uid > prev.last_uid or known is None:
                added += 1
                yield from self._capture(mailbox, path, item, new, {}, None)
            elif visible_flags(item.flags) != known.flags:
                known.flags = visible_flags(item.flags)
                self.summary.flag_updates += 1
                yield BrickObject(UPDATE, (mailbox, *path),
                                  {"uid": item.uid, "flags": known.flags, "modseq": item.modseq})
        if not by_modseq:
            gone = set(prev.items) - listed
        elif info.item_count != len(prev.items) + added:  # something left the folder: find what
            gone = set(prev.items) - {i.uid for i in self.store.list_items(mailbox, path)}
        else:
            gone = set()
        for uid in sorted(gone):
            del new.items[uid]
            self.summary.expunged += 1
            yield BrickObject(EXPUNGED, (mailbox, *path), {"uid": uid})

    def _capture(self, mailbox: str, path: tuple, item: ItemInfo, new: FolderState, remap: dict,
                 counts: dict | None) -> Iterator[BrickObject]:
        flags = visible_flags(item.flags)
        mid = norm_message_id(item.message_id)
        new.last_uid = max(new.last_uid, item.uid)
        if not self.selection.takes_date(item.internal_date):
            new.items[item.uid] = ItemState(None, mid, item.internal_date, item.size, flags)
            self.summary.filtered_out += 1
            return
        data, sha = None, None
        candidates = remap.get((mid, item.internal_date, item.size)) if mid else None
        if candidates:
            sha = candidates.pop(0)
            if sha in self._chain_contents or sha in self._set_contents:
                self.summary.remapped_without_reading += 1
                if counts is not None:
                    counts["remapped"] += 1
            else:
                sha = None
        if sha is None:
            data = self.store.read_item(mailbox, path, item.uid)
            sha = sha256_hex(data)
            self.summary.bytes_read += len(data)
            if counts is not None:
                counts["read"] += 1
        stored = sha not in self._set_contents and sha not in self._chain_contents
        if stored:
            self._set_contents.add(sha)
            self.summary.items_stored += 1
            self.summary.bytes_stored += len(data)
        else:
            self.summary.items_referenced += 1
        size = len(data) if data is not None else item.size
        new.items[item.uid] = ItemState(sha, mid, item.internal_date, size, flags)
        yield BrickObject(ITEM, (mailbox, *path), {
            "uid": item.uid, "flags": flags, "internal_date": item.internal_date,
            "message_id": item.message_id, "size": size, "sha256": sha, "modseq": item.modseq,
            "message_class": item.message_class, "stored": stored,
            "name": f"{item.uid}.eml"}, data if stored else None)


def _remap_index(prev: FolderState) -> dict[tuple, list[str]]:
    """(Message-ID, internal date, size) → body sha256 of the previous identity's items."""
    index: dict[tuple, list[str]] = {}
    for _uid, item in sorted(prev.items.items()):
        if item.message_id and item.sha256:
            index.setdefault((item.message_id, item.internal_date, item.size), []).append(item.sha256)
    return index


def describe(summary: BackupSummary) -> str:
    """One line for logs and the CLI."""
    text = (f"{summary.mailboxes} mailbox(es), {summary.folders} folder(s): {summary.items_stored} item(s) "
            f"stored ({summary.bytes_stored} bytes), {summary.items_referenced} single-instance, "
            f"{summary.flag_updates} flag update(s), {summary.expunged} expunged")
    for change in summary.uidvalidity_changes:
        text += (f"; UIDVALIDITY of {change['mailbox']}:{display_path(tuple(change['folder']))} changed "
                 f"{change['old']}→{change['new']} ({change['remapped']} re-mapped, {change['read']} re-read)")
    return text
