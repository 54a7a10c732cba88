"""How the server reaches its tape drives: drive number → an open :class:`TapeDevice`.

The media manager never touches a drive object directly; it asks a :class:`DriveSet` to open
drive ``n`` (read-only or read-write), exactly as it would ``os.open("/dev/nstN")``. Two
implementations: the emulated drives of a library folder (in-process :class:`EmulatedDrive`
objects that the emulated library loads cartridges into) and real Linux st nodes.
"""

from __future__ import annotations

from typing import Mapping, Protocol

from reference.protocols.tape import TapeDevice


class DriveSet(Protocol):
    numbers: list[int]

    def open(self, number: int, write: bool) -> TapeDevice:
        """Open drive ``number`` (raises OSError ENOMEDIUM if empty, EROFS if write-protected)."""

    def describe(self, number: int) -> str: ...

    def timeline(self, number: int):
        """The drive's :class:`emulators.clock.Timeline` in simulation (None for real drives)."""


class EmulatedDrives:
    """In-process emulated drives (``emulators.tape.drive.EmulatedDrive``) keyed by drive number."""

    def __init__(self, drives: Mapping[int, object]):
        self.drives = dict(drives)
        self.numbers = sorted(self.drives)

    def open(self, number: int, write: bool) -> TapeDevice:
        return self.drives[number].open(write=write)

    def describe(self, number: int) -> str:
        return f"drive {number} ({self.drives[number].name})"

    def timeline(self, number: int):
        timing = getattr(self.drives[number], "timing", None)
        return None if timing is None else timing.timeline


class StDrives:
    """Real drives: ``{0: "/dev/nst0", ...}`` opened through the Linux st driver."""

    def __init__(self, paths: Mapping[int, str]):
        self.paths = dict(paths)
        self.numbers = sorted(self.paths)

    def open(self, number: int, write: bool) -> TapeDevice:
        from reference.drivers.st import LinuxStDrive

        return LinuxStDrive(self.paths[number], write=write)

    def describe(self, number: int) -> str:
        return f"drive {number} ({self.paths[number]})"

    def timeline(self, number: int):
        return None
