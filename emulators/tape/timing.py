"""Streaming and mechanical timing of an LTO drive on a virtual clock (spec ``tape-drive.md`` §5).

The model, per drive:

* The host writes blocks into the drive buffer (``buffer_bytes``); the tape drains it at the
  current **speed step**: the highest step not above min(host rate, native rate), or the lowest
  step when the host is slower than that (IBM speed matching). The host rate is the producer's
  *offered* rate: stored bytes over a time window, not counting the time the host spent blocked
  on this drive (a full buffer, a synchronising filemark) — otherwise a host faster than the tape
  would measure at the tape's own speed and the margin would ratchet the drive down step by step.
* When the buffer runs dry while streaming the tape stops: one **backhitch** (counter + 1, the tape
  is unavailable for ``backhitch_seconds``), and it restarts only once the buffer has refilled to
  ``restart_fill`` of its size. A host at or above the lowest step never drains the buffer.
* A host write that does not fit in the buffer waits until the tape has made room (this wait is
  the only time a write costs the host).
* A non-immediate filemark (and every other command that needs the medium: read, space, locate,
  rewind, unload) first drains the buffer to tape; the tape then stops, which costs a backhitch
  before the next streaming write. An immediate filemark (MTWEOFI) costs nothing.
* Load, unload, rewind and locate take the §5 table's seconds: rewind and locate scale linearly
  with the distance travelled, so the average (mid-tape) trip costs the published average.

All time goes through a :class:`emulators.clock.Timeline`: a drive is busy until its last command
completes, and two drives working at once do not add their times up.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from emulators.clock import Clock, Timeline

from .profiles import DriveProfile, MediaProfile


@dataclass
class StreamingCounters:
    """What a report can show about one drive's streaming behaviour."""

    backhitches: int = 0
    bytes_written: int = 0
    """Logical (host) bytes."""
    bytes_stored: int = 0
    """Bytes that went to tape (after compression)."""
    bytes_read: int = 0
    seconds_at_step: dict[float, float] = field(default_factory=dict)
    """Seconds of tape motion at each speed step (MB/s) while writing."""
    host_wait_seconds: float = 0.0
    """Time writers spent blocked on a full buffer or a synchronising filemark."""
    motion_seconds: float = 0.0
    """Load, unload, rewind, space and locate time."""
    buffer_series: list[tuple[float, int]] = field(default_factory=list)
    """(virtual seconds since the drive was created, buffer fill in bytes), decimated to at most
    ``MAX_SAMPLES`` points so a long run stays small."""


MAX_SAMPLES = 4096


