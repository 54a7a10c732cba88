"""A mounted database as the record layer sees it (``records.RecordDatabase``).

Reads come from the page files' indexes; every change goes through the storage group's log as
one transaction (``Instance.commit``) before it reaches the pages.
"""

from __future__ import annotations

import threading
from typing import Iterable, Iterator

from .. import errors
from ..records import STREAM_TABLE_PREFIX
from .pagefile import OP_DELETE, OP_PUT, PageFile

BULK_BATCH_BYTES = 1 << 20


def route_table(files: list[PageFile], table: str) -> PageFile:
    """Which file of a store holds ``table``: ``stream.*`` tables go to the ``.stm`` when there is one."""
    if len(files) > 1 and table.startswith(STREAM_TABLE_PREFIX):
        return files[1]
    return files[0]


class MountedDatabase:
    """``RecordDatabase`` over one store's ``.edb`` (and ``.stm``)."""

    def __init__(self, instance, dbid: int, name: str, files: list[PageFile]):
        self.instance = instance
        self.dbid = dbid
        self.name = name
        self.files = files
        self.mounted = True

    def file_for(self, table: str) -> PageFile:
        return route_table(self.files, table)

    def _check(self) -> None:
        if not self.mounted:
            raise errors.jet_error(errors.DatabaseNotFound, f"database {self.name!r} is not mounted")

    # -- RecordDatabase ---------------------------------------------------------------------

    def transaction(self) -> "Transaction":
        self._check()
        return Transaction(self)

    def get(self, table: str, key: bytes) -> bytes | None:
        self._check()
        with self.instance.lock:
            return self.file_for(table).get(table, bytes(key))

    def scan(self, table: str, prefix: bytes = b"", start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        self._check()
        pf = self.file_for(table)
        with self.instance.lock:
            idx = pf.tables.get(table)
            keys = idx.keys_from(bytes(prefix), start) if idx is not None else []
        for k in keys:
            with self.instance.lock:
                where = idx.locate(k)
                if where is None:
                    continue
                value = pf.read_heap(*where)
            yield k, value

    def bulk_load(self, table: str, records: Iterable[tuple[bytes, bytes]]) -> int:
        self._check()
        count = 0
        batch: list[tuple[int, int, str, bytes, bytes]] = []
        size = 0
        for key, value in records:
            batch.append((OP_PUT, self.dbid, table, bytes(key), bytes(value)))
            size += len(key) + len(value)
            count += 1
            if size >= BULK_BATCH_BYTES:
                self.instance.commit(batch)
                batch, size = [], 0
        if batch:
            self.instance.commit(batch)
        return count

    # -- extras -----------------------------------------------------------------------------

    def tables(self) -> list[str]:
        with self.instance.lock:
            return sorted(t for f in self.files for t, idx in f.tables.items() if len(idx))

    def count(self, table: str) -> int:
        idx = self.file_for(table).tables.get(table)
        return len(idx) if idx else 0

    def snapshot(self) -> dict[str, dict[bytes, bytes]]:
        """Every record of every table (for tests: compare a restored database with the original)."""
        return {t: dict(self.scan(t)) for t in self.tables()}

    def __repr__(self) -> str:
        return f"<MountedDatabase {self.name!r} dbid={self.dbid}>"


class Transaction:
    """``with db.transaction() as tx``: changes buffered here, logged and applied at commit."""

    def __init__(self, db: MountedDatabase):
        self.db = db
        self.ops: list[tuple[int, int, str, bytes, bytes]] = []
        self._view: dict[tuple[str, bytes], bytes | None] = {}
        self._thread = threading.get_ident()

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()
        return False

    def put(self, table: str, key: bytes, value: bytes) -> None:
        key, value = bytes(key), bytes(value)
        if len(key) > 0xFFFF:
            raise errors.jet_error(errors.InvalidParameter, f"key of {len(key)} bytes is too long (max 65535)")
        if len(table.encode("utf-8")) > 255:
            raise errors.jet_error(errors.InvalidParameter, f"table name {table[:40]!r}... is too long")
        self.ops.append((OP_PUT, self.db.dbid, table, key, value))
        self._view[(table, key)] = value

    def delete(self, table: str, key: bytes) -> None:
        key = bytes(key)
        if self.get(table, key) is None:
            self._view[(table, key)] = None
            return
        self.ops.append((OP_DELETE, self.db.dbid, table, key, b""))
        self._view[(table, key)] = None

    def get(self, table: str, key: bytes) -> bytes | None:
        key = bytes(key)
        if (table, key) in self._view:
            return self._view[(table, key)]
        return self.db.get(table, key)

    def commit(self) -> None:
        ops, self.ops = self.ops, []
        self._view.clear()
        if ops:
            self.db._check()
            self.db.instance.commit(ops)

    def rollback(self) -> None:
        self.ops = []
        self._view.clear()
