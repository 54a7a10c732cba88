"""Time for emulators: one virtual clock for deterministic simulation, one real clock for production.

Every emulator charges the time its real counterpart would take (tape motion, transfer at a rate,
Exchange read latency) to a :class:`Clock`. In simulation the clock is a :class:`VirtualClock`: time
advances only when something charges it, so a four-hour backup of a simulated site runs in seconds
and the same seed gives the same timeline. In production (or when a test wants wall-clock pacing) a
:class:`RealClock` really sleeps.

Devices keep their own *busy-until* time (see :meth:`Clock.sleep_until`), so two drives working in
parallel do not add their times up: each caller waits until the device it used is ready again.

Concurrency (docs/architecture.md): jobs, drives and agents are asyncio tasks. :func:`new_event_loop`
returns a loop whose ``time()`` *is* the clock; on a virtual clock, when every task is waiting on a
timer, the loop jumps the clock to the next timer instead of sleeping.
"""

from __future__ import annotations

import asyncio
import selectors
import threading
import time
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Clock(Protocol):
    """What emulators need from time: read it, wait for a while, wait until a moment."""

    def now(self) -> float:
        """Seconds since the clock's epoch (simulation start, or the Unix epoch for real time)."""

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass; a virtual clock advances instantly, a real clock blocks."""

    def sleep_until(self, moment: float) -> None:
        """Let time pass until ``moment``; no-op when it is already past."""


class VirtualClock:
    """Simulation time. Never really sleeps; thread-safe; monotonic.

    ``start`` is the epoch the simulation's timestamps are based on (for example the creation time
    written in Exchange log headers), so seeded runs produce identical files.
    """

    def __init__(self, start: float = 1_100_000_000.0):  # 2004-11-09, an Exchange 2003 era date
        self._now = float(start)
        self._start = float(start)
        self._lock = threading.Lock()

    @property
    def start(self) -> float:
        return self._start

    def now(self) -> float:
        return self._now

    def elapsed(self) -> float:
        """Virtual seconds since the clock was created."""
        return self._now - self._start

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (must be >= 0) and return the new time."""
        if seconds < 0:
            raise ValueError(f"time cannot run backwards (advance by {seconds})")
        with self._lock:
            self._now += seconds
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def sleep_until(self, moment: float) -> None:
        with self._lock:
            if moment > self._now:
                self._now = moment

    def __repr__(self) -> str:
        return f"VirtualClock(t=+{self.elapsed():.6f}s)"


class RealClock:
    """Wall-clock time for production runs and real-time demos."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def sleep_until(self, moment: float) -> None:
        self.sleep(moment - time.time())


VIRTUAL_RESOLUTION = 1e-6
"""Seconds; well above the float spacing of epoch-sized timestamps (~2.4e-7 s near 1.1e9)."""


class _VirtualTimeSelector(selectors.DefaultSelector):
    """A selector that polls real file descriptors without blocking and, when nothing is ready,
    jumps the virtual clock forward by the timeout the loop asked to wait (the next timer)."""

    def __init__(self, clock: VirtualClock):
        super().__init__()
        self._clock = clock

    def select(self, timeout=None):
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:
            # Nothing scheduled and nothing ready: only real I/O can wake us, so really wait for it.
            return super().select(None)
        if timeout > 0:
            # Never less than the loop's resolution: at epoch-sized times a tiny float step can
            # leave the clock where it was, and the loop would spin forever on the same timer.
            self._clock.advance(max(timeout, VIRTUAL_RESOLUTION))
        return ready


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose time is a :class:`VirtualClock`; ``asyncio.sleep`` costs no wall time.

    Single-threaded and deterministic: tasks run in the order their timers and callbacks fall due.
    """

    def __init__(self, clock: VirtualClock):
        super().__init__(_VirtualTimeSelector(clock))
        self.clock = clock
        self._clock_resolution = VIRTUAL_RESOLUTION  # timers within this of "now" are due

    def time(self) -> float:
        return self.clock.now()


def new_event_loop(clock: Clock) -> asyncio.AbstractEventLoop:
    """An event loop running on ``clock``: virtual-time for a :class:`VirtualClock`, ordinary otherwise."""
    if isinstance(clock, VirtualClock):
        return VirtualTimeEventLoop(clock)
    return asyncio.new_event_loop()


def run(coro, clock: Clock):
    """Run ``coro`` to completion on a loop driven by ``clock`` and close the loop."""
    loop = new_event_loop(clock)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


class Timeline:
    """A device's own notion of when it is free, for devices shared by concurrent callers.

    ``reserve(cost)`` books ``cost`` seconds starting when both the caller (now) and the device are
    ready, and returns the moment the work completes; the caller then waits until then.
    """

    def __init__(self, clock: Clock):
        self.clock = clock
        self.busy_until = clock.now()

    def reserve(self, cost: float) -> float:
        start = max(self.clock.now(), self.busy_until)
        self.busy_until = start + max(0.0, cost)
        return self.busy_until


# ---------------------------------------------------------------------------------------------
# Seeded randomness


class SeedSequence:
    """Named, independent random streams from one integer seed.

    Every component asks for its own stream by name (``seeds.rng("workload")``); adding a new
    consumer does not shift the numbers an existing one draws, so a seed keeps reproducing the
    same run as the code grows.
    """

    def __init__(self, seed: int):
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
        self.seed = seed
        self._drawn: list[str] = []

    def _entropy(self, name: str) -> list[int]:
        # Stable across Python runs (unlike hash()): the UTF-8 bytes of the name, as integers.
        return [self.seed, *name.encode("utf-8")]

    def rng(self, name: str) -> np.random.Generator:
        """A numpy Generator for the stream ``name``; the same (seed, name) always gives the same numbers."""
        self._drawn.append(name)
        return np.random.default_rng(np.random.SeedSequence(self._entropy(name)))

    def child_seed(self, name: str) -> int:
        """A derived integer seed, for libraries that take an int (hypothesis, random.Random)."""
        return int(np.random.SeedSequence(self._entropy(name)).generate_state(1, dtype=np.uint64)[0])

    @property
    def streams(self) -> tuple[str, ...]:
        """Names of the streams drawn so far (for reproduction reports)."""
        return tuple(self._drawn)


__all__ = [
    "Clock",
    "VirtualClock",
    "RealClock",
    "VirtualTimeEventLoop",
    "new_event_loop",
    "run",
    "Timeline",
    "SeedSequence",
]
