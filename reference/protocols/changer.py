"""The media-changer protocol: a tape library's robot as SCSI SMC and ``mtx`` present it.

Mirrors the element model of SMC (spec ``tape-drive.md`` §6): data transfer elements (drives,
numbered from 0 as ``mtx`` numbers them), storage elements (slots, numbered from 1) and
import/export elements (mail slots, listed among the storage elements and flagged). Implemented by
the emulated library (``emulators.tape``) and by the real changer driver over the ``mtx`` command
(``reference.drivers.mtx``).

Failures raise :class:`ChangerError` carrying the SCSI sense key / ASC / ASCQ a real library
returns (e.g. 5/3B/0E "source element empty") and mtx's message text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class ElementType(enum.IntEnum):
    """SMC element type codes."""

    TRANSPORT = 1
    STORAGE = 2
    IMPORT_EXPORT = 3
    DRIVE = 4


@dataclass(frozen=True)
class Sense:
    """SCSI sense data: key, additional sense code and qualifier."""

    key: int
    asc: int
    ascq: int

    def __str__(self) -> str:
        return f"{self.key:X}/{self.asc:02X}/{self.ascq:02X}"


class ChangerError(OSError):
    """A changer command failed; ``sense`` is what a real library would report."""

    def __init__(self, message: str, sense: Sense | None = None):
        self.sense = sense
        super().__init__(f"{message} (sense {sense})" if sense else message)


@dataclass(frozen=True)
class Element:
    """One element as READ ELEMENT STATUS reports it (numbered the way ``mtx`` numbers it)."""

    type: ElementType
    number: int
    full: bool
    barcode: str | None = None
    source: int | None = None
    """For a full drive: the storage element the cartridge came from (SVALID), else None."""


@dataclass(frozen=True)
class ChangerStatus:
    drives: tuple[Element, ...]
    slots: tuple[Element, ...]
    """Storage and import/export elements in mtx order (I/E elements are flagged by ``type``)."""

    def slot(self, number: int) -> Element:
        for element in self.slots:
            if element.number == number:
                return element
        raise KeyError(number)

    def drive(self, number: int) -> Element:
        for element in self.drives:
            if element.number == number:
                return element
        raise KeyError(number)


@runtime_checkable
class MediaChanger(Protocol):
    """A tape library robot: inventory and cartridge moves."""

    name: str

    def status(self) -> ChangerStatus:
        """READ ELEMENT STATUS with volume tags (``mtx status``)."""

    def load(self, slot: int, drive: int = 0) -> None:
        """Move a cartridge from a storage element into a drive (``mtx load``)."""

    def unload(self, slot: int | None = None, drive: int = 0) -> None:
        """Move a drive's cartridge back to ``slot`` or, if None, to where it came from (``mtx unload``)."""

    def transfer(self, source: int, destination: int) -> None:
        """Move a cartridge between storage elements (``mtx transfer``)."""

    def inventory(self) -> None:
        """Re-scan the library (INITIALIZE ELEMENT STATUS, ``mtx inventory``)."""
