"""The library with real emulated drives in it (spec tape-drive.md §6, §7 C5, C8, C9, E10).

The drives are the drive emulator's :class:`EmulatedDrive` objects handed to the library, so a
load really threads the cartridge image and the st layer sees it.
"""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest

from emulators.clock import Clock, RealClock, VirtualClock
from emulators.tape.cartridge import Cartridge
from emulators.tape.drive import EmulatedDrive
from emulators.tape.library import EmulatedLibrary, create_library
from emulators.tape.library_state import LibraryStore
from reference.protocols.changer import ChangerError, MediaChanger, Sense
from reference.protocols.tape import MtOp, TapeDevice


def library_with_drives(root: Path, generation: str = "LTO-9", media: str = "LTO-9",
                        **profile_changes) -> tuple[EmulatedLibrary, list[EmulatedDrive], VirtualClock]:
    create_library(root, drives=2, slots=6, import_export=1, media=media, cartridges=4,
                   capacity_bytes=2 << 20)
    if profile_changes:
        store = LibraryStore(root)
        state = store.load()
        state.profile = replace(state.profile, **profile_changes)
        store.save(state)
    clock = VirtualClock()
    drives = [EmulatedDrive(generation, clock=clock, name=f"nst{n}", privileged=False) for n in range(2)]
    return EmulatedLibrary(root, clock=clock, drives=dict(enumerate(drives))), drives, clock


def add_cartridge(library: EmulatedLibrary, slot: int, barcode: str, **kwargs) -> None:
    """Put a new cartridge straight into an empty storage slot (as if it had always been there)."""
    Cartridge.create(library.cartridge_path(barcode), barcode=barcode, capacity_bytes=1 << 20, **kwargs).close()
    library.open_map()
    library.operator_insert(7, barcode)
    library.close_map()
    library.transfer(7, slot)


def test_loaded_cartridge_is_threaded_and_data_survives_moving_between_drives(tmp_path) -> None:
    library, drives, _ = library_with_drives(tmp_path / "lib")
    library.load(2, 0)
    assert drives[0].threaded and drives[0].cartridge.barcode == "000002L9"
    with drives[0].open() as tape:
        tape.write(b"block one")
        tape.write(b"block two")
    library.unload()
    assert drives[0].cartridge is None
    library.load(2, 1)
    with drives[1].open(write=False) as tape:
        assert tape.read(1 << 16) == b"block one"
        assert tape.read(1 << 16) == b"block two"
        assert tape.read(1 << 16) == b""
    library.unload(None, 1)
    assert library.status().slot(2).barcode == "000002L9"


def test_c5_auto_eject_profile_unloads_a_threaded_drive(tmp_path) -> None:
    """C5: auto-eject library: drive -> slot while the tape is threaded succeeds (mhvtl)."""
    library, drives, _ = library_with_drives(tmp_path / "lib", auto_eject=True)
    library.load(1, 0)
    assert drives[0].threaded
    library.unload()
    assert drives[0].cartridge is None and library.status().slot(1).full


def test_c5_strict_profile_needs_mt_offline_first(tmp_path) -> None:
    """C5: strict library: 2/3A/00 "Drive needs offline before move" until ``mt offline``."""
    library, drives, _ = library_with_drives(tmp_path / "lib", auto_eject=False)
    library.load(1, 0)
    before = library.render_mtx_status()
    with pytest.raises(ChangerError, match="Drive needs offline before move") as error:
        library.unload()
    assert error.value.sense == Sense(0x2, 0x3A, 0x00)
    assert library.render_mtx_status() == before and drives[0].threaded
    with drives[0].open() as tape:
        tape.mtop(MtOp.MTOFFL)
    assert not drives[0].threaded and drives[0].cartridge is not None  # in the throat
    library.unload()
    assert drives[0].cartridge is None and library.status().slot(1).full


def test_c8_load_costs_robot_and_drive_time_and_st_hides_the_unit_attention(tmp_path) -> None:
    """C8: after a changer load the drive is ready once its load time has passed; at the st level
    the NOT READY->READY unit attention is invisible (the first open and write simply work)."""
    library, drives, clock = library_with_drives(tmp_path / "lib")
    start = clock.now()
    library.load(3, 0)
    assert clock.now() - start >= library.profile.robot_move_seconds
    with drives[0].open() as tape:
        tape.write(b"x" * 512)
    elapsed = clock.now() - start
    assert elapsed >= library.profile.robot_move_seconds + drives[0].profile.load_seconds


