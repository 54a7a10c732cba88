"""A real tape drive through the Linux st driver: ``os`` + ``fcntl.ioctl`` (spec ``tape-drive.md`` §2).

:class:`LinuxStDrive` opens ``/dev/nstN`` (no rewind on close) or ``/dev/stN`` and implements
:class:`reference.protocols.tape.TapeDevice`: ``read``/``readinto``/``write`` are the system calls
(one ``write()`` = one tape block in variable mode), ``mtop`` is ``MTIOCTOP``, ``status`` is
``MTIOCGET`` and ``tell`` is ``MTIOCPOS``. Errors are the ``OSError`` st raises, untouched.

The ioctl request numbers are computed with the kernel's ``_IOC`` macros for the running
architecture (asm-generic layout on x86-64/arm64/riscv; the 3-bit-direction layout on
PowerPC/MIPS/SPARC/Alpha) from the native struct sizes, never hard-coded; a test compiles a C
probe against ``<linux/mtio.h>`` and compares.
"""

from __future__ import annotations

import os
import platform
import struct
import fcntl

from reference.protocols.tape import Gstat, MtGet, MtOp

MTOP = struct.Struct("@hi")
"""struct mtop { short mt_op; int mt_count; } - 8 bytes with the padding after mt_op."""
MTGET = struct.Struct("@5l2i")
"""struct mtget { long mt_type, mt_resid, mt_dsreg, mt_gstat, mt_erreg; int mt_fileno, mt_blkno; }"""
MTPOS = struct.Struct("@l")
"""struct mtpos { long mt_blkno; }"""

MTGET_FIELDS = ("mt_type", "mt_resid", "mt_dsreg", "mt_gstat", "mt_erreg", "mt_fileno", "mt_blkno")


def _layout(machine: str | None = None) -> tuple[int, int, int, int, int]:
    """(size bits, dir bits, IOC_NONE, IOC_WRITE, IOC_READ) for an architecture."""
    arch = (machine or platform.machine()).lower()
    if arch.startswith(("ppc", "powerpc", "mips", "sparc", "alpha")):
        return 13, 3, 1, 4, 2
    return 14, 2, 0, 1, 2


def _ioc(direction: int, kind: str, number: int, size: int, machine: str | None = None) -> int:
    """The kernel's ``_IOC(dir, type, nr, size)``."""
    size_bits, _dir_bits, *_ = _layout(machine)
    nr_shift, type_shift = 0, 8
    size_shift = type_shift + 8
    dir_shift = size_shift + size_bits
    if size >= 1 << size_bits:
        raise ValueError(f"ioctl argument size {size} does not fit in {size_bits} bits")
    return (direction << dir_shift) | (ord(kind) << type_shift) | (number << nr_shift) | (size << size_shift)


def _iow(kind: str, number: int, size: int, machine: str | None = None) -> int:
    return _ioc(_layout(machine)[3], kind, number, size, machine)


def _ior(kind: str, number: int, size: int, machine: str | None = None) -> int:
    return _ioc(_layout(machine)[4], kind, number, size, machine)


MTIOCTOP = _iow("m", 1, MTOP.size)
MTIOCGET = _ior("m", 2, MTGET.size)
MTIOCPOS = _ior("m", 3, MTPOS.size)


class LinuxStDrive:
    """An open st device node; a :class:`~reference.protocols.tape.TapeDevice`.

    ``write``: open O_RDWR (else O_RDONLY). ``nonblock``: O_NONBLOCK, so an empty drive opens
    (st then reports GMT_DR_OPEN and ioctls fail with ENOMEDIUM).
    """

    def __init__(self, path: str, write: bool = True, nonblock: bool = False):
        flags = os.O_RDWR if write else os.O_RDONLY
        if nonblock:
            flags |= os.O_NONBLOCK
        self.name = path
        self._fd = os.open(path, flags)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def fileno(self) -> int:
        return self._fd

    def read(self, size: int) -> bytes:
        return os.read(self._fd, size)

    def readinto(self, buffer) -> int:
        return os.readv(self._fd, [buffer])

    def write(self, block) -> int:
        return os.write(self._fd, block)

    def mtop(self, op: MtOp | int, count: int = 1) -> None:
        fcntl.ioctl(self._fd, MTIOCTOP, MTOP.pack(int(op), int(count)))

    def status(self) -> MtGet:
        buffer = bytearray(MTGET.size)
        fcntl.ioctl(self._fd, MTIOCGET, buffer, True)
        mt_type, resid, dsreg, gstat, erreg, fileno, blkno = MTGET.unpack(buffer)
        return MtGet(type=mt_type, resid=resid, blksize=dsreg & 0xFFFFFF,
                     density=(dsreg >> 24) & 0xFF, gstat=Gstat(gstat & 0xFFFFFFFF),
                     erreg=erreg, fileno=fileno, blkno=blkno)

    def tell(self) -> int:
        buffer = bytearray(MTPOS.size)
        fcntl.ioctl(self._fd, MTIOCPOS, buffer, True)
        return MTPOS.unpack(buffer)[0]

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> "LinuxStDrive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LinuxStDrive({self.name})"
