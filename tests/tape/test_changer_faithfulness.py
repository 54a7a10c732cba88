"""Changer faithfulness suite (spec tape-drive.md §7, C-series) against the MediaChanger protocol.

One set of tests, three back ends:

* ``emulator`` — :class:`EmulatedLibrary` on a fresh library folder;
* ``mtx-over-emulator`` — :class:`MtxChanger` driving ``mailtape mtx`` on the same kind of folder
  (in-process), so the real driver's command lines, output parser and error mapping are exercised
  exactly as they are against ``/dev/sgN``;
* ``real`` — :class:`MtxChanger` on ``$MAILTAPE_TEST_CHANGER`` (marked ``realtape``; skipped unless
  set). The tests pick full/empty elements from the library's own status and put every cartridge
  back where it was.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from emulators.clock import VirtualClock
from emulators.tape.library import EmulatedLibrary, create_library
from reference.cli.main import main
from reference.drivers.mtx import MtxChanger, parse_mtx_status, render_mtx_status
from reference.protocols.changer import ChangerError, ChangerStatus, ElementType, MediaChanger
from reference.protocols.conformance import assert_conforms

REAL_CHANGER = os.environ.get("MAILTAPE_TEST_CHANGER")


def make_library(root: Path) -> Path:
    create_library(root, drives=2, slots=20, import_export=4, media="LTO-8", cartridges=8,
                   capacity_bytes=8 << 20)
    return root


def in_process_mtx(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``mailtape mtx ...`` through the CLI's real entry point (``main``) in this process."""
    with CliRunner().isolation() as (out, err, _):
        code = main(list(argv[1:]))
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return subprocess.CompletedProcess(argv, code, stdout, stderr)


@pytest.fixture(params=["emulator", "mtx-over-emulator",
                        pytest.param("real", marks=pytest.mark.realtape)])
def changer(request, tmp_path: Path) -> Iterator[MediaChanger]:
    if request.param == "emulator":
        yield EmulatedLibrary(make_library(tmp_path / "lib"), clock=VirtualClock())
    elif request.param == "mtx-over-emulator":
        yield MtxChanger(str(make_library(tmp_path / "lib")), mtx=["mailtape", "mtx"], runner=in_process_mtx)
    else:
        if not REAL_CHANGER:
            pytest.skip("set MAILTAPE_TEST_CHANGER=/dev/sgN to run against a real changer")
        yield MtxChanger(REAL_CHANGER)


def full_storage_slot(status: ChangerStatus) -> int:
    for slot in status.slots:
        if slot.type == ElementType.STORAGE and slot.full:
            return slot.number
    pytest.skip("no full storage slot")


def empty_storage_slot(status: ChangerStatus, skip: int = 0) -> int:
    for slot in status.slots:
        if slot.type == ElementType.STORAGE and not slot.full and slot.number != skip:
            return slot.number
    pytest.skip("no empty storage slot")


def empty_drive(status: ChangerStatus) -> int:
    for drive in status.drives:
        if not drive.full:
            return drive.number
    pytest.skip("no empty drive")


def test_backend_conforms_to_media_changer(changer: MediaChanger) -> None:
    assert_conforms(changer, MediaChanger)


def test_c1_status_text_round_trips(changer: MediaChanger) -> None:
    """C1: what the changer reports renders to mtx text that parses back to the same status."""
    status = changer.status()
    text = render_mtx_status(status, "/dev/sg0")
    assert parse_mtx_status(text) == ("/dev/sg0", status)
    if isinstance(changer, MtxChanger):
        raw = changer.status_text()
        assert render_mtx_status(*reversed(parse_mtx_status(raw))) == raw


def test_c3_load_then_unload_returns_to_source(changer: MediaChanger) -> None:
    """C3: load slot S -> drive D: S Empty, D "Full (Storage Element S Loaded)"; unload -> back to S."""
    before = changer.status()
    slot, drive = full_storage_slot(before), empty_drive(before)
    barcode = before.slot(slot).barcode
    changer.load(slot, drive)
    try:
        loaded = changer.status()
        assert not loaded.slot(slot).full
        assert loaded.drive(drive).full and loaded.drive(drive).source == slot
        assert loaded.drive(drive).barcode == barcode
        assert f"Data Transfer Element {drive}:Full (Storage Element {slot} Loaded)" in \
            render_mtx_status(loaded, "x")
    finally:
        changer.unload(None, drive)
    assert changer.status() == before


def test_c4_load_into_full_drive_is_refused_like_mtx(changer: MediaChanger) -> None:
    """C4: mtx refuses ``load`` into a full drive: "Drive D Full (Storage Element S loaded)"."""
    before = changer.status()
    slot, drive = full_storage_slot(before), empty_drive(before)
    other = next(s.number for s in before.slots if s.full and s.number != slot and s.type == ElementType.STORAGE)
    changer.load(slot, drive)
    try:
        with pytest.raises(ChangerError, match=rf"Drive {drive} Full \(Storage Element {slot} loaded\)"):
            changer.load(other, drive)
    finally:
        changer.unload(None, drive)
    assert changer.status() == before


