"""How pipeline code calls blocking operations, in production and in simulation alike.

docs/architecture.md ("Concurrency model"): stages are asyncio tasks. A blocking call — an
Exchange ``read_file``, a tape ``write``, a SQLite commit — goes through :meth:`Runtime.call`:

* production (:class:`RealClock`): the call runs in a worker thread, so a slow drive does not
  stall Exchange reads on the other side of the bounded buffer;
* simulation (:class:`VirtualClock`): the call runs inline (deterministic, single-threaded); if the
  device books its time on a :class:`~emulators.clock.Timeline`, the task then awaits until the
  device is free, so concurrent devices overlap in virtual time instead of adding up.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from emulators.clock import Clock, RealClock, Timeline, VirtualClock, new_event_loop

T = TypeVar("T")


class Runtime:
    """One clock, one event loop policy, one way to call blocking code."""

    def __init__(self, clock: Clock | None = None, workers: int = 8):
        self.clock: Clock = clock or RealClock()
        self.simulated = isinstance(self.clock, VirtualClock)
        self._executor = None if self.simulated else ThreadPoolExecutor(max_workers=workers, thread_name_prefix="io")

    async def call(self, function: Callable[..., T], *args, timeline: Timeline | None = None, **kwargs) -> T:
        """Run a blocking ``function``; in simulation, then wait until ``timeline``'s device is free."""
        if self.simulated:
            result = function(*args, **kwargs)
            await self.wait_for(timeline)
            return result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))

    async def wait_for(self, timeline: Timeline | None) -> None:
        """In simulation, wait until the device behind ``timeline`` has finished its booked work."""
        if self.simulated and timeline is not None and timeline.busy_until > self.clock.now():
            await asyncio.sleep(timeline.busy_until - self.clock.now())

    def run(self, coro):
        """Run ``coro`` to completion on a loop driven by this runtime's clock."""
        loop = new_event_loop(self.clock)
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
