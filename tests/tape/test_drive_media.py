"""Drive faithfulness, E series (spec tape-drive.md §7): end of medium, protection, media types.

Behaviours that need a special cartridge (tiny, write-protected, WORM, cleaning, another
generation) run on the emulator only; the rest also run on a real drive (MAILTAPE_TEST_TAPE).
"""

from __future__ import annotations

import errno

import numpy as np
import pytest

from emulators.tape.cartridge import Cartridge
from emulators.tape.drive import EmulatedDrive, LoadError
from reference.protocols.changer import Sense
from reference.protocols.tape import Gstat, MtOp

KiB, MiB = 1 << 10, 1 << 20


def outcome(call, *args):
    try:
        return call(*args)
    except OSError as failure:
        return errno.errorcode[failure.errno]


def small(rig, capacity=2 * MiB, early_warning=256 * KiB, **options):
    return rig.special(capacity_bytes=capacity, early_warning_bytes=early_warning, **options)


def test_E1_early_warning_then_ENOSPC_alternates_with_successful_writes(rig):
    cartridge = small(rig)
    block = bytes(range(256)) * 256  # 64 KiB
    with rig.open() as tape:
        results, bits = [], []
        for _ in range(60):
            results.append(outcome(tape.write, block))
            bits.append(tape.status().gstat)
    warned = next(i for i, r in enumerate(results) if r == "ENOSPC") - 1
    assert all(r == len(block) for r in results[: warned + 1])  # the write crossing EW succeeds
    assert bits[warned] & Gstat.EOT
    tail = results[warned + 1:]
    first_full_stop = next(i for i in range(len(tail) - 1) if tail[i] == tail[i + 1] == "ENOSPC")
    alternation = tail[:first_full_stop]
    assert alternation[0::2] == ["ENOSPC"] * len(alternation[0::2])
    assert alternation[1::2] == [len(block)] * len(alternation[1::2])
    assert len(alternation) >= 4
    assert set(tail[first_full_stop:]) == {"ENOSPC"}  # physical end: nothing more fits
    assert bits[warned + 1] & Gstat.EOD
    assert cartridge.used_bytes <= cartridge.capacity_bytes


def test_E2_filemark_after_early_warning_succeeds(rig):
    small(rig)
    with rig.open() as tape:
        while outcome(tape.write, bytes(64 * KiB)) != "ENOSPC":
            pass
        assert tape.write(b"trailer" * 100) == 700  # allowed after the ENOSPC
        tape.mtop(MtOp.MTWEOF, 1)  # and a filemark after the trailer
    with rig.open() as tape:
        tape.mtop(MtOp.MTEOM)
        position = tape.tell()
        tape.mtop(MtOp.MTBSF, 1)
        assert tape.tell() == position - 1


def test_E3_past_physical_end_nothing_is_recorded(rig):
    cartridge = small(rig)
    written = 0
    with rig.open() as tape:
        for tag in range(100):
            if outcome(tape.write, bytes([tag]) * 64 * KiB) == 64 * KiB:
                written += 1
        tape.mtop(MtOp.MTREW)
        seen = []
        while True:
            try:
                data = tape.read(1 * MiB)
            except OSError:
                break
            if not data:
                continue
            seen.append(data[0])
    assert len(seen) == written
    assert cartridge.object_count in (written, written + 1)  # + the filemark REW added


def test_E4_btape_fill_and_unfill(rig):
    """btape fill: random 64512-byte blocks to the end of medium, then unfill re-reads the last."""
    small(rig, capacity=8 * MiB, early_warning=512 * KiB)
    rng = np.random.default_rng(4)
    record = 64512
    last = None
    blocks = 0
    with rig.open() as tape:
        tape.mtop(MtOp.MTREW)
        first = rng.bytes(record)
        tape.write(first)
        blocks = 1
        while True:
            data = rng.bytes(record)
            try:
                tape.write(data)
            except OSError as failure:
                assert failure.errno == errno.ENOSPC
                break
            last, blocks = data, blocks + 1
        tape.mtop(MtOp.MTWEOF, 1)
        end = tape.status()
    with rig.open() as tape:  # unfill
        tape.mtop(MtOp.MTREW)
        assert tape.read(record) == first
        tape.mtop(MtOp.MTREW)
        tape.mtop(MtOp.MTFSR, blocks - 1)
        assert tape.status().blkno == blocks - 1
        assert tape.read(record) == last
        assert tape.read(record) == b""
    assert end.fileno == 1


def test_E5_early_warning_is_reported_as_end_of_partition_sense(emulated):
    """E5 (SCSI level, emulator): the write crossing EW is NO SENSE 0/00/02, not 0/00/00."""
    emulated.insert(capacity_bytes=1 * MiB, early_warning_bytes=256 * KiB)
    with emulated.open() as tape:
        while emulated.drive.last_sense is None:
            tape.write(bytes(64 * KiB))
        assert emulated.drive.last_sense == Sense(0x0, 0x00, 0x02)
        while outcome(tape.write, bytes(64 * KiB)) != "ENOSPC" or tape.status().has(Gstat.EOD):
            pass
        assert emulated.drive.last_sense == Sense(0xD, 0x00, 0x02)  # VOLUME OVERFLOW


def test_E6_write_protected_cartridge(rig):
    rig.special(write_protected=True)
    with pytest.raises(OSError) as opened:
        rig.open(write=True)
    assert opened.value.errno == errno.EROFS
    with rig.open(write=True, nonblock=True) as tape:
        assert tape.status().has(Gstat.WR_PROT)
        assert outcome(tape.write, b"x" * 512) == "EACCES"
        assert outcome(tape.mtop, MtOp.MTWEOF, 1) == "EACCES"
        assert outcome(tape.mtop, MtOp.MTERASE, 1) == "EACCES"
    with rig.open(write=False) as tape:
        # A read-only descriptor never reaches st: the VFS refuses write(2) with EBADF.
        assert outcome(tape.write, b"x" * 512) == "EBADF"
        assert outcome(tape.mtop, MtOp.MTWEOF, 1) == "EACCES"


