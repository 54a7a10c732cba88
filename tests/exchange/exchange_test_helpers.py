"""Names and small helpers the Exchange emulator tests share (a uniquely named module: test
directories have no __init__.py, so ``from conftest import ...`` could pick another folder's)."""

from __future__ import annotations

SG1 = "First Storage Group"
SG2 = "Second Storage Group"
LOG_SIZE = 16384


def db_name(server, n: int = 1) -> str:
    return server.storage_group(SG1).databases[n - 1].name


def fill(db, n: int, start: int = 0, size: int = 700, table: str = "items", stream: bool = True) -> None:
    """Write ``n`` records (and as many to a ``stream.*`` table) in single-put transactions."""
    for i in range(start, start + n):
        with db.transaction() as tx:
            tx.put(table, b"k%06d" % i, bytes([i % 251]) * size)
            if stream:
                tx.put("stream.body", b"b%06d" % i, bytes([(i * 7) % 251]) * (size * 2))
