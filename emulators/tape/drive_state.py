"""A drive whose state survives between processes: ``LIBRARY/drive<N>.json`` (or ``X.tap.drive.json``).

``/dev/nst0`` keeps its position between opens because the st driver stays loaded; a command-line
``mailtape mt`` is a new process each time, so the drive's state (which cartridge is in it and
whether it is threaded, the logical position and st's file/block/eof bookkeeping, block size,
density, compression, options, door lock) is saved to a JSON file and restored.

Usage (the library and the ``mt`` command)::

    DriveState.create(path, generation="LTO-9")           # an empty drive (library init)
    with persisted_drive(path, clock=None) as drive:      # exclusive lock; saved on exit
        drive.load(Cartridge.open(...))                   # EmulatedDrive API
        device = drive.open(write=True)
        ...

    drive = open_persisted_drive(path)   # without the context manager; then save_drive_state()

Cartridge paths are stored relative to the state file's folder when they lie under it, so a
library folder can be moved.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from emulators.clock import Clock
from reference.errors import CorruptDataError, NotFoundError

from .cartridge import Cartridge, _write_json_atomically
from .drive import EmulatedDrive, StOptions
from .profiles import drive_profile

FORMAT = "mailtape-tape-drive"
VERSION = 1


@dataclass
class DriveState:
    """What one drive remembers between processes."""

    generation: str = "LTO-9"
    name: str = "nst0"
    cartridge: str | None = None
    """Path of the loaded cartridge image (relative to the state file's folder if inside it)."""
    threaded: bool = False
    position: int = 0
    """Logical object number (what MTIOCPOS reports)."""
    fileno: int = -1
    blkno: int = -1
    eof: int = 0
    block_size: int = 0
    density: int = 0
    compression: bool = False
    locked: bool = False
    options: dict[str, bool] = field(default_factory=lambda: asdict(StOptions()))

    # -------------------------------------------------------------- file I/O

    @classmethod
    def create(cls, path: str | os.PathLike[str], generation: str = "LTO-9",
               name: str | None = None) -> "DriveState":
        """Write a fresh, empty drive state file (overwrites)."""
        path = Path(path)
        state = cls(generation=drive_profile(generation).name,
                    name=name or _default_name(path))
        state.save(path)
        return state

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "DriveState":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFoundError(f"{path}: no such drive") from None
        except (OSError, ValueError) as bad:
            raise CorruptDataError(f"unreadable drive state ({bad})", str(path)) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CorruptDataError(f"not a {FORMAT} file", str(path))
        if data.get("version") != VERSION:
            raise CorruptDataError(f"unsupported version {data.get('version')!r}", str(path))
        body = {k: v for k, v in data.items() if k not in ("format", "version")}
        try:
            state = cls(**body)
            drive_profile(state.generation)
        except (TypeError, NotFoundError) as bad:
            raise CorruptDataError(f"bad drive state ({bad})", str(path)) from None
        return state

    def save(self, path: str | os.PathLike[str]) -> None:
        data = {"format": FORMAT, "version": VERSION, **asdict(self)}
        _write_json_atomically(Path(path), data)

    # -------------------------------------------------------------- drive <-> state

    def cartridge_path(self, state_path: Path) -> Path | None:
        if self.cartridge is None:
            return None
        path = Path(self.cartridge)
        return path if path.is_absolute() else state_path.parent / path

    def build_drive(self, state_path: Path, clock: Clock | None = None) -> EmulatedDrive:
        drive = EmulatedDrive(self.generation, clock=clock, name=self.name)
        drive.options = StOptions(**{k: v for k, v in self.options.items()
                                     if k in StOptions.__dataclass_fields__})
        drive.block_size = self.block_size
        drive.compression = self.compression
        cart_path = self.cartridge_path(state_path)
        if cart_path is not None:
            cartridge = Cartridge.open(cart_path)
            drive.cartridge = cartridge
            if self.threaded:
                drive.threaded = True
                drive.write_prot = cartridge.write_protected or (
                    cartridge.kind != "cleaning" and not drive.profile.can_write(cartridge.generation))
                drive.restore_position(self.position, self.fileno, self.blkno, self.eof)
                drive.density = self.density or cartridge.density_code
                if drive.timing:
                    from .profiles import media_profile
                    drive.timing.set_media(
                        media_profile(cartridge.generation) if cartridge.generation else None)
        drive.locked = self.locked
        return drive

    @classmethod
    def capture(cls, drive: EmulatedDrive, state_path: Path) -> "DriveState":
        cart = None
        if drive.cartridge is not None:
            path = drive.cartridge.path.resolve()
            try:
                cart = str(path.relative_to(state_path.parent.resolve()))
            except ValueError:
                cart = str(path)
        return cls(
            generation=drive.profile.name, name=drive.name, cartridge=cart,
            threaded=drive.threaded, position=drive.pos, fileno=drive.fileno, blkno=drive.blkno,
            eof=drive.eof, block_size=drive.block_size, density=drive.density,
            compression=drive.compression, locked=drive.locked, options=asdict(drive.options))


def _default_name(path: Path) -> str:
    stem = path.name.split(".")[0]
    digits = "".join(ch for ch in stem if ch.isdigit())
    return f"nst{digits or 0}"


def open_persisted_drive(path: str | os.PathLike[str], clock: Clock | None = None) -> EmulatedDrive:
    """An EmulatedDrive rebuilt from its state file (the cartridge, if any, opened)."""
    path = Path(path)
    return DriveState.load(path).build_drive(path, clock)


def save_drive_state(drive: EmulatedDrive, path: str | os.PathLike[str]) -> None:
    """Save ``drive``'s state (and its cartridge's sidecar)."""
    path = Path(path)
    if drive.cartridge is not None:
        drive.cartridge.save()
    DriveState.capture(drive, path).save(path)


@contextlib.contextmanager
def persisted_drive(path: str | os.PathLike[str], clock: Clock | None = None) -> Iterator[EmulatedDrive]:
    """Open the drive under an exclusive lock, yield it, save its state and release it.

    The state is saved even when the body fails with an error (a failed ``mt fsf`` still moved
    the tape, as on a real drive).
    """
    path = Path(path)
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            drive = open_persisted_drive(path, clock)
            try:
                yield drive
            finally:
                if drive._open is not None and not drive._open.closed:
                    drive._open.close()
                save_drive_state(drive, path)
                if drive.cartridge is not None:
                    drive.cartridge.close()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def standalone_state_path(tap_path: str | os.PathLike[str]) -> Path:
    """Where ``mailtape mt -f X.tap`` keeps the standalone drive's state: ``X.tap.drive.json``."""
    tap = Path(tap_path)
    return tap.with_name(tap.name + ".drive.json")


def ensure_standalone_drive(tap_path: str | os.PathLike[str]) -> Path:
    """Create the standalone drive state for a cartridge (loaded, at BOT) unless it exists."""
    tap = Path(tap_path)
    if not tap.exists():
        raise NotFoundError(f"{tap}: no such cartridge")
    state_path = standalone_state_path(tap)
    if state_path.exists():
        return state_path
    cartridge = Cartridge.open(tap)
    generation = cartridge.generation or "LTO-9"
    if generation in ("LTO-M8",):
        generation = "LTO-8"
    elif generation == "LTO-10P":
        generation = "LTO-10"
    drive = EmulatedDrive(generation, name="nst0")
    drive.load(cartridge)
    save_drive_state(drive, state_path)
    cartridge.close()
    return state_path

