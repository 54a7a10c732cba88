"""One ESE page file (``.edb`` or ``.stm``): header + shadow at pages 0-1, then data pages.

The data pages carry a *record heap*: an append-only byte stream of entries
``(len u32, lsn u64, op u8, tlen u8, klen u16, vlen u32, table, key, value)`` laid across the
payload area (page size - 40 byte page header) of consecutive pages, so values larger than a page
span pages. A put or delete appends an entry; the newest entry for a key wins.

Like ESE, opening (mounting) a file reads only its header: the in-memory record index is built
on the first access that needs it (a read, a scan, a count), so log replay and a backup's raw
page reads never pay for it, and a bad page is reported (-1018) when it is *read*. Pages are
written (flushed) in batches with their checksums computed by numpy; each page carries the LSN of
the newest entry that wrote into it as its dbtime, as ESE stamps a page with the dbtime of its
last change, so the pages depend only on the heap and never on when flushes happened: replaying
the same log records yields byte-identical pages. The header records how much of the heap and
which LSN the pages hold, which is what recovery replays from.
"""

from __future__ import annotations

import os
import struct
import threading
from bisect import bisect_right

import numpy as np

from .. import errors
from ..ondisk.checksum import bad_pages, seal_pages
from ..ondisk.structs import DbHeader
from .index import TableIndex

PAGE_HEADER = 40
ENTRY = struct.Struct("<IQBBHI")
OP_PUT = 1
OP_DELETE = 2
FLUSH_CHUNK_PAGES = 2048
SCAN_CHUNK_BYTES = 1024 * 1024  # read size of an index build (bounded memory: two chunks held)
DBTIME = struct.Struct("<Q")  # page header +8: dbtimeDirtied


