"""A synchronous DMA-side NDMP client: connect, open, authenticate, call messages, collect posts.

Posts (NOTIFY/LOG/FH) that arrive while a reply is awaited are queued in ``posts`` in arrival
order; :meth:`wait_for_post` returns the first of a given code, reading more as needed.
"""

from __future__ import annotations

import collections
import socket
import time
from typing import Any

from . import constants as c
from . import messages as m
from .auth import md5_digest
from .errors import NdmpError, NdmpProtocolError, NdmpRefused
from .wire import (DEFAULT_MAX_MESSAGE, MessageDecodeError, NdmpMessage, PeerClosed, RecordError,
                   decode_message, encode_message, frame, recv_record)


class NdmpClient:
    def __init__(self, host: str, port: int, *, timeout: float = 30.0, max_message: int = DEFAULT_MAX_MESSAGE):
        self.host, self.port = host, port
        self.timeout = timeout
        self.max_message = max_message
        self.sock: socket.socket | None = None
        self.posts: collections.deque[NdmpMessage] = collections.deque()
        self.connection_status: m.NotifyConnectionStatus | None = None
        self._sequence = 0

    # --- connection ------------------------------------------------------------------------------

    def connect(self) -> "NdmpClient":
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        first = self._receive()
        if first.code != c.Message.NOTIFY_CONNECTION_STATUS:
            raise NdmpProtocolError(f"{self.host}:{self.port} began with {first.name}, "
                                    "not NOTIFY_CONNECTION_STATUS")
        self.connection_status = first.body
        if first.body.reason != c.ConnectionStatus.CONNECTED:
            reason = c.ConnectionStatus(first.body.reason).name
            self._drop()
            raise NdmpRefused(f"NDMP server {self.host}:{self.port} refused the connection: {reason} "
                              f"({first.body.text_reason})")
        return self

    def open(self, version: int = c.NDMP_VERSION) -> None:
        self.call(c.Message.CONNECT_OPEN, m.ConnectOpenRequest(version))

    def auth_text(self, user: str, password: str) -> None:
        self.call(c.Message.CONNECT_CLIENT_AUTH,
                  m.ConnectClientAuthRequest((c.AuthType.TEXT, m.AuthText(user, password))))

    def auth_md5(self, user: str, password: str) -> None:
        attr = self.call(c.Message.CONFIG_GET_AUTH_ATTR, m.ConfigGetAuthAttrRequest(c.AuthType.MD5))
        challenge = attr.server_attr[1]
        digest = md5_digest(challenge, password)
        self.call(c.Message.CONNECT_CLIENT_AUTH,
                  m.ConnectClientAuthRequest((c.AuthType.MD5, m.AuthMd5(user, digest))))

    def login(self, user: str, password: str, method: str = "md5") -> "NdmpClient":
        """connect + open + authenticate, the usual start of a DMA session."""
        self.connect()
        self.open()
        (self.auth_md5 if method == "md5" else self.auth_text)(user, password)
        return self

    def close(self) -> None:
        """CONNECT_CLOSE (no reply) and close the socket."""
        if self.sock is None:
            return
        try:
            self.send(c.Message.CONNECT_CLOSE, None)
        except (OSError, NdmpProtocolError):
            pass
        self._drop()

    def _drop(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self) -> "NdmpClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- messages --------------------------------------------------------------------------------

    def send(self, code: int, body: Any, *, sequence: int | None = None) -> int:
        if self.sock is None:
            raise NdmpProtocolError("not connected")
        if sequence is None:
            self._sequence += 1
            sequence = self._sequence
        header = m.Header(sequence=sequence, time_stamp=int(time.time()) & 0xFFFFFFFF,
                          message_type=c.MessageType.REQUEST, message_code=int(code))
        try:
            self.sock.sendall(frame(encode_message(header, body)))
        except OSError as exc:
            raise NdmpProtocolError(f"NDMP server {self.host}:{self.port}: connection lost: {exc}") from None
        return sequence

    def send_raw(self, payload: bytes) -> None:
        """Send bytes as they are (tests use it for malformed input)."""
        assert self.sock is not None
        self.sock.sendall(payload)

    def call(self, code: int, body: Any = None, *, check: bool = True) -> Any:
        """Send a request and return its reply body; raise :class:`NdmpError` on an NDMP error."""
        reply = self.call_message(code, body)
        if reply.header.error_code != c.Error.NO_ERR:
            if check:
                raise NdmpError(reply.header.error_code, "header error", code)
            return None
        body = reply.body
        if check and body is not None and getattr(body, "error", 0) != c.Error.NO_ERR:
            raise NdmpError(body.error, "", code)
        return body

    def call_message(self, code: int, body: Any = None, *, sequence: int | None = None) -> NdmpMessage:
        seq = self.send(code, body, sequence=sequence)
        while True:
            msg = self._receive()
            if msg.is_reply:
                if msg.header.reply_sequence != seq:
                    raise NdmpProtocolError(f"reply to sequence {msg.header.reply_sequence} while waiting "
                                            f"for {seq} ({msg.name})")
                return msg
            self.posts.append(msg)

    def wait_for_post(self, code: int | tuple[int, ...], timeout: float | None = None) -> NdmpMessage:
        """The first queued or arriving post with ``code`` (or any of several codes)."""
        codes = (code,) if isinstance(code, int) else tuple(code)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for msg in self.posts:
                if msg.code in codes:
                    self.posts.remove(msg)
                    return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {'/'.join(m.message_name(x) for x in codes)} within the timeout")
            msg = self._receive(remaining)
            if msg.is_reply:
                raise NdmpProtocolError(f"unsolicited reply {msg.name}")
            self.posts.append(msg)

    def take_posts(self, code: int) -> list[NdmpMessage]:
        taken = [p for p in self.posts if p.code == code]
        for p in taken:
            self.posts.remove(p)
        return taken

    def _receive(self, timeout: float | None = None) -> NdmpMessage:
        assert self.sock is not None, "not connected"
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            record = recv_record(self.sock, self.max_message)
        except socket.timeout:
            raise TimeoutError(f"NDMP server {self.host}:{self.port} did not answer in time") from None
        except OSError as exc:
            raise NdmpProtocolError(f"NDMP server {self.host}:{self.port}: connection lost: {exc}") from None
        except PeerClosed as exc:
            raise NdmpProtocolError(f"NDMP server {self.host}:{self.port}: {exc}") from None
        except RecordError as exc:
            raise NdmpProtocolError(f"NDMP server {self.host}:{self.port}: {exc}") from None
        try:
            return decode_message(record)
        except MessageDecodeError as exc:
            raise NdmpProtocolError(f"NDMP server {self.host}:{self.port} sent an undecodable message: "
                                    f"{exc}") from None
