"""``mailtape library`` and ``mailtape mtx`` from the command line: output, refusals, bad input.

Run through the CLI's real entry point (``reference.cli.main.main``) so the error mapping (one line
on stderr, exit status, no traceback) is what a user gets.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from reference.cli.main import main


def run(*args: str) -> tuple[int, str, str]:
    with CliRunner().isolation() as (out, err, _):
        code = main(list(args))
        return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.fixture
def lib(tmp_path: Path) -> str:
    path = str(tmp_path / "lib")
    code, out, err = run("library", "init", path, "--drives", "2", "--slots", "20",
                         "--import-export", "4", "--media", "LTO8", "--cartridges", "8",
                         "--capacity-mb", "4")
    assert (code, err) == (0, ""), err
    assert out == f"created library {path}: 2 drive(s), 20 slot(s) + 4 import/export, 8 LTO-8 cartridge(s)\n"
    return path


def test_init_then_status_prints_mtx_text(lib: str, shared_dir: Path) -> None:
    code, out, _ = run("mtx", "-f", lib, "status")
    expected = (shared_dir / "samples" / "mtx" / "mtx-status-notloaded.txt").read_text()
    assert code == 0
    assert out == expected.replace("/dev/sg0", lib)


def test_init_defaults_and_refusal_to_overwrite(tmp_path: Path) -> None:
    path = str(tmp_path / "d")
    code, out, _ = run("library", "init", path)
    assert code == 0 and "2 drive(s), 20 slot(s) + 4 import/export, 20 LTO-9 cartridge(s)" in out
    assert (tmp_path / "d" / "cartridges" / "000020L9.tap").exists()
    code, _, err = run("library", "init", path, "--slots", "3")
    assert code == 1
    assert err == f"mailtape: error: {path}/library.json: a library already exists here (not overwriting)\n"


def test_init_rejects_bad_arguments(tmp_path: Path) -> None:
    code, _, err = run("library", "init", str(tmp_path / "x"), "--media", "LTO42")
    assert code == 1 and "unknown LTO media 'LTO42'" in err
    code, _, err = run("library", "init", str(tmp_path / "y"), "--slots", "2", "--cartridges", "5")
    assert code == 2 and "--cartridges" in err
    code, _, err = run("library", "init", str(tmp_path / "z"), "--drives", "0")
    assert code == 2 and "--drives" in err


def test_mtx_load_unload_messages(lib: str) -> None:
    assert run("mtx", "-f", lib, "load", "2") == (0, "Loading media from Storage Element 2 into drive 0...done\n", "")
    assert run("mtx", "-f", lib, "load", "5", "1") == (0, "Loading media from Storage Element 5 into drive 1...done\n", "")
    assert run("mtx", "-f", lib, "unload") == (0, "Unloading drive 0 into Storage Element 2...done\n", "")
    assert run("mtx", "-f", lib, "unload", "12", "1") == (0, "Unloading drive 1 into Storage Element 12...done\n", "")
    code, out, _ = run("mtx", "-f", lib, "status")
    assert "      Storage Element 12:Full :VolumeTag=000005L8" in out


@pytest.mark.parametrize("args, message", [
    (["load", "9"], "Source Element Address 1032 is Empty (sense 5/3B/0E)"),
    (["load", "99"], "Invalid <storage-element-number> argument '99' to 'load' command (sense 5/21/01)"),
    (["load", "1", "7"], "illegal <drive-number> argument '7' to 'load' command (sense 5/21/01)"),
    (["unload"], "No Source for tape in drive 0!"),
    (["transfer", "1", "2"], "Destination Element Address 1025 is Already Full (sense 5/3B/0D)"),
    (["transfer", "0", "2"], "No source specified (sense 5/21/01)"),
    (["transfer", "1", "25"], "Invalid destination (sense 5/21/01)"),
    (["exchange", "1", "9"], "Source Element Address 1032 is Empty (sense 5/3B/0E)"),
])
def test_mtx_refusals_are_one_line_and_exit_1(lib: str, args: list[str], message: str) -> None:
    code, out, err = run("mtx", "-f", lib, *args)
    assert (code, out, err) == (1, "", f"mailtape: error: {message}\n")


def test_mtx_bad_device_and_bad_numbers(tmp_path: Path, lib: str) -> None:
    code, _, err = run("mtx", "-f", str(tmp_path), "status")
    assert code == 1 and "not a tape library (no library.json" in err
    code, _, err = run("mtx", "-f", str(tmp_path / "nope"), "status")
    assert code == 1 and "no such changer" in err
    code, _, err = run("mtx", "-f", lib, "load", "two")
    assert code == 2 and "'two' is not a valid integer" in err


def test_corrupt_library_json_is_one_line_naming_the_file(lib: str) -> None:
    state = Path(lib) / "library.json"
    state.write_text(state.read_text()[:100])
    for args in (["mtx", "-f", lib, "status"], ["library", "status", lib]):
        code, out, err = run(*args)
        assert code == 1 and out == ""
        assert err.startswith(f"mailtape: error: {state}: not valid JSON") and err.count("\n") == 1
        assert "Traceback" not in err


def test_operator_map_commands(lib: str) -> None:
    assert run("mtx", "-f", lib, "transfer", "3", "23")[0] == 0
    assert run("library", "map", "open", lib) == (0, "", "")
    code, _, err = run("mtx", "-f", lib, "transfer", "23", "3")
    assert code == 1 and "(sense 2/3A/02)" in err
    assert run("library", "map", "remove", lib, "23") == (0, "removed 000003L8 from mail slot 23\n", "")
    code, out, _ = run("library", "status", lib)
    assert "mail slot OPEN" in out and "shelf: 000003L8" in out
    assert run("library", "map", "insert", lib, "24", "000003L8")[0] == 0
    code, _, err = run("library", "map", "insert", lib, "2", "000003L8")
    assert code == 1 and "element 2 is not an import/export element" in err
    assert run("library", "map", "close", lib)[0] == 0
    code, out, _ = run("mtx", "-f", lib, "status")
    assert "      Storage Element 24 IMPORT/EXPORT:Full :VolumeTag=000003L8" in out
    code, out, _ = run("library", "status", lib)
    assert "mail slot 24: 000003L8" in out and "shelf: empty" in out


def test_mtx_and_mt_share_the_library_drives(lib: str) -> None:
    """``mailtape mtx`` loads into LIBRARY/drive<N>.json, which ``mailtape mt`` then drives."""
    assert run("mtx", "-f", lib, "load", "4", "1")[0] == 0
    code, out, _ = run("mt", "-f", f"{lib}/drive1.json", "status")
    assert code == 0 and "ONLINE" in out and "Density code 0x5e" in out
    assert run("mt", "-f", f"{lib}/drive1.json", "weof", "3")[0] == 0
    assert run("mt", "-f", f"{lib}/drive1.json", "tell") == (0, "At block 3.\n", "")
    assert run("mtx", "-f", lib, "unload", "4", "1")[0] == 0
    code, out, _ = run("mt", "-f", f"{lib}/drive1.json", "status")
    assert "DR_OPEN" in out
    assert run("mtx", "-f", lib, "load", "4", "0")[0] == 0  # same cartridge, other drive
    assert run("mt", "-f", f"{lib}/drive0.json", "eod")[0] == 0
    assert run("mt", "-f", f"{lib}/drive0.json", "tell") == (0, "At block 3.\n", "")


def test_c5_no_auto_eject_library_needs_mt_offline(tmp_path: Path) -> None:
    """C5 from the command line: --no-auto-eject refuses the unload until ``mt offline``."""
    lib = str(tmp_path / "strict")
    assert run("library", "init", lib, "--drives", "1", "--slots", "3", "--import-export", "0",
               "--no-auto-eject", "--capacity-mb", "2")[0] == 0
    assert run("mtx", "-f", lib, "load", "2")[0] == 0
    assert run("mtx", "-f", lib, "unload") == (
        1, "", "mailtape: error: Drive needs offline before move (sense 2/3A/00)\n")
    assert run("mt", "-f", f"{lib}/drive0.json", "offline")[0] == 0
    code, out, _ = run("library", "status", lib)
    assert "drive 0: 000002L9 (ejected) from slot 2" in out
    assert run("mtx", "-f", lib, "unload") == (0, "Unloading drive 0 into Storage Element 2...done\n", "")


def test_drive_locked_by_host_blocks_the_robot(lib: str) -> None:
    """A drive whose door the host locked (``mt lock``): the move fails with 5/53/02."""
    assert run("mtx", "-f", lib, "load", "1")[0] == 0
    assert run("mt", "-f", f"{lib}/drive0.json", "lock")[0] == 0
    code, _, err = run("mtx", "-f", lib, "unload")
    assert code == 1 and err.endswith("(sense 5/53/02)\n")
    assert run("mt", "-f", f"{lib}/drive0.json", "unlock")[0] == 0
    assert run("mtx", "-f", lib, "unload")[0] == 0


def test_init_with_older_drive_generation_refuses_newer_media(tmp_path: Path) -> None:
    lib = str(tmp_path / "old")
    assert run("library", "init", lib, "--drives", "1", "--slots", "2", "--import-export", "0",
               "--media", "LTO9", "--drive-generation", "LTO8", "--capacity-mb", "2")[0] == 0
    code, _, err = run("mtx", "-f", lib, "load", "1")
    assert code == 1 and "cannot load LTO-9" in err and err.endswith("(sense 4/04/03)\n")
    assert run("mtx", "-f", lib, "status")[1].count("Full ") == 2
