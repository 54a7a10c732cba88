"""The emulated tape library: an SMC media changer over a library folder.

:class:`EmulatedLibrary` implements :class:`reference.protocols.changer.MediaChanger` the way
``mtx`` drives a real library (spec tape-drive.md §6): ``load``/``unload``/``transfer`` make mtx's
own checks first (same refusals, same messages), then a SCSI-level :meth:`move_medium` applies the
library's rules and sense codes (mhvtl ``smc.c``): source empty 5/3B/0E, destination full 5/3B/0D,
bad element address 5/21/01, mail slot open 2/3A/02, PREVENT in force 5/53/02, drive still
threaded 2/3A/00 unless the profile auto-ejects, media the drive refuses 4/04/03, cleaning
cartridge 2/30/03. Operators use the mail slot (MAP) through :meth:`open_map`,
:meth:`operator_insert`, :meth:`operator_remove` and :meth:`close_map`.

State lives in ``LIBRARY/library.json`` (:mod:`emulators.tape.library_state`); drives are reached
through :class:`~emulators.tape.library_drives.DrivePort` objects, so a drive can be an in-process
emulated drive or the persisted ``LIBRARY/drive<N>.json`` the ``mt`` command uses.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

from emulators.clock import Clock, Timeline
from emulators.tape.library_drives import (
    DrivePort,
    DriveRefusedMedia,
    as_port,
    cartridge_facts,
    drive_generation_for,
    persisted_port,
)
from emulators.tape.library_state import DriveBay, LibraryProfile, LibraryState, LibraryStore, Slot
from reference.drivers.mtx import render_mtx_status
from reference.protocols.changer import ChangerError, ChangerStatus, Element, ElementType, Sense

if TYPE_CHECKING:
    from emulators.tape.drive import EmulatedDrive

SOURCE_EMPTY = Sense(0x5, 0x3B, 0x0E)
DESTINATION_FULL = Sense(0x5, 0x3B, 0x0D)
INVALID_ELEMENT_ADDRESS = Sense(0x5, 0x21, 0x01)
MAP_OPEN = Sense(0x2, 0x3A, 0x02)
MEDIUM_REMOVAL_PREVENTED = Sense(0x5, 0x53, 0x02)
DRIVE_NOT_UNLOADED = Sense(0x2, 0x3A, 0x00)
MANUAL_INTERVENTION_REQUIRED = Sense(0x4, 0x04, 0x03)
CLEANING_CARTRIDGE_INSTALLED = Sense(0x2, 0x30, 0x03)
IMPORT_EXPORT_ACCESSED = Sense(0x6, 0x28, 0x01)


@dataclass(frozen=True)
class _Place:
    """One element resolved from a SCSI address: kind 'drive' or 'slot', mtx number."""

    kind: str
    number: int
    address: int


class EmulatedLibrary:
    """A tape library folder driven like a SCSI changer; see the module docstring."""

    name: str = "emulated-library"

    def __init__(
        self,
        root: str | os.PathLike[str],
        clock: Clock | None = None,
        drives: Mapping[int, "DrivePort | EmulatedDrive"] | None = None,
        device_name: str | None = None,
    ):
        self.root = Path(root)
        self.store = LibraryStore(self.root)
        self.clock = clock
        self._robot = Timeline(clock) if clock is not None else None
        self._ports = {number: as_port(drive) for number, drive in (drives or {}).items()}
        self.device_name = device_name or str(root)
        self.name = f"emulated-library:{self.root}"
        self._depth = 0
        self._thread_lock = threading.RLock()
        self.state = self.store.load()

    # --- state plumbing ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[LibraryState]:
        """Lock, re-read library.json (another process may have moved tapes), yield, save.

        Nested transactions (``load`` calling ``move_medium``) share the outer one; nothing is
        saved if the body raises, so a refused command leaves library.json untouched.
        """
        with self._thread_lock:  # re-entrant: nested calls from this thread pass straight in
            if self._depth:
                self._depth += 1
                try:
                    yield self.state
                finally:
                    self._depth -= 1
                return
            with self.store.locked():
                self.state = self.store.load()
                self._depth = 1
                try:
                    yield self.state
                    self.store.save(self.state)
                except BaseException:
                    self.state = self.store.load()
                    raise
                finally:
                    self._depth = 0

    def _refresh(self) -> LibraryState:
        with self._thread_lock:
            if self._depth:
                return self.state
            with self.store.locked():
                self.state = self.store.load()
            return self.state

    @property
    def profile(self) -> LibraryProfile:
        return self.state.profile

    def cartridge_path(self, name: str) -> Path:
        """The cartridge image for ``name`` (the drive emulator's SIMH .tap; sidecar beside it)."""
        return self.store.cartridge_dir / f"{name}.tap"

    def drive_port(self, number: int) -> DrivePort:
        if number not in self._ports:
            self._ports[number] = persisted_port(self.root, number, self.clock,
                                                 drive_generation_for(self.state.media))
        return self._ports[number]

    def _charge(self, seconds: float) -> None:
        """Robot time: one picker, so moves booked by concurrent callers queue up (Timeline)."""
        if self._robot is not None and seconds > 0:
            self.clock.sleep_until(self._robot.reserve(seconds))

    # --- element addressing (SCSI) ----------------------------------------------------------

    def drive_address(self, number: int) -> int:
        return self.profile.drive_address_base + number

    def slot_address(self, number: int) -> int:
        slot = self.state.slots[number - 1]
        if slot.import_export:
            return self.profile.import_export_address_base + number - 1 - self.state.storage_count
        return self.profile.storage_address_base + number - 1

    def _resolve(self, address: int) -> _Place | None:
        for drive in self.state.drives:
            if self.drive_address(drive.number) == address:
                return _Place("drive", drive.number, address)
        for slot in self.state.slots:
            if self.slot_address(slot.number) == address:
                return _Place("slot", slot.number, address)
        return None

    # --- MediaChanger -----------------------------------------------------------------------

    def status(self) -> ChangerStatus:
        """READ ELEMENT STATUS with volume tags (none if the profile has no barcode reader)."""
        state = self._refresh()
        reader = state.profile.barcode_reader
        drives = tuple(
            Element(ElementType.DRIVE, d.number, d.cartridge is not None,
                    d.tag if reader and d.cartridge else None,
                    d.source if d.cartridge else None)
            for d in state.drives
        )
        slots = tuple(
            Element(ElementType.IMPORT_EXPORT if s.import_export else ElementType.STORAGE, s.number,
                    s.cartridge is not None, s.tag if reader and s.cartridge else None)
            for s in state.slots
        )
        return ChangerStatus(drives=drives, slots=slots)

    def render_mtx_status(self, device: str | None = None) -> str:
        return render_mtx_status(self.status(), device or self.device_name)

    def load(self, slot: int, drive: int = 0) -> None:
        """``mtx load SLOT DRIVE``: mtx's own checks, then MOVE MEDIUM slot -> drive."""
        with self._transaction() as state:
            if not 1 <= slot <= len(state.slots):
                raise ChangerError(
                    f"Invalid <storage-element-number> argument '{slot}' to 'load' command",
                    INVALID_ELEMENT_ADDRESS)
            if not 0 <= drive < len(state.drives):
                raise ChangerError(f"illegal <drive-number> argument '{drive}' to 'load' command",
                                   INVALID_ELEMENT_ADDRESS)
            bay = state.drives[drive]
            if bay.cartridge is not None:
                raise ChangerError(
                    f"Drive {drive} Full (Storage Element {bay.source or 0} loaded)", DESTINATION_FULL)
            self.move_medium(self.slot_address(slot), self.drive_address(drive))

    def unload(self, slot: int | None = None, drive: int = 0) -> None:
        """``mtx unload [SLOT] [DRIVE]``: back to the source slot unless ``slot`` is given."""
        with self._transaction() as state:
            if not 0 <= drive < len(state.drives):
                raise ChangerError(f"illegal <drive-number> argument '{drive}' to 'unload' command",
                                   INVALID_ELEMENT_ADDRESS)
            bay = state.drives[drive]
            if slot is None:
                if bay.source is None:
                    raise ChangerError(f"No Source for tape in drive {drive}!")
                slot = bay.source
            if not 1 <= slot <= len(state.slots):
                raise ChangerError(
                    f"illegal <storage-element-number> argument '{slot}' to 'unload' command",
                    INVALID_ELEMENT_ADDRESS)
            if bay.cartridge is None:
                raise ChangerError(f"Data Transfer Element {drive} is Empty", SOURCE_EMPTY)
            if state.slots[slot - 1].cartridge is not None:
                raise ChangerError(f"Storage Element {slot} is Already Full", DESTINATION_FULL)
            self.move_medium(self.drive_address(drive), self.slot_address(slot))

    def transfer(self, source: int, destination: int) -> None:
        """``mtx transfer SRC DST`` between storage (or import/export) elements."""
        with self._transaction() as state:
            if source < 1:
                raise ChangerError("No source specified", INVALID_ELEMENT_ADDRESS)
            if destination < 1:
                raise ChangerError("No destination specified", INVALID_ELEMENT_ADDRESS)
            if source > len(state.slots):
                raise ChangerError("Invalid source", INVALID_ELEMENT_ADDRESS)
            if destination > len(state.slots):
                raise ChangerError("Invalid destination", INVALID_ELEMENT_ADDRESS)
            self.move_medium(self.slot_address(source), self.slot_address(destination))

    def exchange(self, first: int, second: int) -> None:
        """``mtx exchange A B``: swap two storage elements' cartridges (two robot moves)."""
        with self._transaction() as state:
            for number in (first, second):
                if not 1 <= number <= len(state.slots):
                    raise ChangerError("Invalid source" if number == first else "Invalid destination",
                                       INVALID_ELEMENT_ADDRESS)
            a, b = state.slots[first - 1], state.slots[second - 1]
            for slot in (a, b):
                self._check_map_access(slot, self.slot_address(first), self.slot_address(second),
                                       "EXCHANGE")
            if a.cartridge is None:
                raise ChangerError(f"Source Element Address {self.slot_address(first)} is Empty",
                                   SOURCE_EMPTY)
            if b.cartridge is None:
                raise ChangerError(
                    f"Source Element Address {self.slot_address(second)} is Empty", SOURCE_EMPTY)
            a.cartridge, b.cartridge = b.cartridge, a.cartridge
            a.tag, b.tag = b.tag, a.tag
            a.operator_placed = b.operator_placed = False
            self._charge(2 * self.profile.robot_move_seconds)

    def inventory(self) -> None:
        """INITIALIZE ELEMENT STATUS: ask every drive what it holds, re-read every label.

        The drives' own state wins over library.json (it is written first in every move), so an
        interrupted move is repaired here: a cartridge a drive holds is taken off the element that
        still claims it; one the library placed in a drive that is now empty goes back to its
        source slot (or the first free storage slot, else the shelf). Cartridges whose image has
        disappeared vanish from their element.
        """
        with self._transaction() as state:
            self._reconcile_drives(state)
            for element in [*state.drives, *state.slots]:
                if element.cartridge is None:
                    continue
                path = self.cartridge_path(element.cartridge)
                if not path.exists():
                    element.cartridge = element.tag = None
                    if isinstance(element, DriveBay):
                        element.source = None
                    continue
                element.tag = cartridge_facts(path).barcode if state.profile.barcode_reader else None
            self._charge(self.profile.inventory_seconds)

    def _reconcile_drives(self, state: LibraryState) -> None:
        orphans: list[tuple[str, int | None]] = []
        for bay in state.drives:
            held = self.drive_port(bay.number).holding()
            if held == bay.cartridge:
                continue
            if bay.cartridge is not None:
                orphans.append((bay.cartridge, bay.source))
            bay.cartridge, bay.tag, bay.source = held, None, None
            if held is not None:
                for slot in state.slots:
                    if slot.cartridge == held:
                        slot.cartridge, slot.tag, slot.operator_placed = None, None, False
                        bay.source = slot.number
                orphans = [(name, source) for name, source in orphans if name != held]
        in_drives = {bay.cartridge for bay in state.drives}
        for name, source in orphans:
            if name in in_drives or any(slot.cartridge == name for slot in state.slots):
                continue
            free = [s for s in state.slots if s.cartridge is None and not s.import_export]
            preferred = [s for s in free if s.number == source]
            target = (preferred or free or [None])[0]
            if target is not None:
                target.cartridge = name

    # --- SCSI MOVE MEDIUM -------------------------------------------------------------------

    def move_medium(self, source: int, destination: int, transport: int = 0) -> None:
        """MOVE MEDIUM (0xA5) between SCSI element addresses, with the library's sense codes."""
        with self._transaction() as state:
            failed = f"MOVE MEDIUM from Element Address {source} to {destination} Failed"
            if transport not in (0, self.profile.transport_address):
                raise ChangerError(failed, INVALID_ELEMENT_ADDRESS)
            src, dst = self._resolve(source), self._resolve(destination)
            if src is None or dst is None:
                raise ChangerError(failed, INVALID_ELEMENT_ADDRESS)
            src_element = state.drives[src.number] if src.kind == "drive" else state.slots[src.number - 1]
            dst_element = state.drives[dst.number] if dst.kind == "drive" else state.slots[dst.number - 1]
            for place, element in ((src, src_element), (dst, dst_element)):
                if place.kind == "slot":
                    self._check_map_access(element, source, destination, "MOVE")
            if src_element.cartridge is None:
                raise ChangerError(f"Source Element Address {source} is Empty", SOURCE_EMPTY)
            if dst_element.cartridge is not None and source != destination:
                raise ChangerError(f"Destination Element Address {destination} is Already Full",
                                   DESTINATION_FULL)
            if source == destination:
                return
            name, tag = src_element.cartridge, src_element.tag
            if src.kind == "drive":
                self._take_from_drive(src.number)
            if dst.kind == "drive":
                self._put_into_drive(dst.number, name, failed)
            src_element.cartridge, src_element.tag = None, None
            if src.kind == "drive":
                state.drives[src.number].source = None
            else:
                state.slots[src.number - 1].operator_placed = False
            dst_element.cartridge, dst_element.tag = name, tag
            if dst.kind == "drive":
                state.drives[dst.number].source = src.number if src.kind == "slot" else None
            self._charge(self.profile.robot_move_seconds)

    def _check_map_access(self, slot: Slot, source: int, destination: int, verb: str) -> None:
        if slot.import_export and self.state.map_open:
            raise ChangerError(
                f"{verb} MEDIUM from Element Address {source} to {destination} Failed "
                f"(import/export element {slot.number} is open)", MAP_OPEN)

    def _take_from_drive(self, drive: int) -> None:
        port = self.drive_port(drive)
        if port.locked():
            raise ChangerError(f"drive {drive}: medium removal prevented (the host locked it)",
                               MEDIUM_REMOVAL_PREVENTED)
        if port.threaded():
            if not self.profile.auto_eject:
                raise ChangerError("Drive needs offline before move", DRIVE_NOT_UNLOADED)
            port.eject()
        port.remove()

    def _put_into_drive(self, drive: int, name: str, failed: str) -> None:
        path = self.cartridge_path(name)
        facts = cartridge_facts(path)
        port = self.drive_port(drive)
        try:
            port.insert(path)
        except DriveRefusedMedia as refused:
            self._charge(2 * self.profile.robot_move_seconds)  # there and back again
            raise ChangerError(f"{failed} ({refused})", MANUAL_INTERVENTION_REQUIRED) from None
        if facts.cleaning and self.profile.cleaning_returns_cartridge:
            port.eject()
            port.remove()
            self._charge(2 * self.profile.robot_move_seconds + self.profile.cleaning_seconds)
            raise ChangerError("Cleaning Cartridge Installed and Ejected", CLEANING_CARTRIDGE_INSTALLED)

    # --- SMC extras -------------------------------------------------------------------------

    def prevent_medium_removal(self, prevent: bool = True) -> None:
        """PREVENT/ALLOW MEDIUM REMOVAL (0x1E): while prevented the operator cannot open the MAP."""
        with self._transaction() as state:
            state.prevent_removal = prevent

    def take_unit_attention(self) -> Sense | None:
        """The oldest pending UNIT ATTENTION (what the next SCSI command would report), cleared."""
        with self._transaction() as state:
            if not state.pending_unit_attention:
                return None
            key, asc, ascq = (int(part, 16) for part in state.pending_unit_attention.pop(0).split("/"))
            return Sense(key, asc, ascq)

    def operator_placed(self, slot: int) -> bool:
        """IMPEXP bit of an import/export element: the operator put the cartridge there."""
        return self._refresh().slots[slot - 1].operator_placed

    # --- operator at the mail slot ----------------------------------------------------------

    def open_map(self) -> None:
        with self._transaction() as state:
            if state.import_export_count == 0:
                raise ChangerError("this library has no import/export element")
            if state.prevent_removal:
                raise ChangerError("cannot open the mail slot: medium removal prevented",
                                   MEDIUM_REMOVAL_PREVENTED)
            state.map_open = True

    def close_map(self) -> None:
        """Close the MAP; the scanner reads new labels and a UA 6/28/01 is posted if media came in."""
        with self._transaction() as state:
            state.map_open = False
            imported = False
            for slot in state.slots:
                if slot.import_export and slot.operator_placed and slot.cartridge is not None:
                    slot.tag = cartridge_facts(self.cartridge_path(slot.cartridge)).barcode
                    imported = True
            if imported and state.profile.report_import_unit_attention:
                state.pending_unit_attention.append(str(IMPORT_EXPORT_ACCESSED))

    def shelf(self) -> list[str]:
        """Cartridges in ``cartridges/`` that are in no element (taken out, or never put in)."""
        state = self._refresh()
        inside = {e.cartridge for e in [*state.drives, *state.slots] if e.cartridge}
        names = sorted(p.name[: -len(".tap")] for p in self.store.cartridge_dir.glob("*.tap"))
        return [name for name in names if name not in inside]

    def operator_insert(self, slot: int, name: str) -> None:
        """Put cartridge ``name`` from the shelf into the open import/export element ``slot``."""
        with self._transaction() as state:
            target = self._open_mail_slot(state, slot)
            if target.cartridge is not None:
                raise ChangerError(f"import/export element {slot} already holds {target.cartridge}")
            if not self.cartridge_path(name).exists():
                raise ChangerError(f"no cartridge {name!r} in {self.store.cartridge_dir}")
            if name in {e.cartridge for e in [*state.drives, *state.slots]}:
                raise ChangerError(f"cartridge {name!r} is already inside the library")
            target.cartridge, target.tag, target.operator_placed = name, None, True

    def operator_remove(self, slot: int) -> str:
        """Take the cartridge out of the open import/export element ``slot``; returns its name."""
        with self._transaction() as state:
            target = self._open_mail_slot(state, slot)
            if target.cartridge is None:
                raise ChangerError(f"import/export element {slot} is empty")
            name = target.cartridge
            target.cartridge, target.tag, target.operator_placed = None, None, False
            return name

    def _open_mail_slot(self, state: LibraryState, slot: int) -> Slot:
        if not 1 <= slot <= len(state.slots) or not state.slots[slot - 1].import_export:
            raise ChangerError(f"element {slot} is not an import/export element")
        if not state.map_open:
            raise ChangerError("the mail slot is closed (open it first)")
        return state.slots[slot - 1]


# --- creating a library ---------------------------------------------------------------------------

def standard_barcode(serial: int, media: str) -> str:
    """LTO barcode: six-character serial then the media suffix (``000001L9``)."""
    from emulators.tape.profiles import media_profile

    if not 0 < serial <= 999_999:
        raise ValueError(f"barcode serial {serial} outside 1..999999")
    return f"{serial:06d}{media_profile(media).barcode_suffix}"


def create_library(
    root: str | os.PathLike[str],
    *,
    drives: int = 2,
    slots: int = 20,
    import_export: int = 4,
    media: str = "LTO-9",
    cartridges: int | None = None,
    capacity_bytes: int | None = None,
    early_warning_bytes: int | None = None,
    profile: LibraryProfile | None = None,
    drive_generation: str | None = None,
) -> LibraryStore:
    """Make a new library folder with ``cartridges`` blank cartridges in the first storage slots.

    Refuses to touch an existing library. Cartridges are created first and ``library.json`` last
    (atomically), so a folder either is a complete library or is not a library at all.
    """
    from emulators.tape.cartridge import Cartridge
    from emulators.tape.drive_state import DriveState
    from emulators.tape.library_state import DriveBay
    from emulators.tape.profiles import media_profile
    from reference.errors import MailtapeError, UsageError

    media_name = media_profile(media).name
    if drives < 1 or slots < 1 or import_export < 0:
        raise UsageError("a library needs at least 1 drive and 1 slot (import/export may be 0)")
    cartridges = slots if cartridges is None else cartridges
    if not 0 <= cartridges <= slots:
        raise UsageError(f"--cartridges must be between 0 and the {slots} storage slots")
    store = LibraryStore(root)
    if store.exists():
        raise MailtapeError(f"{store.state_path}: a library already exists here (not overwriting)")
    names = [standard_barcode(serial, media_name) for serial in range(1, cartridges + 1)]
    if drive_generation is not None:
        from emulators.tape.profiles import drive_profile

        drive_generation = drive_profile(drive_generation).name
    clashes = [n for n in names if (store.cartridge_dir / f"{n}.tap").exists()]
    if clashes:
        raise MailtapeError(f"{store.cartridge_dir}: cartridge {clashes[0]} already exists (not overwriting)")
    with store.locked():
        for name in names:
            Cartridge.create(store.cartridge_dir / f"{name}.tap", barcode=name, generation=media_name,
                             kind="data", capacity_bytes=capacity_bytes,
                             early_warning_bytes=early_warning_bytes).close()
        state = LibraryState(
            media=media_name,
            drives=[DriveBay(number) for number in range(drives)],
            slots=[Slot(number, names[number - 1] if number <= cartridges else None,
                        names[number - 1] if number <= cartridges else None)
                   for number in range(1, slots + 1)]
            + [Slot(number, import_export=True) for number in range(slots + 1, slots + import_export + 1)],
            profile=profile or LibraryProfile(),
        )
        generation = drive_generation or drive_generation_for(media_name)
        for number in range(drives):
            DriveState.create(store.root / f"drive{number}.json", generation=generation,
                              name=f"nst{number}")
        store.save(state)
    return store