def btape_autochanger_test(changer: MediaChanger, open_tape: Callable[[bool], TapeDevice], clock: Clock,
                           max_changer_wait: float = 300.0, offline_before_unload: bool = False) -> float:
    """Bacula/Bareos btape ``autochanger_test`` (spec §4 step 6): loaded? -> unload -> load slot 1 ->
    open, rewind, WEOF (retrying every 30 s to find the load delay) -> WEOF. Returns the wait.

    ``open_tape(nonblock)`` opens drive 0's device (emulated, or the real /dev/nstN).
    """
    status = changer.status()
    if status.drive(0).full:
        if offline_before_unload:  # mtx-changer offline=1
            with open_tape(True) as tape:
                tape.mtop(MtOp.MTOFFL)
        changer.unload(None, 0)
    changer.load(1, 0)
    started = clock.now()
    while True:
        try:
            tape = open_tape(False)
            tape.mtop(MtOp.MTREW)
            tape.mtop(MtOp.MTWEOF)
            break
        except OSError as error:
            assert error.errno in (errno.EIO, errno.ENOMEDIUM), error
            assert clock.now() - started < max_changer_wait, "drive never became ready"
            clock.sleep(30)
    tape.mtop(MtOp.MTWEOF)
    tape.close()
    return clock.now() - started


def opener(drive: EmulatedDrive) -> Callable[[bool], TapeDevice]:
    return lambda nonblock: drive.open(nonblock=nonblock)


@pytest.mark.parametrize("auto_eject", [True, False])
def test_c9_btape_autochanger_sequence(tmp_path, auto_eject: bool) -> None:
    """C9: with a tape from slot 3 in drive 0, btape's autochanger test passes within
    max_changer_wait; a strict library needs mtx-changer's ``offline=1``."""
    library, drives, clock = library_with_drives(tmp_path / "lib", auto_eject=auto_eject)
    library.load(3, 0)
    waited = btape_autochanger_test(library, opener(drives[0]), clock, offline_before_unload=not auto_eject)
    assert waited <= 300
    status = library.status()
    assert status.drive(0).source == 1 and status.slot(3).full
    with drives[0].open(write=False) as tape:
        tape.mtop(MtOp.MTREW)
        assert tape.read(65536) == b""  # the first of the two filemarks btape wrote
        assert tape.status().fileno == 1
        assert tape.read(65536) == b""  # the second one


def test_c9_strict_library_without_offline_fails_like_btape_would(tmp_path) -> None:
    library, drives, clock = library_with_drives(tmp_path / "lib", auto_eject=False)
    library.load(3, 0)
    with pytest.raises(ChangerError, match="Drive needs offline before move"):
        btape_autochanger_test(library, opener(drives[0]), clock, offline_before_unload=False)


def test_e10_drive_refusing_media_is_4_04_03_and_cartridge_stays(tmp_path) -> None:
    """LTO-9 drive, LTO-7 cartridge: HARDWARE ERROR 4/04/03, cartridge back in its slot (E10)."""
    library, drives, clock = library_with_drives(tmp_path / "lib")
    add_cartridge(library, 5, "000077L7")
    before, start = library.render_mtx_status(), clock.now()
    with pytest.raises(ChangerError, match="cannot load LTO-7") as error:
        library.load(5, 0)
    assert error.value.sense == Sense(0x4, 0x04, 0x03)
    assert library.render_mtx_status() == before and drives[0].cartridge is None
    assert clock.now() - start == pytest.approx(2 * library.profile.robot_move_seconds)
    library.load(4, 0)  # the drive is still usable


def test_cleaning_cartridge_stays_in_drive_and_drive_reports_not_ready(tmp_path) -> None:
    """Default profile: the cleaner is loaded like any cartridge; the drive refuses I/O (E9)."""
    library, drives, _ = library_with_drives(tmp_path / "lib")
    add_cartridge(library, 5, "CLN001L1")
    library.load(5, 1)
    assert library.status().drive(1).barcode == "CLN001L1"
    with pytest.raises(OSError) as error:
        drives[1].open()
    assert error.value.errno == errno.EIO
    library.unload(None, 1)
    assert library.status().slot(5).barcode == "CLN001L1"


