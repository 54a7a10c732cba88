"""The emulated Exchange message store: mailboxes, folders and items kept *inside* the databases.

Every byte of a mailbox lives in records of a :class:`~emulators.exchange.records.RecordDatabase`
(layout in docs/exchange-mailboxes.md), so a database-level backup and restore brings back exactly
the mailboxes, and soft/hard recovery replays mailbox changes like any other ESE operation.

* :class:`DatabaseMailboxStore` - the mailboxes of one mailbox database (``priv1.edb``).
* :class:`ServerMailboxStore` - every mailbox of a server, across storage groups and databases,
  with the directory "mailbox name → (storage group, database)" the agent needs.

Both implement :class:`reference.protocols.mailbox.MailboxStore`. Names follow Exchange: mailbox
and folder names compare case-insensitively (``Inbox`` and ``INBOX`` are the same folder) and keep
the spelling they were created with. Folder paths are tuples relative to "Top of Information Store";
a name may contain ``/``, ``\\``, ``..``, ``*``, ``%`` and any non-ASCII character, but not control
characters.
"""

from __future__ import annotations

import json
import struct
import threading
import uuid
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

from emulators.clock import Clock, VirtualClock
from emulators.exchange.mime import count_attachments, header_fields, message_class_of, message_id_of
from emulators.exchange.records import STREAM_TABLE_PREFIX, RecordDatabase
from reference.errors import MailtapeError, NotFoundError, UsageError
from reference.protocols.mailbox import FolderInfo, FolderPath, ItemInfo, NewItem

META = "mailbox.meta"
MAILBOXES = "mailbox.mailboxes"
FOLDERS = "mailbox.folders"
FOLDER_NAMES = "mailbox.folder_names"
ITEMS = "mailbox.items"
BODIES = STREAM_TABLE_PREFIX + "bodies"
"""Message octets: a ``stream.*`` table, so the engine keeps them in the ``.stm`` file on 2000/2003."""

ROOT_FOLDER_ID = 1
ROOT_FOLDER_NAME = "Top of Information Store"

WELL_KNOWN_FOLDERS: tuple[tuple[str, str, str], ...] = (
    # (display name, container class, EWS DistinguishedFolderId)
    ("Inbox", "IPF.Note", "inbox"),
    ("Outbox", "IPF.Note", "outbox"),
    ("Sent Items", "IPF.Note", "sentitems"),
    ("Deleted Items", "IPF.Note", "deleteditems"),
    ("Drafts", "IPF.Note", "drafts"),
    ("Calendar", "IPF.Appointment", "calendar"),
    ("Contacts", "IPF.Contact", "contacts"),
    ("Tasks", "IPF.Task", "tasks"),
    ("Notes", "IPF.StickyNote", "notes"),
    ("Journal", "IPF.Journal", "journal"),
    ("Junk E-mail", "IPF.Note", "junkemail"),
)

SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})
_ATOM_SPECIALS = set('(){ %*"\\]') | {chr(c) for c in range(0x20)} | {"\x7f"}
_MAX_NAME = 256
_LIST_CHUNK = 1024
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


# ---------------------------------------------------------------------------------------------
# Errors


class MailboxNotFoundError(NotFoundError):
    def __init__(self, mailbox: str, where: str):
        self.mailbox = mailbox
        super().__init__(f"mailbox {mailbox!r} not found on {where}")


class FolderNotFoundError(NotFoundError):
    def __init__(self, mailbox: str, folder: FolderPath):
        self.folder = folder
        super().__init__(f"folder {format_path(folder)} not found in mailbox {mailbox!r}")


class ItemNotFoundError(NotFoundError):
    def __init__(self, mailbox: str, folder: FolderPath, uid: int):
        super().__init__(f"item uid {uid} not found in folder {format_path(folder)} of mailbox {mailbox!r}")


class MailboxExistsError(MailtapeError):
    pass


class MailboxStoreError(UsageError):
    """A request the store refuses as written: bad name, flag, or a protected folder."""


def format_path(folder: FolderPath) -> str:
    """A folder path for messages: the names quoted, so ``/`` inside a name stays unambiguous."""
    return "[" + ", ".join(repr(name) for name in folder) + "]" if folder else f"[{ROOT_FOLDER_NAME!r}]"


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise MailboxStoreError(f"{kind} name must be a non-empty string, not {name!r}")
    if len(name) > _MAX_NAME:
        raise MailboxStoreError(f"{kind} name {name[:40]!r}... is longer than {_MAX_NAME} characters")
    bad = [c for c in name if ord(c) < 0x20 or ord(c) == 0x7F]
    if bad:
        raise MailboxStoreError(f"{kind} name {name!r} contains control character {bad[0]!r}")
    return name


