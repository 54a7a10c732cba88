"""Write pacing (reference/server/pacing.py) on the virtual clock: the pace, the stall reserve,
order and completeness, and the end of set / abort / server failure paths."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulators.clock import VirtualClock
from emulators.tape.drive import EmulatedDrive
from emulators.tape.profiles import MEDIA
from reference.runtime import Runtime
from reference.server.devices import EmulatedDrives
from reference.server.pacing import (DriveBufferModel, PacedSession, PacingProfile, ProducerRate, pace_for_drive,
                                     pacing_for_drive, pacing_for_generation, pacing_for_timing)
from reference.transfer import CommitReceipt, LocalSession, TransferAborted

MB, MiB = 1_000_000, 1 << 20
LTO9 = PacingProfile(steps=MEDIA["LTO-9"].speed_steps)
DEADLINE = 1e6
"""Virtual seconds after which a test's job counts as deadlocked (the loop jumps there at once)."""


def run(coro):
    """Run ``coro`` on a fresh virtual clock; a deadlock ends in TimeoutError, never a hang."""
    clock = VirtualClock(0.0)

    async def bounded():
        return await asyncio.wait_for(coro(clock), DEADLINE)

    return Runtime(clock).run(bounded())


async def drain(session, clock, log, commit=True):
    """The server side: receive everything, noting (virtual time, chunk)."""
    while True:
        chunk = await session.receive()
        if chunk is None:
            break
        log.append((clock.now(), chunk))
    if commit and session.aborted is None:
        session.commit(CommitReceipt(1, ("A00001L9",), sum(len(c) for _, c in log)))


def steady(profile: PacingProfile, buffered: int, chunks: int, interval: float = 0.0, stall: float = 0.0):
    """An agent that sends ``chunks`` of 1 MiB, ``interval`` apart, then stalls ``stall`` seconds
    and ends the set, through a paced session with ``buffered`` bytes of agent buffer; returns
    the virtual times the server received each chunk, and the session."""
    log = []

    async def job(clock):
        session = PacedSession(LocalSession(1, buffered), clock, profile)

        async def agent():
            for _ in range(chunks):
                await session.send(bytes(MiB))
                if interval:
                    await asyncio.sleep(interval)
            if stall:
                await asyncio.sleep(stall)
            await session.finish(None)

        await asyncio.gather(agent(), drain(session, clock, log))
        return session

    session = run(job)
    return [t for t, _ in log], session


# -- the drive's speed matching as the pacer assumes it --------------------------------------


def test_step_for_follows_the_drive_rule():
    assert LTO9.step_for(185 * MB) == 177 * MB   # 0.95 x 185 < 203: the lowest step
    assert LTO9.step_for(250 * MB) == 223 * MB   # 0.95 x 250 = 237.5
    assert LTO9.step_for(50 * MB) == 177 * MB    # below the floor: still the lowest step
    assert LTO9.step_for(math.inf) == 408 * MB


def test_ceiling_is_the_fastest_rate_that_keeps_the_step():
    ceiling = LTO9.ceiling(185 * MB)
    assert ceiling == pytest.approx(203 * MB / 0.95 * 0.99)
    assert LTO9.step_for(ceiling) == 177 * MB
    assert LTO9.step_for(ceiling / LTO9.headroom * 1.001) == 203 * MB
    assert LTO9.ceiling(1000 * MB) == math.inf


def test_producer_rate_starts_at_the_prior_and_converges_to_the_mean():
    rate = ProducerRate(window=10.0)
    assert rate.rate(0.0, prior=177.0, prior_seconds=5.0) == 177.0
    for i in range(1, 6001):  # 250 bytes every 10 ms = 25 000 B/s for 60 s
        rate.add(i * 0.01, 250)
    assert rate.rate(60.0, prior=177.0, prior_seconds=5.0) == pytest.approx(25_000, rel=0.02)
    early = ProducerRate(window=10.0)
    for i in range(1, 101):  # one second of a fast burst
        early.add(i * 0.01, 250)
    assert 177.0 < early.rate(1.0, prior=177.0, prior_seconds=5.0) < 25_000 / 2  # the prior still weighs


