"""Incremental structure tracker for an MTF data-set byte stream (used by the media writer).

The media writer receives a data set as opaque chunks (e.g. from an agent over the network) but
must know, when the drive reports early warning at some offset, which DBLK that offset falls in
and what context (SSET, VOLB, DIRB, FILE) to repeat on the next cartridge (spec §7.11). This
walks the stream as it arrives - DBLK headers, stream headers, data skipped arithmetically -
keeping only small per-DBLK records and the bytes before each FILE's STAN data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reference.errors import CorruptDataError

from . import mtf_structs as m

HEAD_CAP = 64 * 1024
"""Most bytes kept per DBLK (header, strings and pre-data streams; whole small DBLKs)."""
CAPTURE = 64
"""Stream payloads up to this size are captured (CSUM, XSHA, XCRC)."""


@dataclass
class DblkInfo:
    start: int
    kind: bytes = b""
    first_event: int = 0
    fla: int = 0
    cbid: int = 0
    head: bytearray = field(default_factory=bytearray)
    data_start: int | None = None
    data_len: int = 0
    end: int | None = None
    captured: dict = field(default_factory=dict)
    file_id: int = 0

    @property
    def data_end(self) -> int | None:
        return None if self.data_start is None else self.data_start + self.data_len


class StreamTracker:
    _HDR, _PREFIX, _SHDR, _DATA, _PAD = range(5)

    def __init__(self, where: str = "data set"):
        self.where = where
        self.pos = 0
        self.history: list[DblkInfo] = []
        self.sset: DblkInfo | None = None
        self._kept: dict[bytes, DblkInfo] = {}
        self._state = self._HDR
        self._acc = bytearray()
        self._cur: DblkInfo | None = None
        self._stream_id = b""
        self._remaining = 0
        self._storing = True

    # -- feeding --
    def feed(self, chunk) -> None:
        view = memoryview(chunk).cast("B")
        i, n = 0, len(view)
        while i < n:
            st = self._state
            if st == self._DATA or st == self._PAD:
                take = min(self._remaining, n - i)
                self._keep(view[i:i + take])
                self._remaining -= take
                i += take
                self.pos += take
                if self._remaining == 0:
                    if st == self._DATA:
                        self._stream_done()
                    else:
                        self._state = self._SHDR
                continue
            need = {self._HDR: m.DB_HDR_SIZE, self._SHDR: m.STREAM_HDR_SIZE}.get(st)
            if st == self._PREFIX:
                need = self._cur.first_event - m.DB_HDR_SIZE
            take = min(need - len(self._acc), n - i)
            self._acc += view[i:i + take]
            i += take
            self.pos += take
            if len(self._acc) == need:
                acc, self._acc = bytes(self._acc), bytearray()
                {self._HDR: self._got_header, self._PREFIX: self._got_prefix,
                 self._SHDR: self._got_stream_header}[st](acc)

    def _keep(self, data) -> None:
        cur = self._cur
        if self._storing and len(cur.head) < HEAD_CAP:
            cur.head += data[: HEAD_CAP - len(cur.head)]
        if self._capture is not None:
            self._capture += data

    _capture = None

    def _fail(self, what: str):
        raise CorruptDataError(what, where=f"{self.where} offset {self.pos}")

    def _got_header(self, raw: bytes) -> None:
        start = self.pos - m.DB_HDR_SIZE
        if not m.header_ok(raw):
            self._fail("DBLK header checksum mismatch in the incoming data set")
        kind, _attr, first_event, _size, fla, cbid, _st, _c = m.header_fields(raw)
        if first_event < m.DB_HDR_SIZE or first_event % 4:
            self._fail(f"{kind!r} DBLK with Offset To First Event {first_event}")
        cur = DblkInfo(start, kind, first_event, fla, cbid, bytearray(raw))
        self._cur = cur
        self._storing = True
        self.history.append(cur)
        if kind == b"SSET" and self.sset is None:
            self.sset = cur
        self._state = self._PREFIX if first_event > m.DB_HDR_SIZE else self._SHDR

    def _got_prefix(self, raw: bytes) -> None:
        self._cur.head += raw
        if self._cur.kind == b"FILE" and len(self._cur.head) >= 88:
            self._cur.file_id = m.file_id_of(self._cur.head)
        self._state = self._SHDR

    def _got_stream_header(self, raw: bytes) -> None:
        sid, _fs, _media, length, ok = m.stream_header_fields(raw)
        if not ok:
            self._fail(f"stream header checksum mismatch in {self._cur.kind!r} DBLK")
        cur = self._cur
        if self._storing:
            cur.head += raw
        self._stream_id = sid
        self._remaining = length
        self._capture = None
        if sid == b"STAN" and cur.kind == b"FILE" and cur.data_start is None:
            cur.data_start = self.pos
            cur.data_len = length
            self._storing = False
        elif length <= CAPTURE and sid != b"SPAD":
            self._capture = bytearray()
        if length == 0:
            self._stream_done()
        else:
            self._state = self._DATA

    def _stream_done(self) -> None:
        cur = self._cur
        if self._capture is not None:
            cur.captured[self._stream_id] = bytes(self._capture)
            self._capture = None
        if self._stream_id == b"SPAD":
            cur.end = self.pos
            self._state = self._HDR
            return
        pad = m.align(self.pos - cur.start, 4) - (self.pos - cur.start)
        if pad:
            self._remaining = pad
            self._state = self._PAD
        else:
            self._state = self._SHDR

    # -- queries --
    def at(self, offset: int) -> DblkInfo | None:
        """The DBLK containing ``offset`` (or starting there), if known."""
        for info in reversed(self.history):
            if info.start <= offset and (info.end is None or offset < info.end):
                return info
        return None

    def context_before(self, offset: int) -> list[DblkInfo]:
        """SSET, latest VOLB and latest DIRB that start before ``offset``."""
        volb = dirb = None
        candidates = [self._kept.get(b"VOLB"), self._kept.get(b"DIRB")] + self.history
        for info in candidates:
            if info is None or info.start >= offset:
                continue
            if info.kind == b"VOLB" and (volb is None or info.start > volb.start):
                volb = info
            elif info.kind == b"DIRB" and (dirb is None or info.start > dirb.start):
                dirb = info
        if dirb is not None and volb is not None and dirb.start < volb.start:
            dirb = None  # the DIRB belongs to an earlier volume
        sset = self.sset if self.sset is not None and self.sset.start < offset else None
        return [x for x in (sset, volb, dirb) if x is not None]

    def prune(self, committed: int) -> None:
        """Forget DBLKs wholly before ``committed`` (keep the latest VOLB/DIRB for context)."""
        keep = []
        for info in self.history:
            if info.end is not None and info.end <= committed:
                if info.kind in (b"VOLB", b"DIRB"):
                    prev = self._kept.get(info.kind)
                    if prev is None or info.start > prev.start:
                        self._kept[info.kind] = info
                continue
            keep.append(info)
        self.history = keep