def _check_path(folder: object) -> FolderPath:
    if isinstance(folder, str) or not isinstance(folder, (tuple, list)):
        raise MailboxStoreError(f"folder path must be a tuple of names, not {folder!r}")
    return tuple(_check_name("folder", name) for name in folder)


def check_flags(flags: Iterable[str]) -> frozenset[str]:
    """IMAP system flags (``\\Seen``...) and keywords (atoms); ``\\Recent`` cannot be set."""
    checked = set()
    for flag in flags:
        if not isinstance(flag, str) or not flag:
            raise MailboxStoreError(f"flag must be a non-empty string, not {flag!r}")
        if flag.startswith("\\"):
            canonical = next((f for f in SYSTEM_FLAGS if f.lower() == flag.lower()), None)
            if canonical is None:
                raise MailboxStoreError(f"unknown system flag {flag!r} (settable: {', '.join(sorted(SYSTEM_FLAGS))})")
            checked.add(canonical)
        else:
            bad = [c for c in flag if c in _ATOM_SPECIALS or ord(c) > 0x7E]
            if bad:
                raise MailboxStoreError(f"keyword {flag!r} contains {bad[0]!r}, which an IMAP atom cannot")
            checked.add(flag)
    return frozenset(checked)


def _fold(name: str) -> bytes:
    return name.casefold().encode("utf-8")


def _dump(record: dict) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _load(value: bytes) -> dict:
    return json.loads(value)


def folder_key(mailbox_no: int, folder_id: int) -> bytes:
    return _U32.pack(mailbox_no) + _U32.pack(folder_id)


def item_key(mailbox_no: int, folder_id: int, uid: int) -> bytes:
    return _U32.pack(mailbox_no) + _U32.pack(folder_id) + _U32.pack(uid)


def body_key(body_id: int) -> bytes:
    return _U64.pack(body_id)


@dataclass(frozen=True)
class MailboxInfo:
    """A mailbox as the directory knows it."""

    name: str
    display_name: str
    legacy_dn: str
    guid: str
    storage_group: str | None = None
    database: str | None = None


@dataclass(frozen=True)
class BulkItem:
    """One item for :meth:`DatabaseMailboxStore.bulk_append` (population of large stores)."""

    mailbox: str
    folder: FolderPath
    content: bytes
    flags: frozenset[str]
    internal_date: float
    message_id: str | None
    message_class: str = "IPM.Note"
    subject: str = ""
    attachments: int = 0


# ---------------------------------------------------------------------------------------------