# -- holding chunks back ----------------------------------------------------------------------


def test_pinned_near_the_floor_chunks_go_out_at_the_ceiling():
    """A burst from a producer believed to run at the lowest step: the server gets the chunks at
    the pinned ceiling (about 211 MB/s for LTO-9), not at once."""
    times, session = steady(LTO9, 64 * MiB, 40, stall=10)  # a long stall, then the end of the set
    gaps = [b - a for a, b in zip(times, times[1:])]
    ceiling = LTO9.ceiling(LTO9.floor_rate)
    paced = gaps[:25]  # before the stall reserve (the last 20 % of the buffer)
    assert all(g == pytest.approx(MiB / ceiling, rel=0.05) for g in paced[1:])
    assert session.held_seconds > 0


def test_the_stall_reserve_goes_out_one_chunk_per_tick():
    """Rule 3: the last part of the buffer trickles out during a stall, so the drive keeps seeing
    writes (and the falling host rate) instead of a silence at the burst's speed."""
    profile = PacingProfile(steps=LTO9.steps, reserve=0.5, tick_seconds=0.25)
    times, _session = steady(profile, 8 * MiB, 8, stall=30)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert sum(1 for g in gaps if g == pytest.approx(0.25)) >= 3
    assert times[-1] < 30  # the reserve was out before the stall ended


def test_the_stall_reserve_is_capped_in_bytes_for_a_large_buffer():
    """Rule 3 with a 4 MiB cap on a 256 MiB buffer: after the agent's burst only 4 chunks (the
    cap at 4 MiB, not 20 % = 51 MiB) trickle out one per tick; with no cap all 51 would."""
    def trickled(cap: int) -> int:
        profile = PacingProfile(steps=LTO9.steps, reserve=0.2, tick_seconds=0.25, reserve_max_bytes=cap,
                                pin_lowest_step=False)
        times, _session = steady(profile, 256 * MiB, 60, stall=60)
        return sum(1 for a, b in zip(times, times[1:]) if b - a == pytest.approx(0.25))

    assert 3 <= trickled(4 * MiB) <= 4
    assert trickled(1 << 40) >= 40


def drive_measured_rates(times: list[float], size: int, window: float) -> list[float]:
    """The host rate the drive measures at each write (``emulators/tape/timing.py``
    ``_host_rate``): bytes after the oldest write in the window over the time since it."""
    rates = []
    for i, now in enumerate(times):
        inside = [t for t in times[:i + 1] if t >= now - window]
        span = now - inside[0]
        rates.append((len(inside) - 1) * size / span if span > 0 else math.inf)
    return rates


def pinned_burst_after_gap(profile: PacingProfile, gap: float) -> list[float]:
    """Release times of 20 chunks, a ``gap`` of silence, then 30 chunks at once (pinned)."""
    log = []

    async def job(clock):
        session = PacedSession(LocalSession(1, 64 * MiB), clock, profile)

        async def agent():
            for _ in range(20):
                await session.send(bytes(MiB))
            while session._held:  # the first burst is out: then the gap
                await asyncio.sleep(0.01)
            await asyncio.sleep(gap)
            for _ in range(30):
                await session.send(bytes(MiB))
            while session._held:  # finish ends every hold: only once the burst is out
                await asyncio.sleep(0.01)
            await session.finish(None)

        await asyncio.gather(agent(), drain(session, clock, log))

    run(job)
    return [t for t, _ in log]


def test_pinned_the_drive_measures_at_most_the_ceiling():
    """Rule 2 on the drive's own measurement: at no write does the rate the drive measures over
    its window exceed the pinned ceiling, so it keeps the lowest step (bursts, a gap, a burst)."""
    profile = PacingProfile(steps=LTO9.steps, reserve=0.0)
    times = pinned_burst_after_gap(profile, 1.0)
    ceiling = profile.ceiling(profile.floor_rate)
    assert len(times) == 50
    rates = drive_measured_rates(times, MiB, profile.drive_window_seconds)
    assert max(rates[1:]) <= ceiling * 1.001
    assert profile.step_for(max(rates[1:])) == profile.floor_rate


