"""An emulated LTO drive behind an emulated Linux st driver (spec ``tape-drive.md`` §1, §2, §7).

Two layers, as on a real machine:

* :class:`EmulatedDrive` is the drive *and* the st driver's per-drive state (``drv_file``,
  ``drv_block``, the ``eof`` state machine, ``rw``, block size, options). That state outlives an
  open file, exactly like st's: ``/dev/nst0`` keeps its position between opens.
* :meth:`EmulatedDrive.open` returns an :class:`EmulatedTapeDevice`, one open file (what
  ``os.open("/dev/nst0")`` gives): it implements :class:`reference.protocols.tape.TapeDevice`,
  remembers the open mode (``O_RDONLY``/``O_RDWR``, ``O_NONBLOCK``) and whether it is the
  rewinding node (``/dev/st0``), and writes the filemark / rewinds on close.

The logic follows ``drivers/scsi/st.c`` (``st_read``/``read_tape``, ``st_write``, ``st_ioctl``,
``st_int_ioctl``, ``st_flush``) on top of an SSC medium model (mhvtl ``usr/ssc.c``), with errors as
``OSError(errno)``. Library-facing API: :meth:`load`, :meth:`unload`, :attr:`cartridge`,
:attr:`threaded` (a tape is in and threaded, i.e. not ejected), :meth:`eject`.

One emulator extension beyond st: ``EmulatedTapeDevice.write_blocks(data, size)`` writes a run
of blocks as that many ``write()`` calls would while streaming, in one go (the media writer uses
it when a device offers it; a real st device does not, and gets one ``write()`` per block).
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass

from emulators.clock import Clock, Timeline
from reference.errors import MailtapeError
from reference.protocols.changer import Sense
from reference.protocols.tape import MT_ISSCSI2, Gstat, MtGet, MtOp

from .cartridge import Cartridge, MediumError
from .profiles import DriveProfile, drive_profile, media_profile
from .timing import DriveTiming

log = logging.getLogger(__name__)

# st's eof states (drivers/scsi/st.h), in their order: comparisons like ``eof >= ST_EOD_1`` matter.
ST_NOEOF, ST_FM_HIT, ST_FM, ST_EOM_OK, ST_EOM_ERROR, ST_EOD_1, ST_EOD_2, ST_EOD = range(8)
ST_IDLE, ST_READING, ST_WRITING = range(3)
# Readiness, as st's check_tape sees it.
READY, NO_TAPE, NOT_READY = range(3)

# MTSETDRVBUFFER option words (include/uapi/linux/mtio.h).
MT_ST_OPTIONS = 0xF0000000
MT_ST_BOOLEANS = 0x10000000
MT_ST_SETBOOLEANS = 0x30000000
MT_ST_CLEARBOOLEANS = 0x40000000
MT_ST_BLKSIZE_MASK = 0x00FFFFFF
OPTION_BITS = {
    "async_writes": 0x2, "read_ahead": 0x4, "two_fm": 0x10, "fast_mteom": 0x20,
    "auto_lock": 0x40, "can_bsr": 0x100, "can_partitions": 0x400, "scsi2logical": 0x800,
    "sysv": 0x1000, "nowait": 0x2000, "sili": 0x4000, "nowait_eof": 0x8000, "buffer_writes": 0x1,
}

FSF_TO_EOD = 0x7FFFFF


def _err(code: int, what: str = "") -> OSError:
    return OSError(code, f"{os.strerror(code)}{': ' + what if what else ''}")


class LoadError(MailtapeError):
    """The drive cannot take this cartridge (occupied, or media generation not supported).

    A library reports it as HARDWARE ERROR 4/04/03 (mhvtl) - ``reason`` is ``"occupied"`` or
    ``"unsupported"``.
    """

    def __init__(self, message: str, reason: str):
        self.reason = reason
        super().__init__(message)


@dataclass
class StOptions:
    """st driver options (MTSETDRVBUFFER booleans); st's defaults."""

    buffer_writes: bool = True
    async_writes: bool = True
    read_ahead: bool = True
    two_fm: bool = False
    fast_mteom: bool = False
    auto_lock: bool = False
    can_bsr: bool = True
    can_partitions: bool = False
    scsi2logical: bool = True
    sysv: bool = False
    nowait: bool = False
    sili: bool = False
    nowait_eof: bool = False


