"""Transaction log generations of one storage group (``E00.log``, ``E0000001.log`` ...).

Each generation is a fixed-size file: a 4096-byte header (generation, tmCreate/tmPrevGen chain,
signLog, attached databases) then *fragments* ``(crc32 u32, length u32, type u8, data)`` holding
log records; a record larger than the room left continues in the next generation (types FULL,
FIRST, MIDDLE, LAST), the unused rest of a file is zero. A crc mismatch makes corruption
detectable anywhere in the written area (-612 during backup, -501 during recovery).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from .. import errors
from ..ondisk.structs import HEADER_BLOCK, AttachEntry, LgPos, LogHeader, LogTime, Signature

FRAG = struct.Struct("<IIB")
FRAG_TAIL = struct.Struct("<IB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
REC = struct.Struct("<BQ")


def _crc(length: int, ftype: int, data) -> int:
    return zlib.crc32(data, zlib.crc32(FRAG_TAIL.pack(length, ftype)))


class LogCorrupt(Exception):
    """A generation failed verification; ``where`` says which file and offset."""


@dataclass
class Generation:
    """A parsed generation: header + fragments (offset, type, data)."""

    path: str
    header: LogHeader
    fragments: list[tuple[int, int, bytes]]
    end: int  # offset just after the last valid fragment
    torn: bool  # stopped at a bad fragment (allowed only for the current log)
    allow_torn: bool = False

    def reload(self) -> "Generation":
        """This generation with its record data (for replay after a header-only check)."""
        return parse_generation(self.path, self.header.generation, allow_torn=self.allow_torn)


def parse_generation(path: str, expected_gen: int | None = None, allow_torn: bool = False,
                     keep: bool = True) -> Generation:
    """Read and verify one generation file. Raises LogCorrupt or ExchangeError(-513).

    ``keep=False`` verifies everything but keeps no record data (header only: bounded memory)."""
    with open(path, "rb") as f:
        raw = f.read()
    return parse_generation_bytes(raw, path, expected_gen, allow_torn, keep)


def parse_generation_bytes(raw: bytes, path: str, expected_gen: int | None = None, allow_torn: bool = False,
                           keep: bool = True) -> Generation:
    """:func:`parse_generation` on bytes already read (``path`` names them in errors)."""
    try:
        header = LogHeader.unpack(raw)
    except ValueError as e:
        raise LogCorrupt(f"{path}: {e}") from None
    if expected_gen is not None and header.generation != expected_gen:
        raise errors.jet_error(
            errors.LogGenerationMismatch,
            f"{path}: file name says generation {expected_gen:#x}, header says {header.generation:#x}",
        )
    size = len(raw)
    if header.file_size and size != header.file_size:
        raise LogCorrupt(f"{path}: size {size} bytes, header says {header.file_size}")
    frags = []
    off = HEADER_BLOCK
    torn = False
    mv = memoryview(raw)
    while off + FRAG.size <= size:
        crc, length, ftype = FRAG.unpack_from(raw, off)
        if crc == 0 and length == 0 and ftype == 0:
            break
        data = mv[off + FRAG.size : off + FRAG.size + length]
        if ftype not in (FULL, FIRST, MIDDLE, LAST) or len(data) != length or _crc(length, ftype, data) != crc:
            if allow_torn:
                torn = True
                break
            raise LogCorrupt(f"{path}: log record checksum mismatch at offset {off}")
        if keep:
            frags.append((off, ftype, bytes(data)))
        off += FRAG.size + length
    if not torn and off < size:
        rest = np.frombuffer(raw, dtype=np.uint8, offset=off)
        if rest.any():
            if not allow_torn:
                bad = off + int(np.flatnonzero(rest)[0])
                raise LogCorrupt(f"{path}: data after the end of the log records at offset {bad}")
            torn = True
    return Generation(path, header, frags, off, torn, allow_torn)


def records_of(gens: Iterable[Generation]) -> Iterator[tuple[int, int, int, bytes]]:
    """(generation, lsn, record type, body) of every complete record, in order.

    A record whose start lies before the first generation given is skipped; an incomplete record
    at the very end (torn / never committed) is dropped.
    """
    for pos, lsn, rtype, body in positioned_records(gens):
        yield pos.generation, lsn, rtype, body


def positioned_records(gens: Iterable[Generation]) -> Iterator[tuple[LgPos, int, int, bytes]]:
    """:func:`records_of` with the lgpos where each record starts."""
    parts: list[bytes] | None = None
    start = LgPos()
    for g in gens:
        gen = g.header.generation
        for off, ftype, data in g.fragments:
            if ftype == FULL:
                rtype, lsn = REC.unpack_from(data)
                yield LgPos.at(gen, off), lsn, rtype, data[REC.size :]
                parts = None
            elif ftype == FIRST:
                parts, start = [data], LgPos.at(gen, off)
            elif parts is not None:
                parts.append(data)
                if ftype == LAST:
                    whole = b"".join(parts)
                    rtype, lsn = REC.unpack_from(whole)
                    yield start, lsn, rtype, whole[REC.size :]
                    parts = None


class LogStream:
    """The writer side: the current generation ``E0n.log`` and rolling to the next one."""

    def __init__(self, log_dir: str, prefix: str, profile, log_size: int, clock,
                 attach_provider: Callable[[], list[AttachEntry]]):
        self.dir = log_dir
        self.prefix = prefix
        self.profile = profile
        self.size = log_size
        self.clock = clock
        self.attach_provider = attach_provider
        self.header: LogHeader | None = None
        self.gen = 0
        self.off = HEADER_BLOCK
        self.next_lsn = 1
        self.circular = False
        self.disk_full = False
        self.checkpoint_pos = LgPos()
        self.on_roll: list[Callable[[int], None]] = []
        self.writing: tuple[int, int, int] | None = None  # (lsn, gen, offset) of a record being written
        self._fh = None

    # -- names ------------------------------------------------------------------------------

    @property
    def current_path(self) -> str:
        return os.path.join(self.dir, f"{self.prefix}.log")

    def archive_path(self, gen: int) -> str:
        return os.path.join(self.dir, self.profile.archive_log_name(self.prefix, gen))

    def path_for(self, gen: int) -> str:
        return self.current_path if gen == self.gen else self.archive_path(gen)

    def archived_generations(self) -> list[int]:
        """Generations of the archived (closed) logs present in the log folder, ascending."""
        return sorted(g for g, _ in list_log_files(self.dir, self.prefix))

    def generations_on_disk(self) -> list[int]:
        gens = self.archived_generations()
        if os.path.exists(self.current_path):
            gens.append(self.gen)
        return gens

    # -- create / open ----------------------------------------------------------------------

    def create(self, sign_log: Signature, circular: bool, first_gen: int = 1, next_lsn: int = 1) -> None:
        self.circular = circular
        self.next_lsn = next_lsn
        self._write_new_current(first_gen, LogTime(), sign_log)

    def open(self) -> None:
        g = parse_generation(self.current_path, allow_torn=True)
        self.header = g.header
        self.gen = g.header.generation
        self.circular = bool(g.header.flags & 1)
        self.off = g.end
        top = g.header.lsn_first
        for _off, ftype, data in g.fragments:
            if ftype in (FULL, FIRST):
                top = max(top, REC.unpack_from(data)[1] + 1)
        self.next_lsn = top
        if g.torn:  # wipe the torn tail so the file verifies again
            with open(self.current_path, "r+b") as f:
                f.seek(self.off)
                f.write(bytes(self.size - self.off))
        self._fh = open(self.current_path, "r+b")

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()
        self._fh = None

    def _write_new_current(self, gen: int, prev: LogTime, sign_log: Signature) -> None:
        tm = LogTime.from_seconds(self.clock.now())
        hdr = LogHeader(
            generation=gen, tm_create=tm, tm_prev_gen=prev, sign_log=sign_log, file_size=self.size,
            page_size=self.profile.page_size, version=self.profile.log_version,
            flags=1 if self.circular else 0, lsn_first=self.next_lsn, checkpoint=self.checkpoint_pos,
            attach=self.attach_provider(),
        )
        tmp = os.path.join(self.dir, f"{self.prefix}tmp.log")
        with open(tmp, "wb") as f:
            f.write(hdr.pack())
            f.truncate(self.size)
        os.replace(tmp, self.current_path)
        self.header, self.gen, self.off = hdr, gen, HEADER_BLOCK
        self._fh = open(self.current_path, "r+b")

    # -- writing ----------------------------------------------------------------------------

    def append(self, rtype: int, body: bytes) -> tuple[int, int, int]:
        """Write one record; returns (lsn, generation where it starts, offset)."""
        if self.size - self.off < FRAG.size + REC.size + 1:
            self.roll()
        lsn = self.next_lsn
        data = memoryview(REC.pack(rtype, lsn) + body)
        start = (self.gen, self.off)
        self.writing = (lsn, self.gen, self.off)
        first = True
        while data:
            room = self.size - self.off - FRAG.size
            if room <= 0:
                self.roll()
                continue
            piece, data = data[:room], data[room:]
            last = not data
            ftype = (FULL if last else FIRST) if first else (LAST if last else MIDDLE)
            frag = FRAG.pack(_crc(len(piece), ftype, piece), len(piece), ftype)
            self._fh.seek(self.off)
            self._fh.write(frag)
            self._fh.write(piece)
            self.off += FRAG.size + len(piece)
            first = False
        self._fh.flush()
        self.next_lsn = lsn + 1
        self.writing = None
        return lsn, start[0], start[1]

    def roll(self) -> int:
        """Close the current generation under its archive name and start the next one."""
        if self.disk_full:
            raise errors.jet_error(errors.LogDiskFull, f"{self.dir}: log disk full, cannot create generation {self.gen + 1:#x}")
        old_gen, old_tm, sign = self.gen, self.header.tm_create, self.header.sign_log
        self.close()
        os.replace(self.current_path, self.archive_path(old_gen))
        self._write_new_current(old_gen + 1, old_tm, sign)
        for cb in self.on_roll:
            cb(self.gen)
        return self.gen

    @property
    def position(self) -> LgPos:
        return LgPos.at(self.gen, self.off)


def list_log_files(folder: str, prefix: str | None = None) -> list[tuple[int, str]]:
    """(generation, path) of archive-named logs (``E0n`` + 5 or 8 hex digits + ``.log``) in ``folder``."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        parsed = log_generation_from_name(name)
        if parsed is None or (prefix is not None and parsed[0].upper() != prefix.upper()):
            continue
        out.append((parsed[1], os.path.join(folder, name)))
    out.sort()
    return out


def log_generation_from_name(name: str) -> tuple[str, int] | None:
    """(prefix, generation) for an archive log file name, else None."""
    base = os.path.basename(name.replace("\\", "/"))
    if not base.lower().endswith(".log"):
        return None
    stem = base[:-4]
    hexpart = stem[3:]
    if len(stem) < 8 or len(hexpart) not in (5, 8) or not all(c in "0123456789ABCDEFabcdef" for c in hexpart):
        return None
    return stem[:3], int(hexpart, 16)