def test_pinned_a_catch_up_burst_uses_the_gap_in_the_drive_window():
    """After a gap shorter than the drive's window, the chunks go out faster than the constant
    pace (the window still holds the slow stretch), which the drive answers with the same step;
    with ``drive_window_seconds=0`` (a constant pace) they do not."""
    budgeted = pinned_burst_after_gap(PacingProfile(steps=LTO9.steps, reserve=0.0), 1.0)
    constant = pinned_burst_after_gap(PacingProfile(steps=LTO9.steps, reserve=0.0, drive_window_seconds=0.0), 1.0)
    pace = MiB / LTO9.ceiling(LTO9.floor_rate)
    first_after_gap = next(i for i in range(1, 50) if budgeted[i] - budgeted[i - 1] > 0.5)
    catch_up = [b - a for a, b in zip(budgeted[first_after_gap:], budgeted[first_after_gap + 1:])][:5]
    assert all(g < 0.5 * pace for g in catch_up)
    steady = [b - a for a, b in zip(constant[21:-1], constant[22:-1])]  # the last: the end of set
    assert all(g == pytest.approx(pace, rel=0.05) for g in steady)
    assert budgeted[-1] < constant[-1]  # the burst is through sooner


def test_pacing_for_timing_takes_the_drives_rate_window():
    from emulators.tape.profiles import drive_profile, media_profile
    from emulators.tape.timing import DriveTiming

    timing = DriveTiming(VirtualClock(0.0), drive_profile("LTO-9"))
    timing.set_media(media_profile("LTO-9"))
    profile = pacing_for_timing(timing)
    assert profile.drive_window_seconds == timing.drive.rate_window_seconds
    assert profile.speed_margin == timing.drive.speed_margin


def test_pacing_for_timing_models_the_drives_buffer():
    """Rules 4 and 5 model the drive buffer from the drive's profile, for emulated drives and for
    a real drive configured by generation alike."""
    from emulators.tape.profiles import drive_profile, media_profile
    from emulators.tape.timing import DriveTiming

    timing = DriveTiming(VirtualClock(0.0), drive_profile("LTO-9"))
    timing.set_media(media_profile("LTO-9"))
    for profile in (pacing_for_timing(timing), pacing_for_generation("LTO-9")):
        assert profile.drive_buffer_bytes == timing.drive.buffer_bytes
        assert profile.restart_fill == timing.drive.restart_fill
        assert profile.start_hold_seconds == 0.5 and profile.fill_while_stopped
    assert LTO9.drive_buffer_bytes == 0  # no buffer size: no model, rules 4 and 5 off


# -- the stopped drive and the start (rules 4 and 5) -------------------------------------------

LTO9_DRIVE = PacingProfile(steps=MEDIA["LTO-9"].speed_steps, drive_buffer_bytes=1 << 30)
"""LTO-9 pacing with the drive buffer modelled (1 GiB, the tape starts at half of it)."""


def test_the_drive_model_starts_at_the_restart_fill_and_stops_when_dry():
    """The pacer's model of the drive (rules 4, 5): the tape starts once the buffer holds the
    restart fill, drains at the matched step and stops when the buffer runs dry; ``started_at``
    keeps the first start."""
    drive = DriveBufferModel(100, 0.5)
    drive.deliver(0.0, 49, step=10.0)
    assert not drive.streaming and drive.fill(5.0) == 49  # stopped: nothing drains
    drive.deliver(5.0, 1, step=10.0)
    assert drive.streaming and drive.started_at == 5.0
    assert drive.fill(7.0) == pytest.approx(30)
    assert drive.fill(20.0) == 0 and not drive.streaming  # ran dry at 10 s
    drive.deliver(21.0, 60, step=10.0)
    assert drive.streaming and drive.started_at == 5.0
    drive.deliver(22.0, 100, step=10.0)
    assert drive.fill(22.0) == 100  # never more than the buffer


