"""The NDMP server framework: one asyncio task per control connection, handlers per message code.

The server owns the CONNECT interface (version, authentication) and the generic CONFIG replies;
services (data, and later tape/mover) register handlers for their messages with :meth:`register`
and keep per-connection state with :meth:`Session.service_state`. Handlers run one at a time per
connection, in arrival order (the DMA waits for each reply); long work belongs in the service's own
tasks or worker threads, which talk back with :meth:`Session.post`.

Bad input never takes the server down: an unknown code gets a NOT_SUPPORTED header error, a body
that does not decode gets XDR_DECODE_ERR, a broken record, an oversized one or a peer that vanishes
mid-record closes that one connection; each case is logged and other connections carry on.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import os
import platform
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from . import constants as c
from . import messages as m
from .auth import Credentials, new_challenge
from .errors import NdmpError
from .wire import (DEFAULT_MAX_MESSAGE, MessageDecodeError, MessageTooLarge, PeerClosed, RecordError,
                   UnknownMessage, decode_message, encode_message, frame, read_record)

log = logging.getLogger("mailtape.ndmp")

Handler = Callable[["Session", Any], Any | Awaitable[Any]]

#: Messages a peer may send before it has authenticated (everything else: NOT_AUTHORIZED).
PRE_AUTH = frozenset({c.Message.CONNECT_OPEN, c.Message.CONNECT_CLIENT_AUTH, c.Message.CONNECT_CLOSE,
                      c.Message.CONFIG_GET_AUTH_ATTR, c.Message.CONFIG_GET_SERVER_INFO})
#: Messages allowed before CONNECT_OPEN has fixed the version.
PRE_OPEN = frozenset({c.Message.CONNECT_OPEN, c.Message.CONNECT_CLOSE})


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port; NDMP's registered port is 10000
    credentials: Credentials = field(default_factory=Credentials)
    max_message: int = DEFAULT_MAX_MESSAGE
    max_connections: int = 16
    max_auth_failures: int = 3  # then the connection is closed
    allow_remote: bool = False  # listening beyond loopback must be asked for explicitly
    vendor_name: str = "mailtape"
    product_name: str = "mailtape NDMP server"
    revision: str = "0.1"
    hostname: str = field(default_factory=platform.node)

    def check(self) -> None:
        if not self.allow_remote:
            try:
                loopback = ipaddress.ip_address(self.host).is_loopback
            except ValueError:
                loopback = self.host == "localhost"
            if not loopback:
                raise ValueError(f"NDMP server would listen on {self.host}, beyond loopback; "
                                 "set allow_remote to do that")


class Session:
    """One control connection: version, authentication, per-service state, and sending."""

    def __init__(self, server: "NdmpServer", reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.local = writer.get_extra_info("sockname")
        self.loop = asyncio.get_running_loop()
        self.version: int | None = None
        self.authenticated = False
        self.user: str | None = None
        self.md5_challenge: bytes | None = None
        self.auth_failures = 0
        self.extensions: dict[int, int] | None = None  # class id -> version, after SET_EXT_LIST
        self.closed = False
        self._sequence = 0
        self._last_peer_sequence = 0
        self._state: dict[str, Any] = {}
        self._on_close: list[Callable[[], Any]] = []

    def __repr__(self) -> str:
        return f"Session(peer={self.peer}, user={self.user!r})"

    def service_state(self, key: str, factory: Callable[[], Any]) -> Any:
        if key not in self._state:
            self._state[key] = factory()
        return self._state[key]

    def on_close(self, callback: Callable[[], Any]) -> None:
        self._on_close.append(callback)

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def _write(self, header: m.Header, body: Any) -> None:
        if self.closed or self.writer.is_closing():
            return
        self.writer.write(frame(encode_message(header, body)))

    async def _drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            pass

    def post_nowait(self, code: int, body: Any) -> None:
        """Queue a post (NOTIFY/LOG/FH) to the peer; call on the event loop thread."""
        header = m.Header(sequence=self._next_sequence(), time_stamp=int(time.time()) & 0xFFFFFFFF,
                          message_type=c.MessageType.REQUEST, message_code=int(code))
        self._write(header, body)

    async def post(self, code: int, body: Any) -> None:
        self.post_nowait(code, body)
        await self._drain()

    def post_from_thread(self, code: int, body: Any, timeout: float | None = 60.0) -> None:
        """Post from a worker thread, waiting until it is handed to the socket (back-pressure)."""
        asyncio.run_coroutine_threadsafe(self.post(code, body), self.loop).result(timeout)

    def _reply(self, request: m.Header, body: Any, header_error: int = c.Error.NO_ERR) -> None:
        header = m.Header(sequence=self._next_sequence(), time_stamp=int(time.time()) & 0xFFFFFFFF,
                          message_type=c.MessageType.REPLY, message_code=request.message_code,
                          reply_sequence=request.sequence, error_code=header_error)
        self._write(header, None if header_error else body)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for callback in self._on_close:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - a service's cleanup must not stop the others
                log.exception("ndmp: cleanup after %s failed", self.peer)
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


class NdmpServer:
    """An NDMP v4 server. ``await start()``, then ``address``; ``await close()`` to stop."""

    def __init__(self, config: ServerConfig | None = None):
        self.config = config or ServerConfig()
        self.config.check()
        self.handlers: dict[int, Handler] = {}
        self.ext_classes: dict[int, list[int]] = {}
        self.sessions: set[Session] = set()
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.base_events.Server | None = None
        self._install_core_handlers()

    # --- registration ----------------------------------------------------------------------------

    def register(self, code: int, handler: Handler) -> None:
        if int(code) not in m.MESSAGES or m.MESSAGES[int(code)].is_post:
            raise ValueError(f"{m.message_name(code)} is not a request this server can answer")
        if int(code) in self.handlers:
            raise ValueError(f"{m.message_name(code)} already has a handler")
        self.handlers[int(code)] = handler

    def register_extension(self, class_id: int, versions: list[int]) -> None:
        self.ext_classes[class_id] = list(versions)

    def add_service(self, service: Any) -> Any:
        service.install(self)
        return service

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> "NdmpServer":
        self._server = await asyncio.start_server(self._serve, self.config.host, self.config.port,
                                                  reuse_address=True)
        log.info("ndmp: listening on %s:%d", *self.address)
        return self

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None, "server not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            await session.close()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        if tasks:  # let every connection task finish its clean-up before the loop goes away
            await asyncio.wait(tasks, timeout=15)
        if self._server is not None:
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    # --- one connection --------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        session = Session(self, reader, writer)
        if len(self.sessions) >= self.config.max_connections:
            log.warning("ndmp: refusing %s: %d connections already open", session.peer, len(self.sessions))
            session.post_nowait(c.Message.NOTIFY_CONNECTION_STATUS, m.NotifyConnectionStatus(
                c.ConnectionStatus.REFUSED, c.NDMP_VERSION, "too many connections"))
            await session._drain()
            await session.close()
            return
        self.sessions.add(session)
        log.info("ndmp: connection from %s", session.peer)
        try:
            await session.post(c.Message.NOTIFY_CONNECTION_STATUS, m.NotifyConnectionStatus(
                c.ConnectionStatus.CONNECTED, c.NDMP_VERSION, ""))
            await self._dispatch_loop(session)
        except (ConnectionError, OSError) as exc:
            log.info("ndmp: connection from %s lost: %s", session.peer, exc)
        except Exception:  # noqa: BLE001 - a bug in one connection must not stop the server
            log.exception("ndmp: connection from %s failed", session.peer)
        finally:
            self.sessions.discard(session)
            await session.close()
            log.info("ndmp: connection from %s closed", session.peer)

    async def _dispatch_loop(self, session: Session) -> None:
        while not session.closed:
            try:
                record = await read_record(session.reader, self.config.max_message)
            except PeerClosed as exc:
                if exc.partial:
                    log.warning("ndmp: %s closed the connection in the middle of a message", session.peer)
                return
            except MessageTooLarge as exc:
                log.warning("ndmp: closing %s: %s", session.peer, exc)
                return
            except RecordError as exc:
                log.warning("ndmp: closing %s: %s", session.peer, exc)
                return
            try:
                msg = decode_message(record)
            except UnknownMessage as exc:
                log.warning("ndmp: %s sent %s; answering NOT_SUPPORTED", session.peer, exc)
                if exc.header.message_type == c.MessageType.REQUEST:
                    session._reply(exc.header, None, c.Error.NOT_SUPPORTED_ERR)
                    await session._drain()
                continue
            except MessageDecodeError as exc:
                if exc.header is None or exc.header.message_type != c.MessageType.REQUEST:
                    log.warning("ndmp: closing %s: undecodable message: %s", session.peer, exc)
                    return
                log.warning("ndmp: %s sent an undecodable message: %s", session.peer, exc)
                session._reply(exc.header, None, c.Error.XDR_DECODE_ERR)
                await session._drain()
                continue
            if msg.is_reply or m.MESSAGES[msg.code].is_post:
                log.warning("ndmp: ignoring unexpected %s %s from %s", msg.name,
                            "reply" if msg.is_reply else "post", session.peer)
                continue
            if await self._handle(session, msg) == "close":
                return

    async def _handle(self, session: Session, msg: Any) -> str | None:
        header = msg.header
        code = header.message_code
        if header.sequence <= session._last_peer_sequence:
            log.warning("ndmp: %s sent sequence %d after %d (%s)", session.peer, header.sequence,
                        session._last_peer_sequence, msg.name)
            session._reply(header, None, c.Error.SEQUENCE_NUM_ERR)
            await session._drain()
            return None
        session._last_peer_sequence = header.sequence
        if session.version is None and code not in PRE_OPEN:
            log.warning("ndmp: %s sent %s before CONNECT_OPEN", session.peer, msg.name)
            session._reply(header, None, c.Error.ILLEGAL_STATE_ERR)
            await session._drain()
            return None
        if not session.authenticated and code not in PRE_AUTH:
            log.warning("ndmp: %s sent %s before authenticating", session.peer, msg.name)
            session._reply(header, None, c.Error.NOT_AUTHORIZED_ERR)
            await session._drain()
            return None
        if code == c.Message.CONNECT_CLOSE:
            log.info("ndmp: %s sent CONNECT_CLOSE", session.peer)
            return "close"
        handler = self.handlers.get(code)
        if handler is None:
            session._reply(header, None, c.Error.NOT_SUPPORTED_ERR)
            await session._drain()
            return None
        try:
            reply = handler(session, msg.body)
            if inspect.isawaitable(reply):
                reply = await reply
        except NdmpError as exc:
            log.info("ndmp: %s from %s -> %s", msg.name, session.peer, exc)
            reply = m.reply_with_error(code, exc.error)
        except Exception:  # noqa: BLE001 - report UNDEFINED_ERR, keep the connection
            log.exception("ndmp: handler for %s from %s failed", msg.name, session.peer)
            reply = m.reply_with_error(code, c.Error.UNDEFINED_ERR)
        if reply is None and m.MESSAGES[code].reply is not None:
            reply = m.reply_with_error(code, c.Error.NO_ERR)
        session._reply(header, reply)
        await session._drain()
        if session.auth_failures >= self.config.max_auth_failures:
            log.warning("ndmp: closing %s after %d failed authentications", session.peer,
                        session.auth_failures)
            return "close"
        return None

    # --- CONNECT and generic CONFIG --------------------------------------------------------------

    def _install_core_handlers(self) -> None:
        M = c.Message
        self.register(M.CONNECT_OPEN, self._connect_open)
        self.register(M.CONNECT_CLIENT_AUTH, self._connect_client_auth)
        self.register(M.CONNECT_SERVER_AUTH, _not_supported)
        self.register(M.CONFIG_GET_AUTH_ATTR, self._get_auth_attr)
        self.register(M.CONFIG_GET_SERVER_INFO, self._get_server_info)
        self.register(M.CONFIG_GET_HOST_INFO, self._get_host_info)
        self.register(M.CONFIG_GET_CONNECTION_TYPE, self._get_connection_type)
        self.register(M.CONFIG_GET_EXT_LIST, self._get_ext_list)
        self.register(M.CONFIG_SET_EXT_LIST, self._set_ext_list)

    def _connect_open(self, session: Session, body: m.ConnectOpenRequest) -> m.ErrorReply:
        if session.version is not None:
            raise NdmpError(c.Error.ILLEGAL_STATE_ERR, "version already negotiated")
        if body.protocol_version != c.NDMP_VERSION:
            # the DMA steps down or gives up; we speak only v4
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, f"version {body.protocol_version} not supported")
        session.version = body.protocol_version
        return m.ErrorReply(c.Error.NO_ERR)

    def _connect_client_auth(self, session: Session, body: m.ConnectClientAuthRequest) -> m.ErrorReply:
        if session.authenticated:
            raise NdmpError(c.Error.ILLEGAL_STATE_ERR, "already authenticated")
        creds = self.config.credentials
        auth_type, data = body.auth_data
        ok = False
        user = "-"
        if auth_type == c.AuthType.NONE:
            ok = c.AuthType.NONE in creds.auth_types
        elif auth_type == c.AuthType.TEXT:
            user = data.auth_id
            ok = creds.check_text(data.auth_id, data.auth_password)
        elif auth_type == c.AuthType.MD5:
            user = data.auth_id
            challenge, session.md5_challenge = session.md5_challenge, None  # one use per challenge
            ok = creds.check_md5(data.auth_id, challenge, data.auth_digest)
        if not ok:
            session.auth_failures += 1
            log.warning("ndmp: %s authentication of user %r from %s failed",
                        c.AuthType(auth_type).name, user, session.peer)
            raise NdmpError(c.Error.NOT_AUTHORIZED_ERR)
        session.authenticated = True
        session.user = user
        log.info("ndmp: %s authenticated as %r (%s)", session.peer, user, c.AuthType(auth_type).name)
        return m.ErrorReply(c.Error.NO_ERR)

    def _get_auth_attr(self, session: Session, body: m.ConfigGetAuthAttrRequest) -> m.ConfigGetAuthAttrReply:
        auth_type = body.auth_type
        if auth_type not in self.config.credentials.auth_types:
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, f"auth type {int(auth_type)} not offered")
        if auth_type == c.AuthType.MD5:
            session.md5_challenge = new_challenge()
            return m.ConfigGetAuthAttrReply(c.Error.NO_ERR, (c.AuthType.MD5, session.md5_challenge))
        return m.ConfigGetAuthAttrReply(c.Error.NO_ERR, (auth_type, None))

    def _get_server_info(self, session: Session, body: None) -> m.ConfigGetServerInfoReply:
        cfg = self.config
        return m.ConfigGetServerInfoReply(c.Error.NO_ERR, cfg.vendor_name, cfg.product_name, cfg.revision,
                                          list(cfg.credentials.auth_types))

    def _get_host_info(self, session: Session, body: None) -> m.ConfigGetHostInfoReply:
        uname = os.uname()
        return m.ConfigGetHostInfoReply(c.Error.NO_ERR, self.config.hostname, uname.sysname, uname.release,
                                        f"{socket.gethostname()}")

    def _get_connection_type(self, session: Session, body: None) -> m.ConfigGetConnectionTypeReply:
        return m.ConfigGetConnectionTypeReply(c.Error.NO_ERR, [c.AddrType.TCP])

    def _get_ext_list(self, session: Session, body: None) -> m.ConfigGetExtListReply:
        return m.ConfigGetExtListReply(c.Error.NO_ERR, [m.ClassList(cid, vers) for cid, vers
                                                        in sorted(self.ext_classes.items())])

    def _set_ext_list(self, session: Session, body: m.ConfigSetExtListRequest) -> m.ErrorReply:
        if session.extensions is not None:
            raise NdmpError(c.Error.ILLEGAL_STATE_ERR, "extensions already selected")
        chosen: dict[int, int] = {}
        for entry in body.ndmp4_accepted_ext:
            if entry.class_id in chosen:
                raise NdmpError(c.Error.EXT_DUPL_CLASSES, f"class 0x{entry.class_id:X} twice")
            if entry.class_id not in self.ext_classes:
                raise NdmpError(c.Error.CLASS_NOT_SUPPORTED, f"class 0x{entry.class_id:X}")
            if len(entry.class_version) != 1 or entry.class_version[0] not in self.ext_classes[entry.class_id]:
                raise NdmpError(c.Error.VERSION_NOT_SUPPORTED, f"class 0x{entry.class_id:X}")
            chosen[entry.class_id] = entry.class_version[0]
        session.extensions = chosen
        return m.ErrorReply(c.Error.NO_ERR)


def _not_supported(session: Session, body: Any) -> Any:
    raise NdmpError(c.Error.NOT_SUPPORTED_ERR)
