"""The real changer driver (:class:`MtxChanger`) with the ``mtx`` process replaced by canned output.

The canned texts are the real captures (samples/mtx) and mtx 1.3.12's own error output
(``FatalError`` = ``"mtx: " + message``; ``PrintRequestSense`` = ``"mtx: Request Sense: ..."``
lines). Nothing here needs mtx installed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reference.drivers.mtx import MtxChanger, changer_error_from_mtx
from reference.errors import CorruptDataError, MailtapeError
from reference.protocols.changer import ChangerError, MediaChanger, Sense
from reference.protocols.conformance import assert_conforms

REQUEST_SENSE_MAP_OPEN = """\
mtx: Request Sense: Long Report=yes
mtx: Request Sense: Valid Residual=no
mtx: Request Sense: Error Code=70 (Current)
mtx: Request Sense: Sense Key=Not Ready
mtx: Request Sense: FileMark=no
mtx: Request Sense: EOM=no
mtx: Request Sense: ILI=no
mtx: Request Sense: Additional Sense Code = 3A
mtx: Request Sense: Additional Sense Qualifier = 02
mtx: Request Sense: BPV=no
mtx: Request Sense: Error in CDB=no
mtx: Request Sense: SKSV=no
mtx: MOVE MEDIUM from Element Address 1025 to 768 Failed
"""


class FakeMtx:
    """Stands in for ``subprocess.run``: records argv, answers from a script of responses."""

    def __init__(self, responses: dict[str, tuple[int, str, str]]):
        self.responses = responses
        self.calls: list[list[str]] = []

    def __call__(self, argv):
        self.calls.append(list(argv))
        code, out, err = self.responses.get(argv[3], (0, "", ""))
        return subprocess.CompletedProcess(argv, code, out, err)


@pytest.fixture
def loaded2(shared_dir: Path) -> str:
    return (shared_dir / "samples" / "mtx" / "mtx-status-loaded2.txt").read_text()


def test_mtx_changer_conforms() -> None:
    assert_conforms(MtxChanger, MediaChanger)


def test_status_parses_real_capture(loaded2: str) -> None:
    fake = FakeMtx({"status": (0, loaded2, "")})
    changer = MtxChanger("/dev/sg0", runner=fake)
    status = changer.status()
    assert fake.calls == [["mtx", "-f", "/dev/sg0", "status"]]
    assert status.drive(1).source == 6 and status.drive(1).barcode == "000006L8"
    assert changer.status_text() == loaded2


def test_command_lines_match_mtx_usage(loaded2: str) -> None:
    fake = FakeMtx({"status": (0, loaded2, "")})
    changer = MtxChanger("/dev/sg4", runner=fake)
    changer.load(3, 1)
    changer.unload()
    changer.unload(9, 0)
    changer.unload(None, 1)  # mtx args are positional: the driver looks up drive 1's source (6)
    changer.transfer(2, 21)
    changer.exchange(2, 3)
    changer.inventory()
    assert [c[3:] for c in fake.calls] == [
        ["load", "3", "1"], ["unload"], ["unload", "9", "0"], ["status"], ["unload", "6", "1"],
        ["transfer", "2", "21"], ["exchange", "2", "3"], ["inventory"],
    ]


@pytest.mark.parametrize("stderr, message, sense", [
    ("mtx: Source Element Address 1025 is Empty\n", "Source Element Address 1025 is Empty", Sense(5, 0x3B, 0x0E)),
    ("mtx: Destination Element Address 1026 is Already Full\n", "Destination Element Address 1026 is Already Full",
     Sense(5, 0x3B, 0x0D)),
    ("mtx: Drive 0 Full (Storage Element 2 loaded)\n", "Drive 0 Full (Storage Element 2 loaded)", Sense(5, 0x3B, 0x0D)),
    ("mtx: Storage Element 4 is Already Full\n", "Storage Element 4 is Already Full", Sense(5, 0x3B, 0x0D)),
    ("mtx: Data Transfer Element 1 is Empty\n", "Data Transfer Element 1 is Empty", Sense(5, 0x3B, 0x0E)),
    ("mtx: Invalid <storage-element-number> argument '99' to 'load' command\n",
     "Invalid <storage-element-number> argument '99' to 'load' command", Sense(5, 0x21, 0x01)),
    ("mtx: Drive needs offline before move\n", "Drive needs offline before move", Sense(2, 0x3A, 0x00)),
    ("mtx: Cleaning Cartridge Installed and Ejected\n", "Cleaning Cartridge Installed and Ejected",
     Sense(2, 0x30, 0x03)),
    (REQUEST_SENSE_MAP_OPEN, "MOVE MEDIUM from Element Address 1025 to 768 Failed", Sense(2, 0x3A, 0x02)),
    ("mailtape: error: Source Element Address 1032 is Empty (sense 5/3B/0E)\n",
     "Source Element Address 1032 is Empty", Sense(5, 0x3B, 0x0E)),
    ("", "mtx -f /dev/sg0 load 1 0 failed with exit status 1", None),
])
def test_failures_become_changer_errors_with_sense(stderr: str, message: str, sense: Sense | None) -> None:
    fake = FakeMtx({"load": (1, "", stderr)})
    with pytest.raises(ChangerError) as error:
        MtxChanger("/dev/sg0", runner=fake).load(1, 0)
    assert error.value.sense == sense
    assert str(error.value).startswith(message)
    assert changer_error_from_mtx(stderr, "x").sense == sense


def test_garbage_status_is_a_clear_error() -> None:
    fake = FakeMtx({"status": (0, "mtx: something odd\n", "")})
    with pytest.raises(CorruptDataError, match=r"mtx -f /dev/sg7 status.*line 1"):
        MtxChanger("/dev/sg7", runner=fake).status()


def test_missing_mtx_binary_is_a_clear_error() -> None:
    with pytest.raises(MailtapeError, match="command not found"):
        MtxChanger("/dev/sg0", mtx="/nonexistent/bin/mtx").status()