class DatabaseMailboxStore:
    """The mailboxes of one mailbox database, stored as records (implements ``MailboxStore``)."""

    def __init__(self, db: RecordDatabase, clock: Clock | None = None, organization: str = "First Organization",
                 admin_group: str = "First Administrative Group", label: str | None = None):
        self.db = db
        self.clock = clock or VirtualClock()
        self.organization = organization
        self.admin_group = admin_group
        self.label = label or f"database {getattr(db, 'name', '?')!r}"
        self._lock = threading.RLock()

    # -- counters -------------------------------------------------------------------------------

    def _next(self, tx, counter: str, first: int, count: int = 1) -> int:
        """Reserve ``count`` values of a database-wide counter inside ``tx``; returns the first."""
        raw = tx.get(META, counter.encode())
        value = int(raw) if raw is not None else first
        tx.put(META, counter.encode(), str(value + count).encode())
        return value

    def _first_uid_validity(self) -> int:
        return max(1, int(self.clock.now()) & 0xFFFFFFFF)

    # -- mailboxes ------------------------------------------------------------------------------

    def _mailbox_record(self, mailbox: str, tx=None) -> dict:
        getter = tx.get if tx is not None else self.db.get
        raw = getter(MAILBOXES, _fold(mailbox)) if isinstance(mailbox, str) else None
        if raw is None:
            raise MailboxNotFoundError(mailbox, self.label)
        return _load(raw)

    def has_mailbox(self, mailbox: str) -> bool:
        return isinstance(mailbox, str) and self.db.get(MAILBOXES, _fold(mailbox)) is not None

    def list_mailboxes(self) -> list[str]:
        return [_load(value)["name"] for _, value in self.db.scan(MAILBOXES)]

    def mailbox_info(self, mailbox: str) -> MailboxInfo:
        record = self._mailbox_record(mailbox)
        return MailboxInfo(record["name"], record["display_name"], record["legacy_dn"], record["guid"])

    def create_mailbox(self, name: str, display_name: str | None = None) -> MailboxInfo:
        """A new mailbox with the well-known folders (what the Recipient Update Service triggers)."""
        _check_name("mailbox", name)
        with self._lock, self.db.transaction() as tx:
            if tx.get(MAILBOXES, _fold(name)) is not None:
                raise MailboxExistsError(f"mailbox {name!r} already exists on {self.label}")
            number = self._next(tx, "next_mailbox", 1)
            # Deterministic (no os.urandom) yet unique per database, mailbox and creation time.
            guid = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{self.label}/{name.casefold()}/{number}/{self.clock.now()!r}"))
            record = {
                "name": name,
                "display_name": display_name or name,
                "legacy_dn": f"/o={self.organization}/ou={self.admin_group}/cn=Recipients/cn={name}",
                "guid": guid,
                "number": number,
                "created": self.clock.now(),
            }
            tx.put(MAILBOXES, _fold(name), _dump(record))
            self._new_folder(tx, number, ROOT_FOLDER_ID, None, (), ROOT_FOLDER_NAME, "IPF.Note", "msgfolderroot")
            for folder_name, folder_class, well_known in WELL_KNOWN_FOLDERS:
                folder_id = self._next(tx, f"next_folder.{number}", ROOT_FOLDER_ID + 1)
                self._new_folder(tx, number, folder_id, ROOT_FOLDER_ID, (folder_name,), folder_name, folder_class,
                                 well_known)
        return MailboxInfo(name, record["display_name"], record["legacy_dn"], guid)

    def delete_mailbox(self, name: str) -> None:
        """Remove a mailbox and everything in it (a purged, disconnected mailbox)."""
        with self._lock:
            prefix = _U32.pack(self._mailbox_record(name)["number"])
            items = [(key, _load(value)["body"]) for key, value in self.db.scan(ITEMS, prefix)]
            folders = [key for key, _ in self.db.scan(FOLDERS, prefix)]
            names = [key for key, _ in self.db.scan(FOLDER_NAMES, prefix)]
            with self.db.transaction() as tx:
                for key, body in items:
                    tx.delete(BODIES, body_key(body))
                    tx.delete(ITEMS, key)
                for key in folders:
                    tx.delete(FOLDERS, key)
                for key in names:
                    tx.delete(FOLDER_NAMES, key)
                tx.delete(MAILBOXES, _fold(name))

    # -- folders --------------------------------------------------------------------------------

    def _new_folder(self, tx, number: int, folder_id: int, parent: int | None, path: FolderPath, name: str,
                    folder_class: str, well_known: str | None = None) -> dict:
        record = {
            "id": folder_id,
            "parent": parent,
            "path": list(path),
            "class": folder_class,
            "uid_validity": self._next(tx, "next_uid_validity", self._first_uid_validity()) & 0xFFFFFFFF or 1,
            "counter": 0,
            "next_uid": 1,
            "count": 0,
            "size": 0,
            "created": self.clock.now(),
            "well_known": well_known,
        }
        tx.put(FOLDERS, folder_key(number, folder_id), _dump(record))
        if parent is not None:
            tx.put(FOLDER_NAMES, folder_key(number, parent) + _fold(name), _U32.pack(folder_id))
        return record

    def _find_folder(self, mailbox: str, folder: FolderPath, tx=None) -> tuple[int, dict]:
        """(mailbox number, folder record) of a path; raises with the names when it is missing."""
        path = _check_path(folder)
        getter = tx.get if tx is not None else self.db.get
        number = self._mailbox_record(mailbox, tx)["number"]
        folder_id = ROOT_FOLDER_ID
        for name in path:
            raw = getter(FOLDER_NAMES, folder_key(number, folder_id) + _fold(name))
            if raw is None:
                raise FolderNotFoundError(mailbox, path)
            folder_id = _U32.unpack(raw)[0]
        raw = getter(FOLDERS, folder_key(number, folder_id))
        if raw is None:
            raise FolderNotFoundError(mailbox, path)
        return number, _load(raw)

    @staticmethod
    def _folder_info(record: dict) -> FolderInfo:
        return FolderInfo(
            path=tuple(record["path"]),
            uid_validity=record["uid_validity"],
            change_counter=record["counter"],
            item_count=record["count"],
            folder_class=record["class"],
        )

    def list_folders(self, mailbox: str) -> list[FolderInfo]:
        """Every folder below Top of Information Store, parents before children (depth first, by name)."""
        number = self._mailbox_record(mailbox)["number"]
        records = {}
        for _, value in self.db.scan(FOLDERS, _U32.pack(number)):
            record = _load(value)
            records[record["id"]] = record
        children: dict[int, list[dict]] = {}
        for record in records.values():
            if record["parent"] is not None:
                children.setdefault(record["parent"], []).append(record)
        ordered: list[FolderInfo] = []
        stack = [ROOT_FOLDER_ID]
        while stack:
            current = stack.pop()
            if current != ROOT_FOLDER_ID:
                ordered.append(self._folder_info(records[current]))
            kids = sorted(children.get(current, []), key=lambda r: (r["path"][-1].casefold(), r["path"][-1]))
            stack.extend(kid["id"] for kid in reversed(kids))
        return ordered

    def folder_info(self, mailbox: str, folder: FolderPath) -> FolderInfo:
        return self._folder_info(self._find_folder(mailbox, folder)[1])

    def folder_properties(self, mailbox: str, folder: FolderPath) -> dict:
        """Everything the store keeps about a folder (size, well-known id, creation time...)."""
        return dict(self._find_folder(mailbox, folder)[1])

    def create_folder(self, mailbox: str, folder: FolderPath, folder_class: str | None = None) -> FolderInfo:
        """Create ``folder`` and missing parents; a new folder inherits its parent's class by default."""
        path = _check_path(folder)
        if not path:
            raise MailboxStoreError(f"cannot create {ROOT_FOLDER_NAME!r}: it exists in every mailbox")
        with self._lock, self.db.transaction() as tx:
            number = self._mailbox_record(mailbox, tx)["number"]
            parent_raw = tx.get(FOLDERS, folder_key(number, ROOT_FOLDER_ID))
            parent = _load(parent_raw)
            for depth, name in enumerate(path):
                raw = tx.get(FOLDER_NAMES, folder_key(number, parent["id"]) + _fold(name))
                if raw is not None:
                    parent = _load(tx.get(FOLDERS, folder_key(number, _U32.unpack(raw)[0])))
                    continue
                last = depth == len(path) - 1
                klass = folder_class if (last and folder_class) else (
                    "IPF.Note" if parent["id"] == ROOT_FOLDER_ID else parent["class"])
                folder_id = self._next(tx, f"next_folder.{number}", ROOT_FOLDER_ID + 1)
                parent = self._new_folder(tx, number, folder_id, parent["id"], path[: depth + 1], name, klass)
            return self._folder_info(parent)

    def delete_folder(self, mailbox: str, folder: FolderPath) -> None:
        """Delete a folder with its subfolders and items (MAPI DeleteFolder with DEL_FOLDERS|DEL_MESSAGES).

        Well-known folders and Top of Information Store cannot be deleted, as in Exchange.
        """
        with self._lock:
            number, record = self._find_folder(mailbox, folder)
            if record["well_known"]:
                raise MailboxStoreError(
                    f"folder {format_path(tuple(record['path']))} of mailbox {mailbox!r} is a special folder "
                    "and cannot be deleted")
            doomed = []
            for folder_id in self._subtree(number, record["id"]):
                sub = _load(self.db.get(FOLDERS, folder_key(number, folder_id)))
                items = [(key, _load(value)["body"]) for key, value in self.db.scan(ITEMS, folder_key(number, folder_id))]
                doomed.append((folder_id, sub, items))
            with self.db.transaction() as tx:
                for folder_id, sub, items in doomed:
                    for key, body in items:
                        tx.delete(BODIES, body_key(body))
                        tx.delete(ITEMS, key)
                    tx.delete(FOLDERS, folder_key(number, folder_id))
                    tx.delete(FOLDER_NAMES, folder_key(number, sub["parent"]) + _fold(sub["path"][-1]))

    def _subtree(self, number: int, folder_id: int) -> list[int]:
        found, queue = [], [folder_id]
        while queue:
            current = queue.pop()
            found.append(current)
            queue.extend(_U32.unpack(v)[0] for _, v in self.db.scan(FOLDER_NAMES, folder_key(number, current)))
        return found

    # -- items ----------------------------------------------------------------------------------

    def list_items(self, mailbox: str, folder: FolderPath, changed_since: int = 0) -> Iterator[ItemInfo]:
        """Items in ascending uid; read in chunks, so the folder may change while the caller iterates."""
        number, record = self._find_folder(mailbox, folder)
        return self._iter_items(number, record["id"], changed_since)

    def _iter_items(self, number: int, folder_id: int, changed_since: int) -> Iterator[ItemInfo]:
        prefix = folder_key(number, folder_id)
        start = None
        while True:
            chunk = []
            for key, value in self.db.scan(ITEMS, prefix, start):
                if start is not None and key == start:
                    continue
                chunk.append((key, value))
                if len(chunk) >= _LIST_CHUNK:
                    break
            for key, value in chunk:
                record = _load(value)
                if record["modseq"] > changed_since:
                    yield self._item_info(_U32.unpack(key[8:12])[0], record)
            if len(chunk) < _LIST_CHUNK:
                return
            start = chunk[-1][0]

    @staticmethod
    def _item_info(uid: int, record: dict) -> ItemInfo:
        return ItemInfo(
            uid=uid,
            size=record["size"],
            flags=frozenset(record["flags"]),
            internal_date=record["date"],
            message_id=record["message_id"],
            modseq=record["modseq"],
            message_class=record["class"],
        )

    def _item_record(self, mailbox: str, folder: FolderPath, uid: int) -> tuple[int, dict, dict]:
        number, frecord = self._find_folder(mailbox, folder)
        raw = self.db.get(ITEMS, item_key(number, frecord["id"], uid)) if isinstance(uid, int) and 0 < uid < 1 << 32 else None
        if raw is None:
            raise ItemNotFoundError(mailbox, tuple(frecord["path"]), uid)
        return number, frecord, _load(raw)

    def item_info(self, mailbox: str, folder: FolderPath, uid: int) -> ItemInfo:
        return self._item_info(uid, self._item_record(mailbox, folder, uid)[2])

    def item_properties(self, mailbox: str, folder: FolderPath, uid: int) -> dict:
        """The item's stored properties (entry id, subject, body record...), beyond :class:`ItemInfo`."""
        return dict(self._item_record(mailbox, folder, uid)[2])

    def read_item(self, mailbox: str, folder: FolderPath, uid: int) -> bytes:
        _, _, record = self._item_record(mailbox, folder, uid)
        content = self.db.get(BODIES, body_key(record["body"]))
        if content is None:
            raise NotFoundError(f"body record {record['body']} of item uid {uid} in {format_path(tuple(folder))} "
                                f"of mailbox {mailbox!r} is missing from {self.label}")
        return bytes(content)

    def _bump(self, frecord: dict) -> int:
        frecord["counter"] += 1
        return frecord["counter"]

    def append_item(self, mailbox: str, folder: FolderPath, item: NewItem) -> int:
        if not isinstance(item.content, (bytes, bytearray, memoryview)) or len(item.content) == 0:
            raise MailboxStoreError(f"item content for {format_path(tuple(folder))} must be non-empty bytes")
        content = bytes(item.content)
        flags = check_flags(item.flags)
        fields = header_fields(content)
        date = self.clock.now() if item.internal_date is None else item.internal_date
        if not isinstance(date, (int, float)) or isinstance(date, bool) or date != date:
            raise MailboxStoreError(f"internal date for {format_path(tuple(folder))} must be Unix seconds, not {date!r}")
        date = float(date)
        with self._lock, self.db.transaction() as tx:
            number, frecord = self._find_folder(mailbox, folder, tx)
            if frecord["id"] == ROOT_FOLDER_ID:
                raise MailboxStoreError(f"{ROOT_FOLDER_NAME!r} of mailbox {mailbox!r} holds folders, not items")
            entry = self._next(tx, "next_body", 1)
            uid = self._store_item(tx, number, frecord, entry, {
                "body": entry, "size": len(content), "flags": sorted(flags), "date": date,
                "message_id": message_id_of(fields), "class": message_class_of(fields),
                "subject": fields.get("subject", ""), "attachments": count_attachments(content),
            })
            tx.put(BODIES, body_key(entry), content)
            return uid

    def _store_item(self, tx, number: int, frecord: dict, entry: int, record: dict) -> int:
        uid = frecord["next_uid"]
        frecord["next_uid"] = uid + 1
        frecord["count"] += 1
        frecord["size"] += record["size"]
        record["entry"] = f"{number:08X}{entry:016X}"
        record["modseq"] = self._bump(frecord)
        tx.put(ITEMS, item_key(number, frecord["id"], uid), _dump(record))
        tx.put(FOLDERS, folder_key(number, frecord["id"]), _dump(frecord))
        return uid

    def set_flags(self, mailbox: str, folder: FolderPath, uid: int, flags: frozenset[str]) -> None:
        """Replace the item's flags (IMAP ``STORE FLAGS``); no change, no modseq bump."""
        wanted = sorted(check_flags(flags))
        with self._lock, self.db.transaction() as tx:
            number, frecord, record = self._item_record(mailbox, folder, uid)
            if record["flags"] == wanted:
                return
            record["flags"] = wanted
            record["modseq"] = self._bump(frecord)
            tx.put(ITEMS, item_key(number, frecord["id"], uid), _dump(record))
            tx.put(FOLDERS, folder_key(number, frecord["id"]), _dump(frecord))

    def delete_item(self, mailbox: str, folder: FolderPath, uid: int) -> None:
        """Hard-delete an item (what emptying Deleted Items does)."""
        with self._lock, self.db.transaction() as tx:
            number, frecord, record = self._item_record(mailbox, folder, uid)
            frecord["count"] -= 1
            frecord["size"] -= record["size"]
            self._bump(frecord)
            tx.delete(ITEMS, item_key(number, frecord["id"], uid))
            tx.delete(BODIES, body_key(record["body"]))
            tx.put(FOLDERS, folder_key(number, frecord["id"]), _dump(frecord))

    def move_item(self, mailbox: str, folder: FolderPath, uid: int, target: FolderPath) -> int:
        """Move an item to another folder of the same mailbox; returns its uid there.

        The body record stays where it is; the item gets a new uid and entry id in the target, as a
        MAPI move does.
        """
        with self._lock, self.db.transaction() as tx:
            number, source, record = self._item_record(mailbox, folder, uid)
            _, destination = self._find_folder(mailbox, target, tx)
            if destination["id"] == ROOT_FOLDER_ID:
                raise MailboxStoreError(f"{ROOT_FOLDER_NAME!r} of mailbox {mailbox!r} holds folders, not items")
            if destination["id"] == source["id"]:
                return uid
            source["count"] -= 1
            source["size"] -= record["size"]
            self._bump(source)
            tx.delete(ITEMS, item_key(number, source["id"], uid))
            tx.put(FOLDERS, folder_key(number, source["id"]), _dump(source))
            entry = self._next(tx, "next_body", 1)
            return self._store_item(tx, number, destination, entry, dict(record))

    # -- bulk population ------------------------------------------------------------------------

    def bulk_append(self, items: Sequence[BulkItem]) -> list[int]:
        """Store many items with ``bulk_load`` (population); returns their uids in input order.

        Bodies and item records go in as two sorted bulk loads; the folder and counter records are
        then updated in one transaction.
        """
        if not items:
            return []
        with self._lock:
            folders: dict[tuple[str, FolderPath], tuple[int, dict]] = {}
            for item in items:
                slot = (item.mailbox.casefold(), tuple(name.casefold() for name in item.folder))
                if slot not in folders:
                    folders[slot] = self._find_folder(item.mailbox, item.folder)
            first_body = _next_value(self.db.get(META, b"next_body"), 1)
            bodies, records, uids = [], [], []
            for offset, item in enumerate(items):
                number, frecord = folders[(item.mailbox.casefold(), tuple(name.casefold() for name in item.folder))]
                entry = first_body + offset
                uid = frecord["next_uid"]
                frecord["next_uid"] = uid + 1
                frecord["count"] += 1
                frecord["size"] += len(item.content)
                frecord["counter"] += 1
                bodies.append((body_key(entry), item.content))
                records.append((item_key(number, frecord["id"], uid), _dump({
                    "body": entry, "size": len(item.content), "flags": sorted(item.flags), "date": item.internal_date,
                    "message_id": item.message_id, "class": item.message_class, "subject": item.subject,
                    "attachments": item.attachments,
                    "entry": f"{number:08X}{entry:016X}", "modseq": frecord["counter"],
                })))
                uids.append(uid)
            records.sort()
            self.db.bulk_load(BODIES, bodies)
            self.db.bulk_load(ITEMS, records)
            with self.db.transaction() as tx:
                tx.put(META, b"next_body", str(first_body + len(items)).encode())
                for number, frecord in folders.values():
                    tx.put(FOLDERS, folder_key(number, frecord["id"]), _dump(frecord))
            return uids

    # -- summaries ------------------------------------------------------------------------------

    def mailbox_summary(self, mailbox: str) -> dict:
        """Folder count, item count and bytes of a mailbox (from folder records; no item scan)."""
        number = self._mailbox_record(mailbox)["number"]
        folders = items = size = 0
        for _, value in self.db.scan(FOLDERS, _U32.pack(number)):
            record = _load(value)
            if record["id"] != ROOT_FOLDER_ID:
                folders += 1
            items += record["count"]
            size += record["size"]
        return {"folders": folders, "items": items, "bytes": size}


