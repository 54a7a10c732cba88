"""Run an :class:`NdmpServer` on its own event-loop thread (tests, benchmarks, synchronous callers)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

from .server import NdmpServer


class ServerThread:
    """``with ServerThread(make_server) as st: st.address`` — the server lives on a private loop."""

    def __init__(self, make_server: Callable[[], NdmpServer]):
        self._make_server = make_server
        self.loop = asyncio.new_event_loop()
        self.server: NdmpServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="ndmp-server", daemon=True)

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        self.server = self.call(self._start())
        return self

    async def _start(self) -> NdmpServer:
        return await self._make_server().start()

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        return self.server.address

    def __exit__(self, *exc: Any) -> None:
        if self.server is not None:
            self.call(self.server.close())
        self.call(self.loop.shutdown_default_executor())  # the data jobs' worker threads
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
