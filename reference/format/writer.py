"""Data-set writer (agent side): SSET -> VOLB -> DIRB -> FILE(+STAN, CSUM, XSHA, XCRC, SPAD).

Streams one MTF data set to a ``sink`` following the writer profile (spec ``mtf.md`` §7.12) in
constant memory: object data is passed through to the sink as the caller's memoryviews (never
copied), hashed with ``hashlib`` (SHA-256, written to the media as XSHA) and ``xxhash`` (XXH3-128,
kept off the media for the catalog's in-line restore check) and XOR-summed with numpy on the way.
Every DBLK starts on an FLB boundary and the output always ends on one. The ESET is not written here: it belongs after a
filemark, so :meth:`DataSetWriter.end` returns an :class:`EsetInfo` for the media writer.

The sink is a callable (or an object with ``write``) that receives ``memoryview``/``bytes``
chunks; it must consume or copy them before returning (buffers are reused). A sink with its own
buffers may also offer ``commit(data)``: object data the caller read straight into the sink's
buffer is then passed with :meth:`FileStream.write_reserved` and never copied.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import struct
from dataclasses import dataclass
from typing import Iterable

import xxhash

from reference.errors import CorruptDataError

from . import mtf_structs as m
from .xor32 import Xor32

log = logging.getLogger(__name__)
CHUNK = 1 << 20


def escape_component(name: str) -> str:
    """Make any text (mailbox folder, item subject...) a legal MTF path component / object name:
    ``%``, ``/``, ``\\`` and control characters become ``%XX``; ``.`` and ``..`` become ``%2E``...
    Reversible with :func:`urllib.parse.unquote`."""
    out = "".join(f"%{ord(c):02X}" if c in "%/\\" or ord(c) < 32 else c for c in name)
    if out in ("", ".", ".."):
        out = "".join(f"%{ord(c):02X}" for c in out) or "%00"
    return out


@dataclass(frozen=True)
class EsetInfo:
    """What the media writer needs to close the set (ESET fields + counters)."""

    set_number: int
    sset_attr: int
    corrupt_files: int
    next_cbid: int
    write_date: _dt.datetime | None
    files: int
    data_bytes: int
    length: int
    """Bytes of the data set as written by this writer (a multiple of FLB)."""


@dataclass
class FileRecord:
    """What was written for one object (for the off-tape catalog)."""

    file_id: int
    dir_id: int
    name: str
    size: int
    fla: int
    csum: int = 0
    sha256: bytes = b""
    corrupt: bool = False
    xxh3: bytes = b""
    """XXH3-128 of the data: not written to the media; the catalog keeps it so a restore can check
    every byte in line at memory speed (SHA-256 runs at ~1.8 GB/s, XXH3 at ~17; docs/server.md)."""


class _Sink:
    def __init__(self, sink):
        self._write = sink.write if hasattr(sink, "write") else sink
        self._commit = getattr(sink, "commit", None)
        self.offset = 0

    def __call__(self, chunk) -> None:
        self._write(chunk)
        self.offset += len(chunk)

    def commit(self, data) -> None:
        if self._commit is None:
            raise TypeError("this writer's sink has no buffer to write object data into (commit)")
        self._commit(data)
        self.offset += len(data)


class DataSetWriter:
    """Writes one data set; see docs/format.md ("Writer API") for the call sequence."""

    def __init__(self, sink, *, set_number: int = 1, name: str = "", description: str = "",
                 user: str = "", backup_type: int = m.SSET_NORMAL, flb: int = m.DEFAULT_FLB,
                 write_date: _dt.datetime | None = None, time_zone: int = 127,
                 software_version: tuple[int, int] = (0, 1), sha256: bool = True):
        if flb not in (512, 1024):
            raise ValueError("FLB must be 512 or 1024 (MTF 1.00a)")
        self._out = _Sink(sink)
        self.flb = flb
        self.set_number = set_number
        self.sset_attr = backup_type
        self.write_date = (write_date or _dt.datetime.now()).replace(microsecond=0)
        self._sha = sha256
        self._cbid = 0
        self._dir_id = 0
        self._file_id = 0
        self._corrupt = 0
        self._data_bytes = 0
        self._have_volume = False
        self._open: FileStream | None = None
        self._ended = False
        self.files: list[FileRecord] = []
        sset = m.build_small_dblk(
            b"SSET",
            dict(sset_attr=backup_type, pw_alg=0, comp_alg=0, vendor_id=m.VENDOR_ID,
                 set_number=set_number, pba=0, write_date=self.write_date,
                 sw_major=software_version[0], sw_minor=software_version[1], time_zone=time_zone,
                 mtf_minor=0, catalog_version=0),
            dict(name=m.encode_string(name), description=m.encode_string(description),
                 user=m.encode_string(user)),
            flb=flb, fla=0, cbid=self._next_cbid())
        self._out(sset)

    # -- helpers --
    def _next_cbid(self) -> int:
        cbid = self._cbid
        self._cbid += 1
        return cbid

    @property
    def _fla(self) -> int:
        return self._out.offset // self.flb

    def _check_state(self) -> None:
        if self._ended:
            raise RuntimeError("data set already ended")
        if self._open is not None:
            raise RuntimeError(f"object {self._open.record.name!r} is still open")

    # -- structure --
    def begin_volume(self, device: str, volume: str = "", machine: str = "", *,
                     metadata: dict | None = None,
                     attr: int = m.VOLB_NON_VOLUME_BIT | m.VOLB_DEV_VEND_SPEC_BIT) -> None:
        """A VOLB: device = top-level name (e.g. ``Microsoft Information Store``).

        ``metadata`` (JSON) goes into an ``XMET`` stream. Profile rule 3 wants the VOLB within one
        FLB (mtftar skips one FLB after it); larger metadata is still written, with a warning -
        put it in a FILE instead (mtftar then walks a few FLBs of JSON as unknown blocks)."""
        self._check_state()
        if "\\" in device or "\0" in device:
            raise ValueError(f"bad device name {device!r} (mtftar uses it as a directory)")
        streams = []
        if metadata is not None:
            payload = json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode()
            streams.append(m.stream(m.XMET, payload))
        volb = m.build_small_dblk(
            b"VOLB", dict(volb_attr=attr, write_date=self.write_date),
            dict(device=m.encode_string(device), volume=m.encode_string(volume),
                 machine=m.encode_string(machine)),
            flb=self.flb, streams=streams, fla=self._fla, cbid=self._cbid)
        if len(volb) > self.flb:
            log.warning("VOLB %r with its metadata takes %d bytes, more than one FLB (%d): "
                        "profile rule 3; write the metadata as a FILE (_backup_metadata.json)",
                        device, len(volb), self.flb)
        self._next_cbid()
        self._out(volb)
        self._have_volume = True

    def begin_directory(self, path: str | Iterable[str], *, modified: _dt.datetime | None = None,
                        attr: int = 0) -> int:
        """A DIRB for ``path`` (``a/b/c`` or components; ``""`` is the volume root). Returns its ID."""
        self._check_state()
        if not self._have_volume:
            raise RuntimeError("begin_volume() before begin_directory()")
        components = [c for c in (path.split("/") if isinstance(path, str) else path) if c]
        for c in components:
            if "\0" in c or "\\" in c or c in (".", ".."):
                raise ValueError(f"bad directory component {c!r}")
        self._dir_id += 1
        dirb = m.build_small_dblk(
            b"DIRB", dict(dirb_attr=attr, modified=modified or self.write_date, created=None,
                          backup=self.write_date,
                          accessed=None, dir_id=self._dir_id),
            dict(name=m.encode_dir_path(components)),
            flb=self.flb, fla=self._fla, cbid=self._next_cbid())
        self._out(dirb)
        return self._dir_id

    def open_file(self, name: str, size: int, *, modified: _dt.datetime | None = None,
                  created: _dt.datetime | None = None, attr: int = 0) -> "FileStream":
        """Start a FILE of exactly ``size`` bytes; write the data with ``write`` then ``close``."""
        self._check_state()
        if self._dir_id == 0:
            raise RuntimeError("begin_directory() before adding files")
        if not name or "\0" in name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"bad object name {name!r}")
        if size < 0:
            raise ValueError("size must be >= 0")
        self._file_id += 1
        record = FileRecord(self._file_id, self._dir_id, name, size, self._fla)
        prefix = m.build_dblk_prefix(
            b"FILE", dict(file_attr=attr, modified=modified or self.write_date, created=created,
                          backup=self.write_date, accessed=None, dir_id=self._dir_id,
                          file_id=self._file_id),
            dict(name=m.encode_string(name)), fla=self._fla, cbid=self._next_cbid(),
            displayable_size=size)
        stan = m.build_stream_header(b"STAN", size, media_attr=m.STREAM_CHECKSUMED)
        self._out(prefix + stan)
        self._open = FileStream(self, record, prefix)
        return self._open

    def add_file(self, name: str, size: int, data, *, sha256: bytes | None = None, **attrs) -> FileRecord:
        """Write a whole object from bytes, a binary reader (``readinto``/``read``) or chunks.

        ``sha256``: the SHA-256 of ``data`` when the caller has just computed it over these very
        bytes (``data`` must then be ``bytes``, which cannot change under it): it becomes the
        object's XSHA without hashing the bytes a second time (a mailbox set hashes every body
        for single-instance storage before it is written)."""
        if sha256 is not None and (type(data) is not bytes or len(sha256) != 32):
            raise TypeError("a known SHA-256 needs the object as bytes and a 32-byte digest")
        with self.open_file(name, size, **attrs) as f:
            if sha256 is not None and f._sha is not None:
                f._sha, f._known_sha256 = None, sha256
            if isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            elif hasattr(data, "readinto"):
                buf = bytearray(min(CHUNK, max(size, 1)))
                view = memoryview(buf)
                while True:
                    n = data.readinto(buf)
                    if not n:
                        break
                    f.write(view[:n])
            elif hasattr(data, "read"):
                while chunk := data.read(CHUNK):
                    f.write(chunk)
            else:
                for chunk in data:
                    f.write(chunk)
        return f.record

    def _file_done(self, stream: "FileStream") -> None:
        self._open = None
        self.files.append(stream.record)
        self._data_bytes += stream.record.size

    def end(self) -> EsetInfo:
        """Finish the set; returns what the ESET (written by the media writer) needs."""
        self._check_state()
        self._ended = True
        return EsetInfo(self.set_number, self.sset_attr, self._corrupt, self._cbid,
                        self.write_date, len(self.files), self._data_bytes, self._out.offset)


class FileStream:
    """Writable object for one FILE's STAN data (size fixed up front)."""

    def __init__(self, writer: DataSetWriter, record: FileRecord, prefix: bytes):
        self._w = writer
        self.record = record
        self._prefix = prefix
        self._written = 0
        self._xor = Xor32()
        self._sha = hashlib.sha256() if writer._sha else None
        self._known_sha256 = b""  # set by DataSetWriter.add_file(sha256=...) instead of _sha
        self._xxh3 = xxhash.xxh3_128()
        self._hashed = 0
        self._closed = False

    def write(self, chunk) -> int:
        n = self._admit(chunk)
        if n:
            self.hash_data(chunk)
            self._w._out(chunk)
            self._written += n
        return n

    def write_reserved(self, data, *, hash_now: bool = True) -> int:
        """Like :meth:`write` for data that is already where the sink will send it from: the
        caller read it into the sink's own buffer (``sink.room()``, e.g.
        :class:`reference.transfer.PackingSink`); it is checked and counted as ``write`` does,
        then ``sink.commit(data)`` takes it without a copy.

        ``hash_now=False`` leaves the CSUM/SHA-256 to a later :meth:`hash_data` call (so a caller
        can hash on another thread while it reads the next piece): every such piece must be
        passed to ``hash_data``, in order, before :meth:`close` (which checks)."""
        n = self._admit(data)
        if n:
            if hash_now:
                self.hash_data(data)
            self._w._out.commit(data)
            self._written += n
        return n

    def _admit(self, data) -> int:
        """The length of ``data``, after checking the object is open and has room for it."""
        if self._closed:
            raise ValueError("write to a closed object")
        n = len(data)
        if self._written + n > self.record.size:
            raise CorruptDataError(
                f"object grew beyond its declared size {self.record.size} "
                f"(got {self._written + n} bytes)", where=self.record.name)
        return n

    def hash_data(self, data) -> None:
        """Fold object data into the CSUM, SHA-256 and XXH3-128 (see :meth:`write_reserved`)."""
        self.hash_strong(data)
        self.hash_fast(data)

    def hash_strong(self, data) -> None:
        """The SHA-256 part of :meth:`hash_data`, ~10 times the cost of the rest: a caller may run
        it on another thread than :meth:`hash_fast`; each must see every piece, in order."""
        if self._sha is not None:
            self._sha.update(data)

    def hash_fast(self, data) -> None:
        """The CSUM and XXH3-128 part of :meth:`hash_data`; counts the piece as hashed."""
        self._xor.update(data)
        self._xxh3.update(data)
        self._hashed += len(data)

    def close(self) -> FileRecord:
        if self._closed:
            return self.record
        if self._hashed != self._written:
            raise RuntimeError(f"{self.record.name}: {self._written - self._hashed} bytes written "
                               "with write_reserved(hash_now=False) were never passed to hash_data()")
        short = self.record.size - self._written
        if short:
            # The spec requires the declared byte count: zero-fill, then mark the object corrupt.
            zeros = bytes(min(short, CHUNK))
            while self._written < self.record.size:
                self.write(memoryview(zeros)[: self.record.size - self._written])
        self._closed = True
        rec = self.record
        rec.csum = self._xor.value()
        rec.sha256 = self._sha.digest() if self._sha is not None else self._known_sha256
        rec.xxh3 = self._xxh3.digest()
        w = self._w
        pos = w._out.offset % w.flb
        trailer = bytearray(m.align(pos, 4) - pos)
        trailer += m.stream(b"CSUM", struct.pack("<I", rec.csum))
        if rec.sha256:
            trailer += bytes(m.align(len(trailer) + pos, 4) - len(trailer) - pos)
            trailer += m.stream(m.XSHA, rec.sha256)
        trailer += bytes(m.align(len(trailer) + pos, 4) - len(trailer) - pos)
        trailer += m.crc_stream(self._prefix)
        trailer += m.padding_to(pos + len(trailer), w.flb)
        w._out(bytes(trailer))
        w._file_done(self)
        if short:
            rec.corrupt = True
            w._corrupt += 1
            cfil = m.build_small_dblk(
                b"CFIL", dict(cfil_attr=0x10000, stream_offset=self._written - short,
                              stream_number=0),
                flb=w.flb, fla=w._fla, cbid=w._next_cbid())
            w._out(cfil)
            raise CorruptDataError(
                f"object ended {short} bytes short of its declared size {rec.size}; "
                "zero-filled and marked corrupt (CFIL)", where=rec.name)
        return rec

    def __enter__(self) -> "FileStream":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