def test_cleaning_cartridge_returned_by_library_profile(tmp_path) -> None:
    """cleaning_returns_cartridge: MOVE reports 2/30/03 and the cleaner is back in its slot."""
    library, drives, clock = library_with_drives(tmp_path / "lib", cleaning_returns_cartridge=True)
    add_cartridge(library, 5, "CLN002L1")
    start = clock.now()
    with pytest.raises(ChangerError, match="Cleaning Cartridge Installed and Ejected") as error:
        library.load(5, 0)
    assert error.value.sense == Sense(0x2, 0x30, 0x03)
    assert library.status().slot(5).barcode == "CLN002L1" and not library.status().drive(0).full
    assert drives[0].cartridge is None
    assert clock.now() - start >= library.profile.cleaning_seconds


@pytest.mark.realtape
def test_c9_btape_autochanger_on_real_hardware() -> None:
    """C9 on a real library: MAILTAPE_TEST_CHANGER=/dev/sgN plus MAILTAPE_TEST_TAPE=/dev/nstN
    (drive 0 of that changer). Slot 1 must hold a scratch tape: btape writes two filemarks on it."""
    changer_node, tape_node = os.environ.get("MAILTAPE_TEST_CHANGER"), os.environ.get("MAILTAPE_TEST_TAPE")
    if not (changer_node and tape_node):
        pytest.skip("set MAILTAPE_TEST_CHANGER and MAILTAPE_TEST_TAPE (drive 0 of that changer)")
    from reference.drivers.mtx import MtxChanger
    from reference.drivers.st import LinuxStDrive

    changer = MtxChanger(changer_node)
    waited = btape_autochanger_test(changer, lambda nonblock: LinuxStDrive(tape_node, write=True, nonblock=nonblock),
                                    RealClock(), offline_before_unload=True)
    assert waited <= 300
    assert changer.status().drive(0).source == 1


def crash_on_next_save(monkeypatch) -> None:
    """Make the next library.json save fail, as if the process died right after the drive moved."""
    from emulators.tape import library_state

    real_save = library_state.LibraryStore.save

    def dying_save(self, state):
        monkeypatch.setattr(library_state.LibraryStore, "save", real_save)
        raise OSError("simulated crash before library.json was written")

    monkeypatch.setattr(library_state.LibraryStore, "save", dying_save)


def test_inventory_repairs_a_load_interrupted_after_the_drive_took_the_tape(tmp_path, monkeypatch) -> None:
    """Nothing lost: drive state is written before library.json; inventory trusts the drive."""
    create_library(tmp_path / "lib", drives=1, slots=4, import_export=0, media="LTO-8", cartridges=2,
                   capacity_bytes=1 << 20)
    library = EmulatedLibrary(tmp_path / "lib")  # persisted drives (drive0.json)
    crash_on_next_save(monkeypatch)
    with pytest.raises(OSError, match="simulated crash"):
        library.load(2, 0)
    assert library.status().slot(2).full and not library.status().drive(0).full  # stale view
    with pytest.raises(ChangerError) as error:
        library.load(1, 0)
    assert error.value.sense == Sense(0x4, 0x04, 0x03)  # the drive is occupied
    library.inventory()
    status = library.status()
    assert status.drive(0).barcode == "000002L8" and status.drive(0).source == 2
    assert not status.slot(2).full
    library.unload()
    assert library.status().slot(2).barcode == "000002L8"


def test_inventory_repairs_an_unload_interrupted_after_the_drive_let_go(tmp_path, monkeypatch) -> None:
    create_library(tmp_path / "lib", drives=1, slots=4, import_export=0, media="LTO-8", cartridges=2,
                   capacity_bytes=1 << 20)
    library = EmulatedLibrary(tmp_path / "lib")
    library.load(2, 0)
    crash_on_next_save(monkeypatch)
    with pytest.raises(OSError, match="simulated crash"):
        library.unload(4, 0)
    library.inventory()
    status = library.status()
    assert not status.drive(0).full
    assert status.slot(2).barcode == "000002L8"  # back where it came from
    assert sum(1 for s in status.slots if s.full) == 2
