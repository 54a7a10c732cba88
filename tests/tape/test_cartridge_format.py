"""Cartridge images: the SIMH .tap layout, the sidecar, crash repair and damaged media (spec §3)."""

from __future__ import annotations

import errno
import json
import struct

import pytest
from hypothesis import given, strategies as st

from emulators.tape import simh
from emulators.tape.cartridge import Cartridge, MediumError, sidecar_path
from emulators.tape.drive import EmulatedDrive
from reference.errors import CorruptDataError, MailtapeError, NotFoundError
from reference.protocols.tape import MtOp

MiB = 1 << 20


def make(tmp_path, barcode="F00001L9", **options) -> Cartridge:
    return Cartridge.create(tmp_path / f"{barcode}.tap", barcode=barcode, **options)


def write_tape(cartridge, blocks_and_marks) -> None:
    drive = EmulatedDrive("LTO-9")
    drive.load(cartridge)
    with drive.open() as tape:
        for item in blocks_and_marks:
            if item is None:
                tape.mtop(MtOp.MTWEOF, 1)
            else:
                tape.write(item)
        tape.mtop(MtOp.MTWEOFI, 0)  # end the write state: no filemark on close
    drive.unload()


def test_simh_layout_is_byte_exact(tmp_path):
    cartridge = make(tmp_path)
    write_tape(cartridge, [b"abc", None, b"wxyz"])
    raw = cartridge.path.read_bytes()
    expected = (struct.pack("<I", 3) + b"abc\0" + struct.pack("<I", 3)  # odd length: one pad byte
                + struct.pack("<I", 0)
                + struct.pack("<I", 4) + b"wxyz" + struct.pack("<I", 4))
    assert raw == expected


def test_sidecar_carries_identity_and_counters(tmp_path):
    cartridge = make(tmp_path, barcode="S00001LZ", capacity_bytes=4 * MiB)
    write_tape(cartridge, [b"x" * 1000])
    cartridge.close()
    meta = json.loads(sidecar_path(cartridge.path).read_text())
    assert (meta["barcode"], meta["generation"], meta["kind"]) == ("S00001LZ", "LTO-9", "worm")
    assert meta["capacity_bytes"] == 4 * MiB and meta["load_count"] == 1
    assert meta["bytes_written"] == 1000
    assert meta["mam"]["0x0806"] == "S00001LZ" and meta["mam"]["0x0408"] == 1


def test_index_survives_reopen_and_positions_without_rescan(tmp_path):
    cartridge = make(tmp_path)
    write_tape(cartridge, [b"a" * 10, None, b"b" * 11, b"c" * 12, None])
    cartridge.close()
    reopened = Cartridge.open(cartridge.path)
    assert reopened.object_count == 5 and reopened.filemark_count == 2
    assert reopened.read_record(3) == b"c" * 12
    assert reopened.filemarks_before(3) == 1


def test_torn_tail_is_cut_back_to_the_last_whole_record(tmp_path, caplog):
    cartridge = make(tmp_path)
    write_tape(cartridge, [b"a" * 100, b"b" * 100])
    cartridge.close()
    with open(cartridge.path, "ab") as image:  # an append interrupted mid-record
        image.write(struct.pack("<I", 5000) + b"partial")
    size_before = cartridge.path.stat().st_size
    with caplog.at_level("WARNING"):
        reopened = Cartridge.open(cartridge.path)
    assert "torn record" in caplog.text and str(cartridge.path) in caplog.text
    assert reopened.object_count == 2
    assert cartridge.path.stat().st_size < size_before
    assert reopened.damage is None


