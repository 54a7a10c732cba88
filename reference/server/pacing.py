"""Write pacing: keep a speed-matching tape drive at a step the agent can sustain.

An LTO drive picks its tape speed from the host's recent data rate (spec ``tape-drive.md`` §5;
``emulators/tape/timing.py``: the fastest step at or below 95 % of the rate over the last 2 s).
Exchange reads are bursty: between stalls the agent delivers far faster than its mean rate. A
server that writes each chunk as it comes makes the drive choose a fast step during a burst; when
the next stall comes the drive empties its buffer at that speed and backhitches, although the
mean rate is above the lowest step. The drive buffer also grows only by the drive's margin (5 %).

:class:`PacedSession` wraps the data-set session (``reference.transfer.LocalSession``) on its
receive side: the server still takes every chunk, in order, with ``await receive()``; the wrapper
only decides *when* ``receive`` returns. Five rules (profile settings, :class:`PacingProfile`):

1. **Pace at the producer's rate.** Chunks go out at the producer's rate, averaged over
   ``rate_window_seconds`` on the producer's own time (time it spent waiting for room left out,
   so holding it back does not talk the estimate down) and starting from a prior belief that it
   runs at the lowest step (``prior_seconds``); the agent buffer absorbs the bursts. The drive
   then matches a step below the producer's mean, and its buffer grows.
2. **Pin the lowest step.** While that rate is in the lowest step's band (the drive would pick the
   lowest step for it anyway), deliveries are capped at the fastest rate the drive still answers
   with the lowest step, even if the agent has to wait: near the floor the drive buffer grows
   only by (rate − lowest step), and a burst that speeds the drive up costs the reserve the next
   stall needs (only with an agent buffer of ``pin_min_buffer`` or more). The cap is held on the
   drive's own measurement (its rate window, ``drive_window_seconds``: bytes after the oldest
   write in it over the time since), not as a constant pace, so after a gap a catch-up burst
   goes out as fast as the drive allows and the reserve refills sooner. Elsewhere a waiting
   agent gets its chunk at once: unpinned, pacing never makes the agent wait.
3. **Stall reserve.** The last ``reserve`` of the agent buffer (at most ``reserve_max_bytes``)
   goes out one chunk per ``tick_seconds`` (unless the agent is waiting): during a stall the drive keeps receiving
   writes, sees the host rate fall and steps down instead of draining its buffer at the burst's
   speed (the timing model re-evaluates the step only when a write arrives).
4. **Fill a stopped drive freely.** While the tape is stopped (before it first starts, and after
   the drive buffer ran dry), nothing drains the drive buffer and there is no speed to protect, so
   chunks go out as they come (no pace, no pin, no ticks) until the drive buffer, plus what the
   agent buffer holds, plus this chunk, would reach the fill at which the tape starts: the tape
   starts sooner, with more in the buffer. The last agent buffer's worth goes out under the other
   rules (pinned, by rule 5), so the tape starts after a paced stretch rather than in a burst.
5. **Start at the lowest step.** From the start of the set until ``start_hold_seconds`` after
   the tape first starts, the lowest step is pinned (rule 2) whatever the producer's estimate:
   that estimate rests on a few seconds of reads, and a start-up burst that makes the tape start
   fast leaves the buffer unable to cover the first long stall (a 215 MB/s job looked like a
   300 MB/s one for its first 4 s). Later starts (after a stop) are not held: by then the
   estimate has seen the producer.

Rules 4 and 5 need to know whether the tape moves. SCSI reports no such state, and the pacer does
not look into the emulator: it keeps its own model of the drive buffer (:class:`DriveBufferModel`)
from the drive's profile (buffer size, restart fill) and from what it delivered: the tape starts
once the buffer holds ``restart_fill`` of it and drains it at the step the drive matches to the
deliveries over its rate window; it stops when the buffer runs dry. Each data set starts with the
tape stopped and the buffer empty (the previous set ended on a synchronising filemark). Without a
buffer size (``drive_buffer_bytes`` 0) the pacer keeps no model and rules 4 and 5 are off.

At the end of the set (``finish``), on ``abort`` and on ``fail`` every hold ends at once; a hold
is always finite (at most a chunk at the lowest step, or a tick), so nothing can deadlock on it.
Pacing engages only for drives that match speed (:func:`pace_for_drive`); without drive timing
(the backup benchmark, real drives unless a generation is configured) the session is returned
unwrapped. All time goes through the runtime's clock (virtual in simulation, real in production).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass

from emulators.clock import Clock

PACING_MODES = ("auto", "off")
"""``auto``: pace when the drive reports speed steps (an emulated drive with timing); ``off``:
never. A media generation name (``"LTO-9"``) paces with that generation's steps, for real drives,
which do not report them."""


@dataclass(frozen=True)
class PacingProfile:
    """How the server paces one drive: the drive's speed matching as the server assumes it, and
    the pacer's own settings. Defaults chosen with ``benchmarks/bench_streaming.py``
    (docs/performance.md, "The streaming model"); UNVERIFIED against a real drive."""

    steps: tuple[float, ...]
    """The drive's speed steps, bytes/s (any order)."""
    speed_margin: float = 0.95
    """The drive picks the fastest step at or below this fraction of the host rate
    (``DriveProfile.speed_margin``)."""
    rate_window_seconds: float = 10.0
    """Time constant of the exponential average of the producer's rate: long enough to span
    several heavy-tailed stalls, short enough to follow a job whose rate changes (logs vs
    database). Longer than the drive's own window (2 s) by design."""
    prior_seconds: float = 5.0
    """Weight, in seconds of observation, of the starting belief that the producer runs at the
    lowest step, so a burst at the start of a set does not look like its mean."""
    headroom: float = 0.99
    """Pinned, deliver at this fraction of the fastest rate the drive answers with the lowest step."""
    pin_lowest_step: bool = True
    """Rule 2 of the module docstring."""
    drive_window_seconds: float = 2.0
    """The drive's rate window (``DriveProfile.rate_window_seconds``). Pinned, deliveries are
    budgeted against the drive's own measurement over it (rule 2) rather than spaced at a
    constant pace: after a gap (a short stall, the reserve ticking out) the drive takes a
    catch-up burst without leaving the lowest step, and the reserve refills sooner. 0: a
    constant pace."""
    pin_min_buffer: int = 32 << 20
    """Rule 2 only with an agent buffer at least this large: pinning makes the agent wait during
    bursts, which pays only when the buffer can hold a burst's slack (with none or 16 MiB the
    model backhitched more pinned than unpinned)."""
    reserve: float = 0.2
    """Part of the agent buffer that goes out one chunk per ``tick_seconds`` (rule 3). 0.2 (was
    0.1): the ticks then last long enough (about 1.3 s with 64 MiB in 1 MiB chunks) for the drive's
    2 s window to fall out of a fast burst, so it reaches a low step before they stop."""
    reserve_max_bytes: int = 16 << 20
    """At most this much of the agent buffer is reserve (rule 3), whatever its size: the reserve is
    there for its ticks to span the drive's rate window (16 ticks of 1 MiB: 1.6 s); a fraction of a
    large buffer trickled for longer than a stall (205 MiB of a 1 GiB buffer: 20 s at one chunk per
    tick) starved the drive after rule 4 had filled it. 64 MiB and smaller buffers are unchanged."""
    tick_seconds: float = 0.1
    quantum_seconds: float = 0.002
    """Holds shorter than this are not slept (the schedule carries them), so small chunks on a real
    clock do not cost a timer each."""
    drive_buffer_bytes: int = 0
    """The drive's buffer (``DriveProfile.buffer_bytes``), for the pacer's model of it (rules 4
    and 5). 0: unknown; no model, rules 4 and 5 off."""
    restart_fill: float = 0.5
    """Part of the drive buffer that must be full before a stopped tape starts
    (``DriveProfile.restart_fill``; UNVERIFIED, drives do not publish it)."""
    fill_while_stopped: bool = True
    """Rule 4 of the module docstring."""
    start_hold_seconds: float = 0.5
    """Rule 5: how long after the tape first starts the lowest step stays pinned. 0.5 s: the
    shortest hold that removed the avoidable start-up backhitches of ``bench_streaming.py
    --robustness`` (seeds 10-39 and 100-129) together with rule 4, for 1.3-1.7 % of delivered MB/s
    at 300 MB/s and ~4 % at 400 MB/s (docs/performance.md, "The streaming model"). 0: no hold (the
    pacer before it). Pinning needs an agent buffer of ``pin_min_buffer`` (rule 2)."""

    @property
    def floor_rate(self) -> float:
        return min(self.steps)

    def step_for(self, rate: float) -> float:
        """The step the drive matches to a host delivering ``rate`` bytes/s."""
        fitting = [s for s in self.steps if s <= self.speed_margin * rate]
        return max(fitting) if fitting else self.floor_rate

    def ceiling(self, rate: float) -> float:
        """The fastest delivery (bytes/s) the drive still answers with ``step_for(rate)``: the
        next step up, over the margin, less the headroom; unbounded at the top step."""
        step = self.step_for(rate)
        above = [s for s in self.steps if s > step]
        return min(above) / self.speed_margin * self.headroom if above else math.inf


