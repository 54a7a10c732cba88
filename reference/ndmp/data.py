"""The NDMP Data service: butypes supplied by the agent, streamed over the data connection.

A :class:`Butype` brings a ``backup(job)`` callable returning an iterable of byte chunks (it may call
``job.add_file`` for file history and ``job.log`` for messages, and may add to ``job.env``, which
DATA_GET_ENV returns), and optionally ``recover(job, chunks)`` consuming the stream. The data
connection is either made by us (DATA_CONNECT to a mover's address) or accepted (DATA_LISTEN).
Producer and consumer run in a worker thread with a blocking socket, so a slow mover applies
back-pressure and memory stays bounded by one chunk; state changes happen on the event loop.

State machine (draft §3.7): IDLE -> LISTEN|CONNECTED -> ACTIVE -> HALTED -> (DATA_STOP) IDLE.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from . import constants as c
from . import messages as m
from .dataconn import connect_first
from .errors import NdmpError
from .server import NdmpServer, Session

log = logging.getLogger("mailtape.ndmp.data")

RECV_CHUNK = 256 * 1024
FH_BATCH = 64  # file-history entries per FH_ADD_FILE post
STATE_UNSUPPORTED = 0x3  # EST_BYTES_REMAIN_UNS | EST_TIME_REMAIN_UNS
LENGTH_INFINITY = 0xFFFFFFFFFFFFFFFF  # "to the end of the image", as NDMJOB's data agent asks


class Aborted(Exception):
    """DATA_ABORT (or the control connection closing) stopped the job."""


class DataConnectionLost(Exception):
    """The data connection failed under a send or receive (not the butype's own I/O)."""


@dataclass
class Butype:
    name: str
    backup: Callable[["DataJob"], Iterable[bytes]]
    recover: Callable[["DataJob", Iterator[bytes]], None] | None = None
    default_env: dict[str, str] = field(default_factory=dict)
    attrs: int = c.ButypeAttr.BACKUP_FH_FILE | c.ButypeAttr.BACKUP_UTF8 | c.ButypeAttr.RECOVER_UTF8
    #: called (in a worker thread) when the DMA confirms the data set is committed (MAILTAPE_DATA_COMMIT)
    on_committed: Callable[[dict[str, str]], None] | None = None
    #: a direct-access recover asks for its own byte ranges (``job.request_read``); otherwise the
    #: service asks for the whole image (NOTIFY_DATA_READ 0..infinity) when the recover starts
    direct_access: bool = False


class DataJob:
    """What a butype's callables see: the env, the name list, and ways to report back."""

    def __init__(self, session: Session, operation: c.DataOperation, env: dict[str, str],
                 nlist: list[m.Name] | None = None):
        self.session = session
        self.operation = operation
        self.env = env
        self.nlist = nlist or []
        self.bytes_processed = 0
        self.read_offset = 0
        self.read_length = 0
        self._abort = threading.Event()
        self._fh: list[m.File] = []
        #: per-job commit hook (MAILTAPE_DATA_COMMIT), preferred over the butype's ``on_committed``
        self.on_committed: Callable[[dict[str, str]], None] | None = None
        #: called once when the job is let go: DATA_STOP, or its control connection closing. A
        #: backup that was not committed by then never will be (the agent keeps its logs).
        self.on_released: Callable[[bool], None] | None = None
        self.committed = False
        self._released = False

    def release(self) -> None:
        """Tell the butype the job is over (``on_released(committed)``); once, on the event loop."""
        if self._released:
            return
        self._released = True
        self._abort.set()
        if self.on_released is not None:
            try:
                self.on_released(self.committed)
            except Exception:  # noqa: BLE001 - a butype's cleanup must not break DATA_STOP
                log.exception("ndmp data: release hook failed")

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    def check_abort(self) -> None:
        if self._abort.is_set():
            raise Aborted()

    def add_file(self, path: str, *, size: int = 0, mtime: int = 0, ftype: c.FileType = c.FileType.REG,
                 fh_info: int = 0, node: int = 0, mode: int = 0, owner: int = 0, group: int = 0) -> None:
        """One FH_ADD_FILE entry (batched); ``fh_info`` is the byte offset for direct access."""
        stat = m.FileStat(unsupported=0x3, fs_type=c.FsType.UNIX, ftype=ftype, mtime=mtime & 0xFFFFFFFF,
                          owner=owner, group=group, fattr=mode, size=size, links=1)
        self._fh.append(m.File(names=[(c.FsType.UNIX, path)], stats=[stat], node=node, fh_info=fh_info))
        if len(self._fh) >= FH_BATCH:
            self.flush_history()

    def flush_history(self) -> None:
        if self._fh:
            files, self._fh = self._fh, []
            self.session.post_from_thread(c.Message.FH_ADD_FILE, m.FhAddFile(files))

    def request_read(self, offset: int, length: int) -> None:
        """NOTIFY_DATA_READ: ask the DMA to have the mover send ``length`` bytes from ``offset``."""
        self.read_offset, self.read_length = offset, length
        self.session.post_from_thread(c.Message.NOTIFY_DATA_READ, m.OffsetLength(offset, length))

    def log(self, text: str, log_type: c.LogType = c.LogType.NORMAL) -> None:
        self.session.post_from_thread(c.Message.LOG_MESSAGE, m.LogMessage(log_type, 0, text,
                                                                          c.HasAssociatedMessage.NO, 0))

    def log_file(self, name: str, status: c.RecoveryStatus) -> None:
        self.session.post_from_thread(c.Message.LOG_FILE, m.LogFile(name, status))


class DataState:
    """Per-connection data-service state."""

    def __init__(self) -> None:
        self.hooked = False  # close hook installed on the session
        self.reset()

    def reset(self) -> None:
        self.state = c.DataState.IDLE
        self.operation = c.DataOperation.NOACTION
        self.halt_reason = c.DataHaltReason.NA
        self.addr: Any = (c.AddrType.LOCAL, None)
        self.listener: socket.socket | None = None
        self.sock: socket.socket | None = None
        self.accepting: asyncio.Task | None = None
        self.job: DataJob | None = None
        self.butype: Butype | None = None
        self.task: asyncio.Task | None = None
        self.committed = False

    def close_sockets(self) -> None:
        for s in (self.listener, self.sock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self.listener = self.sock = None


def _ip_to_int(host: str) -> int:
    return int(ipaddress.IPv4Address(host))


class DataService:
    """Registers the DATA messages, CONFIG_GET_BUTYPE_INFO and CONFIG_GET_FS_INFO on a server."""

    KEY = "data"

    def __init__(self, butypes: Iterable[Butype] = (), fs_info: Callable[[], list[m.FsInfo]] | None = None):
        self.butypes: dict[str, Butype] = {}
        for b in butypes:
            self.add_butype(b)
        self.fs_info = fs_info or (lambda: [])

    def add_butype(self, butype: Butype) -> None:
        if butype.name in self.butypes:
            raise ValueError(f"butype {butype.name!r} registered twice")
        self.butypes[butype.name] = butype

    def install(self, server: NdmpServer) -> None:
        M = c.Message
        for code, handler in [
            (M.CONFIG_GET_BUTYPE_INFO, self._butype_info), (M.CONFIG_GET_FS_INFO, self._fs_info),
            (M.DATA_GET_STATE, self._get_state), (M.DATA_LISTEN, self._listen),
            (M.DATA_CONNECT, self._connect), (M.DATA_START_BACKUP, self._start_backup),
            (M.DATA_START_RECOVER, self._start_recover), (M.DATA_ABORT, self._abort),
            (M.DATA_STOP, self._stop), (M.DATA_GET_ENV, self._get_env),
            (M.DATA_START_RECOVER_FILEHIST, self._not_supported),
            (M.MAILTAPE_DATA_COMMIT, self._commit),
        ]:
            server.register(code, handler)
        server.register_extension(c.MAILTAPE_EXT_CLASS, [c.MAILTAPE_EXT_VERSION])

    def _st(self, session: Session) -> DataState:
        st = session.service_state(self.KEY, DataState)
        if not st.hooked:
            st.hooked = True
            session.on_close(lambda: self._on_session_close(st))
        return st

    async def _on_session_close(self, st: DataState) -> None:
        if st.job is not None:
            st.job.release()
        for s in (st.sock, st.listener):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if st.accepting is not None:
            st.accepting.cancel()
        if st.task is not None and not st.task.done():
            try:
                await asyncio.wait_for(asyncio.shield(st.task), 10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                log.warning("ndmp data: job did not stop within 10 s of its connection closing")
        st.close_sockets()

    # --- CONFIG ----------------------------------------------------------------------------------

    def _butype_info(self, session: Session, body: None) -> m.ConfigGetButypeInfoReply:
        return m.ConfigGetButypeInfoReply(c.Error.NO_ERR, [
            m.ButypeInfo(b.name, [m.Pval(k, v) for k, v in b.default_env.items()], int(b.attrs))
            for b in self.butypes.values()])

    def _fs_info(self, session: Session, body: None) -> m.ConfigGetFsInfoReply:
        return m.ConfigGetFsInfoReply(c.Error.NO_ERR, list(self.fs_info()))

    def _not_supported(self, session: Session, body: Any) -> None:
        raise NdmpError(c.Error.NOT_SUPPORTED_ERR)

    # --- state -----------------------------------------------------------------------------------

    def _get_state(self, session: Session, body: None) -> m.DataGetStateReply:
        st = self._st(session)
        return m.DataGetStateReply(
            unsupported=STATE_UNSUPPORTED, error=c.Error.NO_ERR, operation=st.operation, state=st.state,
            halt_reason=st.halt_reason, bytes_processed=st.job.bytes_processed if st.job else 0,
            data_connection_addr=st.addr, read_offset=st.job.read_offset if st.job else 0,
            read_length=st.job.read_length if st.job else 0)

    def _require(self, st: DataState, *states: c.DataState) -> None:
        if st.state not in states:
            raise NdmpError(c.Error.ILLEGAL_STATE_ERR, f"data state is {st.state.name}")

    # --- data connection -------------------------------------------------------------------------

    async def _listen(self, session: Session, body: m.DataListenRequest) -> m.ListenReply:
        st = self._st(session)
        self._require(st, c.DataState.IDLE)
        if body.addr_type != c.AddrType.TCP:
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, "only TCP data connections are offered")
        host = session.local[0]
        if ipaddress.ip_address(host).version != 4:
            if not ipaddress.ip_address(host).is_loopback:
                raise NdmpError(c.Error.NOT_SUPPORTED_ERR, "NDMP v4 TCP addresses are IPv4 only")
            host = "127.0.0.1"  # control connection over ::1: offer the IPv4 loopback
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, 0))
        listener.listen(1)
        listener.setblocking(False)
        st.listener = listener
        port = listener.getsockname()[1]
        st.addr = (c.AddrType.TCP, [m.TcpAddr(_ip_to_int(host), port, [])])
        st.state = c.DataState.LISTEN
        st.accepting = asyncio.ensure_future(self._accept(session, st))
        return m.ListenReply(c.Error.NO_ERR, st.addr)

    async def _accept(self, session: Session, st: DataState) -> socket.socket:
        loop = asyncio.get_running_loop()
        listener = st.listener
        assert listener is not None
        sock, peer = await loop.sock_accept(listener)
        listener.close()
        st.listener = None
        st.sock = sock
        if st.state == c.DataState.LISTEN:
            st.state = c.DataState.CONNECTED
        log.info("ndmp data: data connection from %s", peer)
        return sock

    async def _connect(self, session: Session, body: m.DataConnectRequest) -> m.ErrorReply:
        st = self._st(session)
        self._require(st, c.DataState.IDLE)
        addr_type, addrs = body.addr
        if addr_type != c.AddrType.TCP or not addrs:
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, "only TCP data connections are offered")
        sock, peer = await connect_first(addrs)
        st.sock = sock
        st.addr = (c.AddrType.TCP, [peer])
        st.state = c.DataState.CONNECTED
        log.info("ndmp data: connected to %s:%d", ipaddress.IPv4Address(peer.ip_addr), peer.port)
        return m.ErrorReply(c.Error.NO_ERR)

    # --- operations ------------------------------------------------------------------------------

    def _butype(self, name: str) -> Butype:
        try:
            return self.butypes[name]
        except KeyError:
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, f"unknown butype {name!r}") from None

    def _start(self, session: Session, st: DataState, butype: Butype, job: DataJob,
               pump: Callable[[socket.socket], None]) -> None:
        st.job, st.butype = job, butype
        st.operation = job.operation
        st.state = c.DataState.ACTIVE
        st.task = asyncio.ensure_future(self._run(session, st, pump))

    def _start_backup(self, session: Session, body: m.DataStartBackupRequest) -> m.ErrorReply:
        st = self._st(session)
        self._require(st, c.DataState.CONNECTED, c.DataState.LISTEN)
        butype = self._butype(body.butype_name)
        env = dict(butype.default_env)
        env.update({p.name: p.value for p in body.env})
        job = DataJob(session, c.DataOperation.BACKUP, env)
        log.info("ndmp data: backup %s for %s, env %s", butype.name, session.peer, sorted(env))

        def pump(sock: socket.socket) -> None:
            chunks = butype.backup(job)
            try:
                for chunk in chunks:
                    job.check_abort()
                    try:
                        sock.sendall(chunk)
                    except OSError as exc:
                        raise DataConnectionLost(str(exc)) from exc
                    job.bytes_processed += len(chunk)
                job.flush_history()
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()

        self._start(session, st, butype, job, pump)
        return m.ErrorReply(c.Error.NO_ERR)

    def _start_recover(self, session: Session, body: m.DataStartRecoverRequest) -> m.ErrorReply:
        st = self._st(session)
        self._require(st, c.DataState.CONNECTED, c.DataState.LISTEN)
        butype = self._butype(body.butype_name)
        if butype.recover is None:
            raise NdmpError(c.Error.NOT_SUPPORTED_ERR, f"butype {butype.name!r} cannot recover")
        env = dict(butype.default_env)
        env.update({p.name: p.value for p in body.env})
        job = DataJob(session, c.DataOperation.RECOVER, env, list(body.nlist))
        recover = butype.recover
        log.info("ndmp data: recover %s for %s, env %s, %d names", butype.name, session.peer, sorted(env),
                 len(job.nlist))
        log.debug("ndmp data: recover env %s names %s", env, job.nlist)

        def pump(sock: socket.socket) -> None:
            def chunks() -> Iterator[bytes]:
                while True:
                    job.check_abort()
                    try:
                        data = sock.recv(RECV_CHUNK)
                    except OSError as exc:
                        raise DataConnectionLost(str(exc)) from exc
                    if not data:
                        return
                    job.bytes_processed += len(data)
                    yield data

            if not butype.direct_access:
                job.request_read(0, LENGTH_INFINITY)
            recover(job, chunks())

        self._start(session, st, butype, job, pump)
        return m.ErrorReply(c.Error.NO_ERR)

    async def _run(self, session: Session, st: DataState, pump: Callable[[socket.socket], None]) -> None:
        job = st.job
        assert job is not None
        reason = c.DataHaltReason.SUCCESSFUL
        try:
            if st.sock is None and st.accepting is not None:
                try:
                    await st.accepting
                except OSError as exc:
                    raise DataConnectionLost(f"accepting the data connection: {exc}") from exc
            sock = st.sock
            assert sock is not None
            sock.setblocking(True)
            await asyncio.get_running_loop().run_in_executor(None, pump, sock)
        except (Aborted, asyncio.CancelledError):
            reason = c.DataHaltReason.ABORTED
        except DataConnectionLost as exc:
            reason = c.DataHaltReason.ABORTED if job.aborted else c.DataHaltReason.CONNECT_ERROR
            log.warning("ndmp data: data connection failed: %s", exc)
        except Exception as exc:  # noqa: BLE001 - the butype failed: INTERNAL_ERROR, tell the DMA why
            reason = c.DataHaltReason.ABORTED if job.aborted else c.DataHaltReason.INTERNAL_ERROR
            log.exception("ndmp data: %s %s failed", st.butype.name if st.butype else "?",
                          job.operation.name.lower())
            if not session.closed:
                await session.post(c.Message.LOG_MESSAGE, m.LogMessage(
                    c.LogType.ERROR, 0, f"{job.operation.name.lower()} failed: {exc}",
                    c.HasAssociatedMessage.NO, 0))
        finally:
            if st.sock is not None:
                try:
                    st.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            st.close_sockets()
        st.state = c.DataState.HALTED
        st.halt_reason = reason
        log.info("ndmp data: %s halted: %s (%d bytes)", job.operation.name.lower(), reason.name,
                 job.bytes_processed)
        if not session.closed:
            await session.post(c.Message.NOTIFY_DATA_HALTED, m.NotifyDataHalted(reason))

    async def _abort(self, session: Session, body: None) -> m.ErrorReply:
        st = self._st(session)
        self._require(st, c.DataState.LISTEN, c.DataState.CONNECTED, c.DataState.ACTIVE)
        if st.state == c.DataState.ACTIVE and st.job is not None:
            st.job._abort.set()
            if st.sock is not None:
                try:
                    st.sock.shutdown(socket.SHUT_RDWR)  # unblocks a sendall/recv stuck on a slow peer
                except OSError:
                    pass
            if st.accepting is not None and not st.accepting.done():
                st.accepting.cancel()
            return m.ErrorReply(c.Error.NO_ERR)  # the job's task posts DATA_HALTED(ABORTED)
        if st.accepting is not None:
            st.accepting.cancel()
        st.close_sockets()
        st.state = c.DataState.HALTED
        st.halt_reason = c.DataHaltReason.ABORTED
        session.post_nowait(c.Message.NOTIFY_DATA_HALTED, m.NotifyDataHalted(c.DataHaltReason.ABORTED))
        return m.ErrorReply(c.Error.NO_ERR)

    def _stop(self, session: Session, body: None) -> m.ErrorReply:
        st = self._st(session)
        self._require(st, c.DataState.HALTED)
        if st.job is not None:
            st.job.release()
        st.close_sockets()
        st.reset()
        return m.ErrorReply(c.Error.NO_ERR)

    def _get_env(self, session: Session, body: None) -> m.DataGetEnvReply:
        st = self._st(session)
        if st.job is None:
            raise NdmpError(c.Error.ILLEGAL_STATE_ERR, "no operation to report the environment of")
        self._require(st, c.DataState.ACTIVE, c.DataState.HALTED)
        return m.DataGetEnvReply(c.Error.NO_ERR, [m.Pval(k, v) for k, v in st.job.env.items()])

    async def _commit(self, session: Session, body: m.MailtapeDataCommitRequest) -> m.ErrorReply:
        st = self._st(session)
        if not session.extensions or c.MAILTAPE_EXT_CLASS not in session.extensions:
            raise NdmpError(c.Error.NOT_SUPPORTED_ERR, "mailtape extension not selected (CONFIG_SET_EXT_LIST)")
        if (st.state != c.DataState.HALTED or st.operation != c.DataOperation.BACKUP
                or st.halt_reason != c.DataHaltReason.SUCCESSFUL or st.job is None):
            raise NdmpError(c.Error.ILLEGAL_STATE_ERR, "only a backup that halted successfully can be committed")
        if st.committed:
            raise NdmpError(c.Error.ILLEGAL_STATE_ERR, "this backup was already committed")
        env = dict(st.job.env)
        env.update({p.name: p.value for p in body.env})
        hook = st.job.on_committed or (st.butype.on_committed if st.butype is not None else None)
        if hook is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, hook, env)
            except Exception as exc:  # noqa: BLE001 - the DMA must learn the commit hook failed
                log.exception("ndmp data: commit hook of %s failed", st.butype.name)
                raise NdmpError(c.Error.UNDEFINED_ERR, f"commit hook failed: {exc}") from exc
        st.committed = True
        st.job.committed = True
        return m.ErrorReply(c.Error.NO_ERR)
