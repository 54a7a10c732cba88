"""A cartridge read through a :class:`TapeDevice`, presented to the MTF reader as a ``Medium``.

The MTF reader (``reference.format.reader``) walks a linear byte stream with filemark offsets.
On tape that stream is a run of fixed-size blocks (the media writer writes every block at the
physical block size ``P``), so a byte offset maps to a logical block number arithmetically and
the medium is served by ``MTSEEK`` + ``read()`` of single blocks, a few of them cached: memory
stays bounded whatever the cartridge holds, and only the blocks the reader asks for are read.

A :class:`TapeView` covers chosen tape files of one cartridge: for a restore, file 0 (the TAPE
block) plus the data set's files (from the catalog's tape file number up to its ESET or the
EOTM); for a rebuild or a verify of a whole cartridge, every file up to end of data.
"""

from __future__ import annotations

import bisect
import errno
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from reference.errors import CorruptDataError
from reference.format.sources import PiecewiseMedium
from reference.protocols.tape import MtOp, TapeDevice

READ_LIMIT = 1 << 20
"""Largest block we ask the drive for when the block size is not known yet (st's usual limit)."""
CACHE_BLOCKS = 8


@dataclass
class TapeFile:
    """One tape file as found on the cartridge: its number, first logical object, block count."""

    number: int
    start: int
    blocks: int
    kind: bytes
    """The first four bytes of its first block (``TAPE``, ``SSET``, ``ESET``, ``EOTM`` for ours)."""


def read_first_block(device: TapeDevice) -> bytes | None:
    """Rewind and read block 0; None when the tape is blank (end of data at BOT)."""
    device.mtop(MtOp.MTREW, 1)
    try:
        block = device.read(READ_LIMIT)
    except OSError as err:
        if err.errno in (errno.EIO, errno.ENOSPC):
            return None
        if err.errno == errno.ENOMEM:
            return b"\0"  # a block larger than any we write: not one of our tapes
        raise
    return bytes(block) if block else None


def map_files(device: TapeDevice, first: int = 1, *, stop_at: tuple[bytes, ...] = ()) -> list[TapeFile]:
    """Tape files ``first``, ``first+1``... up to end of data, or up to and including the first file
    whose first block is one of ``stop_at``. Positions with ``MTFSF`` (st counts the filemarks)."""
    device.mtop(MtOp.MTREW, 1)
    if first:
        try:
            device.mtop(MtOp.MTFSF, first)
        except OSError:
            return []
    files: list[TapeFile] = []
    empty: list[TapeFile] = []  # filemarks with nothing between them count only if data follows
    number = first
    while True:
        start = device.tell()
        try:
            head = device.read(READ_LIMIT)
        except OSError as err:
            if err.errno in (errno.EIO, errno.ENOSPC):
                return files  # end of data
            if err.errno != errno.ENOMEM:
                raise
            head = b"\0\0\0\0"  # an oversized (foreign) block: the file is still counted
        if not head:  # a filemark right away: an empty file, or end of data on some drives
            empty.append(TapeFile(number, start, 0, b""))
            number += 1
            continue
        files += empty
        empty = []
        try:
            device.mtop(MtOp.MTFSF, 1)
            end = device.tell() - 1  # the filemark itself is one logical object
        except OSError:
            device.mtop(MtOp.MTEOM, 1)
            end = device.tell()  # data without a closing filemark (torn tail)
            files.append(TapeFile(number, start, end - start, bytes(head[:4])))
            return files
        files.append(TapeFile(number, start, end - start, bytes(head[:4])))
        if bytes(head[:4]) in stop_at:
            return files
        number += 1


