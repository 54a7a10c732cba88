"""Readers for the files a backup streams: database streams (header x2, pages, trailer) and logs.

``read_into`` fills a caller buffer; whole pages go straight from the file into the caller's
memory (``readinto``) and are verified there with one numpy pass; only a page cut by the buffer
edge goes through a one-page staging buffer.
"""

from __future__ import annotations

import os
import threading

from .. import errors
from ..engine.logstream import LogCorrupt, parse_generation_bytes
from ..ondisk.checksum import bad_pages

READ_RETRIES = 16  # ESE retries a failed read 16 times, 100 ms x n apart (spec §1.2-4)


class PageVerifyError(Exception):
    def __init__(self, pgno: int, offset: int):
        super().__init__(f"page {pgno} (offset {offset})")
        self.pgno = pgno
        self.offset = offset


class DatabaseStream:
    def __init__(self, path: str, page_size: int, header_page: bytes, pgno_last: int, trailer_factory, clock,
                 lock=None):
        self.lock = lock or threading.Lock()
        self.path = path
        self.cb = page_size
        self.header_page = header_page
        self.pgno_last = pgno_last
        self.trailer_factory = trailer_factory
        self.trailer: bytes | None = None
        self.size = (pgno_last + 2 + (1 if trailer_factory else 0)) * page_size
        self.pos = 0
        self.clock = clock
        self._fh = open(path, "rb")
        self._stage_index = -1
        self._stage = bytearray(page_size)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def _read_verified(self, mv: memoryview, first_page_index: int, npages: int) -> None:
        """Read file pages [first, first+n) into ``mv`` and verify them (with ESE's retries)."""
        cb = self.cb
        for attempt in range(READ_RETRIES + 1):
            with self.lock:  # the range lock: no flush rewrites these pages while we read them
                self._fh.seek(first_page_index * cb)
                got = self._fh.readinto(mv[: npages * cb])
            if got < npages * cb:
                mv[got : npages * cb] = bytes(npages * cb - got)
            bad = bad_pages(mv[: npages * cb], cb, first_page_index - 1)
            if not bad.size:
                return
            if attempt < READ_RETRIES:
                self.clock.sleep(0.1 * (attempt + 1))
        page_index = first_page_index + int(bad[0])
        raise PageVerifyError(page_index - 1, page_index * cb)

    def read_into(self, buffer) -> int:
        mv = memoryview(buffer).cast("B")
        cb = self.cb
        total = 0
        end_pages = self.pgno_last + 2
        while total < len(mv) and self.pos < self.size:
            idx, within = divmod(self.pos, cb)
            room = len(mv) - total
            if idx < 2:
                src = self.header_page
            elif idx < end_pages:
                if within == 0 and room >= cb:
                    n = min(room // cb, end_pages - idx)
                    self._read_verified(mv[total:], idx, n)
                    total += n * cb
                    self.pos += n * cb
                    continue
                if self._stage_index != idx:
                    self._read_verified(memoryview(self._stage), idx, 1)
                    self._stage_index = idx
                src = self._stage
            else:
                if self.trailer is None:
                    self.trailer = self.trailer_factory()
                src = self.trailer
            n = min(cb - within, room)
            mv[total : total + n] = src[within : within + n]
            total += n
            self.pos += n
        return total


class LogFileStream:
    """A log generation, verified as a whole on the first read (corruption -> -612)."""

    def __init__(self, path: str, generation: int):
        self.path = path
        self.generation = generation
        self.size = os.path.getsize(path)
        self.pos = 0
        self._data: bytes | None = None

    def close(self) -> None:
        self._data = None

    def load(self) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        try:
            parse_generation_bytes(data, self.path, self.generation, keep=False)
        except LogCorrupt as e:
            raise errors.jet_error(errors.LogReadVerifyFailure, f"{e}") from None
        self._data = data

    def read_into(self, buffer) -> int:
        if self._data is None:
            self.load()
        mv = memoryview(buffer).cast("B")
        n = min(len(mv), len(self._data) - self.pos)
        if n <= 0:
            return 0
        mv[:n] = self._data[self.pos : self.pos + n]
        self.pos += n
        return n
