"""ONC-RPC record marking (RFC 5531 §11) and whole NDMP messages (header + body) on top of it.

A record is one or more fragments, each behind a 4-byte mark: top bit = last fragment, low 31 bits
= fragment length. Reassembly enforces a maximum message size *before* reading the bytes, so a peer
cannot make us buffer more than the limit.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass
from typing import Any

from . import constants as c
from .messages import MESSAGES, Header, message_name
from .xdr import XdrError, codec_of

LAST_FRAGMENT = 0x80000000
DEFAULT_MAX_MESSAGE = 1 << 20  # 1 MiB: far above any control message, far below memory trouble
_MARK = struct.Struct(">I")


class RecordError(Exception):
    """The byte stream broke the record-marking rules or a limit (the connection must close)."""


class MessageTooLarge(RecordError):
    pass


class PeerClosed(RecordError):
    """The peer closed the connection (cleanly between records, or mid-record when ``partial``)."""

    def __init__(self, message: str, partial: bool = False):
        super().__init__(message)
        self.partial = partial


def frame(payload: bytes, max_fragment: int = 0x7FFFFFFF) -> bytes:
    """``payload`` as one record, split into fragments of at most ``max_fragment`` bytes."""
    if max_fragment <= 0 or max_fragment > 0x7FFFFFFF:
        raise ValueError("fragment size must be 1..2**31-1")
    out = bytearray()
    view = memoryview(payload)
    start = 0
    while True:
        chunk = view[start:start + max_fragment]
        start += len(chunk)
        last = start >= len(view)
        out += _MARK.pack(len(chunk) | (LAST_FRAGMENT if last else 0))
        out += chunk
        if last:
            return bytes(out)


class RecordReassembler:
    """Incremental (sans-I/O) record parser: ``feed`` bytes, get complete records back."""

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE):
        self.max_message = max_message
        self._buffer = bytearray()
        self._record = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        records = []
        while len(self._buffer) >= 4:
            mark = _MARK.unpack_from(self._buffer)[0]
            length = mark & ~LAST_FRAGMENT
            if len(self._record) + length > self.max_message:
                raise MessageTooLarge(f"record of at least {len(self._record) + length} bytes exceeds "
                                      f"the {self.max_message}-byte limit")
            if len(self._buffer) < 4 + length:
                break
            self._record += self._buffer[4:4 + length]
            del self._buffer[:4 + length]
            if mark & LAST_FRAGMENT:
                records.append(bytes(self._record))
                self._record.clear()
        return records

    @property
    def pending(self) -> int:
        """Bytes of an incomplete record held (0 at a record boundary)."""
        return len(self._buffer) + len(self._record)


async def read_record(reader: asyncio.StreamReader, max_message: int = DEFAULT_MAX_MESSAGE) -> bytes:
    record = bytearray()
    while True:
        try:
            mark = _MARK.unpack(await reader.readexactly(4))[0]
        except asyncio.IncompleteReadError as exc:
            raise PeerClosed("peer closed the connection", partial=bool(exc.partial or record)) from None
        length = mark & ~LAST_FRAGMENT
        if len(record) + length > max_message:
            raise MessageTooLarge(f"record of at least {len(record) + length} bytes exceeds the "
                                  f"{max_message}-byte limit")
        try:
            record += await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise PeerClosed("peer closed the connection mid-record", partial=True) from None
        if mark & LAST_FRAGMENT:
            return bytes(record)


def recv_record(sock: socket.socket, max_message: int = DEFAULT_MAX_MESSAGE) -> bytes:
    """Blocking-socket twin of :func:`read_record` (used by the DMA-side client)."""
    record = bytearray()
    while True:
        head = _recv_exactly(sock, 4, bool(record))
        mark = _MARK.unpack(head)[0]
        length = mark & ~LAST_FRAGMENT
        if len(record) + length > max_message:
            raise MessageTooLarge(f"record of at least {len(record) + length} bytes exceeds the "
                                  f"{max_message}-byte limit")
        record += _recv_exactly(sock, length, True)
        if mark & LAST_FRAGMENT:
            return bytes(record)


def _recv_exactly(sock: socket.socket, n: int, inside_record: bool) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise PeerClosed("peer closed the connection" + (" mid-record" if inside_record or got else ""),
                             partial=inside_record or got > 0)
        got += k
    return bytes(buf)


# --- whole messages --------------------------------------------------------------------------------

@dataclass
class NdmpMessage:
    header: Header
    body: Any = None

    @property
    def code(self) -> int:
        return self.header.message_code

    @property
    def name(self) -> str:
        return message_name(self.header.message_code)

    @property
    def is_reply(self) -> bool:
        return self.header.message_type == c.MessageType.REPLY


class MessageDecodeError(Exception):
    """A record whose header decoded but whose body did not; the header allows an error reply."""

    def __init__(self, header: Header | None, reason: str):
        super().__init__(reason)
        self.header = header


class UnknownMessage(MessageDecodeError):
    pass


def encode_message(header: Header, body: Any = None) -> bytes:
    """Header plus body, *without* record marking. A header ``error_code`` means no body."""
    out = bytearray()
    Header._xdr.pack(header, out)
    if body is not None and header.error_code == c.Error.NO_ERR:
        spec = MESSAGES.get(header.message_code)
        body_type = None if spec is None else (spec.reply if header.message_type == c.MessageType.REPLY
                                               else spec.request)
        if body_type is None:
            raise XdrError(f"{message_name(header.message_code)} has no body in this direction")
        codec_of(body_type).pack(body, out)
    return bytes(out)


def decode_message(record: bytes) -> NdmpMessage:
    """Decode a record; raises :class:`MessageDecodeError` (with the header when it was readable)."""
    view = memoryview(record)
    try:
        header, pos = Header._xdr.unpack(view, 0)
    except XdrError as exc:
        raise MessageDecodeError(None, f"header: {exc}") from None
    if header.message_type not in (c.MessageType.REQUEST, c.MessageType.REPLY):
        raise MessageDecodeError(None, f"header: message_type {int(header.message_type)} is neither "
                                       "request nor reply")
    is_reply = header.message_type == c.MessageType.REPLY
    spec = MESSAGES.get(header.message_code)
    if spec is None and is_reply and header.error_code != c.Error.NO_ERR and pos == len(view):
        return NdmpMessage(header, None)  # e.g. the NOT_SUPPORTED answer to a code we do not know
    if spec is None:
        raise UnknownMessage(header, f"unknown message code 0x{header.message_code:X}")
    if not is_reply and header.error_code != c.Error.NO_ERR:
        raise MessageDecodeError(header, f"{spec.name}: a request or post with header error_code "
                                         f"{int(header.error_code)}")
    if is_reply and spec.is_post:
        raise MessageDecodeError(header, f"{spec.name} is a post and has no reply")
    body_type = spec.reply if is_reply else spec.request
    if header.error_code != c.Error.NO_ERR or body_type is None:
        if pos != len(view):
            raise MessageDecodeError(header, f"{spec.name}: {len(view) - pos} unexpected bytes after the "
                                             "header")
        return NdmpMessage(header, None)
    try:
        body, end = codec_of(body_type).unpack(view, pos)
    except XdrError as exc:
        raise MessageDecodeError(header, f"{spec.name}: {exc}") from None
    if end != len(view):
        raise MessageDecodeError(header, f"{spec.name}: {len(view) - end} unexpected bytes after the body")
    return NdmpMessage(header, body)