class ProducerRate:
    """Exponentially weighted bytes/s of what the producer put into the buffer, on the caller's
    time axis, optionally blended with a prior rate worth ``prior_seconds`` of observation (that
    weight decays like any other, so the estimate is the plain mean once the window has filled)."""

    def __init__(self, window: float):
        self.window = window
        self._weighted = 0.0
        self._at: float | None = None
        self._first: float | None = None

    def add(self, now: float, size: int) -> None:
        if self._first is None:
            self._first = self._at = now
        self._weighted = self._weighted * math.exp(-max(0.0, now - self._at) / self.window) + size
        self._at = max(self._at, now)

    def seen(self, now: float) -> float:
        """Seconds since the first byte (0 before it)."""
        return 0.0 if self._first is None else max(0.0, now - self._first)

    def rate(self, now: float, prior: float = 0.0, prior_seconds: float = 0.0) -> float:
        """Bytes/s over the window ending ``now``; ``prior`` until anything has been seen."""
        fading = math.exp(-self.seen(now) / self.window)
        weight = self.window * (1.0 - fading) + prior_seconds * fading
        if weight <= 0:
            return prior
        decayed = self._weighted * math.exp(-max(0.0, now - self._at) / self.window) if self._at is not None else 0.0
        return (decayed + prior * prior_seconds * fading) / weight


