"""Fixtures for the drive faithfulness suite: one ``rig`` per device under test.

``rig`` is parametrised over the emulated drive (always) and a real st drive (when
``MAILTAPE_TEST_TAPE=/dev/nstN`` is set; marked ``realtape``). Tests talk only to the
:class:`~reference.protocols.tape.TapeDevice` protocol through ``rig.open()``; tests that need a
special cartridge (tiny capacity, write-protected, WORM, cleaning) ask the rig for it and are
skipped on real hardware, where the operator would have to swap media.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from emulators.tape.cartridge import Cartridge
from emulators.tape.drive import EmulatedDrive
from reference.protocols.tape import MtOp, TapeDevice

MiB = 1 << 20
REAL_TAPE = os.environ.get("MAILTAPE_TEST_TAPE")


class EmulatorRig:
    """A fresh LTO-9 drive with a blank cartridge (64 MiB capacity, EW 1 MiB before the end)."""

    real = False

    def __init__(self, root: Path):
        self.root = root
        self.drive = EmulatedDrive("LTO-9", name="nst0", privileged=True)
        self.counter = 0
        self.insert(capacity_bytes=64 * MiB, early_warning_bytes=1 * MiB)

    def new_cartridge(self, barcode: str | None = None, **options) -> Cartridge:
        self.counter += 1
        barcode = barcode or f"T{self.counter:05d}L9"
        return Cartridge.create(self.root / f"{barcode}.tap", barcode=barcode, **options)

    def insert(self, barcode: str | None = None, **options) -> Cartridge:
        """Replace the loaded cartridge with a new blank one made with ``options``."""
        old = self.drive.unload()
        if old is not None:
            old.close()
        cartridge = self.new_cartridge(barcode, **options)
        self.drive.load(cartridge)
        return cartridge

    def open(self, write: bool = True, rewind: bool = False, nonblock: bool = False) -> TapeDevice:
        return self.drive.open(write=write, rewind_on_close=rewind, nonblock=nonblock)

    def reload(self) -> None:
        """Unload the cartridge, reopen its image from disk, load it again."""
        cartridge = self.drive.unload()
        path = cartridge.path
        cartridge.close()
        self.drive.load(Cartridge.open(path))

    def special(self, **options) -> Cartridge:
        return self.insert(**options)


class RealRig:
    """A real drive; the tape in it is overwritten from BOT by every test."""

    real = True

    def __init__(self, node: str):
        self.node = node
        self.rewinding_node = re.sub(r"/n(st\d+)", r"/\1", node)
        with self.open() as tape:
            tape.mtop(MtOp.MTSETBLK, 0)
            tape.mtop(MtOp.MTREW)
            tape.mtop(MtOp.MTWEOF, 1)  # an empty tape: one filemark at BOT, then EOD
            tape.mtop(MtOp.MTREW)

    def open(self, write: bool = True, rewind: bool = False, nonblock: bool = False) -> TapeDevice:
        from reference.drivers.st import LinuxStDrive

        return LinuxStDrive(self.rewinding_node if rewind else self.node, write=write,
                            nonblock=nonblock)

    def blank(self) -> None:
        """Start from an empty tape: rewind, erase (short)."""
        with self.open() as tape:
            tape.mtop(MtOp.MTREW)
            tape.mtop(MtOp.MTERASE, 0)

    def reload(self) -> None:
        with self.open(nonblock=True) as tape:
            tape.mtop(MtOp.MTOFFL)
            tape.mtop(MtOp.MTLOAD)

    def special(self, **options):
        pytest.skip("needs a special cartridge (emulator only)")


@pytest.fixture(params=["emulator", pytest.param("realtape", marks=pytest.mark.realtape)])
def rig(request, tmp_path):
    if request.param == "emulator":
        yield EmulatorRig(tmp_path)
        return
    if not REAL_TAPE:
        pytest.skip("set MAILTAPE_TEST_TAPE=/dev/nstN to run against a real drive")
    real = RealRig(REAL_TAPE)
    real.blank()
    yield real


@pytest.fixture
def emulated(tmp_path) -> EmulatorRig:
    """The emulator alone (for behaviours only the emulator can show: timing, SCSI sense...)."""
    return EmulatorRig(tmp_path)
