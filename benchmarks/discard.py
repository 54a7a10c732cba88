"""A tape device that throws the data away: the end-to-end path without the cartridge file's cost.

:class:`DiscardingTape` implements ``reference.protocols.tape.TapeDevice`` for a write-only
blank cartridge: it keeps st's position (file number, block number, logical object, end of data)
exactly, so the media manager can label it and the media writer can write filemarks and data
sets, but it keeps no bytes. Reading block 0 of a blank tape gives EIO like st; reading anything
that was written gives EIO too (the data is gone — this is a benchmark sink, not an emulator).
:class:`DiscardingDrives` is the server-side ``DriveSet`` handing out one such tape per drive.
"""

from __future__ import annotations

import errno
import os

from reference.protocols.tape import MT_ISSCSI2, Gstat, MtGet, MtOp

_NOOPS = {MtOp.MTNOP, MtOp.MTSETBLK, MtOp.MTSETDENSITY, MtOp.MTSETDRVBUFFER, MtOp.MTCOMPRESSION,
          MtOp.MTLOCK, MtOp.MTUNLOCK, MtOp.MTLOAD}


def _error(code: int, what: str) -> OSError:
    return OSError(code, f"{os.strerror(code)} ({what})")


class DiscardingTape:
    """A write-only blank cartridge in a drive: positions kept, bytes dropped (see module doc)."""

    def __init__(self, name: str = "discard0", density: int = 0x60):
        self.name = name
        self.density = density
        self.pos = 0          # logical object number (blocks and filemarks), like MTIOCPOS
        self.fileno = 0
        self.blkno = 0
        self.eod = 0
        self.marks_before: list[int] = []  # logical position of every filemark, in order
        self.bytes_discarded = 0
        self.blocks_discarded = 0
        self._dirty = False   # last operation was a write (st writes a filemark at close/rewind)
        self.closed = False

    def reopen(self) -> "DiscardingTape":
        self.closed = False
        return self

    # -- data ---------------------------------------------------------------------------------

    def write(self, block) -> int:
        self._check_open()
        n = memoryview(block).nbytes
        if n == 0:
            raise _error(errno.EINVAL, "zero-length write")
        self._truncate_here()
        self.pos += 1
        self.blkno += 1
        self.eod = self.pos
        self.bytes_discarded += n
        self.blocks_discarded += 1
        self._dirty = True
        return n

    def write_blocks(self, data, block_size: int) -> int:
        """The emulated drive's multi-block write (see ``EmulatedTapeDevice.write_blocks``): every
        whole block of ``data``, exactly as that many :meth:`write` calls; returns the count."""
        self._check_open()
        count = memoryview(data).nbytes // block_size if block_size > 0 else 0
        if count:
            self._truncate_here()
            self.pos += count
            self.blkno += count
            self.eod = self.pos
            self.bytes_discarded += count * block_size
            self.blocks_discarded += count
            self._dirty = True
        return count

    def read(self, size: int) -> bytes:
        self._check_open()
        self._flush_mark()
        raise _error(errno.EIO, "end of data" if self.pos >= self.eod else "data was discarded")

    def readinto(self, buffer) -> int:
        self.read(len(buffer))
        return 0  # pragma: no cover - read always raises

    # -- ioctls -------------------------------------------------------------------------------

    def mtop(self, op: MtOp | int, count: int = 1) -> None:
        self._check_open()
        op = MtOp(op)
        if op in (MtOp.MTWEOF, MtOp.MTWEOFI):
            self._truncate_here()
            for _ in range(count):
                self.marks_before.append(self.pos)
                self.pos += 1
            self.fileno += count
            self.blkno = 0
            self.eod = self.pos
            self._dirty = False
        elif op in (MtOp.MTREW, MtOp.MTOFFL, MtOp.MTUNLOAD, MtOp.MTRETEN):
            self._flush_mark()
            self.pos = self.fileno = self.blkno = 0
        elif op == MtOp.MTEOM:
            self._flush_mark()
            self.pos = self.eod
            self.fileno = len(self.marks_before)
            self.blkno = self.eod - (self.marks_before[-1] + 1) if self.marks_before else self.eod
        elif op == MtOp.MTFSF:
            self._flush_mark()
            ahead = [p for p in self.marks_before if p >= self.pos]
            if count > len(ahead):
                self.pos, self.fileno = self.eod, len(self.marks_before)
                raise _error(errno.EIO, "space forward past end of data")
            self.pos = ahead[count - 1] + 1
            self.fileno += count
            self.blkno = 0
        elif op in _NOOPS:
            self._flush_mark()
        else:
            raise _error(errno.ENOSYS, f"{op.name} on a discarding tape")

    def status(self) -> MtGet:
        gstat = Gstat.ONLINE
        if self.pos == 0:
            gstat |= Gstat.BOT
        if self.pos >= self.eod:
            gstat |= Gstat.EOD
        return MtGet(MT_ISSCSI2, 0, 0, self.density, gstat, 0, self.fileno, self.blkno)

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        if not self.closed:
            self._flush_mark()
            self.closed = True

    # -- helpers ------------------------------------------------------------------------------

    def _flush_mark(self) -> None:
        if self._dirty:
            self.mtop(MtOp.MTWEOF, 1)

    def _truncate_here(self) -> None:
        """Writing in the middle of the tape makes the rest unreadable (new end of data)."""
        if self.pos < self.eod:
            self.marks_before = [p for p in self.marks_before if p < self.pos]
            self.eod = self.pos

    def _check_open(self) -> None:
        if self.closed:
            raise _error(errno.EBADF, f"{self.name} is closed")


class DiscardingDrives:
    """A ``DriveSet`` (reference/server/devices.py) of discarding drives, numbered like the library's."""

    def __init__(self, numbers):
        self.tapes = {n: DiscardingTape(f"discard{n}") for n in numbers}
        self.numbers = sorted(self.tapes)

    def open(self, number: int, write: bool):
        return self.tapes[number].reopen()

    def describe(self, number: int) -> str:
        return f"discarding drive {number}"

    def timeline(self, number: int):
        """No virtual-time device behind it (like a real drive)."""
        return None

    @property
    def bytes_discarded(self) -> int:
        return sum(t.bytes_discarded for t in self.tapes.values())
