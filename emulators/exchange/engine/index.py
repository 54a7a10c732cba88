"""In-memory index of one table: key -> where the value lives in the record heap.

Built from the pages on first use (the pages are the truth). A location is one int,
``offset << 32 | length`` (about 32 bytes a row, where an ``(offset, length)`` tuple costs about
110). Keys are kept in a lazily merged sorted list so scans are ordered without paying a sort per
insert.
"""

from __future__ import annotations

from bisect import bisect_left, insort


class TableIndex:
    __slots__ = ("rows", "_sorted", "_pending", "_removed")

    def __init__(self) -> None:
        self.rows: dict[bytes, int] = {}  # key -> value offset << 32 | value length
        self._sorted: list[bytes] = []
        self._pending: list[bytes] = []
        self._removed: set[bytes] = set()

    def put(self, key: bytes, offset: int, length: int) -> None:
        if key not in self.rows:
            if key in self._removed:
                self._removed.discard(key)  # still present in the sorted list
            else:
                self._pending.append(key)
        self.rows[key] = offset << 32 | length

    def locate(self, key: bytes) -> tuple[int, int] | None:
        """(heap offset, length) of the key's value, or None when the key is not in the table."""
        where = self.rows.get(key)
        if where is None:
            return None
        return where >> 32, where & 0xFFFFFFFF

    def delete(self, key: bytes) -> bool:
        if self.rows.pop(key, None) is None:
            return False
        self._removed.add(key)
        return True

    def __len__(self) -> int:
        return len(self.rows)

    def _settle(self) -> list[bytes]:
        keys = self._sorted
        if self._pending:  # merge new keys first: a key put and then deleted is in both sets
            if len(self._pending) < 64:
                for k in self._pending:
                    insort(keys, k)
            else:
                keys.extend(self._pending)
                keys.sort()
            self._pending.clear()
        if self._removed:
            if len(self._removed) < 256:
                for k in self._removed:
                    i = bisect_left(keys, k)
                    if i < len(keys) and keys[i] == k:
                        del keys[i]
            else:
                rows = self.rows
                keys = [k for k in keys if k in rows]
            self._removed.clear()
        self._sorted = keys
        return keys

    def keys_from(self, prefix: bytes, start: bytes | None) -> list[bytes]:
        """Keys starting with ``prefix`` and >= ``start``, in order (a snapshot list)."""
        keys = self._settle()
        lo = prefix if start is None or start < prefix else start
        i = bisect_left(keys, lo)
        if not prefix:
            return keys[i:]
        succ = _successor(prefix)  # the end of the prefix range
        j = bisect_left(keys, succ, i) if succ is not None else len(keys)
        return keys[i:j]


def _successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return None