def _next_value(raw: bytes | None, first: int) -> int:
    return int(raw) if raw is not None else first


# ---------------------------------------------------------------------------------------------


class ServerMailboxStore:
    """Every mailbox of a server, across storage groups and databases (implements ``MailboxStore``).

    ``databases`` maps (storage group name, database name) to a mounted :class:`RecordDatabase`;
    mailbox names are unique server-wide (they are directory aliases), so each call is routed to
    the one database that holds the mailbox.
    """

    def __init__(self, databases: Mapping[tuple[str, str], RecordDatabase], clock: Clock | None = None,
                 server_name: str = "EXCHANGE01", organization: str = "First Organization"):
        self.clock = clock or VirtualClock()
        self.server_name = server_name
        self.stores: dict[tuple[str, str], DatabaseMailboxStore] = {
            (sg, name): DatabaseMailboxStore(db, self.clock, organization=organization,
                                             label=f"database {name!r} of storage group {sg!r}")
            for (sg, name), db in databases.items()
        }
        self.dismounted: list[tuple[str, str]] = []
        """(storage group, database) of stores that exist but are not mounted: their mailboxes are unreachable."""

    def _where(self) -> str:
        where = f"server {self.server_name!r}"
        if self.dismounted:
            names = ", ".join(repr(db) for _, db in self.dismounted)
            where += f" (not mounted, so not searched: {names})"
        return where

    @classmethod
    def for_server(cls, server, clock: Clock | None = None) -> "ServerMailboxStore":
        """The mailbox view of an :class:`emulators.exchange.ExchangeServer` (its mounted databases)."""
        databases, dismounted = {}, []
        for group in server.storage_groups:
            if group.recovery:
                continue  # a Recovery Storage Group's stores are not reachable by a MAPI logon
            for config in group.databases:
                if server.is_mounted(group.name, config.name):
                    databases[(group.name, config.name)] = server.database(group.name, config.name)
                else:
                    dismounted.append((group.name, config.name))
        view = cls(databases, clock or server.clock, server_name=server.server_name)
        view.dismounted = dismounted
        return view

    # -- directory ------------------------------------------------------------------------------

    def locate(self, mailbox: str) -> tuple[str, str]:
        """(storage group, database) that holds ``mailbox``."""
        for place, store in self.stores.items():
            if store.has_mailbox(mailbox):
                return place
        raise MailboxNotFoundError(mailbox, self._where())

    def directory(self) -> dict[str, tuple[str, str]]:
        """Every mailbox name on the server → (storage group, database)."""
        return {name: place for place, store in self.stores.items() for name in store.list_mailboxes()}

    def store_for(self, mailbox: str) -> DatabaseMailboxStore:
        return self.stores[self.locate(mailbox)]

    def database_store(self, storage_group: str, database: str) -> DatabaseMailboxStore:
        try:
            return self.stores[(storage_group, database)]
        except KeyError:
            raise NotFoundError(f"database {database!r} of storage group {storage_group!r} is not mounted on "
                                f"server {self.server_name!r}") from None

    def create_mailbox(self, name: str, storage_group: str | None = None, database: str | None = None,
                       display_name: str | None = None) -> MailboxInfo:
        """Create a mailbox in the named database, or in the one with the fewest mailboxes."""
        _check_name("mailbox", name)
        if any(store.has_mailbox(name) for store in self.stores.values()):
            raise MailboxExistsError(f"mailbox {name!r} already exists on server {self.server_name!r}")
        if not self.stores:
            raise NotFoundError(f"server {self.server_name!r} has no mounted mailbox database")
        if storage_group is not None or database is not None:
            matches = [p for p in self.stores if storage_group in (None, p[0]) and database in (None, p[1])]
            if len(matches) != 1:
                raise NotFoundError(f"no single mounted database matches storage group {storage_group!r}, "
                                    f"database {database!r} on server {self.server_name!r}")
            place = matches[0]
        else:
            place = min(self.stores, key=lambda p: len(self.stores[p].list_mailboxes()))
        info = self.stores[place].create_mailbox(name, display_name)
        return MailboxInfo(info.name, info.display_name, info.legacy_dn, info.guid, place[0], place[1])

    def mailbox_info(self, mailbox: str) -> MailboxInfo:
        place = self.locate(mailbox)
        info = self.stores[place].mailbox_info(mailbox)
        return MailboxInfo(info.name, info.display_name, info.legacy_dn, info.guid, place[0], place[1])

    # -- MailboxStore ---------------------------------------------------------------------------

    def list_mailboxes(self) -> list[str]:
        return [name for store in self.stores.values() for name in store.list_mailboxes()]

    def list_folders(self, mailbox: str) -> list[FolderInfo]:
        return self.store_for(mailbox).list_folders(mailbox)

    def list_items(self, mailbox: str, folder: FolderPath, changed_since: int = 0) -> Iterator[ItemInfo]:
        return self.store_for(mailbox).list_items(mailbox, folder, changed_since)

    def read_item(self, mailbox: str, folder: FolderPath, uid: int) -> bytes:
        return self.store_for(mailbox).read_item(mailbox, folder, uid)

    def create_folder(self, mailbox: str, folder: FolderPath, folder_class: str | None = None) -> FolderInfo:
        return self.store_for(mailbox).create_folder(mailbox, folder, folder_class)

    def delete_folder(self, mailbox: str, folder: FolderPath) -> None:
        self.store_for(mailbox).delete_folder(mailbox, folder)

    def append_item(self, mailbox: str, folder: FolderPath, item: NewItem) -> int:
        return self.store_for(mailbox).append_item(mailbox, folder, item)

    def set_flags(self, mailbox: str, folder: FolderPath, uid: int, flags: frozenset[str]) -> None:
        self.store_for(mailbox).set_flags(mailbox, folder, uid, flags)

    def delete_item(self, mailbox: str, folder: FolderPath, uid: int) -> None:
        self.store_for(mailbox).delete_item(mailbox, folder, uid)

    def move_item(self, mailbox: str, folder: FolderPath, uid: int, target: FolderPath) -> int:
        return self.store_for(mailbox).move_item(mailbox, folder, uid, target)

    def folder_info(self, mailbox: str, folder: FolderPath) -> FolderInfo:
        return self.store_for(mailbox).folder_info(mailbox, folder)

    def mailbox_summary(self, mailbox: str) -> dict:
        return self.store_for(mailbox).mailbox_summary(mailbox)


