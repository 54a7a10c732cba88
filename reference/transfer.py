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
"""

from __future__ import annotations

import asyncio
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


class LocalSession:
    """In-process data path: a byte-bounded queue and a future for the commit receipt."""

    def __init__(self, set_number: int, max_buffered: int = 64 << 20):
        self.set_number = set_number
        self.max_buffered = max_buffered
        self._queue: asyncio.Queue = asyncio.Queue()
        self._buffered = 0
        self._space = asyncio.Condition()
        self._receipt: asyncio.Future = asyncio.get_running_loop().create_future()
        self.trailer: DataSetTrailer | None = None
        self.aborted: str | None = None
        self.peak_buffered = 0

    # -- agent side --------------------------------------------------------------------------

    async def send(self, chunk) -> None:
        if self._receipt.done():
            self._raise_if_failed()
        data = bytes(chunk)  # the writer reuses its buffers: take a copy as the data crosses over
        async with self._space:
            while self._buffered and self._buffered + len(data) > self.max_buffered:
                await self._space.wait()
                if self._receipt.done():
                    self._raise_if_failed()
            self._buffered += len(data)
            self.peak_buffered = max(self.peak_buffered, self._buffered)
        self._queue.put_nowait(data)

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

    async def receive(self) -> bytes | None:
        """Next chunk, or None at the end of the set (then check ``trailer`` / ``aborted``)."""
        item = await self._queue.get()
        if item is _END:
            return None
        async with self._space:
            self._buffered -= len(item)
            self._space.notify_all()
        return item

    def commit(self, receipt: CommitReceipt) -> None:
        if not self._receipt.done():
            self._receipt.set_result(receipt)

    async def fail(self, error: BaseException) -> None:
        if not self._receipt.done():
            self._receipt.set_exception(error)
        async with self._space:
            self._space.notify_all()
