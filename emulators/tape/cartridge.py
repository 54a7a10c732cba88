"""An emulated LTO cartridge: a SIMH ``.tap`` image plus a JSON sidecar (spec ``tape-drive.md`` §3).

The ``.tap`` file is the medium (see :mod:`emulators.tape.simh`); ``<name>.tap.json`` carries what
SIMH cannot: barcode, media generation, kind (data / worm / cleaning), capacity and early-warning
distance, the write-protect switch, MAM attributes and life counters.

* **Index.** Opening scans the file once (length words only) into an in-memory index of object
  offsets and a sorted filemark list, so positioning never rescans. Images of 4096 objects or
  more also get the index saved beside them (``<name>.tap.idx``, a cache keyed by the image's
  size and mtime and checked against its last record) so reopening them skips the scan.
* **Crash safety.** Each record is appended with a single ``pwritev``. A torn tail (a record that runs
  past the end of the file: an append interrupted by a crash) is cut back to the last whole record
  on open, and logged. Any other damage (trailing length mismatch, reserved or error-flagged length
  word) is left in place: objects before it stay readable, reaching it raises
  :class:`MediumError` (a ``CorruptDataError`` *and* an ``OSError(EIO)``) naming the cartridge and
  byte offset. A write at or before the damage truncates it away, as on a real tape.
* **Write-behind.** Streaming appends of immutable ``bytes`` (or read-only views of them) are
  queued and written several records per ``pwritev`` (:meth:`Cartridge.append_record`); every
  other use of the file writes the queue first. A run of equal records from one buffer (the
  drive's ``write_blocks``) is written at once, framing interleaved, with as few ``pwritev`` as
  the iovec limit allows (:meth:`Cartridge.append_records`): the caller may reuse the buffer.
* **Capacity** is measured in bytes of the image (stored bytes, including the 8-byte SIMH framing
  per record, which plays the part of the inter-record gaps).
* **Compression.** A cartridge created with ``compression=True`` stores each record as a one-byte
  tag (0 raw, 1 zlib) plus payload, so the drive can compress per block (capacity counts the
  stored size; data round-trips byte-exact). Plain cartridges are pure SIMH, readable by other
  SIMH tools; on them the drive's compression switch has no effect. (docs/tape.md)
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import struct
import errno
import itertools
import json
import logging
import os
import tempfile
import time
import weakref
import zlib
from array import array
from pathlib import Path
from typing import Any

from reference.errors import CorruptDataError, MailtapeError, NotFoundError

from . import simh
from .profiles import MiB, classify_barcode, media_profile

log = logging.getLogger(__name__)

FORMAT = "mailtape-cartridge"
VERSION = 1
KINDS = ("data", "worm", "cleaning")
SIDECAR_SUFFIX = ".json"

TAG_RAW = 0
TAG_ZLIB = 1
MEDIUM_TYPE = {"data": 0, "worm": 1, "cleaning": 6}

WRITE_BEHIND_RECORDS = 8
WRITE_BEHIND_BYTES = 8 * MiB

try:
    _IOV_MAX = max(3, os.sysconf("SC_IOV_MAX"))
except (ValueError, OSError):
    _IOV_MAX = 1024
"""Most buffers one ``pwritev`` takes (Linux: 1024)."""

INDEX_MAGIC = b"MTIDX001"
INDEX_HEADER = struct.Struct("<8sQQQQQ")
"""magic, image size, image mtime (ns), objects, filemarks, EOD offset; then int64 arrays."""
INDEX_MIN_OBJECTS = 4096
"""Smaller images scan in milliseconds; only larger ones get a persisted index."""


class MediumError(CorruptDataError, OSError):
    """A damaged record was reached: what a real drive reports as MEDIUM ERROR (st: EIO).

    Both a :class:`CorruptDataError` (the message names the cartridge and byte offset) and an
    ``OSError`` with ``errno == EIO``, so code written against the TapeDevice protocol sees EIO.
    """

    def __init__(self, message: str, where: str):
        CorruptDataError.__init__(self, message, where)
        self.errno = errno.EIO
        self.strerror = str(self)

    def __str__(self) -> str:  # OSError's __str__ would print the errno tuple
        return CorruptDataError.__str__(self) if self.args else "medium error"


_OPEN: "weakref.WeakSet[Cartridge]" = weakref.WeakSet()


@atexit.register
def _flush_open_cartridges() -> None:
    """At interpreter exit (also after an uncaught exception) queued records reach the image,
    as a real drive goes on writing its buffer when the application dies."""
    for cartridge in list(_OPEN):
        with contextlib.suppress(Exception):
            if cartridge._fd is not None:
                cartridge._flush()


def index_path(tap_path: str | os.PathLike[str]) -> Path:
    """The persisted index of a large image: ``<name>.tap.idx`` (a cache; deleting it is safe)."""
    path = Path(tap_path)
    return path.with_name(path.name + ".idx")


def sidecar_path(tap_path: str | os.PathLike[str]) -> Path:
    """Where the JSON sidecar of a ``.tap`` image lives: ``<name>.tap.json``."""
    path = Path(tap_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _default_early_warning(capacity: int) -> int:
    return min(2 * MiB, max(1, capacity // 8))


class Cartridge:
    """One cartridge image. Create with :meth:`create`, open with :meth:`open`; the drive does the
    positioning, this class stores and indexes objects (data records and filemarks)."""

    def __init__(self, path: Path, meta: dict[str, Any], *, repair: bool = True):
        self.path = Path(path)
        self.meta = meta
        writable_file = os.access(self.path, os.W_OK)
        self._fd = os.open(self.path, os.O_RDWR if writable_file else os.O_RDONLY)
        self._file_writable = writable_file
        self._pending: list = []
        self._pending_bytes = 0
        self._pending_start = self._pending_index = 0
        self._index()
        _OPEN.add(self)
        if self.damage and self._torn and repair and writable_file:
            offset, reason = self.damage
            log.warning("%s: torn record at byte %d (%s); cut back to %d whole object(s)",
                        self.path, offset, reason, len(self._offsets))
            os.ftruncate(self._fd, offset)
            self.damage = None
            self._torn = False

    # ------------------------------------------------------------------ creation / opening

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        barcode: str,
        generation: str | int | None = None,
        kind: str | None = None,
        capacity_bytes: int | None = None,
        early_warning_bytes: int | None = None,
        write_protected: bool = False,
        compression: bool = False,
        overwrite: bool = False,
    ) -> "Cartridge":
        """Make a new blank cartridge at ``path`` (``.tap`` + sidecar).

        ``generation`` and ``kind`` default to what the barcode says (``000001L9`` -> LTO-9 data,
        ``...LZ`` WORM, ``CLN...`` cleaning). ``capacity_bytes`` defaults to the native capacity
        (the file only grows with data written); ``early_warning_bytes`` to 2 MiB (mhvtl), or an
        eighth of the capacity for tiny test cartridges.
        """
        path = Path(path)
        barcode = barcode.strip().upper()
        if not barcode or len(barcode) > 32 or not barcode.isprintable() or " " in barcode:
            raise MailtapeError(f"bad barcode {barcode!r} (1-32 printable characters, no spaces)")
        if generation is None or kind is None:
            guessed_media, guessed_kind = classify_barcode(barcode)
            generation = generation if generation is not None else guessed_media
            kind = kind or guessed_kind
        if kind not in KINDS:
            raise MailtapeError(f"cartridge kind must be one of {KINDS}, not {kind!r}")
        if generation is None:
            if kind != "cleaning":
                raise MailtapeError(f"barcode {barcode!r}: give the media generation")
            media_name = None
        else:
            media_name = media_profile(generation).name
        if capacity_bytes is None:
            capacity_bytes = media_profile(media_name).native_capacity if media_name else 0
        if capacity_bytes < 0:
            raise MailtapeError(f"capacity must be >= 0, not {capacity_bytes}")
        if early_warning_bytes is None:
            early_warning_bytes = _default_early_warning(capacity_bytes)
        if not 0 <= early_warning_bytes <= capacity_bytes and kind != "cleaning":
            raise MailtapeError(
                f"early warning {early_warning_bytes} must lie within the capacity {capacity_bytes}")
        if path.exists() and not overwrite:
            raise MailtapeError(f"{path}: a cartridge already exists here")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "barcode": barcode,
            "generation": media_name,
            "kind": kind,
            "capacity_bytes": int(capacity_bytes),
            "early_warning_bytes": int(early_warning_bytes),
            "write_protected": bool(write_protected),
            "compression": bool(compression),
            "load_count": 0,
            "bytes_written": 0,
            "bytes_read": 0,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mam": _initial_mam(barcode, media_name, kind),
        }
        with open(path, "wb"):
            pass
        _write_json_atomically(sidecar_path(path), meta)
        return cls(path, meta)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, repair: bool = True) -> "Cartridge":
        """Open an existing cartridge; a torn tail is cut back unless ``repair=False``."""
        path = Path(path)
        if not path.exists():
            raise NotFoundError(f"{path}: no such cartridge")
        side = sidecar_path(path)
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFoundError(f"{side}: cartridge sidecar missing") from None
        except (OSError, ValueError) as bad:
            raise CorruptDataError(f"unreadable sidecar ({bad})", str(side)) from None
        _validate_meta(meta, str(side))
        return cls(path, meta, repair=repair)

    def close(self) -> None:
        """Save counters and release the file."""
        if self._fd is None:
            return
        try:
            self._flush()
            self.save()
        finally:
            os.close(self._fd)
            self._fd = None
            _OPEN.discard(self)

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:  # dropped without close(): write what is queued, release the descriptor
            with contextlib.suppress(OSError):
                self._flush()
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> "Cartridge":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Cartridge({self.barcode}, {self.generation}, {self.kind}, {self.path})"

    # ------------------------------------------------------------------ identity

    @property
    def barcode(self) -> str:
        return self.meta["barcode"]

    @property
    def generation(self) -> str | None:
        """Media name (``"LTO-9"``); None for a cleaning cartridge (universal)."""
        return self.meta["generation"]

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def capacity_bytes(self) -> int:
        return self.meta["capacity_bytes"]

    @property
    def early_warning_bytes(self) -> int:
        return self.meta["early_warning_bytes"]

    @property
    def compression_capable(self) -> bool:
        return self.meta["compression"]

    @property
    def write_protected(self) -> bool:
        """The write-protect switch, or a read-only image file."""
        return self.meta["write_protected"] or not self._file_writable

    def set_write_protect(self, on: bool) -> None:
        self.meta["write_protected"] = bool(on)
        self.save()

    @property
    def density_code(self) -> int:
        return media_profile(self.generation).density_code if self.generation else 0

    @property
    def name(self) -> str:
        return f"cartridge {self.barcode} ({self.path})"

    # ------------------------------------------------------------------ index

    def _index(self) -> None:
        """Load the persisted index if it matches the image (size and mtime), else scan."""
        if self._load_index():
            return
        found = simh.scan(self.path)
        self._offsets = array("q", found.offsets)
        self._lengths = array("q", found.lengths)
        self._filemarks = array("q", (i for i, n in enumerate(found.lengths) if n == 0))
        self._end = found.end
        self.damage: tuple[int, str] | None = found.damage
        self._torn = found.torn
        self._index_saved = False

    def _load_index(self) -> bool:
        path = index_path(self.path)
        try:
            with open(path, "rb") as cache:
                header = cache.read(INDEX_HEADER.size)
                if len(header) != INDEX_HEADER.size:
                    return False
                magic, size, mtime_ns, count, marks, end = INDEX_HEADER.unpack(header)
                stat = os.stat(self.path)
                if magic != INDEX_MAGIC or (size, mtime_ns) != (stat.st_size, stat.st_mtime_ns):
                    return False
                offsets, lengths, filemarks = array("q"), array("q"), array("q")
                offsets.fromfile(cache, count)
                lengths.fromfile(cache, count)
                filemarks.fromfile(cache, marks)
            if count:  # the last record's length word must agree (guards same-size rewrites)
                word = os.pread(self._fd, 4, offsets[-1])
                if len(word) != 4 or struct.unpack("<I", word)[0] != lengths[-1]:
                    return False
        except (OSError, EOFError, ValueError, struct.error):
            return False
        self._offsets, self._lengths, self._filemarks = offsets, lengths, filemarks
        self._end = end
        self.damage = None
        self._torn = False
        self._index_saved = True
        return True

    def _save_index(self) -> None:
        """Persist the index of a large, undamaged image so the next open skips the scan."""
        if (self._index_saved or self.damage is not None or not self._file_writable
                or len(self._offsets) < INDEX_MIN_OBJECTS):
            return
        stat = os.fstat(self._fd)
        header = INDEX_HEADER.pack(INDEX_MAGIC, stat.st_size, stat.st_mtime_ns,
                                   len(self._offsets), len(self._filemarks), self._end)
        target = index_path(self.path)
        handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(header)
                self._offsets.tofile(out)
                self._lengths.tofile(out)
                self._filemarks.tofile(out)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        self._index_saved = True

    @property
    def object_count(self) -> int:
        """Objects (records and filemarks) before EOD (or before the damage)."""
        return len(self._offsets)

    @property
    def used_bytes(self) -> int:
        """Bytes of the medium used up to EOD."""
        return self._end

    @property
    def filemark_count(self) -> int:
        return len(self._filemarks)

    def is_filemark(self, index: int) -> bool:
        return self._lengths[index] == 0

    def stored_length(self, index: int) -> int:
        return self._lengths[index]

    def offset_of(self, index: int) -> int:
        """File offset of object ``index`` (``object_count`` gives EOD)."""
        return self._offsets[index] if index < len(self._offsets) else self._end

    def filemarks_before(self, index: int) -> int:
        """Number of filemarks among objects ``0 .. index-1`` (the file number at ``index``)."""
        return bisect.bisect_left(self._filemarks, index)

    def filemark_at_or_after(self, index: int) -> int | None:
        k = bisect.bisect_left(self._filemarks, index)
        return self._filemarks[k] if k < len(self._filemarks) else None

    def filemark_before(self, index: int) -> int | None:
        k = bisect.bisect_left(self._filemarks, index)
        return self._filemarks[k - 1] if k else None

    def filemark_index(self, nth: int) -> int | None:
        """Object number of the ``nth`` filemark (0-based), or None."""
        return self._filemarks[nth] if 0 <= nth < len(self._filemarks) else None

    def check_reachable(self, index: int) -> None:
        """Raise MediumError if object ``index`` lies at or beyond damage."""
        if self.damage is not None and index >= len(self._offsets):
            offset, reason = self.damage
            raise MediumError(f"damaged record at byte offset {offset}: {reason}",
                              f"{self.name} object {len(self._offsets)} byte offset {offset}")

    # ------------------------------------------------------------------ reading

    def read_record(self, index: int) -> bytes:
        """The data of record ``index`` (decompressed)."""
        stored = self._pread(index)
        if not self.meta["compression"]:
            return stored
        return self._decode(stored, index)

    def readinto_record(self, index: int, buffer: memoryview) -> int:
        """Read record ``index`` into ``buffer`` (caller checked it fits); returns the length."""
        if self._pending:
            self._flush()
        length = self._lengths[index]
        if self.meta["compression"]:
            data = self.read_record(index)
            buffer[: len(data)] = data
            return len(data)
        got = os.preadv(self._fd, [buffer[:length]], self._offsets[index] + 4)
        if got != length:
            self._short(index, got, length)
        self.meta["bytes_read"] += length
        return length

    def readinto_records(self, index: int, count: int, buffer: memoryview, length: int) -> int:
        """Read records ``index``… into ``buffer`` back to back, as many :meth:`readinto_record`
        calls would, with one ``preadv`` per iovec limit: only the longest run (up to ``count``) of
        uncompressed records of exactly ``length`` bytes laid out one after another (no filemark
        between). Returns how many were read (0: the first is not such a record)."""
        if self._pending:
            self._flush()
        if self.meta["compression"]:
            return 0
        lengths, offsets = self._lengths, self._offsets
        count = min(count, len(lengths) - index, len(buffer) // length if length else 0)
        run = 0
        while run < count and lengths[index + run] == length:
            run += 1
        span = 8 + length + (length & 1)
        if run > 1 and offsets[index + run - 1] != offsets[index] + (run - 1) * span:
            run = 1  # not back to back (cannot happen in an image we wrote): one at a time
        if not run:
            return 0
        gap = bytearray(span - length)  # pad, this record's trailing length word, the next's leading one
        per_call = _IOV_MAX // 2
        for at in range(0, run, per_call):
            upto = min(run, at + per_call)
            parts = []
            for i in range(at, upto):
                parts += (buffer[i * length:(i + 1) * length], gap)
            parts.pop()
            want = (upto - at) * span - len(gap)
            got = os.preadv(self._fd, parts, offsets[index + at] + 4)
            if got != want:
                self._short(index + at, got, want)
        self.meta["bytes_read"] += run * length
        return run

    def _pread(self, index: int) -> bytes:
        if self._pending:
            self._flush()
        length = self._lengths[index]
        data = os.pread(self._fd, length, self._offsets[index] + 4)
        if len(data) != length:
            self._short(index, len(data), length)
        self.meta["bytes_read"] += length
        return data

    def _short(self, index: int, got: int, length: int) -> None:
        offset = self._offsets[index]
        raise MediumError(f"record {index} truncated: {got} of {length} bytes readable",
                          f"{self.name} byte offset {offset}")

    def _decode(self, stored: bytes, index: int) -> bytes:
        where = f"{self.name} byte offset {self._offsets[index]}"
        if not stored:
            raise MediumError("empty compressed record (no tag byte)", where)
        tag = stored[0]
        if tag == TAG_RAW:
            return stored[1:]
        if tag == TAG_ZLIB:
            try:
                return zlib.decompress(memoryview(stored)[1:])
            except zlib.error as bad:
                raise MediumError(f"compressed record does not decompress ({bad})", where) from None
        raise MediumError(f"unknown record tag {tag}", where)

    # ------------------------------------------------------------------ writing

    def _require_writable_file(self) -> None:
        if not self._file_writable:
            raise OSError(errno.EROFS, f"{self.path}: image file is read-only")

    def truncate(self, index: int) -> None:
        """Discard objects ``index`` and beyond (and any damage): EOD becomes ``index``."""
        self._require_writable_file()
        self._flush()
        offset = self.offset_of(index)
        if index < len(self._offsets):
            del self._offsets[index:]
            del self._lengths[index:]
            del self._filemarks[bisect.bisect_left(self._filemarks, index):]
        os.ftruncate(self._fd, offset)
        self._end = offset
        self.damage = None
        self._torn = False
        self._index_saved = False

    def encode(self, data, compress: bool) -> tuple[Any, int]:
        """(payload, stored length) for ``data`` as this cartridge stores it."""
        if not self.meta["compression"]:
            return data, len(data)
        if compress:
            packed = zlib.compress(data, 1)
            if len(packed) < len(data):
                return (b"\x01", packed), len(packed) + 1
        return (b"\x00", data), len(data) + 1

    def write_record(self, index: int, payload, stored_length: int, logical_length: int) -> None:
        """Write one data record as object ``index`` (truncating what follows).

        ``payload`` is what :meth:`encode` returned. The caller (the drive) has checked capacity.
        """
        if stored_length > simh.MAX_RECORD:
            raise OSError(errno.EINVAL, f"record of {stored_length} bytes exceeds the SIMH limit")
        if index != len(self._offsets) or self.damage is not None:
            self.truncate(index)
        self._flush()
        offset = self._end
        head, tail = simh.frame(stored_length)
        parts = [head, *payload, tail] if isinstance(payload, tuple) else [head, payload, tail]
        written = os.pwritev(self._fd, parts, offset)
        span = 8 + stored_length + (stored_length & 1)
        if written != span:
            os.ftruncate(self._fd, offset)
            raise OSError(errno.EIO, f"{self.path}: short write ({written} of {span} bytes)")
        self._offsets.append(offset)
        self._lengths.append(stored_length)
        self._end = offset + span
        self._index_saved = False
        self.meta["bytes_written"] += logical_length

    def append_record(self, data, length: int, defer: bool = False) -> None:
        """Append one uncompressed record at EOD (the drive's streaming path; no checks).

        ``defer`` (only for immutable ``bytes`` or a read-only view of them): queue the record and
        write up to ``WRITE_BEHIND_RECORDS`` of them with one ``pwritev`` - the drive buffer's write-behind,
        which keeps the page cache from splitting a page at every record boundary. Any other use
        of the image writes the queue first; a failure surfaces on that later call, as st reports
        an asynchronous write error on the next operation.
        """
        offset = self._end
        word = simh.WORD.pack(length)
        tail = b"\0" + word if length & 1 else word
        span = 8 + length + (length & 1)
        if defer:
            if not self._pending:
                self._pending_start, self._pending_index = offset, len(self._offsets)
            self._pending += (word, data, tail)
            self._pending_bytes += span
        else:
            if self._pending:
                self._flush()
            written = os.pwritev(self._fd, [word, data, tail], offset)
            if written != span:
                os.ftruncate(self._fd, offset)
                raise OSError(errno.EIO, f"{self.path}: short write ({written} of {span} bytes)")
        self._offsets.append(offset)
        self._lengths.append(length)
        self._end = offset + span
        self._index_saved = False
        self.meta["bytes_written"] += length
        if defer and (len(self._pending) >= 3 * WRITE_BEHIND_RECORDS
                      or self._pending_bytes >= WRITE_BEHIND_BYTES):
            self._flush()

    def append_records(self, data, length: int, count: int) -> None:
        """Append ``count`` uncompressed records of ``length`` bytes each, cut from ``data``
        (``count × length`` bytes), with as few ``pwritev`` calls as the iovec limit allows.

        The image gets exactly what ``count`` :meth:`append_record` calls would write (SIMH framing
        interleaved: length word, data, pad, length word); it is written before this returns, so
        ``data`` may be a buffer the caller reuses. A failed or short write cuts the image back to
        where this call began, leaves the index as it was and raises (EIO when short).
        """
        if count <= 0:
            return
        if self._pending:
            self._flush()
        view = memoryview(data).cast("B")
        word = simh.WORD.pack(length)
        tail = b"\0" + word if length & 1 else word
        span = 8 + length + (length & 1)
        start = self._end
        per_call = _IOV_MAX // 3
        try:
            for at in range(0, count, per_call):
                upto = min(count, at + per_call)
                parts = []
                for i in range(at, upto):
                    parts += (word, view[i * length:(i + 1) * length], tail)
                offset = start + at * span
                want = (upto - at) * span
                written = os.pwritev(self._fd, parts, offset)
                if written != want:
                    raise OSError(errno.EIO, f"{self.path}: short write ({written} of {want} bytes)")
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise
        self._offsets.extend(range(start, start + count * span, span))
        self._lengths.extend(itertools.repeat(length, count))
        self._end = start + count * span
        self._index_saved = False
        self.meta["bytes_written"] += length * count

    def _flush(self) -> None:
        """Write the queued records; on failure drop them from the index and cut the image."""
        if not self._pending:
            return
        parts, start, first = self._pending, self._pending_start, self._pending_index
        total = self._pending_bytes
        self._pending, self._pending_bytes = [], 0
        try:
            written = os.pwritev(self._fd, parts, start)
            if written != total:
                raise OSError(errno.EIO, f"{self.path}: short write ({written} of {total} bytes)")
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            del self._offsets[first:]
            del self._lengths[first:]
            del self._filemarks[bisect.bisect_left(self._filemarks, first):]
            self._end = start
            raise

    def write_filemarks(self, index: int, count: int) -> None:
        """Write ``count`` filemarks as objects ``index``.. (truncating what follows)."""
        if index != len(self._offsets) or self.damage is not None:
            self.truncate(index)
        self._flush()
        if count <= 0:
            return
        os.pwrite(self._fd, simh.MARK_BYTES * count, self._end)
        for _ in range(count):
            self._filemarks.append(len(self._offsets))
            self._offsets.append(self._end)
            self._lengths.append(0)
            self._end += 4
        self._index_saved = False

    def sync(self) -> None:
        """Force the image to stable storage (a synchronising filemark with durability asked)."""
        self._flush()
        os.fsync(self._fd)

    # ------------------------------------------------------------------ metadata

    def record_load(self) -> None:
        self.meta["load_count"] += 1
        self.meta["mam"]["0x0003"] = self.meta["load_count"]

    def mam_attribute(self, attribute: int) -> Any:
        return self.meta["mam"].get(f"0x{attribute:04X}")

    def set_mam_attribute(self, attribute: int, value: Any) -> None:
        """Host attributes (0x0800-0x0BFF) are writable; device/medium ones are not (SPC)."""
        if not 0x0800 <= attribute <= 0x0BFF and attribute != 0x1623:
            raise OSError(errno.EACCES, f"MAM attribute 0x{attribute:04X} is read-only")
        self.meta["mam"][f"0x{attribute:04X}"] = value

    def save(self) -> None:
        """Write the sidecar atomically (counters, switches, MAM)."""
        remaining = max(0, self.capacity_bytes - self._end)
        self.meta["mam"]["0x0000"] = remaining // MiB
        _write_json_atomically(sidecar_path(self.path), self.meta)
        if self._fd is not None:
            self._flush()
            self._save_index()


def _initial_mam(barcode: str, media: str | None, kind: str) -> dict[str, Any]:
    profile = media_profile(media) if media else None
    return {
        "0x0001": (profile.native_capacity // MiB) if profile else 0,
        "0x0003": 0,
        "0x0400": "MAILTAPE",
        "0x0401": barcode,
        "0x0405": profile.density_code if profile else 0,
        "0x0408": MEDIUM_TYPE[kind],
        "0x0806": barcode,
    }


def _validate_meta(meta: Any, where: str) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CorruptDataError(f"not a {FORMAT} sidecar", where)
    if meta.get("version") != VERSION:
        raise CorruptDataError(f"unsupported sidecar version {meta.get('version')!r}", where)
    required = {"barcode": str, "kind": str, "capacity_bytes": int, "early_warning_bytes": int,
                "write_protected": bool, "compression": bool, "load_count": int,
                "bytes_written": int, "bytes_read": int, "mam": dict}
    for key, kind in required.items():
        if not isinstance(meta.get(key), kind):
            raise CorruptDataError(f"field {key!r} missing or not {kind.__name__}", where)
    if meta["kind"] not in KINDS:
        raise CorruptDataError(f"unknown cartridge kind {meta['kind']!r}", where)
    if meta.get("generation") is not None:
        try:
            media_profile(meta["generation"])
        except NotFoundError as bad:
            raise CorruptDataError(str(bad), where) from None


def _write_json_atomically(path: Path, data: Any) -> None:
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
            out.write("\n")
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