__all__ = [
    "BulkItem",
    "DatabaseMailboxStore",
    "FolderNotFoundError",
    "ItemNotFoundError",
    "MailboxExistsError",
    "MailboxInfo",
    "MailboxNotFoundError",
    "MailboxStoreError",
    "ServerMailboxStore",
    "WELL_KNOWN_FOLDERS",
    "check_flags",
    "format_path",
    "snapshot",
]


def snapshot(store, mailboxes: Iterable[str] | None = None) -> dict:
    """Everything a client can see, as plain data: mailbox → folder path → folder facts and items.

    Items are (uid, size, sorted flags, internal date, Message-ID, modseq, class, SHA-256 of the
    octets). Two stores with equal snapshots hold the same mail - what a database-level restore or
    a brick-level round trip must preserve.
    """
    import hashlib

    view: dict = {}
    for mailbox in sorted(store.list_mailboxes() if mailboxes is None else mailboxes, key=str.casefold):
        folders = {}
        for info in store.list_folders(mailbox):
            items = [
                (i.uid, i.size, tuple(sorted(i.flags)), i.internal_date, i.message_id, i.modseq, i.message_class,
                 hashlib.sha256(store.read_item(mailbox, info.path, i.uid)).hexdigest())
                for i in store.list_items(mailbox, info.path)
            ]
            folders[info.path] = {"uid_validity": info.uid_validity, "change_counter": info.change_counter,
                                  "item_count": info.item_count, "folder_class": info.folder_class, "items": items}
        view[mailbox] = folders
    return view