def bursts(profile: PacingProfile, chunk: int, counts: list[int], gap: float, buffer: int = 64 * MiB):
    """Release times of bursts of ``counts[i]`` chunks (sent back to back), ``gap`` virtual
    seconds apart, each burst starting once the previous one is out; and the session."""
    log = []

    async def job(clock):
        session = PacedSession(LocalSession(1, buffer), clock, profile)

        async def agent():
            for i, count in enumerate(counts):
                if i:
                    while session._held:
                        await asyncio.sleep(0.01)
                    await asyncio.sleep(gap)
                for _ in range(count):
                    await session.send(bytes(chunk))
            while session._held:
                await asyncio.sleep(0.01)
            await session.finish(None)

        await asyncio.gather(agent(), drain(session, clock, log))
        return session

    session = run(job)
    return [t for t, _ in log], session


def test_a_stopped_drive_is_filled_unpaced():
    """Rule 4: before the tape starts, a burst goes to the drive as it comes (here 100 MiB at
    once, far below the 512 MiB start fill); without the rule it goes at the pinned ceiling."""
    free, session = bursts(LTO9_DRIVE, MiB, [100], 0)
    assert free == [0.0] * 100 and session.held_seconds == 0
    assert not session.drive_model.streaming
    paced, _ = bursts(replace(LTO9_DRIVE, fill_while_stopped=False), MiB, [100], 0)
    assert paced[-1] > 0.95 * 99 * MiB / LTO9.ceiling(LTO9.floor_rate)  # the ceiling, and the reserve's ticks


def test_the_last_agent_buffer_before_the_start_is_paced():
    """Rule 4 ends where the drive buffer, the agent buffer and the chunk reach the start fill:
    from there the chunks go at the pace (pinned by rule 5), so the drive's window has slowed
    down when the tape starts."""
    times, session = bursts(LTO9_DRIVE, 8 * MiB, [70], 0)  # 560 MiB: the tape starts at 512
    free = [t for t in times if t == 0.0]
    assert 8 * MiB * len(free) + 64 * MiB >= 512 * MiB - 8 * MiB  # unpaced up to the agent buffer's worth
    assert len(free) < 70 and times[-1] > 0.5
    assert session.drive_model.started_at is not None
    # the pinned stretch resumes at the pinned pace (``_count_as_pinned``), not after the 450 MiB
    # burst has left the drive's 2 s window (about 2.2 s with the tape stopped)
    assert times[len(free)] < 0.5


def test_after_the_tape_ran_dry_the_drive_is_filled_unpaced_again():
    """Rule 4 after a stop: the modelled tape started, drained its buffer during a long stall
    and stopped; the next burst goes as it comes, not at the pace."""
    profile = replace(LTO9_DRIVE, prior_seconds=0.0)  # the estimate follows the bursts: unpinned
    times, session = bursts(profile, 8 * MiB, [70, 10], gap=20.0)
    assert session.drive_model.started_at is not None and times[70] > 20
    assert times[70:] == [times[70]] * 10
    paced, _ = bursts(replace(profile, fill_while_stopped=False), 8 * MiB, [70, 10], gap=20.0)
    assert paced[-1] - paced[70] > 0.1


def measured_rates(profile, times):
    return drive_measured_rates(times, MiB, profile.drive_window_seconds)


def fast_start(profile: PacingProfile):
    """A 1000 MB/s producer (1 MiB per ms, 2000 chunks) against a drive with a 128 MiB buffer,
    rule 4 off so that only the start-up hold (rule 5) shapes the start; a short prior, so the
    estimate leaves the lowest step's band within a fraction of a second."""
    profile = replace(profile, drive_buffer_bytes=128 * MiB, fill_while_stopped=False, prior_seconds=0.5,
                      reserve=0.0)
    return steady(profile, 32 * MiB, 2000, interval=0.001)


