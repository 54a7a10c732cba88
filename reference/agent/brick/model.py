"""The objects a brick-level data set consists of: the packaging interface.

A brick-level backup pass yields :class:`BrickObject` values in order; a packager turns them into
tape objects (mailbox → MTF VOLB, folder → DIRB, item → FILE with the metadata record beside the
bytes) and a reader turns them back into the same values for :class:`~.catalog.BrickCatalog`.
Everything in ``meta`` is JSON-serialisable; folder paths are tuples of names that are never
joined or parsed, so '/', '..', wildcards and non-ASCII stay plain names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Union

FORMAT = "mailtape-brick/1"

DATASET = "dataset"
"""First object of a set: ``meta`` = level, created, format, selection."""
MAILBOX = "mailbox"
"""A mailbox (MTF VOLB): ``path`` = (mailbox,)."""
FOLDER = "folder"
"""A folder (MTF DIRB): ``path`` = (mailbox, *folder); ``meta`` has uid_validity, change_counter,
item_count, folder_class, and ``complete`` (True: the items that follow in this set are the whole
folder, so a restore view forgets what earlier sets said about it)."""
ITEM = "item"
"""A message (MTF FILE): ``meta`` = uid, flags, internal_date, message_id, size, sha256, modseq,
message_class, stored; ``content`` holds the octets only when ``stored`` (first copy in the set)."""
UPDATE = "update"
"""Flags of an item already in the chain changed: ``meta`` = uid, flags, modseq."""
EXPUNGED = "expunged"
"""An item left the folder since the previous set: ``meta`` = uid."""
FOLDER_GONE = "folder-gone"
"""A folder (and its items) left the mailbox since the previous set."""

Content = Union[bytes, Callable[[], bytes]]


@dataclass(frozen=True)
class BrickObject:
    kind: str
    path: tuple[str, ...]
    meta: dict = field(default_factory=dict)
    content: Content | None = None
    """The item octets (or a zero-argument loader for them, for readers that stream from tape)."""

    @property
    def mailbox(self) -> str:
        return self.path[0]

    @property
    def folder(self) -> tuple[str, ...]:
        return tuple(self.path[1:])

    def load_content(self) -> bytes | None:
        return self.content() if callable(self.content) else self.content


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def norm_message_id(value: str | None) -> str | None:
    """Message-ID for identity checks: whitespace removed; None when absent or empty."""
    if value is None:
        return None
    value = "".join(value.split())
    return value or None


def visible_flags(flags) -> list[str]:
    """Flags worth keeping, sorted: ``\\Recent`` is session state, never stored or restored."""
    return sorted(f for f in flags if f.lower() != "\\recent")


def display_path(folder: tuple[str, ...]) -> str:
    """Human form for messages and patterns: names joined by '/' (a '/' inside a name stays as is)."""
    return "/".join(folder)