class DriveTiming:
    """The timing model of one drive; every method charges the caller's clock and returns the
    seconds it cost."""

    def __init__(self, clock: Clock, drive: DriveProfile, timeline: Timeline | None = None):
        self.clock = clock
        self.drive = drive
        self.timeline = timeline or Timeline(clock)
        self.counters = StreamingCounters()
        self.wait_in_place = True
        self.media: MediaProfile | None = None
        self._origin = clock.now()
        self._t = clock.now()
        self._fill = 0
        self._streaming = False
        self._rate = 0.0
        self._resume_at = -math.inf
        self._last_arrival: float | None = None
        self._arrivals: deque[tuple[float, int]] = deque()
        self._window_bytes = 0
        self._blocked = 0.0  # seconds the host has spent blocked on this drive, in total
        self._sample_every = 0.0
        self._last_sample = -math.inf

    # ------------------------------------------------------------------ helpers

    def _book(self, cost_at) -> float:
        """Run ``cost_at(start)`` at the moment the drive is free, book it, wait for it.

        With ``wait_in_place`` off the caller waits instead (an asyncio job awaiting the drive's
        timeline through ``reference.runtime.Runtime``), so drives used by concurrent jobs overlap
        in virtual time rather than adding up.
        """
        start = max(self.clock.now(), self.timeline.busy_until)
        cost = cost_at(start)
        done = self.timeline.reserve(cost)
        if self.wait_in_place:
            self.clock.sleep_until(done)
        return cost

    def _sample(self, now: float, force: bool = False) -> None:
        series = self.counters.buffer_series
        if not force and now - self._last_sample < self._sample_every:
            return
        series.append((now - self._origin, self._fill))
        self._last_sample = now
        if len(series) > MAX_SAMPLES:
            del series[1::2]
            self._sample_every = max(self._sample_every * 2, (now - self._origin) / MAX_SAMPLES)

    def _step_for(self, host_rate: float) -> float:
        steps = self.media.speed_steps if self.media else (1.0,)
        # Match a speed the host can sustain: a step just below its measured rate keeps the
        # buffer filling, so a pause of the host is bridged instead of emptying it (a backhitch).
        target = min(host_rate * self.drive.speed_margin, self.media.native_rate if self.media else host_rate)
        for step in steps:
            if step <= target:
                return step
        return steps[-1]

    def _run(self, now: float) -> None:
        """Advance the buffer model to ``now`` (drain at the current step; detect underrun)."""
        if now <= self._t:
            return
        if self._streaming:
            begin = max(self._t, self._resume_at)
            if now > begin:
                seconds = now - begin
                empty_after = self._fill / self._rate
                key = round(self._rate / 1e6, 2)
                at_step = self.counters.seconds_at_step
                if empty_after <= seconds:
                    at_step[key] = at_step.get(key, 0.0) + empty_after
                    self._fill = 0
                    self._stop(begin + empty_after)
                else:
                    at_step[key] = at_step.get(key, 0.0) + seconds
                    self._fill -= int(seconds * self._rate)
        self._t = now
        self._sample(now)

    def _stop(self, moment: float) -> None:
        """The tape stopped with an empty buffer: it has to back-hitch before streaming again."""
        self._streaming = False
        self.counters.backhitches += 1
        self._resume_at = moment + self.drive.backhitch_seconds

    def _drain_cost(self, start: float, backhitch: bool = False) -> float:
        """Seconds from ``start`` until everything buffered is on tape and the tape has stopped.

        ``backhitch``: the tape will have to reposition to append again (a synchronising filemark
        in the middle of a write stream); other commands move the tape elsewhere anyway.
        """
        self._run(start)
        if self._fill == 0:
            self._streaming = False
            return 0.0
        begin = max(start, self._resume_at)
        if not self._rate:
            self._rate = self._step_for(math.inf)
        done = begin + self._fill / self._rate
        key = round(self._rate / 1e6, 2)
        at_step = self.counters.seconds_at_step
        at_step[key] = at_step.get(key, 0.0) + (done - begin)
        self._fill = 0
        self._streaming = False
        self._t = done
        if backhitch:
            self._stop(done)
        self._sample(done, force=True)
        return done - start

    def _host_rate(self, now: float, stored: int) -> float:
        """Bytes per second the host offered over the last ``rate_window_seconds``: the bytes
        of every write after the oldest one in the window, over the time since it minus the time
        the host was blocked on the drive meanwhile. Infinite until the window spans any
        unblocked time, so a first burst (or a host always waiting for room) streams at full
        speed."""
        window = self.drive.rate_window_seconds
        arrivals = self._arrivals
        arrivals.append((now, stored, self._blocked))
        self._window_bytes += stored
        while len(arrivals) > 1 and arrivals[0][0] < now - window:
            self._window_bytes -= arrivals.popleft()[1]
        first_at, first_bytes, blocked_then = arrivals[0]
        span = (now - first_at) - (self._blocked - blocked_then)
        return (self._window_bytes - first_bytes) / span if span > 1e-9 else math.inf

    # ------------------------------------------------------------------ public charges

    def set_media(self, media: MediaProfile | None) -> None:
        self.media = media

    def write(self, logical: int, stored: int) -> float:
        """A host write of one block into the buffer; returns the seconds the host was blocked."""

        def cost(start: float) -> float:
            self._run(start)
            self._rate = self._step_for(self._host_rate(start, stored))
            wait = 0.0
            room = self.drive.buffer_bytes - self._fill
            if stored > room:
                need = stored - room
                begin = max(start, self._resume_at)
                self._streaming = True
                wait = (begin - start) + need / self._rate
                self._run(start + wait)
                self._fill = min(self._fill, self.drive.buffer_bytes - stored)
            self._fill += stored
            if not self._streaming and self._fill >= self.drive.restart_fill * self.drive.buffer_bytes:
                self._streaming = True
                self._t = max(self._t, start + wait)
            self._last_arrival = start + wait
            self._sample(start + wait)
            return wait

        waited = self._book(cost)
        self._blocked += waited
        self.counters.bytes_written += logical
        self.counters.bytes_stored += stored
        self.counters.host_wait_seconds += waited
        return waited

    def filemark(self, immediate: bool) -> float:
        """WRITE FILEMARKS: IMMED=0 drains the buffer (a synchronisation point), IMMED=1 does not."""
        if immediate:
            return 0.0
        waited = self._book(lambda start: self._drain_cost(start, backhitch=True))
        self._blocked += waited
        self.counters.host_wait_seconds += waited
        return waited

    def flush(self) -> float:
        """Drain the buffer before a command that needs the medium (read, space, rewind...)."""
        return self._book(self._drain_cost)

    def read(self, stored: int) -> float:
        """Reading one block from tape at the native rate."""
        rate = self.media.native_rate if self.media else math.inf

        def cost(start: float) -> float:
            return self._drain_cost(start) + stored / rate

        self.counters.bytes_read += stored
        return self._book(cost)

    def _motion(self, seconds: float) -> float:
        def cost(start: float) -> float:
            return self._drain_cost(start) + seconds

        spent = self._book(cost)
        self.counters.motion_seconds += seconds
        return spent

    def locate(self, from_fraction: float, to_fraction: float) -> float:
        """Space/locate between two points of the tape (fractions of its length)."""
        distance = abs(to_fraction - from_fraction)
        return self._motion(2 * self.drive.locate_avg_seconds * distance)

    def rewind(self, from_fraction: float) -> float:
        return self._motion(2 * self.drive.rewind_avg_seconds * max(0.0, from_fraction))

    def load(self) -> float:
        return self._motion(self.drive.load_seconds)

    def unload(self, from_fraction: float) -> float:
        """Rewind (from where the tape is) and unload."""
        return self._motion(2 * self.drive.rewind_avg_seconds * max(0.0, from_fraction)
                            + self.drive.unload_seconds)
