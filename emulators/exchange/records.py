"""The record layer of the emulated ESE engine: what the mailbox store (and anything else that keeps
data *inside* an Exchange database) may use.

The storage engine (``engine/``) implements :class:`RecordDatabase` on top of its page files and
transaction logs: every ``put``/``delete`` is a logged operation inside a transaction, lands in
database pages (so a database-level backup and restore brings it back), and is replayed by
soft/hard recovery. The mailbox store (``mailbox_store.py``) is written against this protocol only.

Placement: tables whose name starts with ``"stream."`` hold bulk content (message bodies and
attachments). On a profile with a streaming file (Exchange 2000/2003: ``.stm``) the engine keeps
them in that file, as the real store keeps MIME content in the STM; otherwise in the ``.edb``.
Keys and values are bytes; keys sort bytewise; values may be larger than a page (the engine spans
them across pages).
"""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol, runtime_checkable

STREAM_TABLE_PREFIX = "stream."


@runtime_checkable
class Transaction(Protocol):
    """One ESE transaction: changes become durable (logged) at commit, all or nothing."""

    def put(self, table: str, key: bytes, value: bytes) -> None: ...

    def delete(self, table: str, key: bytes) -> None: ...

    def get(self, table: str, key: bytes) -> bytes | None:
        """Reads see the transaction's own uncommitted changes."""


@runtime_checkable
class RecordDatabase(Protocol):
    """A mounted database, seen as sorted key/value tables."""

    name: str

    def transaction(self) -> "TransactionContext":
        """``with db.transaction() as tx:`` commits on normal exit, rolls back on an exception."""

    def get(self, table: str, key: bytes) -> bytes | None: ...

    def scan(self, table: str, prefix: bytes = b"", start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Records of ``table`` whose key starts with ``prefix`` (from ``start`` on), in key order."""

    def bulk_load(self, table: str, records: Iterable[tuple[bytes, bytes]]) -> int:
        """Insert many new records fast (population of large test stores); logged like puts.

        Returns the number of records loaded.
        """


class TransactionContext(Protocol):
    def __enter__(self) -> Transaction: ...

    def __exit__(self, *exc) -> bool | None: ...
