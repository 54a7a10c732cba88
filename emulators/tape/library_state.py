"""The persisted state of an emulated tape library: ``LIBRARY/library.json``.

A library is a folder (docs/tape-library.md)::

    LIBRARY/library.json            element map, profile, MAP and lock state (this module)
    LIBRARY/cartridges/<NAME>.tap   cartridges, in the drive emulator's format (SIMH .tap + sidecar)
    LIBRARY/drive<N>.json           drive N's own state, owned by the drive emulator

Elements are numbered the way ``mtx`` numbers them: drives from 0, storage slots from 1, then the
import/export (mail) slots right after the storage slots. Every write goes to a temporary file
that replaces ``library.json`` atomically, so a crash never leaves a half-written state; every
read-modify-write holds an exclusive ``flock`` on ``LIBRARY/.library.lock`` so two processes
(say ``mailtape mtx`` and a backup job) cannot interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from reference.errors import CorruptDataError, NotFoundError

STATE_FILE = "library.json"
LOCK_FILE = ".library.lock"
CARTRIDGE_DIR = "cartridges"
FORMAT = "mailtape-tape-library"
VERSION = 1


@dataclass
class LibraryProfile:
    """Behaviour switches for the points the spec leaves open (each documented in docs/tape-library.md)."""

    robot_move_seconds: float = 10.0
    """Virtual time one picker move costs (exchange = two moves). *Estimate*, not a measured figure."""
    inventory_seconds: float = 60.0
    """Virtual time INITIALIZE ELEMENT STATUS (``mtx inventory``) takes. *Estimate*."""
    cleaning_seconds: float = 60.0
    """Virtual time a drive cleaning takes when the library returns the cleaner. *Estimate*."""
    auto_eject: bool = True
    """Drive -> slot moves unload a threaded tape themselves (mhvtl); False = host must ``mt offline``
    first, else NOT READY 2/3A/00 ("Drive needs offline before move")."""
    barcode_reader: bool = True
    """False: READ ELEMENT STATUS returns no volume tags (``mtx status`` prints no ``:VolumeTag``)."""
    cleaning_returns_cartridge: bool = False
    """True: loading a cleaning cartridge cleans the drive, puts the cartridge back in its slot and the
    MOVE reports 2/30/03 (mtx: "Cleaning Cartridge Installed and Ejected"); False: it stays in the
    drive and the drive reports 2/30/03 on reads and writes."""
    report_import_unit_attention: bool = True
    """After an operator closes the MAP with new media: UNIT ATTENTION 6/28/01 pending (per SMC)."""
    drive_address_base: int = 0x001
    transport_address: int = 0x2F0
    import_export_address_base: int = 0x300
    storage_address_base: int = 0x400
    """SCSI element addresses (mhvtl's generic SMC profile); ``mtx`` prints these in MOVE errors."""


@dataclass
class Slot:
    """A storage or import/export element; ``cartridge`` names the file stem under ``cartridges/``."""

    number: int
    cartridge: str | None = None
    tag: str | None = None
    """Volume tag as the barcode scanner last read it (None: no label / not scanned)."""
    import_export: bool = False
    operator_placed: bool = False
    """IMPEXP flag of SMC: the cartridge in this mail slot was put there by the operator."""


@dataclass
class DriveBay:
    """A data transfer element as the library sees it (the drive's own state is in drive<N>.json)."""

    number: int
    cartridge: str | None = None
    tag: str | None = None
    source: int | None = None
    """Storage element the cartridge came from (SVALID), None if unknown."""


@dataclass
class LibraryState:
    media: str
    drives: list[DriveBay]
    slots: list[Slot]
    """Storage slots first, then import/export slots, in mtx numbering order."""
    profile: LibraryProfile = field(default_factory=LibraryProfile)
    map_open: bool = False
    prevent_removal: bool = False
    pending_unit_attention: list[str] = field(default_factory=list)
    """Sense strings (``6/28/01``) the next changer command will be told about, oldest first."""

    @property
    def storage_count(self) -> int:
        return sum(1 for slot in self.slots if not slot.import_export)

    @property
    def import_export_count(self) -> int:
        return sum(1 for slot in self.slots if slot.import_export)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "media": self.media,
            "profile": asdict(self.profile),
            "map_open": self.map_open,
            "prevent_removal": self.prevent_removal,
            "pending_unit_attention": list(self.pending_unit_attention),
            "drives": [asdict(drive) for drive in self.drives],
            "slots": [asdict(slot) for slot in self.slots],
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> "LibraryState":
        """Build and validate; any inconsistency raises CorruptDataError naming ``where``."""
        try:
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            if data.get("version") != VERSION:
                raise ValueError(f"unsupported version {data.get('version')!r} (expected {VERSION})")
            profile = _build(LibraryProfile, data.get("profile", {}), "profile")
            drives = [_build(DriveBay, d, f"drives[{i}]") for i, d in enumerate(data["drives"])]
            slots = [_build(Slot, s, f"slots[{i}]") for i, s in enumerate(data["slots"])]
            state = cls(
                media=str(data["media"]),
                drives=drives,
                slots=slots,
                profile=profile,
                map_open=_bool(data.get("map_open", False), "map_open"),
                prevent_removal=_bool(data.get("prevent_removal", False), "prevent_removal"),
                pending_unit_attention=_senses(data.get("pending_unit_attention", [])),
            )
            state.validate()
        except KeyError as missing:
            raise CorruptDataError(f"missing field {missing}", where) from None
        except (TypeError, ValueError) as bad:
            raise CorruptDataError(str(bad), where) from None
        return state

    def validate(self) -> None:
        """Numbering and occupancy invariants; raises ValueError."""
        for index, drive in enumerate(self.drives):
            if drive.number != index:
                raise ValueError(f"drive {index} is numbered {drive.number} (drives count from 0)")
        seen_import_export = False
        for index, slot in enumerate(self.slots, start=1):
            if slot.number != index:
                raise ValueError(f"slot {index} is numbered {slot.number} (slots count from 1)")
            if seen_import_export and not slot.import_export:
                raise ValueError(f"storage slot {slot.number} follows an import/export slot")
            seen_import_export |= slot.import_export
        owners: dict[str, str] = {}
        holders = [(f"drive {d.number}", d.cartridge) for d in self.drives]
        holders += [(f"slot {s.number}", s.cartridge) for s in self.slots]
        for where, name in holders:
            if name is None:
                continue
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"{where}: bad cartridge name {name!r}")
            if name in owners:
                raise ValueError(f"cartridge {name!r} is in both {owners[name]} and {where}")
            owners[name] = where
        for drive in self.drives:
            if drive.source is not None and not 1 <= drive.source <= len(self.slots):
                raise ValueError(f"drive {drive.number}: source slot {drive.source} does not exist")


