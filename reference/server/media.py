"""Media manager: pools, labels, loading through the changer, appending, spanning, wrong cartridges.

Every cartridge the server writes belongs to a **pool** (``Default`` unless the job says
otherwise) and to an MTF **media family** (family id + sequence, written in the TAPE header = the
label). A cartridge the catalog does not know yet is **scratch**: any pool may label it. Writing a
data set:

1. use the cartridge already in the drive if it is an ``append`` cartridge of the pool, else an
   ``append`` cartridge of the pool from the library, else a blank/scratch one (labelled now);
2. after every load the TAPE header is read back and compared with the catalog (family id,
   sequence): another family, a foreign or blank tape where data is expected, or data where the
   catalog expects a blank → :class:`WrongCartridgeError`, nothing written;
3. a write-protected cartridge (EROFS at open) is skipped with a warning;
4. on early warning the media writer calls :meth:`WriteMount.next_medium`: the full cartridge is
   unloaded and marked ``full``, the next blank cartridge is loaded, checked, labelled as the next
   sequence of the same family, and writing goes on.

No usable cartridge → :class:`NoUsableCartridgeError` before anything is written. Devices are
reached only through the :class:`MediaChanger` protocol and a :class:`DriveSet` (drive number →
``TapeDevice``), so the emulated library and ``mtx`` + ``/dev/nstN`` are interchangeable.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import random
import struct
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from reference.errors import MailtapeError, NotFoundError
from reference.format import mtf_structs as m
from reference.format.media import MediaFullError, MediaIdentity, MediaWriter, media_label
from reference.protocols.changer import MediaChanger
from reference.protocols.tape import Gstat, MtOp, TapeDevice
from reference.server.catalog import Catalog
from reference.server.devices import DriveSet
from reference.server.tapeview import read_first_block

log = logging.getLogger("mailtape.server.media")

DEFAULT_POOL = "Default"
SCRATCH_POOL = "Scratch"
DEFAULT_BLOCK_SIZE = 64 * 1024
_FILE_FIXED_SIZE = m.FileFixed.sizeof()  # construct's sizeof walks the struct: compute it once
_FILE_WORD = int.from_bytes(b"FILE", "little")


class MediaError(MailtapeError):
    """A media-management failure (wrong cartridge, no cartridge, changer refused...)."""


class WrongCartridgeError(MediaError):
    """The cartridge in the drive is not the one the catalog expects; nothing was written."""


class NoUsableCartridgeError(MediaError):
    """No cartridge of the pool (nor a scratch one) can take data."""


class MediaOverwrittenError(MediaError):
    """The catalog points at data on a cartridge that has since been relabelled or overwritten."""


@dataclass(frozen=True)
class TapeLabel:
    """What a cartridge's TAPE header (the MTF media header) says."""

    family_id: int
    sequence: int
    media_name: str
    label: str
    software: str
    block_size: int
    flb: int
    continuation: bool

    @property
    def pool(self) -> str:
        return self.media_name or DEFAULT_POOL


def parse_label(block: bytes) -> TapeLabel | None:
    """The TAPE header of block 0, or None if block 0 is not an MTF TAPE DBLK (a foreign tape)."""
    if len(block) < 94 or block[:4] != b"TAPE" or not m.header_ok(block):
        return None
    stype = block[48]
    t = m.TapeFixed.parse(block[52:94])
    attr = struct.unpack_from("<I", block, 4)[0]
    return TapeLabel(t.family_id, t.sequence, m.read_string(block, t.media_name, stype),
                     m.read_string(block, t.media_label, stype), m.read_string(block, t.software_name, stype),
                     len(block), t.flb_size, bool(attr & m.MTF_CONTINUATION))


def describe_label(label: TapeLabel | None, blank: bool) -> str:
    if blank:
        return "a blank tape"
    if label is None:
        return "a foreign (non-MTF) tape"
    return f"media family {label.family_id:08X} sequence {label.sequence}"