def test_truncated_record_without_repair_names_cartridge_and_offset(tmp_path):
    cartridge = make(tmp_path)
    write_tape(cartridge, [b"a" * 100, b"b" * 100, b"c" * 100])
    cartridge.close()
    data = cartridge.path.read_bytes()
    cartridge.path.write_bytes(data[:-50])  # cut the last record short
    damaged = Cartridge.open(cartridge.path, repair=False)
    drive = EmulatedDrive("LTO-9")
    drive.load(damaged)
    with drive.open(write=False) as tape:
        assert tape.read(4096) == b"a" * 100
        assert tape.read(4096) == b"b" * 100
        with pytest.raises(CorruptDataError) as failure:
            tape.read(4096)
    message = str(failure.value)
    assert "F00001L9" in message and "byte offset 216" in message
    assert isinstance(failure.value, OSError) and failure.value.errno == errno.EIO


def test_damaged_record_in_the_middle_keeps_earlier_records_readable(tmp_path):
    cartridge = make(tmp_path)
    write_tape(cartridge, [b"a" * 100, b"b" * 100, None, b"c" * 100])
    cartridge.close()
    raw = bytearray(cartridge.path.read_bytes())
    raw[108 + 104:108 + 108] = struct.pack("<I", 99)  # second record's trailing length
    cartridge.path.write_bytes(bytes(raw))
    damaged = Cartridge.open(cartridge.path)
    assert damaged.object_count == 1 and damaged.damage[0] == 108
    drive = EmulatedDrive("LTO-9")
    drive.load(damaged)
    with drive.open() as tape:
        assert tape.read(4096) == b"a" * 100
        with pytest.raises(MediumError, match="byte offset 108"):
            tape.read(4096)
        with pytest.raises(MediumError):
            tape.mtop(MtOp.MTFSF, 1)
        tape.mtop(MtOp.MTSEEK, 1)
        tape.write(b"new")  # writing at the damage truncates it, as on a tape
        tape.mtop(MtOp.MTREW)
        assert tape.read(4096) == b"a" * 100 and tape.read(4096) == b"new"


@pytest.mark.parametrize("word, reason", [(0xFF000001, "reserved marker"),
                                          (0x01000010, "reserved bits"),
                                          (0x80000010, "bad by the writer")])
def test_non_simh_length_words_are_rejected(tmp_path, word, reason):
    cartridge = make(tmp_path)
    write_tape(cartridge, [b"ok"])
    cartridge.close()
    with open(cartridge.path, "ab") as image:
        image.write(struct.pack("<I", word) + bytes(32))
    found = simh.scan(cartridge.path)
    assert len(found.offsets) == 1 and reason in found.damage[1] and found.damage[0] == 10


def test_eom_marker_and_erase_gaps(tmp_path):
    path = tmp_path / "G00001L9.tap"
    cartridge = make(tmp_path, barcode="G00001L9")
    cartridge.close()
    body = (struct.pack("<I", simh.ERASE_GAP) + struct.pack("<I", 2) + b"hi" + struct.pack("<I", 2)
            + struct.pack("<I", 0) + struct.pack("<I", simh.EOM_MARKER) + b"junk after EOM")
    path.write_bytes(body)
    reopened = Cartridge.open(path)
    assert reopened.object_count == 2 and reopened.read_record(0) == b"hi"
    assert reopened.is_filemark(1)


def test_bad_sidecar_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(NotFoundError):
        Cartridge.open(tmp_path / "nothing.tap")
    cartridge = make(tmp_path)
    cartridge.close()
    sidecar_path(cartridge.path).write_text("{not json")
    with pytest.raises(CorruptDataError, match="sidecar"):
        Cartridge.open(cartridge.path)
    sidecar_path(cartridge.path).write_text(json.dumps({"format": "mailtape-cartridge",
                                                        "version": 1}))
    with pytest.raises(CorruptDataError, match="barcode"):
        Cartridge.open(cartridge.path)
    with pytest.raises(MailtapeError, match="already exists"):
        make(tmp_path)
    with pytest.raises(NotFoundError, match="suffix"):
        Cartridge.create(tmp_path / "x.tap", barcode="ABCDEFQQ")