def test_the_lowest_step_is_held_after_the_tape_starts():
    """Rule 5: until ``start_hold_seconds`` after the modelled tape starts, the drive measures at
    most the pinned ceiling at every write, although the producer offers 1000 MB/s; after the
    hold the normal rules let the rate up."""
    profile = replace(LTO9_DRIVE, start_hold_seconds=2.0)
    times, session = fast_start(profile)
    started = session.drive_model.started_at
    assert started is not None
    rates = measured_rates(profile, times)
    held = [r for t, r in zip(times[1:], rates[1:]) if t < started + 2.0]
    assert len(held) > 100 and max(held) <= LTO9.ceiling(LTO9.floor_rate) * 1.001
    after = [r for t, r in zip(times, rates) if t > started + 2.5]
    assert max(after) > 2 * LTO9.ceiling(LTO9.floor_rate)


def test_the_start_hold_ends_on_time():
    """Rule 5 lasts ``start_hold_seconds``: a 2000 MB/s producer fills the stopped drive (rule 4),
    the pinned stretch before the start waits for that burst to leave the drive's window, and
    then takes a catch-up burst; the pinned wait that burst's budget asks for ends with the hold
    (without that it stretched the hold by another 1.5 s, the tape at the lowest step)."""
    times, session = steady(LTO9_DRIVE, 64 * MiB, 1200, interval=0.0005)
    hold_ends = session.drive_model.started_at + LTO9_DRIVE.start_hold_seconds
    waits_after = [b - a for a, b in zip(times, times[1:]) if b > hold_ends]
    assert max(waits_after) < 0.35 and times[-1] < hold_ends + 0.5


def test_no_start_hold_is_the_pacer_without_rules_4_and_5():
    """``start_hold_seconds=0`` (with rule 4 off) gives the pacer without the drive model: the
    same release times as a profile with no drive buffer; and the fast producer's rate reaches
    the drive during what would be the hold."""
    profile = replace(LTO9_DRIVE, start_hold_seconds=0.0)
    times, session = fast_start(profile)
    unmodelled, _ = fast_start(replace(profile, drive_buffer_bytes=0))
    assert times == unmodelled
    started = session.drive_model.started_at
    rates = measured_rates(profile, times)
    early = [r for t, r in zip(times[1:], rates[1:]) if t < started + 2.0]
    assert max(early) > 2 * LTO9.ceiling(LTO9.floor_rate)


def test_a_small_agent_buffer_is_never_pinned():
    """With less than ``pin_min_buffer`` of agent buffer, rule 2 is off: the agent never waits for
    the pace (it would cost more reserve than it saves)."""
    async def job(clock):
        small = PacedSession(LocalSession(1, 16 * MiB), clock, LTO9)
        large = PacedSession(LocalSession(1, 64 * MiB), clock, LTO9)
        return small.pinned(), large.pinned()

    assert run(job) == (False, True)


def test_a_waiting_agent_is_not_held_back_when_not_pinned():
    """Pacing never costs a fast producer throughput: when the agent waits for room and the pace
    is not pinned, the chunk goes at once."""
    log = []
    slow = PacingProfile(steps=(1_000.0, 2_000.0), pin_lowest_step=False, prior_seconds=0.0, reserve=0.0)

    async def job(clock):
        session = PacedSession(LocalSession(1, 4 * MiB), clock, slow)

        async def agent():
            for _ in range(64):
                await session.send(bytes(MiB))
            await session.finish(None)

        await asyncio.gather(agent(), drain(session, clock, log))
        return clock.now()

    elapsed = run(job)
    assert len(log) == 64
    assert elapsed < 1.0  # at the 1 kB/s pace the same job would take ~17 hours


