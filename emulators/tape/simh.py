"""The SIMH ``.tap`` magtape image format: record framing and a one-pass index scanner.

Layout (open-simh ``simh_magtape.md``, spec ``tape-drive.md`` §3): objects back to back. A data
record is a 32-bit little-endian length word, the data, one pad byte when the length is odd, and the
same length word again; a tape mark is a single zero word. Special words: ``0xFFFFFFFF`` end of
medium (we never write it; on reading it ends the medium), ``0xFFFFFFFE`` erase gap (skipped),
``0xFF000000``-``0xFFFFFFFD`` reserved. Bit 31 of a length word flags a record with a (recorded)
error; bits 30:24 must be zero (anything else is not a SIMH length - reject it).
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

TAPE_MARK = 0x00000000
EOM_MARKER = 0xFFFFFFFF
ERASE_GAP = 0xFFFFFFFE
RESERVED_LOW = 0xFF000000
ERROR_FLAG = 0x80000000
RESERVED_BITS = 0x7F000000
MAX_RECORD = 0x00FFFFFF
"""Largest SIMH record: 16 MiB - 1 (24-bit length)."""

WORD = struct.Struct("<I")
MARK_BYTES = WORD.pack(TAPE_MARK)


def frame(length: int) -> tuple[bytes, bytes]:
    """(header, trailer) for a data record of ``length`` stored bytes; the trailer carries the pad."""
    word = WORD.pack(length)
    return word, (b"\0" + word if length & 1 else word)


def record_span(length: int) -> int:
    """Bytes a data record of ``length`` occupies in the file."""
    return 8 + length + (length & 1)


@dataclass
class ScanResult:
    """What one pass over a ``.tap`` file found.

    ``offsets[i]`` is the file offset of object ``i``'s length word; ``lengths[i]`` its stored
    length, 0 for a tape mark. ``end`` is where the next object would go (EOD). ``damage`` is
    (offset, reason) of the first bad record, after which nothing is indexed; ``torn`` marks a
    damaged record that runs past the end of the file (an interrupted append).
    """

    offsets: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    end: int = 0
    damage: tuple[int, str] | None = None
    torn: bool = False
    eom_marker: bool = False


def scan(path: str | os.PathLike[str]) -> ScanResult:
    """Index every object of a ``.tap`` file in one forward pass (headers and trailers only)."""
    result = ScanResult()
    offsets, lengths = result.offsets, result.lengths
    size = os.path.getsize(path)
    unpack_from = WORD.unpack_from
    fd = os.open(path, os.O_RDONLY)
    try:
        position = 0
        head = os.pread(fd, 4, 0)
        while position < size:
            # ``head`` holds the word at ``position`` (read together with the previous trailer).
            if len(head) < 4:
                result.damage = (position, f"{len(head)} stray byte(s) where a length word belongs")
                result.torn = True
                break
            (word,) = unpack_from(head)
            if word == TAPE_MARK:
                offsets.append(position)
                lengths.append(0)
                position += 4
                head = os.pread(fd, 4, position)
                continue
            if word == EOM_MARKER:
                result.eom_marker = True
                break
            if word == ERASE_GAP:
                position += 4
                head = os.pread(fd, 4, position)
                continue
            if word >= RESERVED_LOW:
                result.damage = (position, f"reserved marker 0x{word:08X}")
                break
            if word & RESERVED_BITS:
                result.damage = (position, f"length word 0x{word:08X} has reserved bits 30:24 set")
                break
            if word & ERROR_FLAG:
                result.damage = (position, "record flagged as bad by the writer (bit 31)")
                break
            length = word
            span = record_span(length)
            if position + span > size:
                result.damage = (position, f"record of {length} bytes runs past the end of the file "
                                 f"({size - position} of {span} bytes present)")
                result.torn = True
                break
            tail_and_next = os.pread(fd, 8, position + span - 4)
            (trailer,) = unpack_from(tail_and_next)
            if trailer != word:
                result.damage = (position, f"trailing length {trailer} does not match leading "
                                 f"length {length}")
                break
            offsets.append(position)
            lengths.append(length)
            position += span
            head = tail_and_next[4:]
    finally:
        os.close(fd)
    result.end = position if result.damage is None else result.damage[0]
    return result
