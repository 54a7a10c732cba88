"""Write pacing: keep a speed-matching tape drive at a step the agent can sustain.

An LTO drive picks its tape speed from the host's recent data rate (spec ``tape-drive.md`` §5;
``emulators/tape/timing.py``: the fastest step at or below 95 % of the rate over the last 2 s).
Exchange reads are bursty: between stalls the agent delivers far faster than its mean rate. A
server that writes each chunk as it comes makes the drive choose a fast step during a burst; when
the next stall comes the drive empties its buffer at that speed and backhitches, although the
mean rate is above the lowest step. The drive buffer also grows only by the drive's margin (5 %).

:class:`PacedSession` wraps the data-set session (``reference.transfer.LocalSession``) on its
receive side: the server still takes every chunk, in order, with ``await receive()``; the wrapper
only decides *when* ``receive`` returns. Three rules (profile settings, :class:`PacingProfile`):

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
3. **Stall reserve.** The last ``reserve`` of the agent buffer goes out one chunk per
   ``tick_seconds`` (unless the agent is waiting): during a stall the drive keeps receiving
   writes, sees the host rate fall and steps down instead of draining its buffer at the burst's
   speed (the timing model re-evaluates the step only when a write arrives).

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
    tick_seconds: float = 0.1
    quantum_seconds: float = 0.002
    """Holds shorter than this are not slept (the schedule carries them), so small chunks on a real
    clock do not cost a timer each."""

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

    def pinned(self) -> bool:
        """Whether deliveries are capped for the lowest step (rule 2)."""
        profile = self.profile
        return (profile.pin_lowest_step and self._inner.max_buffered >= profile.pin_min_buffer
                and profile.step_for(self.producer_rate()) == profile.floor_rate)

    def pace(self) -> float:
        """Bytes/s the server hands chunks over at now (rules 1 and 2)."""
        rate = self.producer_rate()
        if self.pinned():
            return self.profile.ceiling(rate)
        return max(self.profile.floor_rate, rate)

    def _must_release(self) -> bool:
        """The set is ending, or the agent waits for room and the pace is not pinned."""
        return self._ending or (self._blocked_since is not None and not self.pinned())

    async def _hold(self, size: int) -> None:
        now = self._clock.now()
        start = max(self._due, now)  # after a stall the schedule restarts now: no credit builds up
        if start - now > self.profile.quantum_seconds:
            await self._sleep_until(start, self._must_release)
            start = min(start, self._clock.now())  # released early: the set ends, or the agent waits
        if self._held < self.profile.reserve * self._inner.max_buffered:  # rule 3, while the agent does not wait
            tick = self._released_at + self.profile.tick_seconds
            if tick - self._clock.now() > self.profile.quantum_seconds:
                await self._sleep_until(tick, self._agent_waits)
                start = max(start, min(tick, self._clock.now()))
        if self.profile.drive_window_seconds > 0 and self.pinned():
            moment = self._window_due(size, self._clock.now())
            if moment - self._clock.now() > self.profile.quantum_seconds:
                await self._sleep_until(moment, lambda: self._ending)
            start = max(start, min(moment, self._clock.now()))
            self._due = start
        else:
            pace = self.pace()
            self._due = start + size / pace if pace < math.inf else start
        self._released_at = start
        if self.profile.drive_window_seconds > 0:
            self._deliveries.append((start, size))
            self._delivered += size
            while self._deliveries and self._deliveries[0][0] < start - self.profile.drive_window_seconds:
                self._delivered -= self._deliveries.popleft()[1]

    def _window_due(self, size: int, now: float) -> float:
        """The earliest moment from ``now`` at which delivering ``size`` more bytes keeps the
        drive's measured host rate (bytes after the oldest write in its window, over the time
        since that write) at or below the pinned ceiling."""
        window = self.profile.drive_window_seconds
        cap = self.profile.ceiling(self.producer_rate())
        if cap == math.inf:
            return now
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
                         drive_window_seconds=getattr(drive, "rate_window_seconds", 2.0))


def pacing_for_generation(generation: str) -> PacingProfile:
    """The pacing for a drive writing ``generation`` media (``"LTO-9"``), from the spec §5 speed
    steps the tape profiles hold: for real drives, which do not report their steps."""
    from emulators.tape.profiles import MEDIA

    if generation not in MEDIA:
        raise ValueError(f"pacing: unknown media generation {generation!r} (one of {', '.join(MEDIA)})")
    return PacingProfile(steps=MEDIA[generation].speed_steps)


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