@dataclass
class WriteMount:
    """A cartridge ready to take one data set: the media writer plus what the catalog needs."""

    drive: int
    barcode: str
    pool: str
    family_id: int
    writer: MediaWriter
    device: "RecordingDevice"
    first_file: int
    warnings: list[str] = field(default_factory=list)
    devices: list["RecordingDevice"] = field(default_factory=list)
    """Every cartridge the set touched, in order (one per sequence)."""


class RecordingDevice:
    """A TapeDevice wrapper that notes where each FILE DBLK landed (cartridge, tape file, block).

    The media writer only reports set-level placement; the catalog needs every object's
    cartridge and block. The wrapper sees each physical block as it is written and looks at its
    FLB-aligned offsets for a FILE header with a valid header checksum (continuation FILEs carry
    the MTF_CONTINUATION bit and the object's file id). Positions are counted, not asked for.
    """

    def __init__(self, device: TapeDevice, barcode: str, fileno: int, flb: int):
        self.device = device
        self.name = device.name
        self.barcode = barcode
        self.fileno = fileno
        self.flb = flb
        self.pos = device.tell()
        self.bytes = 0
        self.past_early_warning = False
        """The drive reported early warning (ENOSPC, or EOT in MTIOCGET at close): no more appends."""
        self.files_seen: list[tuple[int, int, bool, int, int]] = []
        """(fla, file_id, continuation, tape_file, block) for every FILE header written."""

    def write(self, block) -> int:
        at = self.pos
        try:
            n = self.device.write(block)
        except OSError as err:
            if err.errno == errno.ENOSPC:
                self.past_early_warning = True
            raise
        self.pos += 1
        self.bytes += n
        self._note_files(memoryview(block).cast("B"), len(block), at)
        return n

    def write_blocks(self, data, block_size: int) -> int:
        """Several blocks in one call when the device can (the emulated drive's
        ``write_blocks``); 0 when it cannot, and the caller writes the next block with
        :meth:`write`. Positions and FILE headers are noted exactly as per-block writes would."""
        inner = getattr(self.device, "write_blocks", None)
        if inner is None:
            return 0
        at = self.pos
        count = inner(data, block_size)
        if count:
            self.pos += count
            self.bytes += count * block_size
            self._note_files(memoryview(data).cast("B")[:count * block_size], block_size, at)
        return count

    def _note_files(self, view, block_size: int, first_block: int) -> None:
        """Record every FILE header in ``view`` (whole blocks of ``block_size``, the first at
        ``first_block``)."""
        for i in self._file_candidates(view, block_size):
            if m.header_ok(view, i):
                _k, attr, _fe, _size, fla, _cbid, _st, _c = m.header_fields(view, i)
                self.files_seen.append((fla, m.file_id_of(view, i), bool(attr & m.MTF_CONTINUATION), self.fileno,
                                        first_block + i // block_size))

    def _file_candidates(self, view, block_size: int) -> list[int]:
        """FLB-aligned offsets (DBLKs start on FLB boundaries) holding the tag ``FILE`` with room
        for a FILE header inside their block. Vectorised: reads one 32-bit word per FLB, in place."""
        flb = self.flb
        room = m.DB_HDR_SIZE + _FILE_FIXED_SIZE
        last = len(view) - room  # the last offset a FILE header fits at
        if last < 0:
            return []
        if flb % 4:
            found = [i for i in range(0, last + 1, flb) if view[i:i + 4] == b"FILE"]
        else:
            words = np.frombuffer(view, dtype="<u4", count=last // 4 + 1)[::flb // 4]
            found = [int(k) * flb for k in np.flatnonzero(words == _FILE_WORD)]
        if len(view) > block_size:  # several blocks: a header must fit in the block it starts in
            found = [i for i in found if i % block_size <= block_size - room]
        return found

    def mtop(self, op, count: int = 1) -> None:
        filemark = op in (MtOp.MTWEOF, MtOp.MTWEOFI)
        if filemark:
            self._note_early_warning()  # st clears EOT once the filemark is written
        self.device.mtop(op, count)
        if filemark:
            self.pos += count
            self.fileno += count
        elif op != MtOp.MTNOP:
            self.pos = self.device.tell() if op != MtOp.MTOFFL else -1

    def read(self, size: int) -> bytes:
        return self.device.read(size)

    def readinto(self, buffer) -> int:
        return self.device.readinto(buffer)

    def status(self):
        return self.device.status()

    def tell(self) -> int:
        return self.device.tell()

    def _note_early_warning(self) -> None:
        try:
            if self.device.status().has(Gstat.EOT):
                self.past_early_warning = True
        except OSError:
            pass  # unloaded already (MTOFFL at a medium change)

    def close(self) -> None:
        self._note_early_warning()
        self.device.close()


class MediaManager:
    """Pools, labels, loads and spanning for one library and its drives (see module docstring)."""

    def __init__(self, catalog: Catalog, changer: MediaChanger, drives: DriveSet, *,
                 block_size: int = DEFAULT_BLOCK_SIZE, flb: int = m.DEFAULT_FLB,
                 rng: random.Random | None = None, now: Callable[[], float] | None = None):
        import time

        self.catalog = catalog
        self.changer = changer
        self.drives = drives
        self.block_size = block_size
        self.flb = flb
        self.rng = rng or random.Random()
        self.now = now or time.time
        self.reserved: dict[str, int] = {}
        """barcode → drive of cartridges a running job holds."""
        self.protected: set[str] = set()
        """Cartridges found write-protected (skipped for writing until the next run)."""
        self.lock = threading.RLock()

    # -- inventory ----------------------------------------------------------------------------

    def slots(self) -> dict[str, int]:
        """barcode → storage slot of every labelled cartridge in the library's slots."""
        return {e.barcode: e.number for e in self.changer.status().slots if e.full and e.barcode}

    def in_drive(self, drive: int) -> str | None:
        element = self.changer.status().drive(drive)
        return element.barcode if element.full else None

    def library_barcodes(self) -> list[str]:
        status = self.changer.status()
        found = [e.barcode for e in status.slots if e.full and e.barcode]
        found += [e.barcode for e in status.drives if e.full and e.barcode]
        return sorted(b for b in found if not b.upper().startswith("CLN"))

    def ensure_known(self, barcode: str) -> dict:
        """The catalog row of ``barcode``; a cartridge seen for the first time is scratch."""
        row = self.catalog.medium(barcode)
        if row is None:
            self.catalog.add_medium(barcode, SCRATCH_POOL)
            row = self.catalog.medium(barcode)
        return row

    # -- moves --------------------------------------------------------------------------------

    def load(self, barcode: str, drive: int) -> None:
        """Put ``barcode`` into ``drive`` (unloading whatever is there first)."""
        with self.lock:
            held = self.in_drive(drive)
            if held == barcode:
                return
            if held is not None:
                self.changer.unload(None, drive)
            for element in self.changer.status().drives:
                if element.full and element.barcode == barcode and element.number != drive:
                    if self.reserved.get(barcode) not in (None, drive):
                        raise MediaError(f"cartridge {barcode} is in use by a running job in drive {element.number}")
                    self.changer.unload(None, element.number)  # idle in another drive: fetch it
            slot = self.slots().get(barcode)
            if slot is None:
                where = self._where(barcode)
                raise NotFoundError(f"cartridge {barcode} is not in a slot of {self.changer.name}{where}")
            self.changer.load(slot, drive)

    def unload(self, drive: int) -> None:
        with self.lock:
            if self.in_drive(drive) is not None:
                self.changer.unload(None, drive)

    def _where(self, barcode: str) -> str:
        for element in self.changer.status().drives:
            if element.barcode == barcode:
                return f" (it is in drive {element.number})"
        return " (is it outside the library?)"

    # -- labels -------------------------------------------------------------------------------

    def read_label(self, device: TapeDevice) -> tuple[TapeLabel | None, bool]:
        """(label, blank) of the loaded cartridge; leaves it rewound."""
        block = read_first_block(device)
        device.mtop(MtOp.MTREW, 1)
        if block is None:
            return None, True
        return parse_label(block), False

    def new_family_id(self) -> int:
        used = {row["family_id"] for row in self.catalog.media() if row["family_id"] is not None}
        while True:
            family = self.rng.getrandbits(32)
            if family and family not in used:
                return family

    def identity(self, barcode: str, pool: str, family_id: int) -> MediaIdentity:
        date = dt.datetime.fromtimestamp(self.now(), tz=dt.timezone.utc).replace(tzinfo=None, microsecond=0)
        return MediaIdentity(family_id, media_name=pool, label=media_label(barcode, date, family_id), date=date)

    def label(self, barcode: str, pool: str, drive: int, *, force: bool = False) -> int:
        """Write a new TAPE header (a new family, sequence 1) on ``barcode``; returns the family id.

        Refuses a cartridge that holds data unless ``force`` (its data sets become expired).
        """
        with self.lock:
            self.ensure_known(barcode)
            self.load(barcode, drive)
            try:
                device = self._open_write(barcode, drive)
            except _Protected:
                raise MediaError(f"cartridge {barcode} is write-protected; it cannot be labelled") from None
            try:
                label, blank = self.read_label(device)
                if not blank and not force:
                    raise WrongCartridgeError(
                        f"cartridge {barcode} is not blank (it holds {describe_label(label, blank)}); "
                        "use --force to overwrite it")
                writer = self._new_family(device, barcode, pool)
            finally:
                device.close()
            return writer.identity.family_id

    def _new_family(self, device: TapeDevice, barcode: str, pool: str) -> MediaWriter:
        """Write the TAPE header of a new media family (sequence 1, first set 1); record the label."""
        family = self.new_family_id()
        writer = MediaWriter.for_tape(device, block_size=self.block_size, flb=self.flb,
                                      identity=self.identity(barcode, pool, family),
                                      now=self._now_dt, rng=self.rng)
        writer.write_media_header()
        self.catalog.label_medium(barcode, pool, family, 1, self.now())
        return writer

    # -- writing ------------------------------------------------------------------------------

    def _open_write(self, barcode: str, drive: int) -> TapeDevice:
        try:
            return self.drives.open(drive, write=True)
        except OSError as err:
            if err.errno in (errno.EROFS, errno.EACCES):
                raise _Protected(barcode) from None
            raise MediaError(f"cannot open {self.drives.describe(drive)} holding {barcode}: "
                             f"{err.strerror or err}") from None

    def candidates(self, pool: str, drive: int) -> tuple[list[str], list[str]]:
        """(append cartridges of ``pool``, blank cartridges usable by it) that are free to use."""
        here = set(self.library_barcodes())
        for barcode in here:
            self.ensure_known(barcode)
        busy = {b for b, d in self.reserved.items() if d != drive}
        rows = [r for r in self.catalog.media() if r["barcode"] in here and r["barcode"] not in busy
                and r["barcode"] not in self.protected]
        appendable = [r["barcode"] for r in sorted(rows, key=lambda r: (r["labeled_at"] or 0, r["barcode"]))
                      if r["status"] == "append" and r["pool"] == pool]
        held = self.in_drive(drive)
        if held in appendable:  # no robot move if the drive already holds a usable cartridge
            appendable.remove(held)
            appendable.insert(0, held)
        blank = [r["barcode"] for r in rows if r["status"] == "blank" and r["pool"] in (pool, SCRATCH_POOL)]
        return appendable, blank

    def mount_for_write(self, pool: str, drive: int, *, next_set_number: Callable[[int], int]) -> WriteMount:
        """Load and check a cartridge of ``pool`` in ``drive``, positioned where the next set goes."""
        with self.lock:
            warnings: list[str] = []
            appendable, blank = self.candidates(pool, drive)
            for barcode in appendable + blank:
                try:
                    if barcode in appendable:
                        mount = self._mount_append(barcode, pool, drive, next_set_number)
                    else:
                        mount = self._mount_blank(barcode, pool, drive)
                except _Protected:
                    warnings.append(self._skip_protected(barcode, drive))
                    continue
                mount.warnings = warnings
                self.reserved[barcode] = drive
                return mount
            raise NoUsableCartridgeError(self._why_none(pool, warnings))

    def _why_none(self, pool: str, warnings: list[str]) -> str:
        rows = [r for r in self.catalog.media() if r["barcode"] in set(self.library_barcodes())]
        full = sum(1 for r in rows if r["status"] == "full" and r["pool"] == pool)
        busy = sum(1 for b in self.reserved)
        other = sum(1 for r in rows if r["status"] == "append" and r["pool"] != pool)
        return (f"no usable cartridge for pool '{pool}' in {self.changer.name}: {full} full, "
                f"{len(self.protected)} write-protected, {busy} in use by other jobs, {other} belong to other "
                "pools, no blank or scratch cartridge left; nothing was written")

    def _skip_protected(self, barcode: str, drive: int) -> str:
        self.protected.add(barcode)
        warning = f"cartridge {barcode} is write-protected: skipped for writing"
        log.warning(warning)
        self.unload(drive)
        return warning

    def _mount_append(self, barcode, pool, drive, next_set_number) -> WriteMount:
        row = self.catalog.medium(barcode)
        self.load(barcode, drive)
        device = self._open_write(barcode, drive)
        try:
            label, blank = self.read_label(device)
            self._check_expected(barcode, row, label, blank)
            writer = MediaWriter.append_to_tape(device, now=self._now_dt, rng=self.rng)
            fileno = device.status().fileno
            if fileno < 0:
                fileno = row["next_file"]
            writer.next_set_number = max(writer.next_set_number, next_set_number(row["family_id"]))
        except BaseException:
            device.close()
            raise
        return self._mount(drive, barcode, pool, row["family_id"], writer, device, fileno)

    def _mount_blank(self, barcode, pool, drive) -> WriteMount:
        self.load(barcode, drive)
        device = self._open_write(barcode, drive)
        try:
            label, blank = self.read_label(device)
            if not blank:
                raise WrongCartridgeError(
                    f"cartridge {barcode} in {self.drives.describe(drive)} should be blank but holds "
                    f"{describe_label(label, blank)}; nothing was written (relabel it with "
                    f"'mailtape media label SITE {barcode} --force' or rebuild the catalog)")
            writer = self._new_family(device, barcode, pool)
        except BaseException:
            device.close()
            raise
        return self._mount(drive, barcode, pool, writer.identity.family_id, writer, device, 1)

    def _mount(self, drive, barcode, pool, family, writer, device, fileno) -> WriteMount:
        recording = RecordingDevice(device, barcode, fileno, writer.flb)
        writer.target.device = recording
        mount = WriteMount(drive, barcode, pool, family, writer, recording, fileno)
        mount.devices.append(recording)
        writer.next_medium = lambda sequence: self._next_medium(mount, sequence)
        return mount

    def _check_expected(self, barcode: str, row: dict, label: TapeLabel | None, blank: bool) -> None:
        if label is None or blank or (label.family_id, label.sequence) != (row["family_id"], row["sequence"]):
            raise WrongCartridgeError(
                f"wrong cartridge: {barcode} should carry media family {row['family_id']:08X} sequence "
                f"{row['sequence']} but holds {describe_label(label, blank)}; nothing was written")

    def _now_dt(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now(), tz=dt.timezone.utc).replace(tzinfo=None, microsecond=0)

    def _next_medium(self, mount: WriteMount, sequence: int) -> TapeDevice:
        """Early warning on the current cartridge: the MediaWriter's next-medium callback."""
        with self.lock:
            old = mount.device
            try:
                old.close()
            except OSError as err:
                log.warning("closing %s after early warning: %s", old.name, err)
            self.catalog.update_medium(old.barcode, status="full", next_file=old.fileno,
                                       bytes_written=self._written(old.barcode) + old.bytes)
            self.unload(mount.drive)
            _append, blank = self.candidates(mount.pool, mount.drive)
            for barcode in blank:
                try:
                    self.load(barcode, mount.drive)
                    device = self._open_write(barcode, mount.drive)
                except _Protected:
                    mount.warnings.append(self._skip_protected(barcode, mount.drive))
                    continue
                label, is_blank = self.read_label(device)
                if not is_blank:
                    device.close()
                    raise WrongCartridgeError(
                        f"cartridge {barcode} loaded to continue family {mount.family_id:08X} should be blank "
                        f"but holds {describe_label(label, is_blank)}; the data set was not completed")
                self.catalog.label_medium(barcode, mount.pool, mount.family_id, sequence, self.now())
                self.reserved[barcode] = mount.drive
                recording = RecordingDevice(device, barcode, 0, mount.writer.flb)
                mount.device = recording
                mount.devices.append(recording)
                mount.barcode = barcode
                log.info("data set continues on %s (family %08X sequence %d)", barcode, mount.family_id, sequence)
                return recording
            raise NoUsableCartridgeError(
                f"early warning on {old.barcode} and no blank cartridge to continue media family "
                f"{mount.family_id:08X} on; the data set was not completed")

    def _written(self, barcode: str) -> int:
        row = self.catalog.medium(barcode)
        return row["bytes_written"] if row else 0

    def release(self, mount: WriteMount, *, closed: bool = True, error: BaseException | None = None) -> None:
        """After the set: record positions and sizes of the last cartridge, free the reservation.

        A cartridge that reached early warning is marked ``full`` (Bacula does the same): the next
        set starts on another cartridge instead of failing in the last metres of this one.
        """
        with self.lock:
            last = mount.device
            if not closed:
                try:
                    last.close()
                except OSError as err:
                    log.warning("closing %s: %s", last.name, err)
            out_of_space = isinstance(error, MediaFullError) or (
                isinstance(error, OSError) and error.errno == errno.ENOSPC)
            row = self.catalog.medium(last.barcode)
            if row is not None and row["status"] != "full":
                full = last.past_early_warning or out_of_space
                self.catalog.update_medium(last.barcode, next_file=last.fileno,
                                           bytes_written=row["bytes_written"] + last.bytes,
                                           status="full" if full else row["status"])
            for device in mount.devices:
                self.reserved.pop(device.barcode, None)

    # -- reading ------------------------------------------------------------------------------

    def mount_for_read(self, barcode: str, drive: int, *, check: bool = True
                       ) -> tuple[TapeDevice, TapeLabel | None, bool]:
        """Load ``barcode``, open it read-only; returns (device, label, blank).

        With ``check`` the cartridge must still carry what the catalog says and be one of ours;
        without (catalog rebuild) any cartridge is returned as it is.
        """
        with self.lock:
            row = self.catalog.medium(barcode) if check else None
            self.load(barcode, drive)
            try:
                device = self.drives.open(drive, write=False)
            except OSError as err:
                raise MediaError(f"cannot open {self.drives.describe(drive)} holding {barcode}: "
                                 f"{err.strerror or err}") from None
            label, blank = self.read_label(device)
            if not check:
                return device, label, blank
            if row is not None and row["family_id"] is not None and (
                    label is None or blank or (label.family_id, label.sequence) != (row["family_id"], row["sequence"])):
                device.close()
                raise MediaOverwrittenError(
                    f"cartridge {barcode} no longer holds what the catalog says (expected media family "
                    f"{row['family_id']:08X} sequence {row['sequence']}, found {describe_label(label, blank)}): "
                    "it was overwritten or relabelled")
            if label is None:
                device.close()
                raise WrongCartridgeError(f"cartridge {barcode} holds {describe_label(label, blank)}")
            return device, label, blank


class _Protected(Exception):
    def __init__(self, barcode: str):
        self.barcode = barcode