def test_finish_ends_every_hold():
    """End of set: a chunk held for the pace goes at once when the agent finishes."""
    log = []
    crawl = PacingProfile(steps=(1_000.0, 2_000.0), reserve=0.0)  # 1 MiB takes ~500 s at this pace

    async def job(clock):
        session = PacedSession(LocalSession(1, 64 * MiB), clock, crawl)

        async def agent():
            for _ in range(3):
                await session.send(bytes(MiB))
            await asyncio.sleep(1.0)
            await session.finish(None)

        await asyncio.gather(agent(), drain(session, clock, log))
        return clock.now()

    elapsed = run(job)
    assert len(log) == 3
    assert elapsed == pytest.approx(1.0, abs=0.01)


def test_abort_ends_every_hold_and_the_server_sees_it():
    log = []
    crawl = PacingProfile(steps=(1_000.0, 2_000.0), reserve=0.0)

    async def job(clock):
        session = PacedSession(LocalSession(1, 64 * MiB), clock, crawl)

        async def agent():
            await session.send(b"a" * 100_000)
            await session.send(b"b" * 100_000)  # held ~50 s at this pace
            await asyncio.sleep(2.0)
            await session.abort("Exchange went away")

        await asyncio.gather(agent(), drain(session, clock, log))
        return session, clock.now()

    session, elapsed = run(job)
    assert session.aborted == "Exchange went away"
    assert [c for _, c in log] == [b"a" * 100_000, b"b" * 100_000]
    assert elapsed == pytest.approx(2.0, abs=0.01)


def test_a_server_failure_reaches_a_waiting_agent():
    """The server fails while the agent waits for room behind a pinned pace: the agent's send
    raises instead of waiting forever."""
    crawl = PacingProfile(steps=(1_000.0, 2_000.0), reserve=0.0, pin_min_buffer=0)

    async def job(clock):
        session = PacedSession(LocalSession(1, 2 * MiB), clock, crawl)

        async def agent():
            for _ in range(10):
                await session.send(bytes(MiB))

        async def server():
            await session.receive()
            await session.fail(OSError(5, "Input/output error"))

        results = await asyncio.gather(agent(), server(), return_exceptions=True)
        return results

    agent_result, server_result = run(job)
    assert isinstance(agent_result, TransferAborted)
    assert server_result is None


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3 * MiB), min_size=1, max_size=25),
    send_delays=st.lists(st.floats(0, 0.5), min_size=25, max_size=25),
    server_delays=st.lists(st.floats(0, 0.05), min_size=25, max_size=25),
    buffer=st.sampled_from([0, 1 * MiB, 4 * MiB, 64 * MiB]),
    floor=st.sampled_from([5 * MB, 177 * MB, 2_000 * MB]),
    reserve=st.sampled_from([0.0, 0.1, 0.5]),
    pin=st.booleans(),
    end=st.sampled_from(["finish", "abort"]),
    drive_buffer=st.sampled_from([0, 2 * MiB, 16 * MiB]),
    start_hold=st.sampled_from([0.0, 0.5]),
)
def test_every_chunk_arrives_once_in_order_and_the_set_ends(sizes, send_delays, server_delays, buffer, floor,
                                                            reserve, pin, end, drive_buffer, start_hold):
    """Whatever the pace, buffer, timing and modelled drive (rules 4, 5): no chunk lost,
    duplicated or reordered; the agent's finish returns the receipt (or abort ends the set);
    nothing deadlocks."""
    profile = PacingProfile(steps=(floor, floor * 1.2, floor * 1.5), reserve=reserve, pin_lowest_step=pin,
                            pin_min_buffer=0, drive_buffer_bytes=drive_buffer, start_hold_seconds=start_hold)
    sent = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    log = []

    async def job(clock):
        session = PacedSession(LocalSession(7, buffer), clock, profile)

        async def agent():
            for chunk, delay in zip(sent, send_delays):
                await asyncio.sleep(delay)
                await session.send(memoryview(chunk))
            if end == "finish":
                return await session.finish(None)
            await session.abort("stopped")

        async def server():
            for turn in range(len(sent) + 1):
                await asyncio.sleep(server_delays[turn % len(server_delays)])
                chunk = await session.receive()
                if chunk is None:
                    break
                log.append(chunk)
            if session.aborted is None:
                session.commit(CommitReceipt(1, (), sum(map(len, log))))

        receipt, _ = await asyncio.gather(agent(), server())
        return session, receipt

    session, receipt = run(job)
    assert session.set_number == 7
    assert log == sent  # abort comes after the last send: the server still sees every chunk, then the end
    if end == "finish":
        assert receipt.bytes_on_media == sum(sizes)
    else:
        assert session.aborted == "stopped"