class DriveBufferModel:
    """The drive buffer as the pacer believes it to be (rules 4 and 5): bytes delivered, less what
    the tape has drained at the step the drive matched, the tape starting at ``restart_fill`` and
    stopping when the buffer runs dry. Built from the drive's profile and the pacer's own
    deliveries, as a server facing a real drive could (which reports neither fill nor motion)."""

    def __init__(self, capacity: int, restart_fill: float):
        self.capacity = float(capacity)
        self.restart_bytes = restart_fill * capacity
        self.step = 0.0               # bytes/s the tape drains at while streaming
        self.streaming = False
        self.started_at: float | None = None
        """When the tape first started (None: not yet)."""
        self._fill = 0.0
        self._at = 0.0

    def fill(self, now: float) -> float:
        """Bytes in the buffer at ``now`` (draining a streaming tape up to it)."""
        if self.streaming and now > self._at:
            self._fill -= self.step * (now - self._at)
            if self._fill <= 0:
                self._fill, self.streaming = 0.0, False  # ran dry: the tape stops
        self._at = max(self._at, now)
        return self._fill

    def deliver(self, moment: float, size: int, step: float) -> None:
        """``size`` bytes written at ``moment``, after which the drive matches ``step``."""
        self._fill = min(self.capacity, self.fill(moment) + size)
        self.step = step
        if not self.streaming and self._fill >= self.restart_bytes:
            self.streaming = True
            if self.started_at is None:
                self.started_at = moment


