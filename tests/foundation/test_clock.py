"""The virtual clock and seeded randomness (foundation; docs/architecture.md "Time and randomness")."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from emulators.clock import (
    RealClock,
    SeedSequence,
    Timeline,
    VirtualClock,
    VirtualTimeEventLoop,
    new_event_loop,
    run,
)


def test_virtual_clock_advances_only_when_charged():
    clock = VirtualClock(start=1000.0)
    assert clock.now() == 1000.0
    clock.sleep(2.5)
    clock.advance(0.5)
    assert clock.now() == 1003.0
    assert clock.elapsed() == 3.0


def test_virtual_sleep_costs_no_wall_time():
    clock = VirtualClock()
    wall = time.monotonic()
    clock.sleep(3600 * 24 * 365)
    assert time.monotonic() - wall < 1.0
    assert clock.elapsed() == 3600 * 24 * 365


def test_virtual_clock_refuses_to_run_backwards():
    clock = VirtualClock()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


def test_sleep_until_never_moves_back():
    clock = VirtualClock(start=10.0)
    clock.sleep_until(5.0)
    assert clock.now() == 10.0
    clock.sleep_until(12.0)
    assert clock.now() == 12.0


def test_real_clock_really_sleeps():
    clock = RealClock()
    before = time.monotonic()
    clock.sleep(0.02)
    assert time.monotonic() - before >= 0.015
    assert abs(clock.now() - time.time()) < 1.0


def test_timeline_serialises_one_device_but_not_two():
    clock = VirtualClock(start=0.0)
    drive_a, drive_b = Timeline(clock), Timeline(clock)
    # Two jobs each book 10 s on drive A: the second waits for the first.
    assert drive_a.reserve(10) == 10
    assert drive_a.reserve(10) == 20
    # Drive B works in parallel with drive A: its booking starts now, not after A.
    assert drive_b.reserve(10) == 10
    clock.sleep_until(max(drive_a.busy_until, drive_b.busy_until))
    assert clock.now() == 20


def test_event_loop_runs_on_virtual_time():
    clock = VirtualClock(start=0.0)
    order = []

    async def job(name, delay):
        await asyncio.sleep(delay)
        order.append((name, clock.now()))

    async def main():
        await asyncio.gather(job("slow", 3600), job("fast", 60), job("mid", 600))

    wall = time.monotonic()
    run(main(), clock)
    assert time.monotonic() - wall < 2.0
    assert order == [("fast", 60), ("mid", 600), ("slow", 3600)]
    assert clock.now() == 3600


def test_event_loop_choice_follows_clock():
    virtual = new_event_loop(VirtualClock())
    real = new_event_loop(RealClock())
    try:
        assert isinstance(virtual, VirtualTimeEventLoop)
        assert not isinstance(real, VirtualTimeEventLoop)
    finally:
        virtual.close()
        real.close()


def test_virtual_loop_is_deterministic():
    def trace():
        clock = VirtualClock(start=0.0)
        seen = []

        async def worker(i):
            for step in range(3):
                await asyncio.sleep((i + 1) * 0.1)
                seen.append((i, step, round(clock.now(), 6)))

        async def main():
            await asyncio.gather(*(worker(i) for i in range(4)))

        run(main(), clock)
        return seen

    assert trace() == trace()


def test_seeded_streams_reproduce():
    a, b = SeedSequence(42), SeedSequence(42)
    assert np.array_equal(a.rng("workload").integers(0, 1 << 30, 100), b.rng("workload").integers(0, 1 << 30, 100))
    assert a.child_seed("hypothesis") == b.child_seed("hypothesis")


def test_seeded_streams_are_independent_by_name_and_seed():
    seeds = SeedSequence(42)
    workload = seeds.rng("workload").integers(0, 1 << 30, 50)
    faults = seeds.rng("faults").integers(0, 1 << 30, 50)
    other_seed = SeedSequence(43).rng("workload").integers(0, 1 << 30, 50)
    assert not np.array_equal(workload, faults)
    assert not np.array_equal(workload, other_seed)
    assert seeds.streams == ("workload", "faults")


def test_adding_a_stream_does_not_shift_another():
    plain = SeedSequence(7).rng("tape").random(10)
    seeds = SeedSequence(7)
    seeds.rng("something-new").random(1000)
    assert np.array_equal(seeds.rng("tape").random(10), plain)


@pytest.mark.parametrize("bad", [-1, 1.5, "7"])
def test_seed_must_be_a_non_negative_int(bad):
    with pytest.raises(ValueError, match="seed"):
        SeedSequence(bad)


def test_runtime_overlaps_devices_in_simulation():
    """Two devices each busy 10 s, used by two concurrent tasks: 10 s of virtual time, not 20."""
    from reference.runtime import Runtime

    clock = VirtualClock(start=0.0)
    runtime = Runtime(clock)
    drives = [Timeline(clock), Timeline(clock)]

    def write_block(timeline):
        timeline.reserve(10.0)
        return "written"

    async def job(timeline):
        return await runtime.call(write_block, timeline, timeline=timeline)

    async def main():
        return await asyncio.gather(job(drives[0]), job(drives[1]))

    assert runtime.run(main()) == ["written", "written"]
    assert clock.now() == 10.0


def test_runtime_uses_threads_in_real_time():
    import threading

    from reference.runtime import Runtime

    runtime = Runtime(RealClock())
    main_thread = threading.get_ident()

    async def main():
        return await runtime.call(threading.get_ident)

    try:
        assert runtime.run(main()) != main_thread
    finally:
        runtime.close()


def test_virtual_loop_does_not_spin_on_sub_resolution_sleeps():
    """At epoch-sized times a 1e-8 s sleep is below float spacing; the loop must still move on."""
    clock = VirtualClock(start=1_100_000_000.0)

    async def main():
        for _ in range(1000):
            await asyncio.sleep(1e-8)
        return "done"

    wall = time.monotonic()
    assert run(main(), clock) == "done"
    assert time.monotonic() - wall < 5