@pytest.mark.skipif(not hasattr(LocalSession, "acquire_buffer"), reason="LocalSession lends no buffers")
def test_lent_transfer_buffers_pass_through_in_order():
    """A session that lends transfer buffers (``acquire_buffer``): the wrapper lends the wrapped
    session's, chunks arrive in order and intact (each valid until the next receive), and a pinned
    pace makes the agent wait for a buffer rather than lose or reorder anything."""
    got = []

    async def job(clock):
        session = PacedSession(LocalSession(1, 4 << 20, buffer_size=1 << 20), clock,
                               PacingProfile(steps=LTO9.steps, pin_min_buffer=0))

        async def agent():
            for i in range(40):
                buffer = await session.acquire_buffer()
                buffer[:] = bytes([i]) * len(buffer)
                await session.send(buffer if i % 2 else buffer[:1000 + i])
            await session.finish(None)

        async def server():
            while (chunk := await session.receive()) is not None:
                got.append(bytes(chunk))
            session.commit(CommitReceipt(1, (), sum(map(len, got))))

        await asyncio.gather(agent(), server())
        return session

    session = run(job)
    assert got == [bytes([i]) * (MiB if i % 2 else 1000 + i) for i in range(40)]
    assert session.blocked_seconds > 0  # the agent waited for buffers behind the pinned pace


# -- when the server paces ---------------------------------------------------------------------


def test_pacing_engages_only_for_a_drive_that_matches_speed():
    clock = VirtualClock(0.0)
    timed = EmulatedDrive("LTO-9", name="nst0", clock=clock)
    untimed = EmulatedDrive("LTO-9", name="nst1")
    timed.timing.set_media(MEDIA["LTO-9"])
    drives = EmulatedDrives({0: timed, 1: untimed})
    assert pacing_for_drive(drives, 0) == PacingProfile(steps=MEDIA["LTO-9"].speed_steps, speed_margin=0.95,
                                                        drive_buffer_bytes=1 << 30, restart_fill=0.5)
    assert pacing_for_drive(drives, 1) is None          # no timing: the backup benchmark's drives
    assert pacing_for_drive(drives, 0, "off") is None
    assert pacing_for_drive(drives, 1, "LTO-9") == pacing_for_generation("LTO-9")  # a real drive, configured
    timed.timing.set_media(None)
    assert pacing_for_timing(timed.timing) is None      # nothing loaded: nothing to match
    with pytest.raises(ValueError, match="LTO-99"):
        pacing_for_drive(drives, 0, "LTO-99")


def test_pace_for_drive_returns_the_session_itself_when_not_pacing():
    async def job(clock):
        plain = LocalSession(1, MiB)
        untimed = EmulatedDrives({0: EmulatedDrive("LTO-9", name="nst0")})
        assert pace_for_drive(plain, clock, untimed, 0) is plain
        paced = pace_for_drive(plain, clock, untimed, 0, "LTO-9")
        assert isinstance(paced, PacedSession)
        assert paced.set_number == 1 and paced.max_buffered == MiB  # the wrapped session's
        paced.job_id = 5
        assert paced.job_id == 5

    run(job)


# -- the real server ---------------------------------------------------------------------------


