"""The emulated drive's multi-block write (``EmulatedTapeDevice.write_blocks``) and the cartridge's
``append_records``: an emulator fast path that must leave exactly what one ``write()`` per block
leaves - the same SIMH bytes (spec ``tape-drive.md`` §3), the same st positions, the same ENOSPC at
early warning (§2 "EOM behaviour when writing") - and never hold the caller's buffer."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings, strategies as st

import emulators.tape.cartridge as cartridge_module
from emulators.tape.cartridge import Cartridge
from emulators.tape.drive import EmulatedDrive
from reference.protocols.tape import MtOp

KiB, MiB = 1 << 10, 1 << 20


def fresh(tmp_path, name: str, **options):
    cartridge = Cartridge.create(tmp_path / f"{name}.tap", barcode=f"{name}L9", **options)
    drive = EmulatedDrive("LTO-9")
    drive.load(cartridge)
    return drive, cartridge


def write_per_block(tape, data: bytes, size: int) -> list:
    """One write() per block; returns what each call did (its count, or the errno it raised)."""
    outcome = []
    for i in range(0, len(data), size):
        try:
            outcome.append(tape.write(data[i:i + size]))
        except OSError as err:
            outcome.append(err.errno)
    return outcome


def write_batched(tape, data: bytes, size: int) -> list:
    """write_blocks for as much as it takes, write() for each block it leaves; same outcome list."""
    outcome, i = [], 0
    buffer = bytearray(data)  # a reusable, writable buffer (what the transfer pool hands over)
    while i < len(buffer):
        count = tape.write_blocks(memoryview(buffer)[i:], size)
        outcome += [size] * count
        i += count * size
        if i < len(buffer):
            try:
                outcome.append(tape.write(buffer[i:i + size]))
            except OSError as err:
                outcome.append(err.errno)
            i += size
    buffer[:] = bytes(len(buffer))  # the caller reuses its buffer: nothing may still point at it
    return outcome


def state(drive, tape):
    status = tape.status()
    return tape.tell(), status.fileno, status.blkno, int(status.gstat), drive.eof


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.sampled_from([512, 4 * KiB, 64 * KiB, 64 * KiB + 1]), min_size=1, max_size=3),
       blocks=st.integers(1, 40), capacity=st.sampled_from([None, 3 * MiB]))
def test_write_blocks_leaves_the_image_and_positions_of_one_write_per_block(tmp_path_factory, sizes, blocks,
                                                                            capacity):
    """Same bytes on the cartridge, same position/file/block/EOT status, same ENOSPC (early warning
    reached inside a batch: the blocks before it are written, the one at it fails) - odd block
    sizes too (SIMH pad byte)."""
    tmp = tmp_path_factory.mktemp("blocks")
    options = {} if capacity is None else {"capacity_bytes": capacity, "early_warning_bytes": 1 * MiB}
    results = []
    for name, writer in (("A0001", write_per_block), ("B0001", write_batched)):
        drive, cartridge = fresh(tmp, name, **options)
        with drive.open() as tape:
            outcomes = []
            for round_, size in enumerate(sizes):
                data = bytes((round_ * 7 + i) % 251 for i in range(size)) * blocks
                outcomes.append(writer(tape, data, size))
                tape.mtop(MtOp.MTWEOF, 1)
            positions = state(drive, tape)
        drive.unload()
        cartridge.close()
        results.append((outcomes, positions, cartridge.path.read_bytes()))
    assert results[0] == results[1]


def test_write_blocks_takes_nothing_unless_streaming(tmp_path):
    """The first write after open or a filemark, fixed-block mode and a compressing cartridge go
    through write() (0 blocks taken), which decides as it always did."""
    drive, _ = fresh(tmp_path, "C0001")
    data = bytes(64 * KiB) * 4
    with drive.open() as tape:
        assert tape.write_blocks(data, 64 * KiB) == 0  # not writing yet
        tape.write(data[:64 * KiB])
        assert tape.write_blocks(data, 64 * KiB) == 4
        tape.mtop(MtOp.MTWEOF, 1)
        assert tape.write_blocks(data, 64 * KiB) == 0  # after the filemark
        tape.mtop(MtOp.MTSETBLK, 64 * KiB)
        tape.write(data[:64 * KiB])
        assert tape.write_blocks(data, 64 * KiB) == 0  # fixed-block mode
    drive.unload()
    drive, _ = fresh(tmp_path, "D0001", compression=True)
    with drive.open() as tape:
        tape.write(data[:64 * KiB])
        assert tape.write_blocks(data, 64 * KiB) == 0
    drive.unload()


def test_write_blocks_on_a_read_only_open_is_ebadf(tmp_path):
    drive, _ = fresh(tmp_path, "E0001")
    with drive.open(write=False) as tape:
        with pytest.raises(OSError) as failure:
            tape.write_blocks(bytes(1024), 512)
    assert failure.value.errno == errno.EBADF


def test_append_records_splits_at_the_iovec_limit(tmp_path, monkeypatch):
    """More records than one pwritev takes: several calls, one SIMH image, one index."""
    monkeypatch.setattr(cartridge_module, "_IOV_MAX", 12)  # 4 records per call
    cartridge = Cartridge.create(tmp_path / "F0001L9.tap", barcode="F0001L9")
    data = bytes(range(250)) * 2 * 11  # 11 records of 499 bytes (odd: pad byte)
    calls = []
    real = cartridge_module.os.pwritev
    monkeypatch.setattr(cartridge_module.os, "pwritev", lambda fd, parts, at: calls.append(len(parts)) or real(fd, parts, at))
    cartridge.append_records(memoryview(data)[:499 * 11], 499, 11)
    assert calls == [12, 12, 9]
    assert cartridge.object_count == 11 and cartridge.used_bytes == 11 * (8 + 500)
    assert [cartridge.read_record(i) for i in range(11)] == [data[i * 499:(i + 1) * 499] for i in range(11)]
    cartridge.close()


def test_append_records_failure_cuts_the_image_back_and_keeps_the_index(tmp_path, monkeypatch):
    cartridge = Cartridge.create(tmp_path / "G0001L9.tap", barcode="G0001L9")
    cartridge.append_record(b"kept", 4)

    def short(fd, parts, offset):
        return 5  # a short write: the disk filled up under the image

    monkeypatch.setattr(cartridge_module.os, "pwritev", short)
    with pytest.raises(OSError) as failure:
        cartridge.append_records(bytes(3000), 1000, 3)
    assert failure.value.errno == errno.EIO
    monkeypatch.undo()
    assert cartridge.object_count == 1 and cartridge.used_bytes == 12
    assert cartridge.path.stat().st_size == 12 and cartridge.read_record(0) == b"kept"
    cartridge.close()


@pytest.mark.parametrize("slack", [-1, 0, 1])
def test_write_blocks_stops_exactly_where_write_would_see_early_warning(tmp_path, slack):
    """Early warning right at a record boundary (± 1 byte): the block that reaches it is left to
    write(), which writes it and reports EOM (the next write: ENOSPC), as st does."""
    span = 1000 + 8
    early = 4096
    capacity = span * 11 + early + slack  # the warning zone begins at the end of block 11 (+ slack)
    outcomes = []
    for name, writer in (("H0001", write_per_block), ("J0001", write_batched)):
        drive, cartridge = fresh(tmp_path, f"{name}{slack + 1}", capacity_bytes=capacity, early_warning_bytes=early)
        with drive.open() as tape:
            outcomes.append((writer(tape, bytes(1000) * 14, 1000), state(drive, tape)))
        drive.unload()
    assert outcomes[0] == outcomes[1]
    assert errno.ENOSPC in outcomes[0][0]
