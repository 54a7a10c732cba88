"""One ESE page file (``.edb`` or ``.stm``): header + shadow at pages 0-1, then data pages.

The data pages carry a *record heap*: an append-only byte stream of entries
``(len u32, lsn u64, op u8, tlen u8, klen u16, vlen u32, table, key, value)`` laid across the
payload area (page size - 40 byte page header) of consecutive pages, so values larger than a page
span pages. A put or delete appends an entry; the newest entry for a key wins. The in-memory
index is rebuilt from the pages on mount. Pages are written (flushed) in batches with their
checksums computed by numpy; the header records how much of the heap and which LSN the pages
hold, which is what recovery replays from.
"""

from __future__ import annotations

import os
import struct
import threading

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
SCAN_CHUNK_BYTES = 16 * 1024 * 1024


class PageFile:
    def __init__(self, path: str, page_size: int, header: DbHeader, fh, has_copy_diff: bool):
        self.path = path
        self.cb = page_size
        self.payload = page_size - PAGE_HEADER
        self.header = header  # what is on disk
        self.has_copy_diff = has_copy_diff
        self._fh = fh
        self._lock = threading.RLock()
        self.tables: dict[str, TableIndex] = {}
        self.heap_end = header.heap_end
        self.tail_base = (header.heap_end // self.payload) * self.payload
        self.tail = bytearray()
        self.dbtime = header.dbtime_dirtied

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
        header = cls.read_header(path, page_size, has_copy_diff)
        if header.page_size != page_size:
            raise errors.jet_error(errors.DatabaseCorrupted, f"{path}: page size {header.page_size}, expected {page_size}")
        fh = open(path, "r+b")
        pf = cls(path, page_size, header, fh, has_copy_diff)
        try:
            pf._rebuild_index()
        except BaseException:
            fh.close()
            raise
        return pf

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()

    # -- heap writes ------------------------------------------------------------------------

    def append(self, lsn: int, op: int, table: str, key: bytes, value: bytes = b"") -> None:
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
        self._index_entry(op, table, key, entry_off + ENTRY.size + len(tb) + len(key), len(value))
        if lsn > self.dbtime:
            self.dbtime = lsn

    def _index_entry(self, op: int, table: str, key: bytes, voff: int, vlen: int) -> None:
        idx = self.tables.get(table)
        if idx is None:
            idx = self.tables[table] = TableIndex()
        if op == OP_PUT:
            idx.put(key, (voff, vlen))
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
                done = 0
                while done < n_total:
                    m = min(FLUSH_CHUNK_PAGES, n_total - done)
                    lo = done * P
                    hi = min(len(self.tail), (done + m) * P)
                    self._write_pages(first_idx + done, m, memoryview(self.tail)[lo:hi])
                    done += m
                new_base = (self.heap_end // P) * P
                del self.tail[: new_base - self.tail_base]
                self.tail_base = new_base
            h = self.header
            h.heap_end = self.heap_end
            h.pgno_last = -(-self.heap_end // P)
            h.lsn_flushed = max(h.lsn_flushed, lsn_flushed)
            h.dbtime_dirtied = self.dbtime
            self.write_header()

    def _write_pages(self, first_idx: int, m: int, payload: memoryview) -> None:
        P, cb = self.payload, self.cb
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
        pages.view("<u8")[:, 1] = self.dbtime
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
        self._fh.seek((first_pgno + 1) * cb)
        self._fh.write(pages.data)

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

    def get(self, table: str, key: bytes) -> bytes | None:
        idx = self.tables.get(table)
        if idx is None:
            return None
        where = idx.rows.get(key)
        if where is None:
            return None
        return self.read_heap(*where)

    # -- index rebuild ----------------------------------------------------------------------

    def _rebuild_index(self) -> None:
        """Walk the heap entry by entry. Every page up to heap_end is read once, in order, and
        verified; entry headers and keys are picked out of the raw pages by offset arithmetic
        (values are never copied), so a store rebuilds at close to disk-read speed."""
        end = self.header.heap_end
        P, cb = self.payload, self.cb
        last_page = -(-end // P)  # pages in use
        chunk_pages = max(1, SCAN_CHUNK_BYTES // cb)
        chunks: dict[int, bytes] = {}  # first page index -> raw pages (current and previous chunk)
        next_chunk = 0

        def page(pi: int) -> tuple[bytes, int]:
            nonlocal next_chunk
            while pi >= next_chunk:
                n = min(chunk_pages, last_page - next_chunk)
                raw = self._read_pages(next_chunk, n)
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
            self._index_entry(op, name, tk[tlen:], pos + hsize + tlen + klen, vlen)
            pos += total
        if next_chunk < last_page:  # verify the pages after the last entry header too
            page(last_page - 1)
        # tail: the partially filled last page stays in memory for further appends
        if end > self.tail_base:
            self.tail = bytearray(self._read_payload(self.tail_base, end))
        self.heap_end = end

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