def _timed_site(tmp_path):
    """Like server_helpers.make_site, but the drives charge their time to the virtual clock (as a
    simulated site's do), so they match speed and the server paces them."""
    import random

    from emulators.tape.library import EmulatedLibrary, create_library
    from reference.server.catalog import Catalog
    from reference.server.media import MediaManager
    from reference.server.server import BackupServer

    root = tmp_path / "library"
    create_library(root, drives=1, slots=4, import_export=0, media="LTO-9", cartridges=4, capacity_bytes=6 * MB)
    clock = VirtualClock()
    live = {0: EmulatedDrive("LTO-9", name="nst0", clock=clock)}
    live[0].timing.wait_in_place = False
    library = EmulatedLibrary(root, clock=clock, drives=live)
    catalog = Catalog(tmp_path / "catalog.sqlite")
    media = MediaManager(catalog, library, EmulatedDrives(live), rng=random.Random(1), now=clock.now)
    runtime = Runtime(clock)
    return runtime, catalog, media, BackupServer(catalog, media, runtime)


def test_the_server_paces_a_timed_drive_and_the_set_reads_back_bit_exact(tmp_path):
    """server.py open_session wraps the session for a drive that matches speed; a spanning set
    still lands bit-exact (order and completeness through the real media writer)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from server_helpers import agent_backup, payload

    from reference.server.readback import MediaReader

    runtime, catalog, media, server = _timed_site(tmp_path)
    opened = []
    original = server.open_session

    async def spy(info):
        session = await original(info)
        opened.append(session)
        send = session.send

        async def reading(chunk):  # the agent's Exchange reads take time: 256 KiB per ms, a burst
            loading = media.drives.timeline(0).busy_until - runtime.clock.now()  # (once the tape is loaded)
            await asyncio.sleep(max(0.001, loading))
            await send(chunk)

        session.send = reading
        return session

    server.open_session = spy
    files = {"DB1/priv1.edb": payload(1, 9 * MB), "Log Files/E0000000A.log": payload(3, 1 << 20)}
    receipt = runtime.run(agent_backup(server, "SG1", files))
    paced = opened[0]
    assert isinstance(paced, PacedSession) and paced.profile.drive_buffer_bytes == 1 << 30
    # 10 MB never fill the 1 GiB drive buffer to its start fill: rule 4 sends them as they come
    assert paced.drive_model.started_at is None and paced.held_seconds == 0
    assert receipt.barcodes == ("000001L9", "000002L9")
    reader = MediaReader(catalog, media)
    try:
        back = {o.path: b"".join(bytes(c) for c in chunks) for o, chunks in reader.read_objects(receipt.data_set_id)}
    finally:
        reader.close()
    for path, data in files.items():
        assert back[path] == data, path


def test_pacing_off_gives_the_server_a_plain_session(tmp_path):
    """``site.json`` ``pacing: off`` (BackupServer(pacing="off")): the same timed drive, no wrapper."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from server_helpers import agent_backup, payload

    from reference.server.server import BackupServer

    runtime, catalog, media, _ = _timed_site(tmp_path)
    server = BackupServer(catalog, media, runtime, pacing="off")
    opened = []
    original = server.open_session

    async def spy(info):
        opened.append(await original(info))
        return opened[-1]

    server.open_session = spy
    runtime.run(agent_backup(server, "SG1", {"DB1/priv1.edb": payload(1, MB)}))
    assert type(opened[0]) is LocalSession


def test_the_site_setting_is_checked_when_the_site_opens(tmp_path):
    from reference.errors import CorruptDataError
    from reference.server.site import create_site, open_site

    for mode in ("auto", "off", "LTO-8"):
        root = create_site(tmp_path / mode, drives=1, slots=2, cartridges=1, settings={"pacing": mode})
        with open_site(root, clock=VirtualClock()) as site:
            assert site.server.pacing == mode
    root = create_site(tmp_path / "bad", drives=1, slots=2, cartridges=1, settings={"pacing": "LTO-99"})
    with pytest.raises(CorruptDataError, match=r"site\.json.*|pacing: 'LTO-99'") as caught:
        open_site(root, clock=VirtualClock())
    assert "LTO-99" in str(caught.value) and "site.json" in str(caught.value)
