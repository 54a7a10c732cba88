"""Where the media writer's blocks go: a TapeDevice (hardware filemarks), a ``.bkf`` file (soft
filemarks: SFMB blocks), and the ``next_medium`` callback over a media changer."""

from __future__ import annotations

import errno
import struct
from typing import Callable

from reference.errors import MailtapeError
from reference.protocols.tape import MtOp, TapeDevice

from . import mtf_structs as m


class TapeTarget:
    """Physical blocks and hardware filemarks on a TapeDevice."""

    soft_filemarks = False

    def __init__(self, device: TapeDevice, block_size: int):
        self.device = device
        self.block_size = block_size

    def write_block(self, block) -> None:
        n = self.device.write(block)
        if n != len(block):
            raise OSError(errno.EIO, f"short write {n} of {len(block)} on {self.device.name}")

    def write_filemark(self, immediate: bool = False) -> None:
        """``immediate``: MTWEOFI, the filemark is queued behind the buffered data and the drive
        keeps streaming; MTWEOF synchronises: everything is on the medium when it returns, and
        the tape stops (a backhitch before the next write)."""
        self.device.mtop(MtOp.MTWEOFI if immediate else MtOp.MTWEOF, 1)

    def pba(self) -> int:
        return self.device.tell()

    @property
    def name(self) -> str:
        return self.device.name


class BkfTarget:
    """A ``.bkf`` file: blocks appended; filemarks become SFMB blocks (soft filemarks)."""

    soft_filemarks = True

    def __init__(self, file, block_size: int, name: str = ".bkf"):
        if block_size > 32768:
            raise ValueError("a disk image's block size must be <= 32 KiB: an SFMB is one block "
                             "and its size is stored in the 16-bit Offset To First Event")
        self.file = file
        self.block_size = block_size
        self.name = name
        self.filemarks: list[int] = []
        self.sfmb_cbid = 0

    def write_block(self, block) -> None:
        try:
            self.file.write(block)
        except OSError as err:
            raise MailtapeError(f"{self.name}: cannot write disk image: {err.strerror}") from err

    def pba(self) -> int:
        return self.file.tell() // self.block_size

    def write_filemark(self, immediate: bool = False) -> None:
        """A soft filemark (SFMB block); ``immediate`` means nothing on a disk image."""
        pba = self.pba()
        entries = (self.block_size - 60) // 8
        prev = list(reversed(self.filemarks))[:entries]
        self.sfmb_cbid += 1
        header = m.build_header(b"SFMB", first_event=self.block_size, fla=pba, cbid=self.sfmb_cbid)
        body = m.SfmbFixed.build(dict(entries=entries, used=len(prev)))
        body += struct.pack(f"<{len(prev)}Q", *prev)
        block = header + body
        self.write_block(block + bytes(self.block_size - len(block)))
        self.filemarks.append(pba)


class ChangerFeeder:
    """``next_medium`` callback over a :class:`~reference.protocols.changer.MediaChanger`.

    ``first()`` loads the first cartridge and opens the drive; each call closes the device, puts
    the cartridge back where it came from (``mtx unload``), loads the next one (the given
    ``slots`` in order, else the next full storage slot after the current) and opens the device
    again with ``open_device()``. Returns None when no cartridge is left.
    """

    def __init__(self, changer, open_device: Callable[[], TapeDevice], *, drive: int = 0,
                 slots: list[int] | None = None):
        self.changer = changer
        self.open_device = open_device
        self.drive = drive
        self.slots = list(slots) if slots is not None else None
        self.device: TapeDevice | None = None
        self.used: list[int] = []

    def _candidates(self) -> list[int]:
        from reference.protocols.changer import ElementType

        status = self.changer.status()
        full = [e.number for e in status.slots if e.full and e.type == ElementType.STORAGE]
        if self.slots is not None:
            return [s for s in self.slots if s in full and s not in self.used]
        last = self.used[-1] if self.used else 0
        return [s for s in full if s > last]

    def first(self) -> TapeDevice:
        return self._load_next()

    def _load_next(self) -> TapeDevice | None:
        candidates = self._candidates()
        if not candidates:
            return None
        self.changer.load(candidates[0], self.drive)
        self.used.append(candidates[0])
        self.device = self.open_device()
        return self.device

    def __call__(self, sequence: int) -> TapeDevice | None:
        if self.device is not None:
            self.device.close()
            self.device = None
        self.changer.unload(None, self.drive)
        return self._load_next()