class TapeView(PiecewiseMedium):
    """Chosen tape files of one cartridge as one linear medium (see the module docstring).

    ``device()`` returns the open device holding this cartridge (it may load it first: the read-back
    code shares one drive between the cartridges of a spanned set); ``epoch()`` changes whenever
    the drive's position may have been disturbed by someone else. Either ``files`` and
    ``block_size`` are given, or ``mapper(device) -> (block_size, files)`` finds them the first time
    the reader needs them (so the cartridge is mapped while it is loaded for the walk anyway).
    """

    kind = "tape"

    def __init__(self, name: str, device: Callable[[], TapeDevice], block_size: int | None = None,
                 files: list[TapeFile] | None = None, epoch: Callable[[], int] = lambda: 0,
                 mapper: Callable[[TapeDevice], tuple[int, list[TapeFile]]] | None = None):
        super().__init__(name)
        self._device = device
        self._epoch = epoch
        self._mapper = mapper
        self._files: list[TapeFile] | None = None
        if files is not None:
            self._layout(block_size, files)
        elif mapper is None:
            raise ValueError("TapeView needs files or a mapper")
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._at: tuple[int, int] | None = None  # (epoch, next logical object) after our last read

    def _layout(self, block_size: int, files: list[TapeFile]) -> None:
        self.P = block_size
        self._files = files
        self._starts: list[int] = []
        offset = 0
        marks = []
        for f in files:
            self._starts.append(offset)
            offset += f.blocks * block_size
            marks.append(offset)
        self._size = offset
        self._marks = marks

    def _mapped(self) -> None:
        if self._files is None:
            self._layout(*self._mapper(self._device()))

    # Medium's attributes, computed on first use (Medium.__init__ assigns placeholders: ignored).
    @property
    def files(self) -> list[TapeFile]:
        self._mapped()
        return self._files

    @property
    def size(self) -> int:
        self._mapped()
        return self._size

    @size.setter
    def size(self, _value) -> None:
        pass

    @property
    def filemarks(self) -> list[int]:
        self._mapped()
        return self._marks

    @filemarks.setter
    def filemarks(self, _value) -> None:
        pass

    def file_offset(self, index: int) -> int:
        """Stream offset where the view's ``index``-th tape file begins."""
        self._mapped()
        return self._starts[index]

    def locate(self, offset: int) -> tuple[TapeFile, int]:
        """(tape file, logical block number) holding stream ``offset``."""
        self._mapped()
        i = bisect.bisect_right(self._starts, offset) - 1
        f = self._files[i]
        return f, f.start + (offset - self._starts[i]) // self.P

    def position(self, offset: int) -> tuple[int, int]:
        """(tape file number, logical block address) of stream ``offset`` — what the catalog stores."""
        f, block = self.locate(offset)
        return f.number, block

    def _block(self, logical: int, where: int) -> bytes:
        cached = self._cache.get(logical)
        if cached is not None:
            self._cache.move_to_end(logical)
            return cached
        device = self._device()
        epoch = self._epoch()
        if self._at != (epoch, logical):
            device.mtop(MtOp.MTSEEK, logical)
        try:
            data = bytes(device.read(self.P))
        except OSError as err:
            self._at = None
            raise CorruptDataError(f"read error at logical block {logical}: {err.strerror or err}",
                                   where=self.name) from None
        self._at = (epoch, logical + 1)
        if len(data) != self.P:
            raise CorruptDataError(f"block {logical} is {len(data)} bytes, expected the set's block size {self.P} "
                                   f"(near stream offset {where})", where=self.name)
        self._cache[logical] = data
        if len(self._cache) > CACHE_BLOCKS:
            self._cache.popitem(last=False)
        return data

    def iter_range(self, offset: int, length: int, chunk: int = 1 << 20):
        """Block-sized views covering the range. The tape file is located once per file the range
        touches and its blocks are then counted on (one ``bisect`` per file, not per block)."""
        end = min(self.size, offset + length)
        P = self.P
        starts, files, block = self._starts, self._files, self._block
        while offset < end:
            i = bisect.bisect_right(starts, offset) - 1
            f = files[i]
            stop = min(end, starts[i] + f.blocks * P)  # > offset: files tile the stream
            if stop <= offset:  # not reached with a consistent layout; one block, as locate() would
                stop = min(end, offset + P - offset % P)
            logical = f.start + (offset - starts[i]) // P
            inside = offset % P  # every file starts at a multiple of P in the stream
            while offset < stop:
                n = min(P - inside, stop - offset)
                yield memoryview(block(logical, offset))[inside: inside + n]
                offset += n
                logical += 1
                inside = 0

    def read_into(self, offset: int, length: int, buffer) -> memoryview:
        """Read the blocks holding stream bytes ``offset`` onwards straight into ``buffer``
        (``readinto``, no copy) and return a view of the bytes read: up to ``length`` of them, as
        many as ``buffer`` holds whole blocks for, never past the end of the tape file (a caller
        loops). Same errors as :meth:`iter_range`. Blocks still in the cache are copied from it."""
        self._mapped()
        P = self.P
        i = bisect.bisect_right(self._starts, offset) - 1
        if i < 0 or offset >= self._size or length <= 0:
            return memoryview(b"")
        f = self._files[i]
        inside = offset % P  # every file starts at a multiple of P in the stream
        end = min(offset + length, self._starts[i] + f.blocks * P)
        view = memoryview(buffer).cast("B")
        count = min((inside + end - offset + P - 1) // P, view.nbytes // P)
        if count <= 0:
            raise ValueError(f"a buffer of {view.nbytes} bytes holds no block of {P}")
        end = min(end, offset - inside + count * P)
        first = f.start + (offset - self._starts[i]) // P
        device, epoch, cache = None, self._epoch(), self._cache
        read_blocks = None
        k = 0
        while k < count:
            logical = first + k
            dest = view[k * P: (k + 1) * P]
            cached = cache.get(logical)
            if cached is not None:
                dest[:] = cached
                k += 1
                continue
            if device is None:
                device = self._device()
                epoch = self._epoch()
                read_blocks = getattr(device, "read_blocks", None)  # the emulated drive's extension
            if self._at != (epoch, logical):
                device.mtop(MtOp.MTSEEK, logical)
            elif read_blocks is not None and k + 1 < count:
                run = self._device_call(read_blocks, logical, view[k * P: count * P], P)
                if run:  # a run of whole blocks in one call
                    self._at = (epoch, logical + run)
                    k += run
                    continue
            got = self._device_call(device.readinto, logical, dest)
            self._at = (epoch, logical + 1)
            if got != P:
                where = offset - inside + k * P
                raise CorruptDataError(f"block {logical} is {got} bytes, expected the set's block size {P} "
                                       f"(near stream offset {max(where, offset)})", where=self.name)
            k += 1
        return view[inside: inside + end - offset]

    def _device_call(self, call, logical: int, *args) -> int:
        """A read on the device; an OSError is a damaged block here (no position kept after it)."""
        try:
            return call(*args)
        except OSError as err:
            self._at = None
            raise CorruptDataError(f"read error at logical block {logical}: {err.strerror or err}",
                                   where=self.name) from None

    def file_position(self, offset: int) -> str:
        if offset >= self.size:
            return f"offset {offset}"
        number, block = self.position(offset)
        return f"tape file {number}, block {block}"

    def close(self) -> None:
        self._cache.clear()
