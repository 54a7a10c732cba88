"""Timing model on the virtual clock (spec tape-drive.md §5, §7 T1-T4). Emulator only.

The drive buffer is shrunk to 8 MiB (a profile parameter) so the buffer-dynamics tests move a few
tens of MiB instead of gigabytes; the model is the same.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from emulators.clock import VirtualClock
from emulators.tape.cartridge import Cartridge
from emulators.tape.drive import EmulatedDrive
from emulators.tape.profiles import drive_profile
from reference.protocols.tape import MtOp

KiB, MiB = 1 << 10, 1 << 20
BLOCK = 256 * KiB


def timed_drive(tmp_path, generation="LTO-9", buffer=8 * MiB, clock=None, compression=False,
                capacity=1 << 40, name="nst0"):
    clock = clock or VirtualClock()
    profile = dataclasses.replace(drive_profile(generation), buffer_bytes=buffer)
    drive = EmulatedDrive(generation, clock=clock, profile=profile, name=name)
    cartridge = Cartridge.create(tmp_path / f"{name}.tap", barcode=f"{name[-1]}0001L9".upper(),
                                 generation="LTO-9", capacity_bytes=capacity,
                                 compression=compression)
    drive.load(cartridge)
    return drive, clock


def produce(tape, clock, rate, total, data=None):
    """A host producing ``total`` bytes at ``rate`` bytes/s in 256 KiB writes."""
    data = data or bytes(BLOCK)
    for _ in range(total // BLOCK):
        clock.advance(BLOCK / rate)
        tape.write(data)


@pytest.mark.parametrize("rate_mbs, expect_backhitches", [(100, True), (300, False)])
def test_T1_host_slower_than_lowest_speed_step_causes_backhitches(tmp_path, rate_mbs,
                                                                   expect_backhitches):
    drive, clock = timed_drive(tmp_path)
    with drive.open() as tape:
        produce(tape, clock, rate_mbs * 1e6, 64 * MiB)
        counters = drive.timing.counters
        if expect_backhitches:
            assert counters.backhitches >= 3
            assert set(counters.seconds_at_step) == {177.0}  # LTO-9's lowest step
        else:
            assert counters.backhitches == 0
            assert max(counters.seconds_at_step, key=counters.seconds_at_step.get) == 284.0
        assert counters.buffer_series and max(f for _, f in counters.buffer_series) <= 8 * MiB


def test_T2_synchronising_filemark_drains_the_buffer_immediate_does_not(tmp_path):
    drive, clock = timed_drive(tmp_path)
    with drive.open() as tape:
        produce(tape, clock, 1e9, 6 * MiB)
        before = clock.now()
        tape.mtop(MtOp.MTWEOFI, 1)
        assert clock.now() == before
        tape.mtop(MtOp.MTWEOF, 1)
        drained = clock.now() - before
        assert drained > 0
        assert drained == pytest.approx(6 * MiB / 385e6, rel=0.2)  # at the matched step
        assert drive.timing.counters.backhitches == 1  # the tape stopped at the sync point


def test_T3_mechanical_times_follow_the_generation_table(tmp_path):
    profile = drive_profile("LTO-9")
    clock = VirtualClock()
    drive = EmulatedDrive("LTO-9", clock=clock)
    # 8 records of 65528 bytes take 8 x 64 KiB of the image: exactly half of a 1 MiB cartridge.
    cartridge = Cartridge.create(tmp_path / "M00001L9.tap", barcode="M00001L9",
                                 capacity_bytes=1 * MiB, early_warning_bytes=64 * KiB)
    start = clock.now()
    drive.load(cartridge)
    assert clock.now() - start == pytest.approx(profile.load_seconds)
    with drive.open() as tape:
        for _ in range(8):
            tape.write(bytes(65528))
        tape.mtop(MtOp.MTWEOFI, 1)
        mark = clock.now()
        tape.mtop(MtOp.MTREW)
        assert clock.now() - mark == pytest.approx(profile.rewind_avg_seconds, rel=1e-3)
        mark = clock.now()
        tape.mtop(MtOp.MTSEEK, 8)
        assert clock.now() - mark == pytest.approx(profile.locate_avg_seconds, rel=1e-3)
        tape.mtop(MtOp.MTREW)
    mark = clock.now()
    drive.unload()
    assert clock.now() - mark == pytest.approx(profile.unload_seconds)


def test_T4_btape_speed_zero_data_faster_than_random_with_compression(tmp_path):
    drive, clock = timed_drive(tmp_path, compression=True)
    rng = np.random.default_rng(4)
    noise = rng.bytes(BLOCK)
    with drive.open() as tape:
        tape.mtop(MtOp.MTCOMPRESSION, 1)
        start = clock.now()
        produce(tape, clock, float("inf"), 32 * MiB)
        tape.mtop(MtOp.MTWEOF, 1)
        zero_seconds = clock.now() - start
        start = clock.now()
        produce(tape, clock, float("inf"), 32 * MiB, data=noise)
        tape.mtop(MtOp.MTWEOF, 1)
        random_seconds = clock.now() - start
    assert zero_seconds * 10 < random_seconds
    # the backhitch left by the previous synchronising filemark, then streaming at the top step
    backhitch = drive.profile.backhitch_seconds
    assert random_seconds == pytest.approx(backhitch + 32 * MiB / 385e6, rel=0.05)


def test_without_a_clock_nothing_is_charged(tmp_path):
    drive = EmulatedDrive("LTO-9")
    drive.load(Cartridge.create(tmp_path / "N00001L9.tap", barcode="N00001L9",
                                capacity_bytes=MiB))
    assert drive.timing is None
    with drive.open() as tape:
        tape.write(b"x" * 1000)
        tape.mtop(MtOp.MTREW)


def test_T1_host_faster_than_the_tape_keeps_the_drive_at_its_top_step(tmp_path):
    """§5: the step follows the host's *offered* rate r. A host that writes back to back is
    blocked on the full buffer most of the time; the time it waits is not host time, so the
    drive does not measure its own drain rate as the host rate and ratchet down the steps."""
    drive, clock = timed_drive(tmp_path)
    with drive.open() as tape:
        data = bytes(BLOCK)
        for _ in range(256 * MiB // BLOCK):  # no pause between writes: far above 408 MB/s
            tape.write(data)
        at_step = drive.timing.counters.seconds_at_step
        assert drive.timing.counters.backhitches == 0
        assert set(at_step) == {385.0}  # the highest step not above min(r, native 400 MB/s)
