"""The emulated drive's multi-block read (``EmulatedTapeDevice.read_blocks``) and the cartridge's
``readinto_records``: an emulator fast path for the restore that must read exactly what one
``readinto()`` per block reads - the same bytes, the same st positions, stopping before a
filemark, a record of another length or the end of data (spec ``tape-drive.md`` §2 "read
semantics", §3 SIMH framing) - so the caller's next ``readinto()`` decides as it always does."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings, strategies as st

import emulators.tape.cartridge as cartridge_module
from emulators.tape.cartridge import Cartridge
from emulators.tape.drive import EmulatedDrive
from reference.protocols.tape import MtOp

KiB = 1 << 10


def recorded(tmp_path, name: str, files: list[list[bytes]], **options) -> tuple[EmulatedDrive, Cartridge]:
    """A cartridge holding ``files`` (lists of records), a filemark after each."""
    cartridge = Cartridge.create(tmp_path / f"{name}.tap", barcode=f"{name}L9", **options)
    drive = EmulatedDrive("LTO-9")
    drive.load(cartridge)
    with drive.open() as tape:
        for records in files:
            for record in records:
                tape.write(record)
            tape.mtop(MtOp.MTWEOF, 1)
    return drive, cartridge


def read_per_block(tape, size: int, limit: int) -> list:
    """One readinto() per block: what each returned (a length, or the bytes when > 0)."""
    out = []
    for _ in range(limit):
        buffer = bytearray(size)
        try:
            n = tape.readinto(buffer)
        except OSError as err:
            out.append(err.errno)
            break
        out.append(bytes(buffer[:n]) if n else 0)
    return out


def read_batched(tape, size: int, limit: int) -> list:
    """read_blocks for as much as it takes (into one buffer), readinto() for each block it
    leaves; the same outcome list."""
    out = []
    while len(out) < limit:
        want = limit - len(out)
        buffer = bytearray(size * want)
        count = tape.read_blocks(memoryview(buffer), size)
        out += [bytes(buffer[i * size:(i + 1) * size]) for i in range(count)]
        if len(out) < limit:
            out += read_per_block(tape, size, 1)
            if isinstance(out[-1], int) and out[-1] != 0:
                break
    return out


def position(drive, tape):
    status = tape.status()
    return tape.tell(), status.fileno, status.blkno, int(status.gstat), drive.eof


@settings(max_examples=25, deadline=None)
@given(layout=st.lists(st.lists(st.sampled_from([512, 4 * KiB, 4 * KiB + 1, 64 * KiB]), min_size=0, max_size=12),
                       min_size=1, max_size=3),
       size=st.sampled_from([512, 4 * KiB, 4 * KiB + 1, 64 * KiB]), limit=st.integers(1, 40))
def test_read_blocks_reads_what_one_readinto_per_block_reads(tmp_path_factory, layout, size, limit):
    """Same bytes, same position/file/block/EOF status afterwards, for any mix of record lengths
    and filemarks (odd lengths carry the SIMH pad byte)."""
    tmp = tmp_path_factory.mktemp("rb")
    files = [[bytes((f * 31 + r * 7 + i) % 251 for i in range(length)) for r, length in enumerate(lengths)]
             for f, lengths in enumerate(layout)]
    results = []
    for name, reader in (("A0001", read_per_block), ("B0001", read_batched)):
        drive, cartridge = recorded(tmp, name, files)
        with drive.open(write=False) as tape:
            tape.mtop(MtOp.MTREW, 1)
            first = read_per_block(tape, size, 1)  # streaming starts with the first read
            got = first + reader(tape, size, limit)
            results.append((got, position(drive, tape)))
        drive.unload()
        cartridge.close()
    assert results[0] == results[1]


def test_read_blocks_takes_nothing_unless_streaming(tmp_path):
    """Right after positioning, in fixed-block mode and on a compressing cartridge it reads
    nothing (0): readinto() goes first and decides as it always did."""
    block = bytes(range(256)) * 256  # 64 KiB
    drive, cartridge = recorded(tmp_path, "C0001", [[block] * 6])
    buffer = bytearray(4 * len(block))
    with drive.open(write=False) as tape:
        tape.mtop(MtOp.MTREW, 1)
        assert tape.read_blocks(buffer, len(block)) == 0  # nothing read since the rewind
        tape.readinto(bytearray(len(block)))
        assert tape.read_blocks(buffer, len(block)) == 4 and bytes(buffer) == block * 4
        assert tape.status().blkno == 5
        tape.mtop(MtOp.MTSETBLK, len(block))
        assert tape.read_blocks(buffer, len(block)) == 0  # fixed-block mode
    drive.unload()
    cartridge.close()
    drive, cartridge = recorded(tmp_path, "D0001", [[block] * 3], compression=True)
    with drive.open(write=False) as tape:
        tape.mtop(MtOp.MTREW, 1)
        tape.readinto(bytearray(len(block)))
        assert tape.read_blocks(buffer, len(block)) == 0
    drive.unload()
    cartridge.close()


def test_read_blocks_stops_before_the_filemark_which_readinto_then_reports(tmp_path):
    block = bytes(4 * KiB)
    drive, cartridge = recorded(tmp_path, "E0001", [[block] * 3, [block]])
    with drive.open(write=False) as tape:
        tape.mtop(MtOp.MTREW, 1)
        tape.readinto(bytearray(len(block)))
        assert tape.read_blocks(bytearray(10 * len(block)), len(block)) == 2
        assert tape.readinto(bytearray(len(block))) == 0  # the filemark, as st reports it
        assert tape.status().fileno == 1
    drive.unload()
    cartridge.close()


def test_read_blocks_on_a_closed_device_is_ebadf(tmp_path):
    drive, cartridge = recorded(tmp_path, "F0001", [[bytes(512)]])
    tape = drive.open(write=False)
    tape.close()
    with pytest.raises(OSError) as failure:
        tape.read_blocks(bytearray(1024), 512)
    assert failure.value.errno == errno.EBADF
    drive.unload()
    cartridge.close()


def test_readinto_records_splits_at_the_iovec_limit(tmp_path, monkeypatch):
    """More records than one preadv takes: several calls, the same bytes."""
    monkeypatch.setattr(cartridge_module, "_IOV_MAX", 8)  # 4 records per call
    cartridge = Cartridge.create(tmp_path / "G0001L9.tap", barcode="G0001L9")
    records = [bytes([i]) * 499 for i in range(11)]  # odd length: the pad byte sits in each gap
    for record in records:
        cartridge.append_record(record, len(record))
    calls = []
    real = cartridge_module.os.preadv
    monkeypatch.setattr(cartridge_module.os, "preadv",
                        lambda fd, parts, at: calls.append(len(parts)) or real(fd, parts, at))
    buffer = bytearray(499 * 11)
    assert cartridge.readinto_records(0, 11, memoryview(buffer), 499) == 11
    assert calls == [7, 7, 5] and bytes(buffer) == b"".join(records)
    cartridge.close()
