"""The agent → server data path for one data set, and the commit acknowledgement back.

A :class:`DataSetSession` is what the agent holds while it streams one data set:

* ``set_number`` — assigned by the server's media manager before the first byte (it goes into
  the SSET the agent writes);
* ``await send(chunk)`` — MTF bytes, FLB-aligned, in order; blocks while the bounded buffer is
  full, which is how tape speed pushes back on Exchange reads without memory growing;
* ``await finish(trailer)`` — end of the set; returns only once the server has written the ESET
  and its filemark **and committed the catalog**. That receipt is the agent's licence to truncate
  Exchange logs. ``abort(reason)`` tells the server to discard the set.

:class:`LocalSession` is the in-process implementation (agent and server in one process, or the
scenario engine); the NDMP data connection is the networked one (``reference/ndmp``).

**Transfer buffers.** A LocalSession owns a fixed pool of transfer buffers (like a backup
product's NUMBER/SIZE_DATA_BUFFERS): enough to fill the bounded buffer plus the one the agent is
filling and the one the server is writing. ``await acquire_buffer()`` lends the agent one; the
agent fills it (Exchange reads straight into it, see :class:`PackingSink`) and sends a view of
it, which crosses over **without a copy**; the server's ``receive()`` hands the view on and
takes it back into the pool at its next ``receive()`` (so a received chunk is valid until then).
The pool is mapped with its pages populated and reused most-recently-freed first (still in
cache), so memory is the pool's size whatever the database's size. Anything else passed to ``send`` is copied, as
before (the mailbox-level packer, the NDMP data connection).
"""

from __future__ import annotations

import asyncio
import mmap
import threading
from dataclasses import dataclass, field

from reference.errors import MailtapeError


@dataclass
class ObjectEntry:
    """One FILE of the data set as the agent wrote it (what the catalog records about it)."""

    path: str
    kind: str  # stream | log | metadata | item
    size: int
    sha256: str
    fla: int
    database: str | None = None
    corrupt: bool = False
    xxh3: str = ""
    """XXH3-128 of the data, hex (``FileRecord.xxh3``): the catalog's in-line restore check."""

    @classmethod
    def written(cls, record, path: str, kind: str, database: str | None = None) -> "ObjectEntry":
        """The entry for a FILE the data-set writer has finished (its ``FileRecord``)."""
        return cls(path, kind, record.size, record.sha256.hex(), record.fla, database, xxh3=record.xxh3.hex())


@dataclass
class DataSetTrailer:
    """Everything the server needs to close the set and catalog it."""

    eset: object  # reference.format.writer.EsetInfo
    objects: list[ObjectEntry]
    backup_type: str
    log_gen_low: int | None = None
    log_gen_high: int | None = None
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CommitReceipt:
    data_set_id: int
    barcodes: tuple[str, ...]
    bytes_on_media: int


class TransferAborted(MailtapeError):
    """The other side of the data path gave up (server error, agent abort)."""


_END = object()
TRANSFER_BUFFER = 2 << 20
"""Size of one transfer buffer of a LocalSession (a multiple of every usual tape block size, so
full buffers become whole tape blocks)."""
MIN_TRANSFER_BUFFER = 64 << 10
COPY_BUFFER = 1 << 20
"""The agent's own packing buffer for sessions that lend none (their ``send`` copies)."""


