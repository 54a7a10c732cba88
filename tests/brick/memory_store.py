"""A small in-memory MailboxStore for fast property tests of the brick engine (test double only).

It passes the shared MailboxStore suite (test_memory_store.py), so the engine properties checked
against it hold for any store that behaves like the suite says. ``renumber`` plays a server that
assigns a new UIDVALIDITY and new UIDs to a folder.
"""

from __future__ import annotations

import email.parser
import itertools
from dataclasses import dataclass, field

from reference.errors import NotFoundError, UsageError
from reference.protocols.mailbox import FolderInfo, ItemInfo, NewItem

_validity = itertools.count(1000)


@dataclass
class _Folder:
    uid_validity: int
    next_uid: int = 1
    modseq: int = 1
    items: dict = field(default_factory=dict)    # uid -> [bytes, flags, date, modseq]


class MemoryMailboxStore:
    def __init__(self, *mailboxes: str):
        self.boxes: dict[str, dict[tuple, _Folder]] = {m: {("INBOX",): _Folder(next(_validity))} for m in mailboxes}

    def _box(self, mailbox):
        if mailbox not in self.boxes:
            raise NotFoundError(f"no mailbox {mailbox!r}")
        return self.boxes[mailbox]

    def _folder(self, mailbox, folder) -> _Folder:
        box = self._box(mailbox)
        if tuple(folder) not in box:
            raise NotFoundError(f"no folder {folder!r} in {mailbox!r}")
        return box[tuple(folder)]

    def list_mailboxes(self):
        return sorted(self.boxes)

    def list_folders(self, mailbox):
        return [FolderInfo(p, f.uid_validity, f.modseq, len(f.items)) for p, f in sorted(self._box(mailbox).items())]

    def list_items(self, mailbox, folder, changed_since=0):
        f = self._folder(mailbox, folder)
        rows = []
        for uid in sorted(f.items):
            data, flags, date, modseq = f.items[uid]
            if modseq > changed_since:
                mid = email.parser.BytesHeaderParser().parsebytes(data).get("Message-ID")
                rows.append(ItemInfo(uid, len(data), frozenset(flags), date, mid.strip() if mid else None, modseq))
        return iter(rows)

    def read_item(self, mailbox, folder, uid):
        f = self._folder(mailbox, folder)
        if uid not in f.items:
            raise NotFoundError(f"no uid {uid} in {folder!r}")
        return f.items[uid][0]

    def create_folder(self, mailbox, folder):
        if not folder or any(not n for n in folder):
            raise UsageError(f"bad folder path {folder!r}")
        box = self._box(mailbox)
        for depth in range(1, len(folder) + 1):
            box.setdefault(tuple(folder[:depth]), _Folder(next(_validity)))
        return self.list_folders(mailbox)[[p for p in sorted(box)].index(tuple(folder))]

    def delete_folder(self, mailbox, folder):
        self._folder(mailbox, folder)
        box = self._box(mailbox)
        for path in [p for p in box if p[:len(folder)] == tuple(folder)]:
            del box[path]

    def append_item(self, mailbox, folder, item: NewItem):
        f = self._folder(mailbox, folder)
        f.modseq += 1
        uid, f.next_uid = f.next_uid, f.next_uid + 1
        date = float(int(item.internal_date)) if item.internal_date is not None else 1.2e9
        f.items[uid] = [bytes(item.content), frozenset(item.flags) - {"\\Recent"}, date, f.modseq]
        return uid

    def set_flags(self, mailbox, folder, uid, flags):
        f = self._folder(mailbox, folder)
        if uid not in f.items:
            raise NotFoundError(f"no uid {uid} in {folder!r}")
        f.modseq += 1
        f.items[uid][1], f.items[uid][3] = frozenset(flags), f.modseq

    def delete_item(self, mailbox, folder, uid):
        f = self._folder(mailbox, folder)
        if uid not in f.items:
            raise NotFoundError(f"no uid {uid} in {folder!r}")
        f.modseq += 1
        del f.items[uid]

    def renumber(self, mailbox, folder):
        """New UIDVALIDITY and new UIDs, same messages (what a server migration does)."""
        old = self._folder(mailbox, folder)
        new = _Folder(next(_validity), modseq=old.modseq + 1)
        for uid in sorted(old.items):
            data, flags, date, _ = old.items[uid]
            new.items[new.next_uid] = [data, flags, date, new.modseq]
            new.next_uid += 1
        self._box(mailbox)[tuple(folder)] = new
