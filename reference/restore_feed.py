"""What a restore consumes from the server's read-back: objects, and their bytes in batches.

The server's read-back (``reference/server/readback.py``) is synchronous: it loads and walks
cartridges and reads and hashes tape blocks. :class:`ReadBackFeed` turns it into the async
iterator of objects the agent's restore (``reference/agent/database_restore.py``) consumes. On the
real clock each object's bytes flow through a :class:`ReadPipeline` (tape reads and the check's
hash in worker threads, overlapping the agent's file writes); in simulation every call is inline,
in order, on the drive's timeline (deterministic virtual time).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import AsyncIterator


class ReadBackFeed:
    """The server's read-back as the agent's restore consumes it: objects and their bytes.

    Blocking work (loading and walking cartridges, tape reads, hashing) runs through ``runtime``:
    on the real clock each object's bytes flow through a :class:`ReadPipeline` (tape reads and hashing
    in worker threads, so neither waits for the event loop or the agent's writes); in
    simulation every call is inline, in order, and waits for the drive's timeline as before.
    ``settle`` stops and waits for pipelines an abandoned object left running, so the reader is
    never closed under a read."""

    def __init__(self, site, reader, set_ids: list[int]):
        self.runtime = site.runtime
        self.timeline = site.media.drives.timeline(reader.mounter.drive)
        self.reader = reader
        self.set_ids = set_ids
        self._pipelines: list[ReadPipeline] = []
        self._threads: ThreadPoolExecutor | None = None  # the pipelines' own two threads

    async def objects(self) -> AsyncIterator["TapeObject"]:
        chain = self.reader.read_chain(self.set_ids)
        while True:
            item = await self.runtime.call(next, chain, None, timeline=self.timeline)
            if item is None:
                return
            _set_id, record, stream = item
            yield TapeObject(record.path, record.kind, record.size, stream, self)

    async def pipeline(self, stream) -> "ReadPipeline":
        """A pipeline for the next object; one left running by an object the agent did not finish
        is stopped first (its threads are this one's: own executor, never the shared one, so no
        other job's blocking calls can starve a pipeline of its second thread)."""
        await self.settle(close=False)
        if self._threads is None:
            self._threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="restore")
        pipeline = ReadPipeline(self._threads, stream)
        self._pipelines.append(pipeline)
        return pipeline

    async def settle(self, close: bool = True) -> None:
        pipelines, self._pipelines = self._pipelines, []
        for pipeline in pipelines:
            await pipeline.stop()
        if close and self._threads is not None:
            self._threads.shutdown(wait=True)
            self._threads = None


class ReadPipeline:
    """One object's batches: tape reads → the check's hash → the agent, pipelined and bounded.

    A reader thread calls ``stream.read_raw`` and hands batches to the event loop, at most
    ``READY_DEPTH`` ahead of the agent, so the tape read of batch N+1 and the agent's write of N
    overlap (preadv, writev and the hashes release the GIL). Where the stream's check is cheap
    (``stream.fast_check``: XXH3-128, ~17 GB/s) the reader hashes each batch itself; with
    SHA-256 (~1.8 GB/s) a second, hasher thread takes them from a queue of ``RAW_DEPTH``, so the
    read of N+2, the hash of N+1 and the write of N overlap (one thread hand-off more per batch:
    measured 15-20 % slower than hashing on the reader when the hash is cheap). At most RAW_DEPTH
    + READY_DEPTH + 2 batches (20 MiB at 4 MiB) are held besides the two the agent writes. After
    the last batch ``stream.finish`` (size and digest against the catalog) runs: its error
    reaches the agent after every batch, exactly where the plain iterator raises it."""

    RAW_DEPTH = 1
    READY_DEPTH = 2
    POLL = 0.05  # seconds; how soon an abandoned pipeline's threads notice ``stop``

    def __init__(self, executor: ThreadPoolExecutor, stream):
        self.stream = stream
        self._loop = asyncio.get_running_loop()
        self._raw: queue.Queue = queue.Queue(maxsize=self.RAW_DEPTH)
        self._ready: asyncio.Queue = asyncio.Queue()
        self._room = threading.Semaphore(self.READY_DEPTH)
        self._stopped = False
        self._inline = bool(getattr(stream, "fast_check", False))
        self._threads = [self._loop.run_in_executor(executor, self._read)]
        if not self._inline:
            self._threads.append(self._loop.run_in_executor(executor, self._hash))

    def done(self) -> bool:
        return all(t.done() for t in self._threads)

    async def stop(self) -> None:
        self._stopped = True
        await asyncio.wait(self._threads)

    async def batches(self) -> AsyncIterator[memoryview]:
        while True:
            item = await self._ready.get()
            self._room.release()
            if item is None or isinstance(item, BaseException):
                await asyncio.wait(self._threads)  # both threads end right after the last item
                if item is None:
                    return
                raise item
            yield item

    # -- worker threads --

    def _read(self) -> None:
        hand_on = self._deliver if self._inline else self._put
        try:
            while True:
                view = self.stream.read_raw()
                if not hand_on(view) or view is None:
                    return
        except BaseException as error:  # a read error reaches the agent after the batches before it
            hand_on(error)

    def _put(self, item) -> bool:
        while not self._stopped:
            try:
                self._raw.put(item, timeout=self.POLL)
                return True
            except queue.Full:
                continue
        return False

    def _hash(self) -> None:
        while not self._stopped:
            try:
                item = self._raw.get(timeout=self.POLL)
            except queue.Empty:
                continue
            if not self._deliver(item) or item is None or isinstance(item, BaseException):
                return

    def _deliver(self, item) -> bool:
        """Hash a batch and hand it to the loop when it has room; after the last (None), run the
        check; an error is handed on as it is. False when the pipeline was stopped."""
        if item is None:
            try:
                self.stream.finish()
            except BaseException as error:
                item = error
        elif not isinstance(item, BaseException):
            self.stream.hash(item)
            while not self._room.acquire(timeout=self.POLL):
                if self._stopped:
                    return False
        self._emit(item)
        return True

    def _emit(self, item) -> None:
        if not self._stopped:
            self._loop.call_soon_threadsafe(self._ready.put_nowait, item)


@dataclass
class TapeObject:
    """An object read back by the server, as the agent's restore consumes it."""

    path: str
    kind: str
    size: int
    _stream: object
    _source: ReadBackFeed

    async def chunks(self) -> AsyncIterator[memoryview]:
        stream, source = self._stream, self._source
        if source.runtime.simulated:  # inline and in order: deterministic virtual time
            while (view := await source.runtime.call(stream.read_raw, timeline=source.timeline)) is not None:
                stream.hash(view)
                yield view
            stream.finish()
            return
        pipeline = await source.pipeline(stream)
        async for view in pipeline.batches():
            yield view