@given(st.binary(max_size=300))
def test_scanner_never_crashes_on_arbitrary_bytes(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.tap"
    path.write_bytes(blob)
    found = simh.scan(path)
    assert found.end <= len(blob)
    for offset, length in zip(found.offsets, found.lengths):
        assert offset + simh.record_span(length) <= len(blob) if length else offset + 4 <= len(blob)


@given(st.lists(st.one_of(st.none(), st.binary(min_size=1, max_size=64)), max_size=20))
def test_any_written_sequence_scans_back_identically(tmp_path_factory, items):
    root = tmp_path_factory.mktemp("seq")
    cartridge = Cartridge.create(root / "P00001L9.tap", barcode="P00001L9", capacity_bytes=MiB)
    write_tape(cartridge, items)
    cartridge.close()
    reopened = Cartridge.open(root / "P00001L9.tap")
    assert reopened.object_count == len(items)
    for index, item in enumerate(items):
        if item is None:
            assert reopened.is_filemark(index)
        else:
            assert reopened.read_record(index) == item


def test_large_images_persist_their_index_and_reject_a_stale_one(tmp_path):
    from emulators.tape.cartridge import INDEX_MIN_OBJECTS, index_path

    cartridge = make(tmp_path, capacity_bytes=64 * MiB)
    write_tape(cartridge, [bytes([i % 251]) * 10 if i % 100 else None
                           for i in range(INDEX_MIN_OBJECTS + 10)])
    cartridge.close()
    assert index_path(cartridge.path).exists()
    reopened = Cartridge.open(cartridge.path)
    assert reopened._index_saved  # loaded from the cache, no scan
    assert reopened.object_count == INDEX_MIN_OBJECTS + 10
    assert reopened.read_record(1) == bytes([1]) * 10 and reopened.is_filemark(100)
    reopened.close()
    with open(cartridge.path, "ab") as image:  # the image changes behind the cache's back
        image.write(struct.pack("<I", 0))
    changed = Cartridge.open(cartridge.path)
    assert not changed._index_saved and changed.object_count == INDEX_MIN_OBJECTS + 11
    changed.close()


def test_write_behind_keeps_order_and_never_holds_mutable_buffers(tmp_path):
    """Immutable blocks may be queued (write-behind); a reused bytearray must be written at once."""
    cartridge = make(tmp_path, capacity_bytes=64 * MiB)
    drive = EmulatedDrive("LTO-9")
    drive.load(cartridge)
    reused = bytearray(b"A" * 4096)
    with drive.open() as tape:
        for round_ in range(5):
            tape.write(bytes([round_]) * 5000)  # bytes: may be queued
            reused[:] = bytes([65 + round_]) * 4096
            tape.write(reused)  # written before write() returns
        tape.mtop(MtOp.MTREW)  # any other use of the image writes the queue first
        for round_ in range(5):
            assert tape.read(8192) == bytes([round_]) * 5000
            assert tape.read(8192) == bytes([65 + round_]) * 4096
        tape.mtop(MtOp.MTEOM)
        tape.write(b"q" * 100)
    other = Cartridge.open(cartridge.path, repair=False)  # after close everything is on disk
    # 10 blocks, the filemark REW added, the block, the filemark close added
    assert other.object_count == 13 and other.read_record(11) == b"q" * 100
    other.close()


def test_write_behind_failure_surfaces_later_and_drops_the_queued_records(tmp_path, monkeypatch):
    import emulators.tape.cartridge as module

    cartridge = make(tmp_path, capacity_bytes=64 * MiB)
    cartridge.append_record(b"one", 3, defer=False)
    cartridge.append_record(b"two", 3, defer=True)
    assert cartridge._pending and cartridge.object_count == 2  # queued, already indexed

    def disk_full(fd, parts, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(module.os, "pwritev", disk_full)
    with pytest.raises(OSError) as failure:
        cartridge.read_record(0)
    assert failure.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert cartridge.object_count == 1 and cartridge.read_record(0) == b"one"
    cartridge.close()