class EmulatedDrive:
    """One LTO drive (generation ``"LTO-5"``..``"LTO-10"``) with st's driver state.

    ``clock``: charge streaming/mechanical time to it (:mod:`emulators.tape.timing`); None charges
    nothing. ``durable``: fsync the image at synchronising filemarks and on close.
    ``privileged``: whether the caller may use MTSETDRVBUFFER (root only in st); default: euid 0.
    """

    def __init__(
        self,
        generation: str | int = "LTO-9",
        *,
        clock: Clock | None = None,
        name: str = "nst0",
        profile: DriveProfile | None = None,
        timeline: Timeline | None = None,
        durable: bool = False,
        privileged: bool | None = None,
    ):
        self.profile = profile or drive_profile(generation)
        self.name = name
        self.timing = DriveTiming(clock, self.profile, timeline) if clock is not None else None
        self.durable = durable
        self.privileged = os.geteuid() == 0 if privileged is None else privileged
        self.options = StOptions()
        self.cartridge: Cartridge | None = None
        self.threaded = False
        self.locked = False
        self.block_size = 0
        self.density = 0
        self.compression = False
        self.drv_buffer = 0
        # st position state
        self.pos = 0
        self.fileno = -1
        self.blkno = -1
        self.eof = ST_NOEOF
        self.rw = ST_IDLE
        self.write_prot = False
        self.last_sense: Sense | None = None
        """Sense data of the last command that returned CHECK CONDITION (for logs / an sg backend)."""
        self._open: EmulatedTapeDevice | None = None

    def __repr__(self) -> str:
        tape = self.cartridge.barcode if self.cartridge else "empty"
        return f"EmulatedDrive({self.profile.name}, {self.name}, {tape}, pos={self.pos})"

    # ------------------------------------------------------------------ library-facing

    @property
    def ready(self) -> int:
        if self.cartridge is None or not self.threaded:
            return NO_TAPE
        if self.cartridge.kind == "cleaning":
            return NOT_READY
        return READY

    def check_compatible(self, cartridge: Cartridge) -> None:
        """Raise LoadError if this drive cannot load ``cartridge`` (spec §1.8, E10)."""
        if cartridge.kind == "cleaning":
            return
        if not self.profile.can_load(cartridge.generation):
            raise LoadError(
                f"{self.profile.name} drive {self.name} cannot load {cartridge.generation} media "
                f"({cartridge.barcode})", "unsupported")

    def load(self, cartridge: Cartridge) -> None:
        """Insert and thread ``cartridge``: rewound to BOT, load count + 1, load time charged."""
        if self.cartridge is not None:
            raise LoadError(f"drive {self.name} already holds {self.cartridge.barcode}", "occupied")
        self.check_compatible(cartridge)
        self.cartridge = cartridge
        self._thread()

    def _thread(self) -> None:
        cartridge = self.cartridge
        if self.timing:
            self.timing.set_media(media_profile(cartridge.generation) if cartridge.generation else None)
            self.timing.load()
        cartridge.record_load()
        self.threaded = True
        self.pos = 0
        self.fileno = self.blkno = 0
        self.eof = ST_NOEOF
        self.rw = ST_IDLE
        self.density = cartridge.density_code
        self.write_prot = cartridge.write_protected or (
            cartridge.kind != "cleaning" and not self.profile.can_write(cartridge.generation))

    def eject(self) -> None:
        """Rewind and unthread (``mt offline``); the cartridge stays in the drive's throat."""
        if self.threaded and self.timing:
            self.timing.unload(self._fraction(self.pos))
        self.threaded = False
        self.locked = False
        self.pos = 0
        self.fileno = self.blkno = -1
        self.eof = ST_NOEOF
        self.rw = ST_IDLE
        if self.cartridge is not None:
            self.cartridge.save()

    def unload(self) -> Cartridge | None:
        """Take the cartridge out (ejecting it first if threaded); None if the drive is empty."""
        cartridge = self.cartridge
        if cartridge is None:
            return None
        if self.threaded:
            self.eject()
        self.cartridge = None
        self.density = 0
        self.write_prot = False
        cartridge.save()
        return cartridge

    # ------------------------------------------------------------------ opening

    def open(self, write: bool = True, rewind_on_close: bool = False,
             nonblock: bool = False) -> "EmulatedTapeDevice":
        """``open(2)`` of ``/dev/nstN`` (``rewind_on_close=False``) or ``/dev/stN``.

        ``write``: O_RDWR rather than O_RDONLY. Without ``nonblock`` an empty drive fails with
        ENOMEDIUM and a not-ready one (cleaning cartridge) with EIO; a write-protected tape opened
        for writing fails with EROFS (st ``check_tape``). One open at a time (EBUSY).
        """
        if self._open is not None and not self._open.closed:
            raise _err(errno.EBUSY, self.name)
        ready = self.ready
        if not nonblock and ready != READY:
            raise _err(errno.ENOMEDIUM if ready == NO_TAPE else errno.EIO, self.name)
        if ready == READY and write and self.write_prot and not nonblock:
            raise _err(errno.EROFS, self.name)
        self.rw = ST_IDLE
        device = EmulatedTapeDevice(self, write, rewind_on_close)
        device.rewind_on_close = rewind_on_close and ready == READY
        self._open = device
        return device

    # ------------------------------------------------------------------ helpers

    def _check_ready(self) -> None:
        ready = self.ready
        if ready == NO_TAPE:
            raise _err(errno.ENOMEDIUM, self.name)
        if ready == NOT_READY:
            raise _err(errno.EIO, f"{self.name}: drive not ready (cleaning cartridge)")

    def _fraction(self, pos: int) -> float:
        cart = self.cartridge
        if cart is None or cart.capacity_bytes <= 0:
            return 0.0
        return min(1.0, cart.offset_of(min(pos, cart.object_count)) / cart.capacity_bytes)

    def _move(self, new_pos: int) -> None:
        if self.timing and new_pos != self.pos:
            self.timing.locate(self._fraction(self.pos), self._fraction(new_pos))
        self.pos = new_pos

    def _worm_blocks_write(self) -> bool:
        """WORM media accept writes only at EOD (or over a lone filemark at BOT: labelling)."""
        cart = self.cartridge
        if cart.kind != "worm":
            return False
        if self.pos == cart.object_count:
            return False
        return not (self.pos == 0 and cart.object_count == 1 and cart.is_filemark(0))

    def _check_rw_count(self, count: int) -> None:
        if self.block_size == 0:
            if count < self.profile.min_block or count > self.profile.max_block:
                raise _err(errno.EINVAL, f"{count} bytes outside block limits "
                           f"[{self.profile.min_block}, {self.profile.max_block}]")
        elif count % self.block_size:
            raise _err(errno.EINVAL, f"{count} is not a multiple of the block size {self.block_size}")

    # ------------------------------------------------------------------ write(2)

    def _streamable_blocks(self, size: int) -> int:
        """How many ``size``-byte blocks the streaming fast path may append from here: 0 unless
        the drive is writing variable blocks at EOD of an uncompressed, undamaged cartridge with
        ``size`` within the block limits; then the blocks that end before early warning. Every
        condition the general path checks is settled by these."""
        cart = self.cartridge
        if (self.rw != ST_WRITING or self.eof != ST_NOEOF or self.block_size or cart is None
                or cart.meta["compression"] or cart.damage is not None
                or not self.profile.min_block <= size <= self.profile.max_block
                or self.pos != len(cart._offsets)):
            return 0
        span = 8 + size + (size & 1)
        limit = cart.meta["capacity_bytes"] - cart.meta["early_warning_bytes"]
        return max(0, (limit - 1 - cart._end) // span)  # block k streams if _end + k*span < limit

    def _write(self, data) -> int:
        cart = self.cartridge
        if self.rw == ST_WRITING and cart is not None:
            view = data if type(data) is memoryview else memoryview(data)
            count = view.nbytes
            if view.ndim == 1 and view.itemsize == 1 and self._streamable_blocks(count):
                # Streaming fast path: appending a variable block well before early warning.
                if type(data) is bytes:
                    cart.append_record(data, count, defer=True)
                elif view.readonly and type(view.obj) is bytes:
                    # A read-only view of immutable bytes (the media writer's blocks cut from a
                    # received chunk) is as safe to queue as bytes; its own slice survives the
                    # caller releasing its view.
                    cart.append_record(view[:], count, defer=True)
                else:
                    cart.append_record(view, count, defer=False)
                self.pos += 1
                if self.blkno >= 0:
                    self.blkno += 1
                if self.timing:
                    self.timing.write(count, count)
                return count
        return self._write_general(data)

    def _write_blocks(self, data, size: int) -> int:
        """Blocks of ``size`` bytes cut from ``data``, as that many ``write()`` calls would write
        them while streaming well before early warning - but with one ``pwritev`` for the lot.

        Takes the longest prefix the streaming fast path of :meth:`_write` would take and returns
        how many blocks that was (0 when not streaming: first write after a filemark or a
        positioning, fixed-block mode, compression, near early warning...). The caller writes
        the next block with ``write()``, which then decides exactly as it always does (ENOSPC
        at early warning, EIO, ...). Written before returning: ``data`` may be reused.
        """
        fits = self._streamable_blocks(size)
        if not fits:
            return 0
        view = data if type(data) is memoryview else memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        count = min(view.nbytes // size, fits)
        if not count:
            return 0
        self.cartridge.append_records(view, size, count)
        self.pos += count
        if self.blkno >= 0:
            self.blkno += count
        if self.timing:
            for _ in range(count):
                self.timing.write(size, size)
        return count

    def _write_general(self, data) -> int:
        self._check_ready()
        view = data if isinstance(data, memoryview) else memoryview(data)
        if view.itemsize != 1 or view.ndim != 1:
            view = view.cast("B")
        count = view.nbytes
        if count == 0:
            return 0
        self._check_rw_count(count)
        if self.write_prot:
            raise _err(errno.EACCES, f"{self.name}: write-protected")
        self.rw = ST_WRITING
        if self.eof == ST_EOM_OK:
            self.eof = ST_EOD_1  # the next write is allowed again (trailers)
            raise _err(errno.ENOSPC, f"{self.name}: early warning")
        if self.eof == ST_EOM_ERROR:
            raise _err(errno.EIO, self.name)
        if self._worm_blocks_write():
            raise _err(errno.EIO, f"{self.name}: WORM medium - overwrite attempted (7/30/0C)")
        cart = self.cartridge
        size = self.block_size or count
        compress = self.compression and cart.compression_capable
        end_of_medium = cart.capacity_bytes
        early_warning = end_of_medium - cart.early_warning_bytes
        written = 0
        at_warning = False
        timing = self.timing
        for start in range(0, count, size):
            block = view[start:start + size] if size != count else view
            payload, stored = cart.encode(block, compress)
            end = cart.offset_of(self.pos) + 8 + stored + (stored & 1)
            if end > end_of_medium:
                # VOLUME OVERFLOW: nothing of this block is written.
                self.last_sense = Sense(0xD, 0x00, 0x02)
                self.eof = ST_EOM_OK
                if written:
                    return written
                raise _err(errno.ENOSPC, f"{self.name}: physical end of medium")
            cart.write_record(self.pos, payload, stored, size)
            self.pos += 1
            if self.blkno >= 0:
                self.blkno += 1
            written += size
            if timing:
                timing.write(size, stored)
            if end >= early_warning:
                at_warning = True
        if at_warning:
            self.last_sense = Sense(0x0, 0x00, 0x02)  # NO SENSE, EOM, END-OF-PARTITION/MEDIUM
            self.eof = ST_EOM_OK
        return written

    # ------------------------------------------------------------------ read(2)

    def _read_prologue(self, count: int) -> bool:
        """Checks shared by read/readinto; True when the call must return 0 without reading."""
        self._check_ready()
        self._check_rw_count(count)
        if self.rw == ST_WRITING:
            if self.timing:
                self.timing.flush()
        self.rw = ST_READING
        if self.eof >= ST_EOD_1:
            if self.eof < ST_EOD:
                self.eof += 1
                return True
            raise _err(errno.EIO, f"{self.name}: end of data")
        return False

    def _at_special(self) -> bool:
        """Handle FM_HIT / filemark / EOD at the current position; True means "return 0"."""
        cart = self.cartridge
        if self.eof == ST_FM_HIT:
            self._crossed_filemark()
            return True
        if self.pos >= cart.object_count:
            cart.check_reachable(self.pos)
            self.blkno = -1
            self.last_sense = Sense(0x8, 0x00, 0x05)
            if self.eof == ST_FM:  # "Zero returned for first BLANK CHECK after EOF"
                self.eof = ST_EOD
                return True
            raise _err(errno.EIO, f"{self.name}: end of data")
        if cart.is_filemark(self.pos):
            self._move(self.pos + 1)
            self._crossed_filemark()
            return True
        return False

    def _crossed_filemark(self) -> None:
        self.eof = ST_FM
        self.blkno = 0
        if self.fileno >= 0:
            self.fileno += 1

    def _read(self, size: int) -> bytes:
        cart = self.cartridge
        if (self.rw == ST_READING and self.eof == ST_NOEOF and not self.block_size
                and cart is not None and not cart.meta["compression"] and self.threaded):
            pos = self.pos
            lengths = cart._lengths
            if (pos < len(lengths) and 0 < lengths[pos] <= size <= self.profile.max_block
                    and cart.kind != "cleaning"):  # streaming fast path, as in _readinto
                data = cart.read_record(pos)
                if self.timing:
                    self.timing.read(len(data))
                self.pos = pos + 1
                if self.blkno >= 0:
                    self.blkno += 1
                return data
        if size == 0:
            return b""
        if self._read_prologue(size):
            return b""
        if self.block_size:
            out = bytearray(size)
            got = self._read_fixed(memoryview(out))
            return bytes(out[:got])
        if self._at_special():
            return b""
        cart = self.cartridge
        index = self.pos
        if cart.compression_capable:
            data = cart.read_record(index)
        else:
            if cart.stored_length(index) > size:
                return self._too_small(size)
            data = cart.read_record(index)
        if len(data) > size:
            return self._too_small(size)
        self._consumed(index)
        return data

    def _readinto(self, buffer) -> int:
        view = buffer if type(buffer) is memoryview else memoryview(buffer)
        cart = self.cartridge
        if (self.rw == ST_READING and self.eof == ST_NOEOF and not self.block_size
                and cart is not None and not cart.meta["compression"] and self.threaded
                and view.ndim == 1 and view.itemsize == 1):
            # Streaming fast path: the next object is a data block that fits the buffer.
            pos = self.pos
            lengths = cart._lengths
            size = view.nbytes
            if (pos < len(lengths) and 0 < lengths[pos] <= size
                    and size <= self.profile.max_block and cart.kind != "cleaning"):
                length = cart.readinto_record(pos, view)
                if self.timing:
                    self.timing.read(length)
                self.pos = pos + 1
                if self.blkno >= 0:
                    self.blkno += 1
                return length
        return self._readinto_general(view)

    def _read_blocks(self, buffer, size: int) -> int:
        """Blocks of ``size`` bytes into ``buffer``, as that many ``readinto()`` calls on its
        consecutive ``size``-byte slices would read them while streaming - with one ``preadv``.

        Takes the longest run the streaming fast path of :meth:`_readinto` would take block by
        block (data records of exactly ``size`` bytes; it stops before a filemark, a record of
        another length, the end of data) and returns how many that was, 0 when not streaming
        (first read after positioning, fixed-block mode, compression...). The caller reads the
        next block with ``readinto()``, which then does exactly what it always does."""
        cart = self.cartridge
        if not (self.rw == ST_READING and self.eof == ST_NOEOF and not self.block_size
                and cart is not None and not cart.meta["compression"] and self.threaded
                and cart.kind != "cleaning" and 0 < size <= self.profile.max_block):
            return 0
        view = buffer if type(buffer) is memoryview else memoryview(buffer)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        count = cart.readinto_records(self.pos, view.nbytes // size, view, size)
        if count:
            self.pos += count
            if self.blkno >= 0:
                self.blkno += count
            if self.timing:
                for _ in range(count):
                    self.timing.read(size)
        return count

    def _readinto_general(self, buffer) -> int:
        view = buffer if isinstance(buffer, memoryview) else memoryview(buffer)
        if view.itemsize != 1 or view.ndim != 1:
            view = view.cast("B")
        size = view.nbytes
        if size == 0:
            return 0
        if self._read_prologue(size):
            return 0
        if self.block_size:
            return self._read_fixed(view)
        if self._at_special():
            return 0
        cart = self.cartridge
        index = self.pos
        if cart.compression_capable:
            data = cart.read_record(index)
            if len(data) > size:
                self._too_small(size)
            view[: len(data)] = data
            length = len(data)
        else:
            if cart.stored_length(index) > size:
                self._too_small(size)
            length = cart.readinto_record(index, view)
        self._consumed(index)
        return length

    def _too_small(self, size: int):
        """st: "Failed to read N byte block with M byte transfer" - ENOMEM, block skipped."""
        index = self.pos
        length = self.cartridge.stored_length(index)
        self._move(index + 1)
        if self.blkno >= 0:
            self.blkno += 1
        raise _err(errno.ENOMEM, f"{self.name}: block of {length} bytes does not fit in {size}")

    def _consumed(self, index: int) -> None:
        if self.timing:
            self.timing.read(self.cartridge.stored_length(index))
        self.pos = index + 1
        if self.blkno >= 0:
            self.blkno += 1
        if self.eof == ST_FM:
            self.eof = ST_NOEOF

    def _read_fixed(self, view: memoryview) -> int:
        """Fixed-block read: whole ``block_size`` blocks until the count, a filemark, EOD or a
        block of the wrong length (st backspaces over it; EIO if it was the first)."""
        size = self.block_size
        if view.nbytes % size:
            raise _err(errno.EINVAL, f"{view.nbytes} is not a multiple of the block size {size}")
        cart = self.cartridge
        got = 0
        while got < view.nbytes:
            if got == 0:
                if self._at_special():
                    return 0
            elif self.pos >= cart.object_count:
                break
            elif cart.is_filemark(self.pos):
                self._move(self.pos + 1)
                self.eof = ST_FM_HIT
                break
            index = self.pos
            data = cart.read_record(index)
            if len(data) != size:
                if got == 0:
                    raise _err(errno.EIO, f"{self.name}: incorrect block size "
                               f"({len(data)} bytes, block size {size})")
                break
            view[got:got + size] = data
            got += size
            self._consumed(index)
        return got

    # ------------------------------------------------------------------ ioctl(MTIOCTOP)

    def _mtop(self, device: "EmulatedTapeDevice", op: int, count: int) -> None:
        op = int(op)
        if op == MtOp.MTSETDRVBUFFER and not self.privileged:
            raise _err(errno.EPERM, "MTSETDRVBUFFER only allowed for root")
        if self.eof == ST_FM_HIT:
            if op in (MtOp.MTFSF, MtOp.MTFSFM, MtOp.MTEOM):
                count -= 1
                if self.fileno >= 0:
                    self.fileno += 1
            elif op in (MtOp.MTBSF, MtOp.MTBSFM):
                count += 1
                if self.fileno >= 0:
                    self.fileno += 1
        if self.rw == ST_WRITING and op in (MtOp.MTREW, MtOp.MTOFFL, MtOp.MTSEEK, MtOp.MTBSF,
                                            MtOp.MTBSFM):
            self._int_ioctl(MtOp.MTWEOF, 1)
            if op in (MtOp.MTBSF, MtOp.MTBSFM):
                count += 1
            self.rw = ST_IDLE
        if op not in (MtOp.MTNOP, MtOp.MTSETBLK, MtOp.MTSETDENSITY, MtOp.MTWSM,
                      MtOp.MTSETDRVBUFFER, MtOp.MTSETPART):
            self.rw = ST_IDLE
        if op == MtOp.MTOFFL:
            self.locked = False
        if op == MtOp.MTSETDRVBUFFER and count & MT_ST_OPTIONS:
            self._set_options(count)
            return
        if op in (MtOp.MTSETPART, MtOp.MTMKPART):
            raise _err(errno.EINVAL, "partitions not enabled (MT_ST_CAN_PARTITIONS)")
        if op == MtOp.MTSEEK:
            self._seek(count)
            return
        if op in (MtOp.MTUNLOAD, MtOp.MTOFFL):
            self._check_ready()
            self.eject()
            device.rewind_on_close = False
            return
        if op == MtOp.MTLOAD:
            if self.cartridge is None:
                raise _err(errno.EIO, f"{self.name}: no medium to load")
            if not self.threaded:
                self._thread()
                device.rewind_on_close = device.rewinding_node
            return
        if op in (MtOp.MTLOCK, MtOp.MTUNLOCK):
            self.locked = op == MtOp.MTLOCK
            return
        if op == MtOp.MTCOMPRESSION:
            if self.ready != READY:
                raise _err(errno.EIO, self.name)
            self.compression = bool(count & 1)
            return
        self._int_ioctl(op, count)

    def _set_options(self, word: int) -> None:
        code = word & MT_ST_OPTIONS
        if code == MT_ST_BOOLEANS:
            for name, bit in OPTION_BITS.items():
                setattr(self.options, name, bool(word & bit))
        elif code in (MT_ST_SETBOOLEANS, MT_ST_CLEARBOOLEANS):
            for name, bit in OPTION_BITS.items():
                if word & bit:
                    setattr(self.options, name, code == MT_ST_SETBOOLEANS)
        # Other option codes (thresholds, defaults, timeouts) change nothing we model.

    def _int_ioctl(self, op: int, arg: int) -> None:
        """st_int_ioctl: compute the expected fileno/blkno, issue the SCSI command, fix up."""
        self._check_ready()
        fileno, blkno = self.fileno, self.blkno
        chg_eof = True
        cart = self.cartridge
        sense: _Sense | None = None
        if op in (MtOp.MTFSF, MtOp.MTFSFM):
            chg_eof = op == MtOp.MTFSF
            if fileno >= 0:
                fileno += arg
            blkno = 0
            sense = self._space_filemarks(arg)
        elif op in (MtOp.MTBSF, MtOp.MTBSFM):
            chg_eof = op == MtOp.MTBSF
            if fileno >= 0:
                fileno -= arg
            blkno = -1
            sense = self._space_filemarks(-arg)
        elif op == MtOp.MTFSR:
            if blkno >= 0:
                blkno += arg
            sense = self._space_blocks(arg)
        elif op == MtOp.MTBSR:
            if blkno >= 0:
                blkno -= arg
            sense = self._space_blocks(-arg)
        elif op in (MtOp.MTFSS, MtOp.MTBSS):
            sense = _Sense("illegal")  # LTO has no setmarks: ILLEGAL REQUEST 5/24/00
        elif op in (MtOp.MTWEOF, MtOp.MTWEOFI, MtOp.MTWSM):
            if self.write_prot:
                raise _err(errno.EACCES, f"{self.name}: write-protected")
            if fileno >= 0:
                fileno += arg
            blkno = 0
            sense = _Sense("illegal") if op == MtOp.MTWSM else self._write_filemarks(
                arg, immediate=op == MtOp.MTWEOFI or self.options.nowait_eof)
        elif op == MtOp.MTREW:
            fileno = blkno = 0
            self._rewind()
        elif op == MtOp.MTNOP:
            if self.timing:
                self.timing.flush()
            return
        elif op == MtOp.MTRETEN:
            fileno = blkno = 0
            if self.timing:
                self.timing.locate(self._fraction(self.pos), 1.0)
                self.timing.rewind(1.0)
            self.pos = 0
        elif op == MtOp.MTEOM:
            if not self.options.fast_mteom:
                try:
                    self._int_ioctl(MtOp.MTFSF, FSF_TO_EOD)
                except MediumError:
                    raise
                except OSError:
                    pass
                fileno = self.fileno
                if self.eof >= ST_EOD_1:
                    return
            else:
                fileno = -1
            self._move(cart.object_count)
            blkno = -1
        elif op == MtOp.MTERASE:
            if self.write_prot:
                raise _err(errno.EACCES, f"{self.name}: write-protected")
            fileno = blkno = 0
            sense = self._erase(long=arg != 0)
        elif op in (MtOp.MTSETBLK, MtOp.MTSETDENSITY, MtOp.MTSETDRVBUFFER):
            chg_eof = False
            if op == MtOp.MTSETBLK:
                size = arg & MT_ST_BLKSIZE_MASK
                if size and not self.profile.min_block <= size <= self.profile.max_block:
                    raise _err(errno.EINVAL, f"block size {size} outside the block limits")
            elif op == MtOp.MTSETDENSITY and not self._density_supported(arg & 0xFF):
                sense = _Sense("illegal")
        else:
            raise _err(errno.ENOSYS, f"mt_op {op} not implemented by st")

        if sense is None:
            self.blkno, self.fileno = blkno, fileno
            if op == MtOp.MTBSFM:
                self._int_ioctl(MtOp.MTFSF, 1)
            elif op == MtOp.MTFSFM:
                self._int_ioctl(MtOp.MTBSF, 1)
            if op == MtOp.MTSETBLK:
                self.block_size = arg & MT_ST_BLKSIZE_MASK
            elif op == MtOp.MTSETDENSITY:
                self.density = arg & 0xFF
            elif op == MtOp.MTSETDRVBUFFER:
                self.drv_buffer = arg & 7
            if op == MtOp.MTEOM:
                self.eof = ST_EOD
            elif op == MtOp.MTFSF:
                self.eof = ST_FM
            elif chg_eof:
                self.eof = ST_NOEOF
            if op in (MtOp.MTWEOF, MtOp.MTWEOFI):
                self.rw = ST_IDLE
            return
        self._ioctl_error(op, arg, fileno, blkno, chg_eof, sense)

    def _ioctl_error(self, op, arg, fileno, blkno, chg_eof, sense: "_Sense") -> None:
        """The error half of st_int_ioctl: where st thinks it is after a failed command."""
        self.last_sense = sense.scsi
        backward = op in (MtOp.MTBSF, MtOp.MTBSFM, MtOp.MTBSR, MtOp.MTBSS)
        if sense.eom:
            if not backward:
                self.eof = ST_EOM_OK
            self.blkno = 0
        undone = sense.residue
        if op in (MtOp.MTWEOF, MtOp.MTWEOFI) and sense.eom:
            if sense.kind == "no_sense":  # filemarks written after early warning: success
                self.eof = ST_NOEOF
                self.fileno = fileno
                self.blkno = 0
                self.rw = ST_IDLE
                return
            if fileno >= 0:
                fileno -= undone
            if undone < arg:
                self.eof = ST_NOEOF
            self.fileno = fileno
        elif op in (MtOp.MTFSF, MtOp.MTFSFM):
            self.fileno = fileno - undone if fileno >= 0 else fileno
            self.blkno = -1
            self.eof = ST_NOEOF
        elif op in (MtOp.MTBSF, MtOp.MTBSFM):
            if self.fileno >= 0:
                self.fileno = fileno + undone
            self.blkno = 0
            self.eof = ST_NOEOF
        elif op == MtOp.MTFSR:
            if sense.filemark:
                if self.fileno >= 0:
                    self.fileno += 1
                self.blkno = 0
                self.eof = ST_FM
            else:
                self.blkno = blkno - undone if blkno >= undone else -1
                self.eof = ST_NOEOF
        elif op == MtOp.MTBSR:
            if sense.filemark:
                self.fileno -= 1
                self.blkno = -1
            elif self.blkno >= 0:
                self.blkno = blkno + undone
            self.eof = ST_NOEOF
        elif op == MtOp.MTEOM:
            self.fileno = self.blkno = -1
            self.eof = ST_EOD
        elif chg_eof:
            self.eof = ST_NOEOF
        if sense.kind == "blank":
            self.eof = ST_EOD
        if sense.kind == "protect":
            raise _err(errno.EIO, f"{self.name}: WORM medium - overwrite attempted (7/30/0C)")
        raise _err(errno.EIO, f"{self.name}: {sense.describe()}")

    # ------------------------------------------------------------------ medium operations (SSC)

    def _space_filemarks(self, count: int) -> "_Sense | None":
        """SPACE filemarks: forward ends after the n-th filemark, backward before it."""
        if count == 0:
            return None
        cart = self.cartridge
        before = cart.filemarks_before(self.pos)
        if count > 0:
            target = cart.filemark_index(before + count - 1)
            if target is not None:
                self._move(target + 1)
                return None
            cart.check_reachable(cart.object_count)
            self._move(cart.object_count)
            return _Sense("blank", residue=count - (cart.filemark_count - before))
        wanted = -count
        if before >= wanted:
            self._move(cart.filemark_index(before - wanted))
            return None
        self._move(0)
        return _Sense("no_sense", residue=wanted - before, eom=True)

    def _space_blocks(self, count: int) -> "_Sense | None":
        """SPACE blocks: stops after a filemark going forward, before it going backward."""
        if count == 0:
            return None
        cart = self.cartridge
        if count > 0:
            mark = cart.filemark_at_or_after(self.pos)
            limit = mark if mark is not None else cart.object_count
            available = limit - self.pos
            if count <= available:
                self._move(self.pos + count)
                return None
            if mark is not None:
                self._move(mark + 1)
                return _Sense("no_sense", residue=count - available, filemark=True)
            cart.check_reachable(cart.object_count)
            self._move(cart.object_count)
            return _Sense("blank", residue=count - available)
        wanted = -count
        mark = cart.filemark_before(self.pos)
        floor = mark + 1 if mark is not None else 0
        available = self.pos - floor
        if wanted <= available:
            self._move(self.pos - wanted)
            return None
        if mark is not None:
            self._move(mark)
            return _Sense("no_sense", residue=wanted - available, filemark=True)
        self._move(0)
        return _Sense("no_sense", residue=wanted - available, eom=True)

    def _write_filemarks(self, count: int, immediate: bool) -> "_Sense | None":
        cart = self.cartridge
        if count < 0:
            return _Sense("illegal")
        if count == 0:  # a flush: synchronisation point, no motion (mhvtl write_filemarks(0))
            if self.timing and not immediate:
                self.timing.filemark(immediate=False)
            if self.durable:
                cart.sync()
            return None
        if self._worm_blocks_write():
            return _Sense("protect")
        start = cart.offset_of(self.pos)
        room = cart.capacity_bytes - start
        fits = max(0, min(count, room // 4))
        if fits:
            cart.write_filemarks(self.pos, fits)
            self.pos += fits
        if self.timing:
            self.timing.filemark(immediate)
        if self.durable and not immediate:
            cart.sync()
        if fits < count:
            return _Sense("overflow", residue=count - fits, eom=True)
        if cart.offset_of(self.pos) >= cart.capacity_bytes - cart.early_warning_bytes:
            return _Sense("no_sense", eom=True, early_warning=True)
        return None

    def _rewind(self) -> None:
        if self.timing:
            self.timing.rewind(self._fraction(self.pos))
        self.pos = 0

    def _erase(self, long: bool) -> "_Sense | None":
        cart = self.cartridge
        if cart.kind == "worm":
            return _Sense("protect")
        if self.pos != 0:
            return _Sense("illegal")  # mhvtl: ERASE only at BOT
        if self.timing:
            self.timing.locate(0.0, 1.0 if long else 0.0)
            if long:
                self.timing.rewind(1.0)
        cart.truncate(0)
        return None

    def _density_supported(self, code: int) -> bool:
        if code == 0:
            return True
        loadable = self.profile.read_write | self.profile.read_only
        return any(media_profile(name).density_code == code for name in loadable)

    def _seek(self, target: int) -> None:
        """MTSEEK (LOCATE to a logical object number); st then knows neither file nor block."""
        self._check_ready()
        cart = self.cartridge
        self.fileno = self.blkno = -1
        self.eof = ST_NOEOF
        if target < 0:
            raise _err(errno.EINVAL, f"bad position {target}")
        if target > cart.object_count:
            cart.check_reachable(cart.object_count)
            self._move(cart.object_count)
            raise _err(errno.EIO, f"{self.name}: locate past end of data (8/00/05)")
        self._move(target)
        if target == 0:
            self.fileno = self.blkno = 0

    # ------------------------------------------------------------------ status, position, close

    def _status(self) -> MtGet:
        ready = self.ready
        gstat = Gstat(0)
        if self.write_prot and self.cartridge is not None:
            gstat |= Gstat.WR_PROT
        if self.blkno == 0:
            gstat |= Gstat.BOT if self.fileno == 0 else Gstat.EOF
        if self.eof in (ST_EOM_OK, ST_EOM_ERROR):
            gstat |= Gstat.EOT
        elif self.eof >= ST_EOM_OK:
            gstat |= Gstat.EOD
        if ready == READY:
            gstat |= Gstat.ONLINE
        if ready == NO_TAPE:
            gstat |= Gstat.DR_OPEN
        if self.options.async_writes or (self.options.buffer_writes and self.block_size) \
                or self.drv_buffer:
            gstat |= Gstat.IM_REP_EN
        return MtGet(type=MT_ISSCSI2, resid=0, blksize=self.block_size, density=self.density,
                     gstat=gstat, erreg=0, fileno=self.fileno, blkno=self.blkno)

    def _tell(self) -> int:
        if self.ready != READY:
            raise _err(errno.EIO, self.name)
        if self.timing and self.rw == ST_WRITING:
            self.timing.flush()
        return self.pos

    def _close(self, device: "EmulatedTapeDevice") -> None:
        failure: OSError | None = None
        if self.ready == READY:
            if self.rw == ST_WRITING:
                marks = 2 if self.options.two_fm else 1
                sense = self._write_filemarks(marks, immediate=self.options.nowait_eof)
                if sense is None or (sense.eom and sense.kind == "no_sense"):
                    if self.fileno >= 0:
                        self.fileno += 1
                    self.blkno = 0
                    if self.options.two_fm:
                        self._move(self.pos - 1)
                    self.eof = ST_FM
                else:
                    failure = _err(errno.EIO, f"{self.name}: filemark on close failed")
            elif not device.rewind_on_close:
                self._close_reader()
            if device.rewind_on_close:
                self._rewind()
                self.fileno = self.blkno = 0
                self.eof = ST_NOEOF
            if self.durable:
                self.cartridge.sync()
        self.rw = ST_IDLE
        if self.cartridge is not None:
            self.cartridge.save()
        self._open = None
        if failure:
            raise failure

    def _close_reader(self) -> None:
        """st_flush for a reader on a non-rewinding node: BSD semantics keep the position (stepping
        back before a filemark the reader has not yet seen); SysV skips past the next filemark."""
        if not self.options.sysv or self.rw != ST_READING:
            if self.eof == ST_FM_HIT:
                self._move(self.pos - 1)  # cross_eof backwards: before the unread filemark
                self.eof = ST_NOEOF
            return
        if self.eof == ST_NOEOF:
            if self._space_filemarks(1) is not None:
                return  # no filemark ahead: st leaves the state as the failed space left it
        elif self.eof != ST_FM_HIT:
            return
        if self.fileno >= 0:
            self.fileno += 1
        self.blkno = 0
        self.eof = ST_FM

    # ------------------------------------------------------------------ persistence helpers

    def restore_position(self, pos: int, fileno: int, blkno: int, eof: int) -> None:
        """Put st's state back as a persisted drive left it (no motion charged)."""
        if self.cartridge is None or not self.threaded:
            return
        self.pos = max(0, min(pos, self.cartridge.object_count))
        self.fileno, self.blkno, self.eof = fileno, blkno, eof


@dataclass
class _Sense:
    """A SCSI outcome of a medium operation, reduced to what st looks at."""

    kind: str  # "no_sense" | "blank" | "illegal" | "protect" | "overflow"
    residue: int = 0
    eom: bool = False
    filemark: bool = False
    early_warning: bool = False

    @property
    def scsi(self) -> Sense:
        """KEY/ASC/ASCQ a drive returns for this outcome (mhvtl_scsi.h values; E5: EW = 0/00/02)."""
        if self.kind == "no_sense":
            if self.filemark:
                return Sense(0x0, 0x00, 0x01)
            return Sense(0x0, 0x00, 0x02) if self.early_warning else Sense(0x0, 0x00, 0x04)
        return {"blank": Sense(0x8, 0x00, 0x05), "illegal": Sense(0x5, 0x24, 0x00),
                "protect": Sense(0x7, 0x30, 0x0C), "overflow": Sense(0xD, 0x00, 0x02)}[self.kind]

    def describe(self) -> str:
        residue = f", residue {self.residue}" if self.residue else ""
        text = {
            "no_sense": "filemark or beginning of medium reached",
            "blank": "end of data reached (8/00/05)",
            "illegal": "illegal request (5/24/00)",
            "protect": "data protect (7/30/0C)",
            "overflow": "volume overflow (D/00/02)",
        }[self.kind]
        return text + residue


class EmulatedTapeDevice:
    """An open ``/dev/nstN`` (or ``/dev/stN``) of an :class:`EmulatedDrive`: the TapeDevice."""

    def __init__(self, drive: EmulatedDrive, writable: bool, rewinding_node: bool):
        self.drive = drive
        self.writable = writable
        self.rewinding_node = rewinding_node
        self.rewind_on_close = rewinding_node
        """st's ``rew_at_close``: cleared by MTOFFL/MTUNLOAD, set again by MTLOAD."""
        self.closed = False
        self.name = f"/dev/{'' if rewinding_node else 'n'}{drive.name.lstrip('n')}"

    def _live(self) -> EmulatedDrive:
        if self.closed:
            raise _err(errno.EBADF, f"{self.name} is closed")
        return self.drive

    def read(self, size: int) -> bytes:
        return self._live()._read(size)

    def readinto(self, buffer) -> int:
        return self._live()._readinto(buffer)

    def write(self, block) -> int:
        drive = self._live()
        if not self.writable:
            raise _err(errno.EBADF, f"{self.name} is open read-only")
        return drive._write(block)

    def read_blocks(self, buffer, block_size: int) -> int:
        """Emulator extension, not an st call: read consecutive ``block_size`` blocks into
        ``buffer`` as successive :meth:`readinto` calls would, stopping where ``readinto`` would
        do anything but stream; returns the number read (see ``EmulatedDrive._read_blocks``)."""
        return self._live()._read_blocks(buffer, block_size)

    def write_blocks(self, data, block_size: int) -> int:
        """Emulator extension, not an st call: write consecutive ``block_size`` blocks of
        ``data`` as successive :meth:`write` calls would, stopping where ``write`` would do
        anything but stream; returns the number written (see ``EmulatedDrive._write_blocks``)."""
        drive = self._live()
        if not self.writable:
            raise _err(errno.EBADF, f"{self.name} is open read-only")
        return drive._write_blocks(data, block_size)

    def mtop(self, op: MtOp | int, count: int = 1) -> None:
        self._live()._mtop(self, op, count)

    def status(self) -> MtGet:
        return self._live()._status()

    def tell(self) -> int:
        return self._live()._tell()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.drive._close(self)

    def __enter__(self) -> "EmulatedTapeDevice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmulatedTapeDevice({self.name}, {self.drive!r})"
