"""``mailtape mt``: mt-st's output and the drive position persisting between invocations."""

from __future__ import annotations

import json

import pytest

from emulators.tape.cartridge import Cartridge
from emulators.tape.drive import EmulatedDrive
from emulators.tape.drive_state import (DriveState, open_persisted_drive, persisted_drive,
                                        save_drive_state, standalone_state_path)
from reference.cli.commands.mt import format_status
from reference.cli.main import main
from reference.protocols.tape import Gstat, MtGet, MtOp

MiB = 1 << 20


def mt(capsys, *args) -> tuple[int, str, str]:
    code = main(["mt", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tap(tmp_path):
    """A cartridge with three files (1, 2, 1 blocks) written through a drive."""
    cartridge = Cartridge.create(tmp_path / "C00001L5.tap", barcode="C00001L5",
                                 capacity_bytes=16 * MiB)
    drive = EmulatedDrive("LTO-5")
    drive.load(cartridge)
    with drive.open() as tape:
        for count in (1, 2, 1):
            for _ in range(count):
                tape.write(b"x" * 1000)
            tape.mtop(MtOp.MTWEOF, 1)
    drive.unload().close()
    return tmp_path / "C00001L5.tap"


def test_status_prints_mt_st_format(tap, capsys):
    code, out, _ = mt(capsys, "-f", str(tap), "status")
    assert code == 0
    assert out == ("SCSI 2 tape drive:\n"
                   "File number=0, block number=0, partition=0.\n"
                   "Tape block size 0 bytes. Density code 0x58 (LTO-5).\n"
                   "Soft error count since last status=0\n"
                   "General status bits on (41010000):\n"
                   " BOT ONLINE IM_REP_EN\n")


def test_position_survives_between_invocations(tap, capsys):
    assert mt(capsys, "-f", str(tap), "fsf", "2")[0] == 0
    code, out, _ = mt(capsys, "-f", str(tap), "status")
    assert "File number=2, block number=0, partition=0." in out
    assert "General status bits on (81010000):\n EOF ONLINE IM_REP_EN\n" in out
    assert mt(capsys, "-f", str(tap), "tell")[1] == "At block 5.\n"
    assert mt(capsys, "-f", str(tap), "bsf")[0] == 0
    assert "File number=1, block number=-1" in mt(capsys, "-f", str(tap), "status")[1]
    assert mt(capsys, "-f", str(tap), "seek", "3")[0] == 0
    assert mt(capsys, "-f", str(tap), "tell")[1] == "At block 3.\n"
    assert mt(capsys, "-f", str(tap), "eod")[0] == 0
    assert mt(capsys, "-f", str(tap), "tell")[1] == "At block 7.\n"
    assert mt(capsys, "-f", str(tap), "rewind")[0] == 0
    assert mt(capsys, "-f", str(tap), "tell")[1] == "At block 0.\n"


def test_errors_name_the_drive_and_the_errno(tap, capsys):
    code, out, err = mt(capsys, "-f", str(tap), "fsf", "9")
    assert code == 1 and out == ""
    assert err.strip() == f"mailtape: error: {tap}: Input/output error"
    assert "EOD" in mt(capsys, "-f", str(tap), "status")[1]
    code, _, err = mt(capsys, "-f", str(tap), "setblk", "99999999")
    assert code == 1 and "Invalid argument" in err
    code, _, err = mt(capsys, "-f", str(tap), "frobnicate")
    assert code == 2 and "unknown operation" in err
    code, _, err = mt(capsys, "-f", str(tap.parent / "missing.tap"), "status")
    assert code == 1 and "no such cartridge" in err


def test_weof_erase_setblk_offline_load(tap, capsys):
    assert mt(capsys, "-f", str(tap), "setblk", "512")[0] == 0
    assert "Tape block size 512 bytes." in mt(capsys, "-f", str(tap), "status")[1]
    assert mt(capsys, "-f", str(tap), "setblk", "0")[0] == 0
    assert mt(capsys, "-f", str(tap), "eod")[0] == 0
    assert mt(capsys, "-f", str(tap), "weof", "2")[0] == 0
    assert mt(capsys, "-f", str(tap), "tell")[1] == "At block 9.\n"
    assert mt(capsys, "-f", str(tap), "offline")[0] == 0
    out = mt(capsys, "-f", str(tap), "status")[1]
    assert "File number=-1, block number=-1" in out and " DR_OPEN" in out
    assert mt(capsys, "-f", str(tap), "rewind")[2].strip().endswith("No medium found")
    assert mt(capsys, "-f", str(tap), "load")[0] == 0
    assert mt(capsys, "-f", str(tap), "erase")[0] == 0
    assert mt(capsys, "-f", str(tap), "eod")[0] == 0
    assert mt(capsys, "-f", str(tap), "tell")[1] == "At block 0.\n"


def test_library_drive_state_file(tmp_path, capsys):
    library = tmp_path / "LIB"
    (library / "cartridges").mkdir(parents=True)
    state = library / "drive0.json"
    DriveState.create(state, generation="LTO-9")
    cartridge = Cartridge.create(library / "cartridges" / "000001L9.tap", barcode="000001L9",
                                 capacity_bytes=16 * MiB)
    cartridge.close()
    with persisted_drive(state) as drive:
        assert drive.cartridge is None and drive.name == "nst0"
        drive.load(Cartridge.open(library / "cartridges" / "000001L9.tap"))
    saved = json.loads(state.read_text())
    assert saved["cartridge"] == "cartridges/000001L9.tap" and saved["threaded"]
    assert mt(capsys, "-f", str(library / "drive0"), "weof", "3")[0] == 0
    assert mt(capsys, "-f", str(state), "tell")[1] == "At block 3.\n"
    drive = open_persisted_drive(state)
    assert (drive.pos, drive.fileno) == (3, 3) and drive.cartridge.filemark_count == 3
    drive.unload()
    save_drive_state(drive, state)
    out = mt(capsys, "-f", str(state), "status")[1]
    assert "Density code 0x0 (default)" in out and "DR_OPEN" in out


def test_standalone_state_lives_beside_the_cartridge(tap, capsys):
    mt(capsys, "-f", str(tap), "fsf", "1")
    assert standalone_state_path(tap).exists()
    assert json.loads(standalone_state_path(tap).read_text())["position"] == 2


def test_format_status_of_every_bit():
    status = MtGet(type=0x72, resid=0, blksize=1024, density=0x60,
                   gstat=Gstat.EOF | Gstat.EOT | Gstat.EOD | Gstat.WR_PROT | Gstat.ONLINE
                   | Gstat.DR_OPEN | Gstat.IM_REP_EN | Gstat.CLN,
                   erreg=0, fileno=3, blkno=-1)
    text = format_status(status)
    assert "Density code 0x60 (LTO-9)." in text
    assert "General status bits on (ad058000):\n EOF EOT EOD WR_PROT ONLINE DR_OPEN IM_REP_EN CLN\n" in text