def test_c4_move_to_full_destination_is_3b_0d(changer: MediaChanger) -> None:
    """C4: transfer onto a full storage element -> 5/3B/0D "Destination ... is Already Full"."""
    status = changer.status()
    full = [s.number for s in status.slots if s.full and s.type == ElementType.STORAGE]
    if len(full) < 2:
        pytest.skip("need two full storage slots")
    with pytest.raises(ChangerError, match="Destination Element Address [0-9]+ is Already Full") as error:
        changer.transfer(full[0], full[1])
    assert (error.value.sense.asc, error.value.sense.ascq) == (0x3B, 0x0D)
    assert changer.status() == status


def test_c4_move_from_empty_source_is_3b_0e(changer: MediaChanger) -> None:
    """C4: transfer from an empty storage element -> 5/3B/0E "Source Element Address ... is Empty"."""
    status = changer.status()
    empty = empty_storage_slot(status)
    target = empty_storage_slot(status, skip=empty)
    with pytest.raises(ChangerError, match="Source Element Address [0-9]+ is Empty") as error:
        changer.transfer(empty, target)
    assert (error.value.sense.asc, error.value.sense.ascq) == (0x3B, 0x0E)
    assert changer.status() == status


def test_c4_bad_address_is_21_01(changer: MediaChanger) -> None:
    """C4: an element that does not exist -> 5/21/01 (mtx refuses it as "Invalid source")."""
    status = changer.status()
    slot = full_storage_slot(status)
    with pytest.raises(ChangerError, match="Invalid source") as error:
        changer.transfer(len(status.slots) + 7, slot)
    assert (error.value.sense.key, error.value.sense.asc, error.value.sense.ascq) == (5, 0x21, 0x01)
    with pytest.raises(ChangerError, match="Invalid <storage-element-number> argument") as error:
        changer.load(len(status.slots) + 7, empty_drive(status))
    assert (error.value.sense.asc, error.value.sense.ascq) == (0x21, 0x01)


def test_c4_unload_into_full_slot_is_refused_like_mtx(changer: MediaChanger) -> None:
    """C4/mtx Unload(): "Storage Element S is Already Full" before any SCSI is sent."""
    before = changer.status()
    slot, drive = full_storage_slot(before), empty_drive(before)
    other = next(s.number for s in before.slots if s.full and s.number != slot and s.type == ElementType.STORAGE)
    changer.load(slot, drive)
    try:
        with pytest.raises(ChangerError, match=rf"Storage Element {other} is Already Full"):
            changer.unload(other, drive)
    finally:
        changer.unload(None, drive)
    with pytest.raises(ChangerError, match=rf"Data Transfer Element {drive} is Empty"):
        changer.unload(slot, drive)
    assert changer.status() == before


def test_c3_unload_to_other_slot_and_transfer_back(changer: MediaChanger) -> None:
    """C3: unload to an explicit slot; the drive forgets its source; transfer restores the layout."""
    before = changer.status()
    slot, drive = full_storage_slot(before), empty_drive(before)
    spare = empty_storage_slot(before)
    changer.load(slot, drive)
    changer.unload(spare, drive)
    moved = changer.status()
    assert moved.slot(spare).full and moved.slot(spare).barcode == before.slot(slot).barcode
    assert not moved.slot(slot).full and not moved.drive(drive).full
    changer.transfer(spare, slot)
    assert changer.status() == before


def test_c7_inventory_keeps_a_consistent_inventory(changer: MediaChanger) -> None:
    """C7: ``inventory`` re-reads the labels; with nothing changed the status is the same."""
    before = changer.status()
    changer.inventory()
    assert changer.status() == before


def test_mtx_cli_binary_smoke(tmp_path: Path) -> None:
    """The real ``mailtape`` executable: exact status text and mtx-like failure (exit 1, one line)."""
    exe = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "mailtape"
    if not exe.exists():
        pytest.skip("no .venv/bin/mailtape")
    lib = make_library(tmp_path / "lib")
    driver = MtxChanger(str(lib), mtx=[str(exe), "mtx"])
    driver.load(3, 1)
    assert EmulatedLibrary(lib).status().drive(1).source == 3
    failed = subprocess.run([str(exe), "mtx", "-f", str(lib), "load", "4", "1"], capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr == "mailtape: error: Drive 1 Full (Storage Element 3 loaded) (sense 5/3B/0D)\n", \
        shlex.quote(failed.stderr)
    assert "Traceback" not in failed.stderr
