"""The discarding tape (a benchmark sink) and the end-to-end backup benchmark's pieces, tiny sizes."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import bench_backup  # noqa: E402
from benchmarks.discard import DiscardingDrives, DiscardingTape  # noqa: E402
from reference.protocols.conformance import conformance_problems  # noqa: E402
from reference.protocols.tape import Gstat, MtOp, TapeDevice  # noqa: E402
from reference.server.devices import DriveSet  # noqa: E402


def test_discarding_tape_and_drives_conform_to_their_protocols():
    assert conformance_problems(DiscardingTape(), TapeDevice) == []
    assert conformance_problems(DiscardingDrives([0]), DriveSet) == []


def test_blank_tape_reads_eio_at_bot_like_st():
    tape = DiscardingTape()
    with pytest.raises(OSError) as info:
        tape.read(65536)
    assert info.value.errno == errno.EIO
    assert tape.status().has(Gstat.BOT) and tape.status().has(Gstat.EOD)


def test_positions_follow_st_while_bytes_are_dropped():
    tape = DiscardingTape()
    for _ in range(3):
        assert tape.write(bytes(1024)) == 1024
    tape.mtop(MtOp.MTWEOF, 1)
    tape.write(memoryview(bytearray(512)))
    assert (tape.tell(), tape.status().fileno, tape.status().blkno) == (5, 1, 1)
    tape.close()  # last op a write: st writes a filemark at close
    assert tape.eod == 6
    tape.reopen().mtop(MtOp.MTREW)
    assert tape.tell() == 0
    tape.mtop(MtOp.MTFSF, 1)
    assert (tape.tell(), tape.status().fileno) == (4, 1)
    tape.mtop(MtOp.MTEOM)
    assert (tape.tell(), tape.status().fileno, tape.status().blkno) == (6, 2, 0)
    assert tape.bytes_discarded == 3 * 1024 + 512
    with pytest.raises(OSError) as info:
        tape.mtop(MtOp.MTFSF, 5)
    assert info.value.errno == errno.EIO


def test_write_blocks_is_that_many_writes():
    """The multi-block write the media writer uses (emulator extension): same positions, counts."""
    one, many = DiscardingTape(), DiscardingTape()
    for tape in (one, many):
        tape.write(b"x")
        tape.mtop(MtOp.MTWEOF, 1)
    for _ in range(5):
        one.write(bytes(1024))
    assert many.write_blocks(memoryview(bytearray(5 * 1024 + 100)), 1024) == 5
    for attr in ("pos", "fileno", "blkno", "eod", "bytes_discarded", "blocks_discarded"):
        assert getattr(one, attr) == getattr(many, attr), attr
    one.close(), many.close()
    assert one.eod == many.eod == 8  # the filemark st writes at close


def test_writing_mid_tape_moves_end_of_data():
    tape = DiscardingTape()
    for _ in range(4):
        tape.write(b"x")
    tape.mtop(MtOp.MTREW)
    tape.write(b"y")
    assert tape.eod == 1


def test_unsupported_ops_and_closed_device_fail_like_a_driver():
    tape = DiscardingTape()
    with pytest.raises(OSError) as info:
        tape.mtop(MtOp.MTERASE)
    assert info.value.errno == errno.ENOSYS
    tape.close()
    with pytest.raises(OSError) as info:
        tape.write(b"x")
    assert info.value.errno == errno.EBADF


@pytest.fixture(scope="module")
def tiny_exchange(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench") / "exchange"
    server = bench_backup.make_exchange(root, 2)
    yield server
    server.shutdown()


def test_backup_to_cartridge_and_to_discarding_drive_carry_the_same_bytes(tiny_exchange, tmp_path):
    seconds, nbytes, facts = bench_backup.backup_once(tiny_exchange, tmp_path / "site")
    files = bench_backup.backup_files(tiny_exchange)
    assert nbytes >= sum(p.stat().st_size for p in files[:2])  # at least both database streams
    assert facts["bytes_on_media"] > nbytes and seconds > 0
    taps = list((tmp_path / "site" / "library").rglob("*.tap"))
    assert sum(p.stat().st_size for p in taps) > nbytes  # the data set really is in a cartridge file
    _, dropped_bytes, dropped = bench_backup.backup_once(tiny_exchange, tmp_path / "site2", discard=True)
    assert dropped["discarded"] >= dropped_bytes
    assert not list((tmp_path / "site2" / "library").rglob("*.tap")) or \
        sum(p.stat().st_size for p in (tmp_path / "site2" / "library").rglob("*.tap")) < dropped_bytes


def test_baselines_copy_the_same_files(tiny_exchange, tmp_path):
    files = bench_backup.backup_files(tiny_exchange)
    assert files[0].suffix == ".edb" and any(p.suffix == ".log" for p in files)
    assert bench_backup.dd_copy(files, tmp_path / "copy") > 0
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == sorted(p.name for p in files)
    assert bench_backup.dd_copy(files[:1], tmp_path / "copy") > 0  # the previous copy is gone first
    assert [p.name for p in (tmp_path / "copy").iterdir()] == [files[0].name]
    assert bench_backup.cat_null(files) > 0


def test_restore_benchmark_restores_what_the_full_backup_wrote(tmp_path):
    exchange = bench_backup.make_exchange(tmp_path / "exchange", 2)
    try:
        streams = bench_backup.backup_files(exchange)[:2]
        before = [p.read_bytes() for p in streams]
        seconds, restored, cartridge = bench_backup.restore_once(exchange, tmp_path / "site")
        assert seconds > 0 and cartridge.suffix == ".tap"
        assert restored >= sum(len(b) for b in before)
        # the stores are back (headers change with recovery and mount, so compare sizes, not bytes)
        assert [p.stat().st_size for p in streams] == [len(b) for b in before]
    finally:
        exchange.shutdown()
