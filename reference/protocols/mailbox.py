"""The mailbox-store protocol: mailbox/folder/item access for brick-level backup and restore.

Mirrors what a MAPI client (Exchange 2003's brick-level agents) or an IMAP4rev1 client sees of a
message store (spec ``brick-level-imap.md`` §6, ``ese-backup-api.md`` §4): mailboxes, a tree of
folders, and items whose primary rendering is the exact RFC 5322 octets plus metadata. Implemented
by the Exchange emulator's store (``emulators.exchange``) and by the IMAP driver
(``reference.drivers.imap``) for any real IMAP server (Dovecot in tests, Exchange's IMAP4 service in
the field).

Folder paths are tuples of names (``("Inbox", "Projects")``), never delimiter-joined strings, so a
folder name containing ``/`` or ``.`` is just a name. Changes are detected per folder: a folder has
an identity (``uid_validity``: when it changes, every item id in it is void) and a change counter
(``change_counter``: grows on every create/update/delete in the folder, like IMAP's HIGHESTMODSEQ).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol, runtime_checkable


FolderPath = tuple[str, ...]


@dataclass(frozen=True)
class FolderInfo:
    path: FolderPath
    uid_validity: int
    """Identity of the folder's item ids; a change means ids seen before are meaningless."""
    change_counter: int
    """Grows on every change inside the folder (IMAP HIGHESTMODSEQ, Exchange change number)."""
    item_count: int
    folder_class: str = "IPF.Note"
    """Exchange container class: IPF.Note (mail), IPF.Appointment, IPF.Contact, IPF.Task..."""


@dataclass(frozen=True)
class ItemInfo:
    """What a listing tells about an item without reading its body."""

    uid: int
    """Item id, unique and ascending within the folder for one ``uid_validity``."""
    size: int
    flags: frozenset[str]
    """IMAP-style flags and keywords: ``\\Seen``, ``\\Flagged``, ``$Label1``..."""
    internal_date: float
    """Received time, Unix seconds (IMAP INTERNALDATE, MAPI PR_MESSAGE_DELIVERY_TIME)."""
    message_id: str | None
    modseq: int
    """The folder change counter value when the item last changed."""
    message_class: str = "IPM.Note"


@dataclass(frozen=True)
class NewItem:
    """An item to store: exact bytes plus the metadata a restore preserves."""

    content: bytes
    flags: frozenset[str] = field(default_factory=frozenset)
    internal_date: float | None = None


@runtime_checkable
class MailboxStore(Protocol):
    """A message store: list, read and write mailboxes, folders and items."""

    def list_mailboxes(self) -> list[str]:
        """Names of the mailboxes this store (or login) can reach."""

    def list_folders(self, mailbox: str) -> list[FolderInfo]:
        """Every folder of ``mailbox``, parents before children."""

    def list_items(self, mailbox: str, folder: FolderPath, changed_since: int = 0) -> Iterator[ItemInfo]:
        """Items of a folder, ascending uid; with ``changed_since`` only those with a higher modseq."""

    def read_item(self, mailbox: str, folder: FolderPath, uid: int) -> bytes:
        """The item's exact RFC 5322 octets."""

    def create_folder(self, mailbox: str, folder: FolderPath) -> FolderInfo:
        """Create a folder (and missing parents); returns the existing one if it is there."""

    def delete_folder(self, mailbox: str, folder: FolderPath) -> None: ...

    def append_item(self, mailbox: str, folder: FolderPath, item: NewItem) -> int:
        """Store an item, preserving flags and internal date; returns its new uid."""

    def set_flags(self, mailbox: str, folder: FolderPath, uid: int, flags: frozenset[str]) -> None: ...

    def delete_item(self, mailbox: str, folder: FolderPath, uid: int) -> None: ...