def test_E7_empty_drive(rig):
    with rig.open(nonblock=True) as tape:
        tape.mtop(MtOp.MTOFFL)
        assert tape.status().has(Gstat.DR_OPEN)
        assert not tape.status().has(Gstat.ONLINE)
    try:
        with pytest.raises(OSError) as opened:
            rig.open()
        assert opened.value.errno in ((errno.ENOMEDIUM,) if not rig.real else (errno.ENOMEDIUM, errno.EIO))
        with rig.open(nonblock=True) as tape:
            assert tape.status().has(Gstat.DR_OPEN)
            for op in (MtOp.MTREW, MtOp.MTFSF, MtOp.MTWEOF, MtOp.MTUNLOAD):
                assert outcome(tape.mtop, op, 1) == "ENOMEDIUM"
            assert outcome(tape.read, 1024) == "ENOMEDIUM"
    finally:
        with rig.open(nonblock=True) as tape:
            tape.mtop(MtOp.MTLOAD)
    with rig.open() as tape:
        assert tape.status().has(Gstat.ONLINE | Gstat.BOT)


def test_E8_WORM_appends_only_and_a_lone_filemark_at_BOT_is_rewritable(rig):
    rig.special(barcode="W00001LZ")  # LZ: LTO-9 WORM
    with rig.open() as tape:
        tape.mtop(MtOp.MTWEOF, 1)  # a label-less blank: one filemark at BOT
        tape.mtop(MtOp.MTREW)
        assert tape.write(b"label" * 100) == 500  # mhvtl: rewritable over the lone filemark
        tape.mtop(MtOp.MTWEOF, 1)
        tape.write(b"data" * 100)
        tape.mtop(MtOp.MTWEOF, 1)  # appending at EOD is fine
        tape.mtop(MtOp.MTREW)
        assert outcome(tape.write, b"overwrite" * 10) == "EIO"  # DATA PROTECT 7/30/0C
        assert outcome(tape.mtop, MtOp.MTWEOF, 1) == "EIO"
        assert outcome(tape.mtop, MtOp.MTERASE, 1) == "EIO"
        tape.mtop(MtOp.MTEOM)
        assert tape.write(b"more" * 100) == 400
        tape.mtop(MtOp.MTREW)
        assert tape.read(4096) == b"label" * 100


def test_E9_cleaning_cartridge_makes_reads_and_writes_fail_EIO(rig):
    rig.special(barcode="CLN001L1")
    with pytest.raises(OSError) as opened:
        rig.open()
    assert opened.value.errno == errno.EIO
    with rig.open(nonblock=True) as tape:
        assert outcome(tape.read, 1024) == "EIO"
        assert outcome(tape.write, b"x" * 1024) == "EIO"
        assert not tape.status().has(Gstat.ONLINE)


def test_E10_generation_compatibility(tmp_path):
    def cartridge(barcode):
        return Cartridge.create(tmp_path / f"{barcode}.tap", barcode=barcode, capacity_bytes=MiB)

    lto9 = EmulatedDrive("LTO-9")
    for barcode in ("A00001L8", "A00001L9"):
        lto9.load(cartridge(barcode))
        with lto9.open() as tape:
            assert tape.write(b"x" * 100) == 100
        lto9.unload()
    with pytest.raises(LoadError) as refused:
        lto9.load(cartridge("A00001L7"))
    assert refused.value.reason == "unsupported" and lto9.cartridge is None
    lto10 = EmulatedDrive("LTO-10")
    lto10.load(cartridge("A00001LA"))
    lto10.unload()
    for barcode in ("A00002L9", "A00002L8"):
        with pytest.raises(LoadError):
            lto10.load(cartridge(barcode))
    lto7 = EmulatedDrive("LTO-7")  # reads LTO-5 (two back), writes only LTO-6 and LTO-7
    lto7.load(cartridge("A00001L5"))
    with pytest.raises(OSError) as opened:
        lto7.open(write=True)
    assert opened.value.errno == errno.EROFS
    with lto7.open(write=False) as tape:
        assert tape.status().has(Gstat.WR_PROT)


def test_E11_compression_saves_capacity_on_zeros_and_round_trips(emulated):
    emulated.insert(capacity_bytes=64 * MiB, compression=True)
    rng = np.random.default_rng(11)
    zeros, noise = bytes(256 * KiB), rng.bytes(256 * KiB)
    with emulated.open() as tape:
        tape.mtop(MtOp.MTCOMPRESSION, 1)
        for _ in range(16):
            tape.write(zeros)
        used_by_zeros = emulated.drive.cartridge.used_bytes
        for _ in range(16):
            tape.write(noise)
        used_by_noise = emulated.drive.cartridge.used_bytes - used_by_zeros
        tape.mtop(MtOp.MTREW)
        assert all(tape.read(MiB) == zeros for _ in range(16))
        assert all(tape.read(MiB) == noise for _ in range(16))
    assert used_by_zeros < 16 * 256 * KiB / 50
    assert used_by_noise >= 16 * 256 * KiB


def test_E12_filemarks_survive_unload_and_reload(rig):
    with rig.open() as tape:
        tape.write(b"head" * 256)
        tape.mtop(MtOp.MTWEOF, 20)
    rig.reload()
    with rig.open() as tape:
        tape.mtop(MtOp.MTEOM)
        assert tape.status().fileno == 20
        assert tape.tell() == 21
        tape.mtop(MtOp.MTREW)
        assert tape.read(4096) == b"head" * 256
