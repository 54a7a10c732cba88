"""Read-only views of recorded media for the MTF reader.

A medium is presented as one linear byte stream (the concatenation of its tape blocks) plus the
stream offsets where hardware filemarks sit. ``.bkf`` images are their own stream (filemarks are
SFMB blocks inside it); SIMH ``.tap`` cartridges are indexed record by record (4-byte LE length,
data, pad to even, trailing length; 0 = tape mark). Ranges are served as memoryviews of an mmap,
so hashing and extraction never copy whole objects.
"""

from __future__ import annotations

import bisect
import json
import mmap
import os
import struct
import zlib
from array import array
from pathlib import Path

from reference.errors import CorruptDataError, NotFoundError

SIMH_ERROR_FLAG = 0x80000000
SIMH_RESERVED_BITS = 0x7F000000
SIMH_EOM = 0xFFFFFFFF
SIMH_GAP = 0xFFFFFFFE


def _map(path: Path):
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except OSError as err:
        raise CorruptDataError(f"cannot open: {err.strerror}", where=str(path)) from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return b"", 0
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), size


class Medium:
    """A linear view of one medium: ``size``, ``filemarks`` and ranges as memoryviews."""

    kind = "bytes"

    def __init__(self, name: str, data=b"", filemarks=()):
        self.name = name
        self._data = data
        self._view = memoryview(data).cast("B") if len(data) else memoryview(b"")
        self.size = len(self._view)
        self.filemarks = list(filemarks)
        self.problems: list[tuple[int, str]] = []

    def read(self, offset: int, length: int):
        """Up to ``length`` bytes at ``offset`` (short at the end of the medium)."""
        if offset < 0 or offset >= self.size or length <= 0:
            return b""
        return self._view[offset: offset + length]

    def iter_range(self, offset: int, length: int, chunk: int = 1 << 20):
        end = min(self.size, offset + length)
        while offset < end:
            n = min(chunk, end - offset)
            yield self.read(offset, n)
            offset += n

    def next_filemark(self, offset: int) -> int | None:
        i = bisect.bisect_right(self.filemarks, offset)
        return self.filemarks[i] if i < len(self.filemarks) else None

    def file_position(self, offset: int) -> str:
        return f"offset {offset}"

    def close(self) -> None:
        self._view.release()
        if isinstance(self._data, mmap.mmap):
            self._data.close()


class BkfMedium(Medium):
    kind = "bkf"

    def __init__(self, path):
        path = Path(path)
        data, _size = _map(path)
        super().__init__(str(path), data)


class PiecewiseMedium(Medium):
    """A medium whose bytes come in pieces (tape records, blocks): ``read`` joins the pieces that
    ``iter_range`` yields (no copy when the range lies in one piece)."""

    def read(self, offset: int, length: int):
        if offset < 0 or offset >= self.size or length <= 0:
            return b""
        parts = list(self.iter_range(offset, length))
        return parts[0] if len(parts) == 1 else b"".join(parts)


class TapMedium(PiecewiseMedium):
    """A SIMH ``.tap`` cartridge; stream offsets map to file offsets through a record index.

    Cartridges written with drive compression (sidecar ``"compression": true``) store a tag byte
    before each record (0 raw, 1 zlib); their stream offsets count the uncompressed bytes.
    """

    kind = "tap"

    def __init__(self, path):
        path = Path(path)
        data, size = _map(path)
        self._raw = data
        self._file = memoryview(data).cast("B") if size else memoryview(b"")
        self._compressed = _sidecar_says_compressed(path)
        self._rec_stream = array("q")
        self._rec_file = array("q")
        self._rec_len = array("q")
        self._rec_zlib = bytearray()
        self._cache: tuple[int, bytes] | None = None
        marks, problems = [], []
        pos = stream = 0
        while pos + 4 <= size:
            (word,) = struct.unpack_from("<I", self._file, pos)
            if word == 0:
                marks.append(stream)
                pos += 4
                continue
            if word == SIMH_GAP:
                pos += 4
                continue
            if word == SIMH_EOM:
                break
            if word & SIMH_RESERVED_BITS:
                problems.append((pos, f"not a SIMH length word 0x{word:08X}"))
                break
            length = word & 0xFFFFFF
            end = pos + 4 + length + (length & 1)
            torn = end + 4 > size or struct.unpack_from("<I", self._file, end)[0] != word
            if torn:
                problems.append((pos, "SIMH record truncated or trailing length mismatch"))
                length = max(0, min(length, size - pos - 4))
            stream += self._add(stream, pos + 4, length, problems)
            if torn:
                break
            pos = end + 4
        super().__init__(str(path), b"", marks)
        self.size = stream
        self.problems = problems

    def _add(self, stream: int, file_off: int, length: int, problems) -> int:
        zipped = False
        logical = length
        if self._compressed and length:
            tag = self._file[file_off]
            if tag == 1:
                zipped = True
                try:
                    logical = len(zlib.decompress(self._file[file_off + 1: file_off + length]))
                except zlib.error:
                    problems.append((file_off, "compressed record does not decompress"))
                    logical = 0
            else:
                logical = length - 1
            file_off += 1
            length -= 1
        self._rec_stream.append(stream)
        self._rec_file.append(file_off)
        self._rec_len.append(logical if not zipped else length)
        self._rec_zlib.append(1 if zipped else 0)
        if zipped:
            self._logical = getattr(self, "_logical", {})
            self._logical[len(self._rec_stream) - 1] = logical
        return logical

    def _length(self, i: int) -> int:
        return self._logical[i] if self._rec_zlib[i] else self._rec_len[i]

    def _record(self, i: int):
        fo, ln = self._rec_file[i], self._rec_len[i]
        if self._rec_zlib[i]:
            if self._cache is None or self._cache[0] != i:
                try:
                    self._cache = (i, zlib.decompress(self._file[fo: fo + ln]))
                except zlib.error:
                    self._cache = (i, b"")
            return memoryview(self._cache[1])
        return self._file[fo: fo + ln]

    def iter_range(self, offset: int, length: int, chunk: int = 1 << 20):
        """Record-sized memoryviews (no copies for uncompressed cartridges) covering the range."""
        end = min(self.size, offset + length)
        while offset < end:
            i = bisect.bisect_right(self._rec_stream, offset) - 1
            start = offset - self._rec_stream[i]
            n = min(self._length(i) - start, end - offset)
            if n <= 0:
                return
            yield self._record(i)[start: start + n]
            offset += n

    def file_position(self, offset: int) -> str:
        if not len(self._rec_stream) or offset >= self.size:
            return f"offset {offset}"
        i = bisect.bisect_right(self._rec_stream, offset) - 1
        marks = bisect.bisect_right(self.filemarks, offset)
        return f"offset {offset} (tape file {marks}, block {i + marks})"

    def close(self) -> None:
        self._file.release()
        if isinstance(self._raw, mmap.mmap):
            self._raw.close()


def _sidecar_says_compressed(path: Path) -> bool:
    sidecar = path.with_name(path.name + ".json")
    try:
        return bool(json.loads(sidecar.read_text()).get("compression"))
    except (OSError, ValueError, AttributeError):
        return False


def open_medium(path) -> Medium:
    """A ``.tap`` file by extension (or SIMH framing), anything else as a ``.bkf`` image."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"{path}: no such file")
    if path.suffix.lower() == ".tap":
        return TapMedium(path)
    return BkfMedium(path)