class PacedSession:
    """A data-set session whose ``receive`` hands chunks over at the pace (see module docstring).

    Everything else (``set_number``, ``trailer``, ``aborted``, ``commit``, ...) is the wrapped
    session's; the agent side (``send``, ``finish``, ``abort``) passes through, timing arrivals.
    """

    def __init__(self, inner, clock: Clock, profile: PacingProfile):
        self._inner = inner
        self._clock = clock
        self.profile = profile
        self._rate = ProducerRate(profile.rate_window_seconds)
        self._held = 0              # bytes in the wrapped buffer (sent, not yet received)
        self._blocked = 0.0         # seconds the agent spent waiting for room (finished waits)
        self._blocked_since: float | None = None
        self._ending = False        # finish / abort / fail: no more holds
        self._due = -math.inf       # the paced schedule: when the next chunk may go
        self._released_at = -math.inf
        self._deliveries: deque[tuple[float, int]] = deque()  # (moment, bytes) in the drive's window
        self._delivered = 0
        self._wake: asyncio.Event | None = None
        self.drive_model: DriveBufferModel | None = None
        """The pacer's model of the drive buffer (rules 4 and 5); None without a buffer size."""
        if profile.drive_buffer_bytes > 0 and profile.drive_window_seconds > 0:
            self.drive_model = DriveBufferModel(profile.drive_buffer_bytes, profile.restart_fill)
        self.held_seconds = 0.0
        """Time the server spent holding chunks back (virtual seconds in simulation)."""
        self.blocked_seconds = 0.0
        """Time the agent waited for room (or for a transfer buffer): behind a slower drive, or
        behind the pinned pace (the price of rule 2)."""

        if hasattr(inner, "acquire_buffer"):  # a session that lends transfer buffers
            self.acquire_buffer = self._acquire_buffer

    def __getattr__(self, name):
        return getattr(self._inner, name)

    # -- agent side ---------------------------------------------------------------------------

    async def send(self, chunk) -> None:
        size = memoryview(chunk).nbytes
        began = self._clock.now()
        if self._held and self._held + size > self._inner.max_buffered:
            self._blocked_since = began  # the wrapped send will wait for room
            if self._wake is not None:
                self._wake.set()  # let a holding pacer decide whether to let this chunk through
        try:
            await self._inner.send(chunk)
        finally:
            if self._blocked_since is not None:
                waited = self._clock.now() - began
                self._blocked += waited
                self.blocked_seconds += waited
                self._blocked_since = None
        self._held += size
        self._rate.add(self._producer_time(), size)

    async def _acquire_buffer(self):
        """The wrapped session's ``acquire_buffer``; a wait for a free buffer is a wait for room
        (the pool is the bounded buffer), timed and signalled like one in ``send``."""
        began = self._clock.now()
        self._blocked_since = began
        if self._wake is not None:
            self._wake.set()
        try:
            return await self._inner.acquire_buffer()
        finally:
            waited = self._clock.now() - began
            self._blocked += waited
            self.blocked_seconds += waited
            self._blocked_since = None

    async def finish(self, trailer):
        self._end()
        return await self._inner.finish(trailer)

    async def abort(self, reason: str) -> None:
        self._end()
        await self._inner.abort(reason)

    # -- server side --------------------------------------------------------------------------

    async def receive(self):
        chunk = await self._inner.receive()
        if chunk is None:
            self._end()
            return None
        self._held -= len(chunk)
        await self._hold(len(chunk))
        return chunk

    async def fail(self, error: BaseException) -> None:
        self._end()
        await self._inner.fail(error)

    # -- pacing -------------------------------------------------------------------------------

    def _producer_time(self) -> float:
        """The clock less the time the agent waited for room: its rate on this axis is what it
        *offers*, so holding it back does not talk the estimate down."""
        now = self._clock.now()
        waiting = now - self._blocked_since if self._blocked_since is not None else 0.0
        return now - self._blocked - waiting

    def producer_rate(self) -> float:
        """Bytes/s the producer offers (rule 1)."""
        profile = self.profile
        return self._rate.rate(self._producer_time(), profile.floor_rate, profile.prior_seconds)

    def starting(self) -> bool:
        """Whether the start-up hold is on (rule 5): the modelled tape has not started yet, or
        started less than ``start_hold_seconds`` ago."""
        if self.drive_model is None or self.profile.start_hold_seconds <= 0:
            return False
        started = self.drive_model.started_at
        return started is None or self._clock.now() - started < self.profile.start_hold_seconds

    def _start_hold_ends(self) -> float:
        """When the start-up hold (rule 5) ends: a pinned wait stops there, so the hold lasts
        ``start_hold_seconds``, not as long as the budget of a catch-up burst it let through;
        infinite while the tape has not started or when there is no hold."""
        drive = self.drive_model
        if drive is None or drive.started_at is None or not self.starting():
            return math.inf
        return drive.started_at + self.profile.start_hold_seconds

    def _reserve_bytes(self) -> float:
        """How much of the agent buffer is stall reserve (rule 3)."""
        return min(self.profile.reserve * self._inner.max_buffered, self.profile.reserve_max_bytes)

    def pinned(self) -> bool:
        """Whether deliveries are capped for the lowest step (rule 2; rule 5 at the start)."""
        profile = self.profile
        return (profile.pin_lowest_step and self._inner.max_buffered >= profile.pin_min_buffer
                and (self.starting() or profile.step_for(self.producer_rate()) == profile.floor_rate))

    def pinned_ceiling(self) -> float:
        """The fastest delivery (bytes/s) the drive still answers with the lowest step."""
        return self.profile.ceiling(self.profile.floor_rate)

    def pace(self) -> float:
        """Bytes/s the server hands chunks over at now (rules 1 and 2)."""
        if self.pinned():
            return self.pinned_ceiling()
        return max(self.profile.floor_rate, self.producer_rate())

    def filling_stopped_drive(self, size: int) -> bool:
        """Whether a chunk of ``size`` bytes goes out unpaced (rule 4): the modelled tape is
        stopped and the drive buffer, the agent buffer and the chunk stay below the start fill."""
        drive = self.drive_model
        if drive is None or not self.profile.fill_while_stopped:
            return False
        now = self._clock.now()
        return not drive.streaming and drive.fill(now) + self._held + size < drive.restart_bytes

    def _must_release(self) -> bool:
        """The set is ending, or the agent waits for room and the pace is not pinned."""
        return self._ending or (self._blocked_since is not None and not self.pinned())

    async def _hold(self, size: int) -> None:
        if self.filling_stopped_drive(size):  # rule 4: no pace, no pin, no tick
            now = self._clock.now()
            if self.profile.drive_window_seconds > 0 and self.pinned():
                self._count_as_pinned(size, now)
            self._due = now
            self._delivered_at(now, size)
            return
        now = self._clock.now()
        start = max(self._due, now)  # after a stall the schedule restarts now: no credit builds up
        if start - now > self.profile.quantum_seconds:
            await self._sleep_until(start, self._must_release)
            start = min(start, self._clock.now())  # released early: the set ends, or the agent waits
        if self._held < self._reserve_bytes():  # rule 3, while the agent does not wait
            tick = self._released_at + self.profile.tick_seconds
            if tick - self._clock.now() > self.profile.quantum_seconds:
                await self._sleep_until(tick, self._agent_waits)
                start = max(start, min(tick, self._clock.now()))
        if self.profile.drive_window_seconds > 0 and self.pinned():
            moment = self._window_due(size, self._clock.now())
            hold_ends = self._start_hold_ends()
            if min(moment, hold_ends) - self._clock.now() > self.profile.quantum_seconds:
                await self._sleep_until(min(moment, hold_ends), lambda: self._ending)
            if hold_ends < moment and not self._ending and self.pinned():  # the hold ended, rule 2 goes on
                moment = self._window_due(size, self._clock.now())
                if moment - self._clock.now() > self.profile.quantum_seconds:
                    await self._sleep_until(moment, lambda: self._ending)
            start = max(start, min(moment, self._clock.now()))
            self._due = start
        else:
            pace = self.pace()
            self._due = start + size / pace if pace < math.inf else start
        self._delivered_at(start, size)

    def _delivered_at(self, moment: float, size: int) -> None:
        """Book a delivery: the drive's window (rule 2) and the model of its buffer (rules 4, 5)."""
        self._released_at = moment
        window = self.profile.drive_window_seconds
        if window <= 0:
            return
        deliveries = self._deliveries
        deliveries.append((moment, size))
        self._delivered += size
        while deliveries and deliveries[0][0] < moment - window:
            self._delivered -= deliveries.popleft()[1]
        if self.drive_model is not None:
            first_at, first_bytes = deliveries[0]
            span = moment - first_at
            measured = (self._delivered - first_bytes) / span if span > 1e-9 else math.inf
            self.drive_model.deliver(moment, size, self.profile.step_for(measured))

    def _window_due(self, size: int, now: float) -> float:
        """The earliest moment from ``now`` at which delivering ``size`` more bytes keeps the
        drive's measured host rate (bytes after the oldest write in its window, over the time
        since that write) at or below the pinned ceiling."""
        window = self.profile.drive_window_seconds
        cap = self.pinned_ceiling()
        deliveries = self._deliveries
        moment = now
        for _ in range(16):
            # as the drive measures: writes older than the window leave it; the oldest one left
            # opens the span and its bytes do not count; none left: this write opens it alone
            while deliveries and deliveries[0][0] < moment - window:
                self._delivered -= deliveries.popleft()[1]
            if not deliveries:
                return moment  # the drive sees this write alone: nothing to budget
            first_at, first_bytes = deliveries[0]
            needed = first_at + (self._delivered - first_bytes + size) / cap
            if needed <= moment:
                return moment
            moment = needed
        return moment

    def _count_as_pinned(self, size: int, now: float) -> None:
        """Rule 4 while pinned: the chunk goes out now, but the pacer's record of the drive's
        window is left as it would stand when the pinned budget would have let the chunk go
        (:meth:`_window_due` drops the deliveries that are out of the window by then). So once the
        free fill ends, the pinned stretch before the start goes on at the pinned pace instead
        of first waiting, tape stopped, for the whole burst to leave the drive's window (about
        1 s at 400 MB/s); the drive may then start a step faster, and the start-up hold (rule 5)
        brings it down. Without this, ``bench_streaming.py --robustness`` lost 1 % more at 400
        MB/s and kept the start-up backhitch of 215 MB/s seed 11."""
        self._window_due(size, now)

    def _agent_waits(self) -> bool:
        return self._ending or self._blocked_since is not None

    async def _sleep_until(self, moment: float, done) -> None:
        """Sleep until ``moment`` or until ``done()`` turns true (checked whenever woken)."""
        loop = asyncio.get_running_loop()
        if self._wake is None:
            self._wake = asyncio.Event()
        began = self._clock.now()
        while not done():
            now = self._clock.now()
            if now >= moment:
                break
            self._wake.clear()
            timer = loop.call_later(moment - now, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
        self.held_seconds += self._clock.now() - began

    def _end(self) -> None:
        self._ending = True
        if self._wake is not None:
            self._wake.set()


def pacing_for_timing(timing) -> PacingProfile | None:
    """The pacing for a drive with this timing model (``emulators.tape.timing.DriveTiming``), or
    None when it does not match speed (no timing, no medium loaded, a single speed step)."""
    media = getattr(timing, "media", None)
    steps = tuple(getattr(media, "speed_steps", ()) or ())
    if len(steps) < 2:
        return None
    drive = getattr(timing, "drive", None)
    return PacingProfile(steps=steps, speed_margin=getattr(drive, "speed_margin", 1.0),
                         drive_window_seconds=getattr(drive, "rate_window_seconds", 2.0),
                         drive_buffer_bytes=int(getattr(drive, "buffer_bytes", 0) or 0),
                         restart_fill=getattr(drive, "restart_fill", 0.5))


def pacing_for_generation(generation: str) -> PacingProfile:
    """The pacing for a drive writing ``generation`` media (``"LTO-9"``), from the spec §5 speed
    steps the tape profiles hold: for real drives, which do not report their steps. The drive
    buffer (rules 4 and 5) is that of the drive of the same generation, when there is one."""
    from emulators.tape.profiles import DRIVES, MEDIA

    if generation not in MEDIA:
        raise ValueError(f"pacing: unknown media generation {generation!r} (one of {', '.join(MEDIA)})")
    steps = MEDIA[generation].speed_steps
    drive = DRIVES.get(generation)
    if drive is None:
        return PacingProfile(steps=steps)
    return PacingProfile(steps=steps, drive_buffer_bytes=drive.buffer_bytes, restart_fill=drive.restart_fill)


def pacing_for_drive(drives, number: int, mode: str = "auto") -> PacingProfile | None:
    """The pacing for drive ``number`` of a :class:`reference.server.devices.DriveSet` under
    ``mode`` (see :data:`PACING_MODES`), or None for no pacing."""
    if mode == "off":
        return None
    if mode != "auto":
        return pacing_for_generation(mode)
    drive = (getattr(drives, "drives", None) or {}).get(number)
    return pacing_for_timing(getattr(drive, "timing", None))


def pace_for_drive(session, clock: Clock, drives, number: int, mode: str = "auto"):
    """``session`` paced for drive ``number`` (:func:`pacing_for_drive`), or ``session`` itself
    when the drive is not paced (no wrapper, no cost)."""
    profile = pacing_for_drive(drives, number, mode)
    return session if profile is None else PacedSession(session, clock, profile)
