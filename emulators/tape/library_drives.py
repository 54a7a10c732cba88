"""How the library's robot reaches its drives and reads cartridge labels.

The picker needs four things from a drive (a :class:`DrivePort`): is a tape threaded (loaded and
not yet ejected), put a cartridge in (the drive then loads it), make the drive eject it (what
``mt offline`` does, or the library itself when it auto-ejects), and take the ejected cartridge
out. Two ports exist: :class:`LiveDrivePort` wraps an in-process
:class:`~emulators.tape.drive.EmulatedDrive`, :class:`PersistedDrivePort` works on the drive state
``LIBRARY/drive<N>.json`` that the ``mt`` command uses, so ``mailtape mtx`` and ``mailtape mt`` on
the same folder see one library.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol, runtime_checkable

from emulators.clock import Clock
from emulators.tape.cartridge import Cartridge, sidecar_path
from reference.errors import CorruptDataError, NotFoundError

if TYPE_CHECKING:
    from emulators.tape.drive import EmulatedDrive


class DriveRefusedMedia(Exception):
    """The drive cannot take this cartridge (generation not supported, ...)."""


@dataclass(frozen=True)
class CartridgeFacts:
    """What the library's barcode scanner and cleaning logic need to know about a cartridge."""

    barcode: str
    kind: str
    generation: str | None

    @property
    def cleaning(self) -> bool:
        return self.kind == "cleaning"


def cartridge_facts(path: Path) -> CartridgeFacts:
    """Label and kind of the cartridge image at ``path``, read from its sidecar without opening the
    image (a drive in another process may hold it; opening would rewrite the sidecar on close)."""
    side = sidecar_path(path)
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        return CartridgeFacts(str(meta["barcode"]), str(meta["kind"]), meta["generation"])
    except FileNotFoundError:
        raise NotFoundError(f"{side}: cartridge sidecar missing") from None
    except (OSError, ValueError, KeyError, TypeError) as bad:
        raise CorruptDataError(f"unreadable cartridge sidecar ({bad!r})", str(side)) from None


@runtime_checkable
class DrivePort(Protocol):
    def threaded(self) -> bool:
        """A cartridge is loaded in the drive (not ejected to the picker's reach)."""

    def locked(self) -> bool:
        """The host holds PREVENT MEDIUM REMOVAL on the drive (``mt lock``)."""

    def holding(self) -> str | None:
        """Name (image file stem) of the cartridge physically in the drive, threaded or not."""

    def insert(self, cartridge_path: Path) -> None:
        """The picker pushes a cartridge in; the drive loads it. Raises DriveRefusedMedia."""

    def eject(self) -> None:
        """The drive rewinds and unloads (``mt offline``); the cartridge stays in the throat."""

    def remove(self) -> None:
        """The picker pulls the ejected cartridge out; the drive is empty afterwards."""


class PersistedDrivePort:
    """Drive ``number`` of a library folder: its state file ``drive<N>.json`` (drive emulator's
    :mod:`emulators.tape.drive_state`), opened under the drive's own lock for each robot action."""

    def __init__(self, root: Path, number: int, clock: Clock | None = None,
                 generation: str | None = None):
        self.root, self.number, self.clock = root, number, clock
        self.path = root / f"drive{number}.json"
        self.generation = generation

    @contextlib.contextmanager
    def _drive(self) -> Iterator["EmulatedDrive"]:
        from emulators.tape.drive_state import DriveState, persisted_drive

        if not self.path.exists():
            DriveState.create(self.path, generation=self.generation or "LTO-9", name=f"nst{self.number}")
        with persisted_drive(self.path, clock=self.clock) as drive:
            yield drive

    def threaded(self) -> bool:
        from emulators.tape.drive_state import DriveState

        if not self.path.exists():
            return False
        state = DriveState.load(self.path)
        return state.cartridge is not None and state.threaded

    def locked(self) -> bool:
        from emulators.tape.drive_state import DriveState

        if not self.path.exists():
            return False
        state = DriveState.load(self.path)
        return state.cartridge is not None and state.threaded and state.locked

    def holding(self) -> str | None:
        from emulators.tape.drive_state import DriveState

        if not self.path.exists():
            return None
        path = DriveState.load(self.path).cartridge_path(self.path)
        return None if path is None else _stem(path)

    def insert(self, cartridge_path: Path) -> None:
        with self._drive() as drive:
            LiveDrivePort(drive).insert(cartridge_path)

    def eject(self) -> None:
        with self._drive() as drive:
            drive.eject()

    def remove(self) -> None:
        with self._drive() as drive:
            LiveDrivePort(drive).remove()


class LiveDrivePort:
    """An in-process :class:`EmulatedDrive` (a backup server holding its drives as objects)."""

    def __init__(self, drive: "EmulatedDrive"):
        self.drive = drive

    def threaded(self) -> bool:
        return self.drive.cartridge is not None and self.drive.threaded

    def locked(self) -> bool:
        return self.threaded() and self.drive.locked

    def holding(self) -> str | None:
        return None if self.drive.cartridge is None else _stem(self.drive.cartridge.path)

    def insert(self, cartridge_path: Path) -> None:
        from emulators.tape.drive import LoadError

        cartridge = Cartridge.open(cartridge_path)
        try:
            self.drive.load(cartridge)
        except LoadError as refused:
            cartridge.close()
            raise DriveRefusedMedia(str(refused)) from None

    def eject(self) -> None:
        self.drive.eject()

    def remove(self) -> None:
        cartridge = self.drive.unload()
        if cartridge is not None:
            cartridge.close()


def _stem(path: Path) -> str:
    name = Path(path).name
    return name[: -len(".tap")] if name.endswith(".tap") else name


def as_port(drive: "DrivePort | EmulatedDrive") -> DrivePort:
    """A DrivePort for ``drive``: EmulatedDrive objects are wrapped, ports pass through."""
    from emulators.tape.drive import EmulatedDrive

    return LiveDrivePort(drive) if isinstance(drive, EmulatedDrive) else drive


def persisted_port(root: Path, number: int, clock: Clock | None = None,
                   generation: str | None = None) -> DrivePort:
    """The port for drive ``number`` of the library folder ``root`` (its ``drive<N>.json``;
    created empty, of ``generation``, if missing)."""
    return PersistedDrivePort(Path(root), number, clock, generation)


def drive_generation_for(media: str) -> str:
    """The drive generation a library of ``media`` cartridges gets by default (M8 -> LTO-8 ...)."""
    from emulators.tape.profiles import media_profile

    name = media_profile(media).name
    return {"LTO-M8": "LTO-8", "LTO-10P": "LTO-10"}.get(name, name)