class PageFile:
    def __init__(self, path: str, page_size: int, header: DbHeader, fh, has_copy_diff: bool):
        self.path = path
        self.cb = page_size
        self.payload = page_size - PAGE_HEADER
        self.header = header  # what is on disk
        self.has_copy_diff = has_copy_diff
        self._fh = fh
        self._lock = threading.RLock()
        self._tables: dict[str, TableIndex] | None = None  # built on first need
        self.heap_end = header.heap_end
        self.tail_base = (header.heap_end // self.payload) * self.payload
        self.tail: bytearray | None = None  # the unflushed heap from tail_base; read on first need
        self.dbtime = header.dbtime_dirtied
        # dbtime of the tail pages as runs: page index _run_page[i] onwards carries _run_lsn[i]
        self._run_page: list[int] = []
        self._run_lsn: list[int] = []

    # -- creation / opening -----------------------------------------------------------------

    @classmethod
    def create(cls, path: str, page_size: int, header: DbHeader, has_copy_diff: bool) -> "PageFile":
        header.page_size = page_size
        header.has_copy_diff = has_copy_diff
        page = header.pack(page_size)
        with open(path, "wb") as f:
            f.write(page)
            f.write(page)
        return cls.open(path, page_size, has_copy_diff)

    @staticmethod
    def read_header(path: str, page_size: int, has_copy_diff: bool) -> DbHeader:
        """The header from page 0, or from the shadow (page 1) when page 0 is damaged."""
        with open(path, "rb") as f:
            raw = f.read(2 * page_size)
        problems = []
        for copy in (0, 1):
            block = raw[copy * page_size : (copy + 1) * page_size]
            try:
                return DbHeader.unpack(block, has_copy_diff)
            except ValueError as e:
                problems.append(str(e))
        raise errors.jet_error(errors.DatabaseCorrupted, f"{path}: database header unreadable ({'; '.join(problems)})")

    @classmethod
    def open(cls, path: str, page_size: int, has_copy_diff: bool) -> "PageFile":
        """Open by the header alone (no data page is read: that happens on first need)."""
        header = cls.read_header(path, page_size, has_copy_diff)
        if header.page_size != page_size:
            raise errors.jet_error(errors.DatabaseCorrupted, f"{path}: page size {header.page_size}, expected {page_size}")
        return cls(path, page_size, header, open(path, "r+b"), has_copy_diff)

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()

    # -- heap writes ------------------------------------------------------------------------

    def append(self, lsn: int, op: int, table: str, key: bytes, value: bytes = b"") -> None:
        if self.tail is None:
            self.load_tail()
        tb = table.encode("utf-8")
        entry_off = self.heap_end
        total = ENTRY.size + len(tb) + len(key) + len(value)
        t = self.tail
        t += ENTRY.pack(total, lsn, op, len(tb), len(key), len(value))
        t += tb
        t += key
        if value:
            t += value
        self.heap_end = entry_off + total
        if self._tables is not None:
            self._index_entry(op, table, key, entry_off + ENTRY.size + len(tb) + len(key), len(value))
        lsns = self._run_lsn
        if not lsns or lsns[-1] != lsn:  # the entry's pages (first to last) now carry its LSN
            first_page = entry_off // self.payload
            if self._run_page and self._run_page[-1] == first_page:
                lsns[-1] = lsn
            else:
                self._run_page.append(first_page)
                lsns.append(lsn)
        if lsn > self.dbtime:
            self.dbtime = lsn

    def load_tail(self) -> None:
        """Read the partially filled last page (heap bytes and dbtime) for further appends, once
        (-1018 if it is damaged)."""
        if self.tail is not None:
            return
        with self._lock:
            if self.tail is not None:
                return
            end = self.header.heap_end
            tail = bytearray()
            if end > self.tail_base:
                page = self.tail_base // self.payload
                raw = self._read_pages(page, 1)
                tail += raw[PAGE_HEADER : PAGE_HEADER + end - self.tail_base]
                self._run_page, self._run_lsn = [page], [DBTIME.unpack_from(raw, 8)[0]]
            self.tail = tail

    def _index_entry(self, op: int, table: str, key: bytes, voff: int, vlen: int) -> None:
        idx = self._tables.get(table)
        if idx is None:
            idx = self._tables[table] = TableIndex()
        if op == OP_PUT:
            idx.put(key, voff, vlen)
        else:
            idx.delete(key)

    @property
    def dirty_bytes(self) -> int:
        return self.heap_end - self.header.heap_end

    def flush(self, lsn_flushed: int) -> None:
        """Write the unflushed heap to pages, then the header (data first: crash safe)."""
        with self._lock:
            P = self.payload
            if self.heap_end > self.header.heap_end:
                first_idx = self.tail_base // P
                n_total = -(-(self.heap_end - self.tail_base) // P)
                for done in range(0, n_total, FLUSH_CHUNK_PAGES):
                    m = min(FLUSH_CHUNK_PAGES, n_total - done)
                    pages = self._render_pages(first_idx + done, m)
                    self._fh.seek((first_idx + done + 2) * self.cb)
                    self._fh.write(pages.data)
                new_base = (self.heap_end // P) * P
                del self.tail[: new_base - self.tail_base]
                self.tail_base = new_base
                keep = max(0, bisect_right(self._run_page, new_base // P) - 1)  # runs still covering the tail
                del self._run_page[:keep], self._run_lsn[:keep]
                if self._run_page:
                    self._run_page[0] = max(self._run_page[0], new_base // P)
            h = self.header
            h.heap_end = self.heap_end
            h.pgno_last = -(-self.heap_end // P)
            h.lsn_flushed = max(h.lsn_flushed, lsn_flushed)
            h.dbtime_dirtied = self.dbtime
            self.write_header()

    def _render_pages(self, first_idx: int, m: int) -> np.ndarray:
        """Tail pages [first_idx, first_idx + m) (0-based heap page index) as they go to disk:
        payload, page header (dbtime of the page's last change, links, free bytes), checksum."""
        P, cb = self.payload, self.cb
        lo = first_idx * P - self.tail_base
        payload = memoryview(self.tail)[lo : min(len(self.tail), lo + m * P)]
        pages = np.zeros((m, cb), dtype=np.uint8)
        flat = pages[:, PAGE_HEADER:]
        full, rest = divmod(len(payload), P)
        src = np.frombuffer(payload, dtype=np.uint8)
        if full:
            flat[:full] = src[: full * P].reshape(full, P)
        if rest:
            flat[full, :rest] = src[full * P :]
        first_pgno = first_idx + 1
        words = pages.view("<u4")
        idx = np.arange(first_idx, first_idx + m)
        runs = np.searchsorted(np.asarray(self._run_page, dtype=np.int64), idx, side="right") - 1
        pages.view("<u8")[:, 1] = np.asarray(self._run_lsn, dtype=np.uint64)[np.maximum(runs, 0)]
        pgnos = np.arange(first_pgno, first_pgno + m, dtype=np.uint32)
        words[:, 4] = pgnos - 1
        words[:, 5] = pgnos + 1
        words[:, 6] = 2 + self.header.file_index  # objidFDP
        free = np.zeros(m, dtype=np.uint16)
        if rest:
            free[-1] = P - rest
        pages.view("<u2")[:, 14] = free
        words[:, 9] = 0x2  # fFlags: leaf
        seal_pages(pages, first_pgno)
        return pages

    def write_header(self) -> None:
        with self._lock:
            page = self.header.pack(self.cb)
            self._fh.seek(0)
            self._fh.write(page)
            self._fh.write(page)
            self._fh.flush()

    # -- reads ------------------------------------------------------------------------------

    def read_heap(self, off: int, length: int) -> bytes:
        if length == 0:
            return b""
        with self._lock:
            if self.tail is None:
                self.load_tail()
            end = off + length
            if off >= self.tail_base:
                return bytes(self.tail[off - self.tail_base : end - self.tail_base])
            disk_end = min(end, self.tail_base)
            part = self._read_payload(off, disk_end)
            if end > disk_end:
                part += self.tail[: end - self.tail_base]
            return bytes(part)

    def _read_payload(self, start: int, end: int) -> bytes:
        """Heap bytes [start, end) from the pages on disk (pages verified: a bad one is -1018)."""
        P, cb = self.payload, self.cb
        p0, p1 = start // P, (end - 1) // P
        n = p1 - p0 + 1
        raw = self._read_pages(p0, n)
        if n == 1:
            base = PAGE_HEADER + (start - p0 * P)
            return raw[base : base + (end - start)]
        body = np.frombuffer(raw, dtype=np.uint8).reshape(n, cb)[:, PAGE_HEADER:].tobytes()
        s = start - p0 * P
        return body[s : s + (end - start)]

    @property
    def tables(self) -> dict[str, TableIndex]:
        """Table name -> index of its live keys (built from the heap on first use)."""
        if self._tables is None:
            self._build_index()
        return self._tables

    def get(self, table: str, key: bytes) -> bytes | None:
        idx = self.tables.get(table)
        if idx is None:
            return None
        where = idx.locate(key)
        if where is None:
            return None
        return self.read_heap(*where)

    # -- page images (ground truth) ---------------------------------------------------------

    def data_page_digests(self, digest) -> list[bytes]:
        """``digest(page).digest()`` of every data page 1..pgno_last as the file holds it now,
        with the unflushed tail rendered exactly as a flush would write it (nothing is written)."""
        with self._lock:
            if self.tail is None:
                self.load_tail()
            cb, P = self.cb, self.payload
            on_disk = self.tail_base // P
            total = -(-self.heap_end // P)
            chunk = max(1, SCAN_CHUNK_BYTES // cb)
            out = []
            for first in range(0, total, chunk):
                n = min(chunk, total - first)
                k = min(n, max(0, on_disk - first))  # pages of this chunk already on disk
                self._fh.seek((first + 2) * cb)
                raw = self._fh.read(k * cb).ljust(k * cb, b"\0")
                if k < n:
                    raw += self._render_pages(first + k, n - k).tobytes()
                raw = memoryview(raw)
                out.extend(digest(raw[i * cb : (i + 1) * cb]).digest() for i in range(n))
            return out

    # -- index build ------------------------------------------------------------------------

    def _build_index(self) -> None:
        """Walk the heap entry by entry. Every page up to heap_end is read once, in order, and
        verified (the unflushed tail comes from memory); entry headers and keys are picked out of
        the raw pages by offset arithmetic (values are never copied)."""
        with self._lock:
            if self._tables is not None:
                return
            if self.tail is None:
                self.load_tail()
            tables: dict[str, TableIndex] = {}
            self._tables = tables
            try:
                self._scan_heap()
            except BaseException:
                self._tables = None
                raise

    def _raw_pages(self, first_idx: int, n: int) -> bytes:
        """Data pages [first_idx, first_idx + n): verified from disk below the tail, the tail's
        payload from memory (its page headers left zero: only the payload is looked at)."""
        on_disk = self.tail_base // self.payload
        k = max(0, min(n, on_disk - first_idx))
        parts = [self._read_pages(first_idx, k)] if k else []
        if k < n:
            P, cb = self.payload, self.cb
            pages = np.zeros((n - k, cb), dtype=np.uint8)
            lo = (first_idx + k) * P - self.tail_base
            src = np.frombuffer(memoryview(self.tail)[lo : lo + (n - k) * P], dtype=np.uint8)
            full, rest = divmod(len(src), P)
            pages[:full, PAGE_HEADER:] = src[: full * P].reshape(full, P)
            if rest:
                pages[full, PAGE_HEADER : PAGE_HEADER + rest] = src[full * P :]
            parts.append(pages.tobytes())
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _scan_heap(self) -> None:
        end = self.heap_end
        P, cb = self.payload, self.cb
        last_page = -(-end // P)  # pages in use
        chunk_pages = max(1, SCAN_CHUNK_BYTES // cb)
        chunks: dict[int, bytes] = {}  # first page index -> raw pages (current and previous chunk)
        next_chunk = 0

        def page(pi: int) -> tuple[bytes, int]:
            nonlocal next_chunk
            while pi >= next_chunk:
                n = min(chunk_pages, last_page - next_chunk)
                raw = self._raw_pages(next_chunk, n)
                chunks[next_chunk] = raw
                for old in [k for k in chunks if k < next_chunk - chunk_pages]:
                    del chunks[old]
                next_chunk += n
            first = (pi // chunk_pages) * chunk_pages
            return chunks[first], (pi - first) * cb

        def extract(h: int, n: int) -> bytes:
            parts = []
            while n > 0:
                raw, base = page(h // P)
                within = h % P
                take = min(n, P - within)
                parts.append(raw[base + PAGE_HEADER + within : base + PAGE_HEADER + within + take])
                h += take
                n -= take
            return parts[0] if len(parts) == 1 else b"".join(parts)

        names: dict[bytes, str] = {}
        hsize = ENTRY.size
        unpack_from = ENTRY.unpack_from
        index_entry = self._index_entry
        pos = 0
        cur_first, cur_end, cur_raw = 0, 0, b""
        while pos < end:
            pi, within = divmod(pos, P)
            if cur_first <= pi < cur_end and within + hsize <= P:  # fast path: header inside one page
                off = (pi - cur_first) * cb + PAGE_HEADER + within
                total, _lsn, op, tlen, klen, vlen = unpack_from(cur_raw, off)
                tk = (cur_raw[off + hsize : off + hsize + tlen + klen] if within + hsize + tlen + klen <= P
                      else extract(pos + hsize, tlen + klen))
            else:
                if end - pos < hsize:
                    raise errors.jet_error(errors.DatabaseCorrupted, f"{self.path}: record heap truncated at {end}")
                total, _lsn, op, tlen, klen, vlen = ENTRY.unpack(extract(pos, hsize))
                tk = None
                cur_first = (pi // chunk_pages) * chunk_pages
                cur_raw = chunks[cur_first]
                cur_end = cur_first + len(cur_raw) // cb
            if total != hsize + tlen + klen + vlen or op not in (OP_PUT, OP_DELETE) or pos + total > end:
                raise errors.jet_error(errors.DatabaseCorrupted, f"{self.path}: bad record at heap offset {pos}")
            if tk is None:
                tk = extract(pos + hsize, tlen + klen)
            tb = tk[:tlen]
            name = names.get(tb)
            if name is None:
                name = names[tb] = tb.decode("utf-8", "replace")
            index_entry(op, name, tk[tlen:], pos + hsize + tlen + klen, vlen)
            pos += total
        if next_chunk < last_page:  # verify the pages after the last entry header too
            page(last_page - 1)

    def _read_pages(self, first_idx: int, n: int) -> bytes:
        """Raw data pages [first_idx, first_idx + n) (0-based heap page index), verified."""
        cb = self.cb
        self._fh.seek((first_idx + 2) * cb)
        raw = self._fh.read(n * cb)
        if len(raw) < n * cb:
            raise errors.jet_error(errors.DiskIO, f"{self.path}: short read at page {first_idx + 1}")
        bad = bad_pages(raw, cb, first_idx + 1)
        if bad.size:
            pg = first_idx + 1 + int(bad[0])
            raise errors.jet_error(errors.ReadVerifyFailure,
                                   f"{self.path}: page {pg} (offset {(pg + 1) * cb}) failed verification")
        return raw

    # -- introspection ----------------------------------------------------------------------

    @property
    def file_size(self) -> int:
        return os.path.getsize(self.path)