class _SpareBuffers:
    """Transfer buffers of finished sessions, kept for the next session of this process.

    A pool is mapped with its pages populated (allocated and zeroed once, up front), so a
    session's memory is its pool's size from its first byte to its last: the same for a small
    database as for a large one, instead of growing with however far the tape fell behind. Keeping
    them between sessions pays that once per process rather than once per data set. At most
    ``limit`` bytes are kept (two default pools: two drives writing at once).
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._spare: dict[int, list] = {}
        self._lock = threading.Lock()

    def take(self, size: int, count: int) -> list:
        with self._lock:
            kept = self._spare.get(size, [])
            split = max(0, len(kept) - count)
            taken, self._spare[size] = kept[split:], kept[:split]
        return taken + [_populated_map(size) for _ in range(count - len(taken))]

    def give(self, size: int, buffers: list) -> None:
        with self._lock:
            kept = self._spare.setdefault(size, [])
            room = (self.limit - sum(s * len(b) for s, b in self._spare.items())) // size
            kept.extend(buffers[:max(0, room)])


def _populated_map(size: int) -> mmap.mmap:
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(-1, size, flags=flags)


_SPARE = _SpareBuffers(2 * ((64 << 20) + 2 * TRANSFER_BUFFER))


class LocalSession:
    """In-process data path: a byte-bounded queue, a pool of transfer buffers (see the module
    docstring) and a future for the commit receipt."""

    def __init__(self, set_number: int, max_buffered: int = 64 << 20, buffer_size: int = TRANSFER_BUFFER):
        self.set_number = set_number
        self.max_buffered = max_buffered
        self.buffer_size = max(MIN_TRANSFER_BUFFER, min(buffer_size, max_buffered))
        self._queue: asyncio.Queue = asyncio.Queue()
        self._buffered = 0
        self._space = asyncio.Condition()
        self._receipt: asyncio.Future = asyncio.get_running_loop().create_future()
        self.trailer: DataSetTrailer | None = None
        self.aborted: str | None = None
        self.peak_buffered = 0
        # Queue full + one being written + one being filled: acquire_buffer never waits in a
        # well-behaved exchange; ``send`` does.
        self.pool_buffers = max(1, max_buffered // self.buffer_size) + 2
        self._free: list | None = None  # the pool, mapped at the first acquire_buffer
        self._pooled: set[int] = set()
        self._lent = None  # the pool buffer behind the chunk the server holds

    # -- agent side --------------------------------------------------------------------------

    async def acquire_buffer(self) -> memoryview:
        """Borrow a transfer buffer (``buffer_size`` bytes, writable) to fill and ``send`` a view
        of; it comes back to the pool after the server has written it."""
        if self._free is None:  # producers that only ``send`` (NDMP, mailboxes) never map a pool
            self._free = _SPARE.take(self.buffer_size, self.pool_buffers)
            self._pooled = {id(b) for b in self._free}
        async with self._space:
            while not self._free:
                if self._receipt.done():
                    self._raise_if_failed()
                    raise TransferAborted("the data set is already closed")
                await self._space.wait()
            return memoryview(self._free.pop())  # the most recently written: still in cache

    async def send(self, chunk) -> None:
        if self._receipt.done():
            self._raise_if_failed()
        view = chunk if type(chunk) is memoryview else None
        if view is not None and id(view.obj) in self._pooled:
            data, lent = view.cast("B").toreadonly(), view.obj  # a pool buffer: no copy
        else:
            data, lent = bytes(chunk), None  # the producer may reuse its buffer: take a copy
        async with self._space:
            while self._buffered and self._buffered + len(data) > self.max_buffered:
                await self._space.wait()
                if self._receipt.done():
                    self._raise_if_failed()
            self._buffered += len(data)
            self.peak_buffered = max(self.peak_buffered, self._buffered)
        self._queue.put_nowait((data, lent))

    async def finish(self, trailer: DataSetTrailer) -> CommitReceipt:
        self.trailer = trailer
        self._queue.put_nowait(_END)
        return await self._receipt

    async def abort(self, reason: str) -> None:
        self.aborted = reason
        self._queue.put_nowait(_END)

    def _raise_if_failed(self) -> None:
        error = self._receipt.exception()
        if error is not None:
            raise TransferAborted(f"server ended the data set: {error}") from error

    # -- server side -------------------------------------------------------------------------

    async def receive(self) -> bytes | memoryview | None:
        """Next chunk, or None at the end of the set (then check ``trailer`` / ``aborted``).

        A chunk stays valid until the next ``receive()``: a pool buffer returns to the pool then.
        """
        async with self._space:
            if self._lent is not None:
                self._free.append(self._lent)
                self._lent = None
                self._space.notify_all()
        item = await self._queue.get()
        if item is _END:
            if self._free:
                _SPARE.give(self.buffer_size, self._free)  # for the next session of this process
            self._free = []
            return None
        data, self._lent = item
        async with self._space:
            self._buffered -= len(data)
            self._space.notify_all()
        return data

    def commit(self, receipt: CommitReceipt) -> None:
        if not self._receipt.done():
            self._receipt.set_result(receipt)

    async def fail(self, error: BaseException) -> None:
        if not self._receipt.done():
            self._receipt.set_exception(error)
        async with self._space:
            self._space.notify_all()


class PackingSink:
    """The agent's :class:`~reference.format.writer.DataSetWriter` sink: packs the data set into
    whole transfer buffers and sends them over ``session``.

    The writer's own small pieces (DBLK headers, stream headers, trailers) are copied into the
    current buffer; object data is read straight into it: :meth:`room` gives the free part, the
    writer's ``FileStream.write_reserved`` counts what was read there and calls :meth:`commit`.
    A full buffer is sent at the next :meth:`flush`, the last one by ``flush(final=True)``. With
    a session that lends buffers (:meth:`LocalSession.acquire_buffer`) nothing is copied on the
    way to the server; with any other session (NDMP) one own buffer is reused and the session's
    ``send`` copies it.

    ``write`` is synchronous (the writer calls it); pieces that do not fit the current buffer wait,
    held as immutable objects, for the next :meth:`flush` (where a buffer may have to be waited for).
    """

    def __init__(self, session):
        self._session = session
        self._lend = getattr(session, "acquire_buffer", None)
        self._own: bytearray | None = None
        self._buffer: memoryview | None = None
        self._fill = 0
        self._waiting: list = []
        self.sent = 0

    # -- the writer's side (synchronous) -----------------------------------------------------

    def write(self, chunk) -> None:
        n = len(chunk)
        buffer = self._buffer
        if not self._waiting and buffer is not None and self._fill + n <= len(buffer):
            buffer[self._fill:self._fill + n] = chunk
            self._fill += n
            return
        if not (type(chunk) is bytes or (type(chunk) is memoryview and chunk.readonly
                                          and type(chunk.obj) is bytes)):
            chunk = bytes(chunk)  # the writer's contract: a sink copies what it keeps
        self._waiting.append(chunk)

    def room(self) -> memoryview:
        """The free part of the current buffer (call after :meth:`flush`, which makes sure there
        is one with room): object data is read into it, then :meth:`commit`-ed."""
        if self._waiting or self._buffer is None or self._fill >= len(self._buffer):
            raise RuntimeError("PackingSink.room() before flush()")
        return self._buffer[self._fill:]

    def position(self) -> tuple[object, int]:
        """(the memory the current buffer is, where :meth:`room` starts in it)."""
        return (None if self._buffer is None else self._buffer.obj), self._fill

    def commit(self, data) -> None:
        """``data`` (the start of :meth:`room`) now holds the set's next bytes."""
        n = len(data)
        if self._waiting or self._buffer is None or self._fill + n > len(self._buffer):
            raise RuntimeError("PackingSink.commit() of bytes that are not in its buffer")
        self._fill += n

    # -- the agent's side (asynchronous) -----------------------------------------------------

    async def flush(self, final: bool = False) -> None:
        """Pack waiting pieces and send full buffers; leave a buffer with room. ``final``: send
        everything, hold no buffer."""
        for piece in self._take_waiting():
            view = memoryview(piece).cast("B")
            while view:
                if self._buffer is None or self._fill == len(self._buffer):
                    await self._next_buffer()
                take = min(len(view), len(self._buffer) - self._fill)
                self._buffer[self._fill:self._fill + take] = view[:take]
                self._fill += take
                view = view[take:]
        if final:
            if self._fill:
                await self._send(self._buffer[:self._fill])
            self._buffer, self._fill = None, 0
        elif self._buffer is None or self._fill == len(self._buffer):
            await self._next_buffer()

    def _take_waiting(self) -> list:
        waiting, self._waiting = self._waiting, []
        return waiting

    async def _next_buffer(self) -> None:
        if self._buffer is not None and self._fill:
            await self._send(self._buffer[:self._fill])
        if self._lend is not None:
            self._buffer = await self._lend()
        else:
            if self._own is None:
                self._own = bytearray(COPY_BUFFER)
            self._buffer = memoryview(self._own)  # the session copied the last one
        self._fill = 0

    async def _send(self, view) -> None:
        await self._session.send(view)
        self.sent += len(view)
