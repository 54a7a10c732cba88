"""The tape-device protocol: a drive exactly as the Linux st character device presents it.

Mirrors ``/dev/nstN`` (no-rewind) and ``/dev/stN`` (rewind on close) driven through ``read(2)``,
``write(2)`` and the ``MTIOCTOP`` / ``MTIOCGET`` / ``MTIOCPOS`` ioctls of ``<linux/mtio.h>``
(spec: ``tape-drive.md`` §2). Implemented by the emulated drive (``emulators.tape``) and by the
real driver (``reference.drivers.st``); both pass the same faithfulness suite (spec §7).

Errors are ``OSError`` with the errno st returns (ENOSPC, ENOMEM, EIO, EACCES, EROFS, ENOMEDIUM,
EINVAL, ENOSYS), never a custom exception: code written against this protocol must also work on a
real ``/dev/nst0``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class MtOp(enum.IntEnum):
    """``mt_op`` codes of ``struct mtop`` (Linux numbering, ``include/uapi/linux/mtio.h``)."""

    MTRESET = 0
    MTFSF = 1
    MTBSF = 2
    MTFSR = 3
    MTBSR = 4
    MTWEOF = 5
    MTREW = 6
    MTOFFL = 7
    MTNOP = 8
    MTRETEN = 9
    MTBSFM = 10
    MTFSFM = 11
    MTEOM = 12
    MTERASE = 13
    MTRAS1 = 14
    MTRAS2 = 15
    MTRAS3 = 16
    MTSETBLK = 20
    MTSETDENSITY = 21
    MTSEEK = 22
    MTTELL = 23
    MTSETDRVBUFFER = 24
    MTFSS = 25
    MTBSS = 26
    MTWSM = 27
    MTLOCK = 28
    MTUNLOCK = 29
    MTLOAD = 30
    MTUNLOAD = 31
    MTCOMPRESSION = 32
    MTSETPART = 33
    MTMKPART = 34
    MTWEOFI = 35


class Gstat(enum.IntFlag):
    """``mt_gstat`` bits of ``struct mtget`` (``GMT_*`` macros)."""

    EOF = 0x80000000
    BOT = 0x40000000
    EOT = 0x20000000
    SM = 0x10000000
    EOD = 0x08000000
    WR_PROT = 0x04000000
    ONLINE = 0x01000000
    D_6250 = 0x00800000
    D_1600 = 0x00400000
    D_800 = 0x00200000
    DR_OPEN = 0x00040000
    IM_REP_EN = 0x00010000
    CLN = 0x00008000


MT_ISSCSI2 = 0x72
"""``mt_type`` st reports for a SCSI-2 drive (mt-st prints "SCSI 2 tape drive")."""


@dataclass(frozen=True)
class MtGet:
    """``struct mtget`` as st fills it (spec §2.3).

    ``fileno``/``blkno`` are -1 when the driver does not know the position (after BSF, SEEK...).
    ``resid`` is the current partition number, as st reports it.
    """

    type: int
    resid: int
    blksize: int
    density: int
    gstat: Gstat
    erreg: int
    fileno: int
    blkno: int

    @property
    def dsreg(self) -> int:
        return (self.blksize & 0xFFFFFF) | ((self.density & 0xFF) << 24)

    def has(self, bit: Gstat) -> bool:
        return bool(self.gstat & bit)


@runtime_checkable
class TapeDevice(Protocol):
    """One open tape device (what ``os.open("/dev/nst0")`` gives you, plus its ioctls).

    * ``write(block)`` writes exactly one tape block in variable mode (``len(block)`` bytes) and
      returns the byte count; at early warning the write succeeds and the *next* one raises ENOSPC
      (st's "EOM Behaviour When Writing").
    * ``read(size)`` returns the next block (short reads are normal); ``b""`` once at a filemark,
      which is then already crossed; ENOMEM when the block is larger than ``size`` (the block is
      skipped); EIO at end of data.
    * ``readinto(buffer)`` is ``read`` without a copy, returning the byte count.
    * ``mtop(op, count)`` is ``ioctl(MTIOCTOP)``; ``status()`` is ``ioctl(MTIOCGET)``; ``tell()``
      is ``ioctl(MTIOCPOS)`` (logical object number, counting filemarks).
    * ``close()`` writes a filemark if the last operation was a write, and rewinds on a rewinding
      device node.
    """

    name: str

    def read(self, size: int) -> bytes: ...

    def readinto(self, buffer) -> int: ...

    def write(self, block) -> int: ...

    def mtop(self, op: MtOp | int, count: int = 1) -> None: ...

    def status(self) -> MtGet: ...

    def tell(self) -> int: ...

    def close(self) -> None: ...