def _senses(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(
        isinstance(x, str) and re.fullmatch(r"[0-9A-F]/[0-9A-F]{2}/[0-9A-F]{2}", x) for x in value
    ):
        raise ValueError(f"pending_unit_attention must be a list of 'K/AA/QQ' strings, not {value!r}")
    return list(value)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return value


def _build(kind: type, data: Any, where: str):
    """Dataclass from a dict with exact keys and the declared scalar types."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object")
    known = {f.name: f for f in fields(kind)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
    for name, value in data.items():
        declared = str(known[name].type)
        if value is None and "None" in declared:
            continue
        if "bool" in declared:
            ok = isinstance(value, bool)
        elif "int" in declared:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif "float" in declared:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ValueError(f"{where}.{name} has the wrong type ({value!r}, expected {declared})")
    return kind(**data)


class LibraryStore:
    """Reads and atomically rewrites ``library.json`` under an exclusive lock."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.state_path = self.root / STATE_FILE
        self._thread_lock = threading.RLock()
        self._depth = 0

    @property
    def cartridge_dir(self) -> Path:
        return self.root / CARTRIDGE_DIR

    def exists(self) -> bool:
        return self.state_path.exists()

    def load(self) -> LibraryState:
        where = str(self.state_path)
        try:
            text = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFoundError(f"{self.root}: no tape library here ({STATE_FILE} missing)") from None
        except (OSError, UnicodeDecodeError) as bad:
            raise CorruptDataError(f"cannot read: {bad}", where) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as bad:
            raise CorruptDataError(f"not valid JSON ({bad})", where) from None
        return LibraryState.from_json(data, where)

    def save(self, state: LibraryState) -> None:
        state.validate()
        write_json_atomically(self.state_path, state.to_json())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock for a read-modify-write: threads of this process (RLock, re-entrant)
        and other processes (``flock`` on ``.library.lock``)."""
        with self._thread_lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / LOCK_FILE, "a+b") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0
                    fcntl.flock(handle, fcntl.LOCK_UN)


def write_json_atomically(path: Path, data: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then ``os.replace`` it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=False)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
