"""The NDMP Mover: per-connection tape/mover state, MOVER_* handlers and the pumps that move the
image between the data connection and the tape (mixed into :class:`reference.ndmp.tape.TapeService`).

Mode **READ** = backup (read the data connection, write tape); **WRITE** = recover (read tape, write
the data connection); NDMP names the mode from the data connection's side.

Backup: a full record is written as one tape block; the last partial record is padded with zeros
(as NDMJOB's mover does). ENOSPC (st's end-of-medium after early warning) pauses the mover with
NOTIFY_MOVER_PAUSED(EOM, seek_position); the DMA changes the cartridge (TAPE_CLOSE/TAPE_OPEN,
MOVER_SET_WINDOW) and sends MOVER_CONTINUE, and the record that did not fit is written first.
Reaching the end of the window pauses with EOW. The data connection closing ends the backup:
MOVER_HALTED(CONNECT_CLOSED).

Recover: each MOVER_READ(offset, length) is served from the tape, reading forward from the
window start (records before ``offset`` are read and dropped); a filemark pauses with EOF, the end
of data with EOM, an offset behind the tape position with SEEK (the DMA repositions, sets the
window, continues).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import threading
from typing import Any

from reference.protocols.tape import Gstat, TapeDevice

from . import constants as c
from . import messages as m
from .dataconn import connect_first
from .errors import NdmpError
from .server import Session

log = logging.getLogger("mailtape.ndmp.tape")

DEFAULT_RECORD_SIZE = 10240
MAX_RECORD_SIZE = 1 << 20
INFINITY = 0xFFFFFFFFFFFFFFFF


class MoverStopped(Exception):
    """The mover was aborted or closed while its pump was working or paused."""


class DataClosed(Exception):
    """The data server closed the data connection while the mover was sending (a normal end)."""


class TapeState:
    """Per-connection state: the open device and the mover."""

    def __init__(self) -> None:
        self.device: TapeDevice | None = None
        self.device_name = ""
        self.writable = False
        self.hooked = False
        self.lock = threading.Condition()
        self.record_size = DEFAULT_RECORD_SIZE
        self.window_offset = 0
        self.window_length = INFINITY
        self.reset_mover()

    def reset_mover(self) -> None:
        self.mode = c.MoverMode.READ
        self.state = c.MoverState.IDLE
        self.pause_reason = c.MoverPauseReason.NA
        self.halt_reason = c.MoverHaltReason.NA
        self.record_num = 0
        self.bytes_moved = 0
        self.seek_position = 0
        self.bytes_left_to_read = 0
        self.stream_pos = self.window_offset  # stream offset of the next record on tape
        self.read_request: tuple[int, int] | None = None
        self.addr: Any = (c.AddrType.LOCAL, None)
        self.listener: socket.socket | None = None
        self.sock: socket.socket | None = None
        self.task: asyncio.Task | None = None

    def close_sockets(self) -> None:
        for s in (self.listener, self.sock):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        self.listener = self.sock = None


class MoverHandlers:
    """MOVER_* handlers and pumps; the host class provides ``_st``, ``_device`` and
    ``max_record_size``."""

    max_record_size: int

    # --- MOVER: configuration and state ----------------------------------------------------------

    def _mover_state(self, session: Session, body: None) -> m.MoverGetStateReply:
        st = self._st(session)
        with st.lock:
            return m.MoverGetStateReply(
                error=c.Error.NO_ERR, mode=st.mode, state=st.state, pause_reason=st.pause_reason,
                halt_reason=st.halt_reason, record_size=st.record_size, record_num=st.record_num,
                bytes_moved=st.bytes_moved, seek_position=st.seek_position,
                bytes_left_to_read=st.bytes_left_to_read, window_offset=st.window_offset,
                window_length=st.window_length, data_connection_addr=st.addr)

    def _set_record_size(self, session: Session, body: m.MoverSetRecordSizeRequest) -> m.ErrorReply:
        st = self._st(session)
        if st.state != c.MoverState.IDLE:
            raise NdmpError(c.Error.ILLEGAL_STATE_ERR, f"mover is {st.state.name}")
        if not 0 < body.len <= self.max_record_size:
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, f"record size {body.len}")
        st.record_size = body.len
        return m.ErrorReply(c.Error.NO_ERR)

    def _set_window(self, session: Session, body: m.OffsetLength) -> m.ErrorReply:
        st = self._st(session)
        if st.state not in (c.MoverState.IDLE, c.MoverState.PAUSED):
            raise NdmpError(c.Error.ILLEGAL_STATE_ERR, f"mover is {st.state.name}")
        if body.offset % st.record_size:
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, "window offset is not a multiple of the record size")
        if body.length != INFINITY and body.offset + body.length > INFINITY:
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, "window beyond 2^64")
        with st.lock:
            st.window_offset, st.window_length = body.offset, body.length
            st.stream_pos = body.offset  # the DMA positions the tape at the window start
        return m.ErrorReply(c.Error.NO_ERR)

    def _check_can_start(self, st: TapeState, mode: int, addr_type: int) -> None:
        """Arguments first, then state, then the tape (the order NDMJOB's test-mover expects)."""
        if mode not in (c.MoverMode.READ, c.MoverMode.WRITE):
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, f"mover mode {int(mode)}")
        if addr_type != c.AddrType.TCP:
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, "only TCP data connections are offered")
        if st.state != c.MoverState.IDLE:
            raise NdmpError(c.Error.ILLEGAL_STATE_ERR, f"mover is {st.state.name}")
        self._device(st)
        if mode == c.MoverMode.READ and not st.writable:
            raise NdmpError(c.Error.PERMISSION_ERR, "backup needs the tape opened read-write")

    # --- MOVER: data connection ------------------------------------------------------------------

    async def _listen(self, session: Session, body: m.MoverListenRequest) -> m.ListenReply:
        st = self._st(session)
        self._check_can_start(st, body.mode, body.addr_type)
        host = session.local[0] if ipaddress.ip_address(session.local[0]).version == 4 else "127.0.0.1"
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((host, 0))
        listener.listen(1)
        listener.setblocking(False)
        st.reset_mover()
        st.mode, st.listener = c.MoverMode(body.mode), listener
        st.addr = (c.AddrType.TCP, [m.TcpAddr(int(ipaddress.IPv4Address(host)), listener.getsockname()[1], [])])
        st.state = c.MoverState.LISTEN
        st.task = asyncio.ensure_future(self._accept_and_run(session, st))
        return m.ListenReply(c.Error.NO_ERR, st.addr)

    async def _accept_and_run(self, session: Session, st: TapeState) -> None:
        listener = st.listener
        assert listener is not None
        try:
            sock, peer = await asyncio.get_running_loop().sock_accept(listener)
        except (OSError, asyncio.CancelledError):
            return  # aborted while listening
        listener.close()
        st.listener = None
        with st.lock:
            if st.state != c.MoverState.LISTEN:
                sock.close()
                return
            st.sock, st.state = sock, c.MoverState.ACTIVE
        log.info("ndmp mover: data connection from %s", peer)
        await self._run(session, st)

    async def _connect(self, session: Session, body: m.MoverConnectRequest) -> m.ErrorReply:
        st = self._st(session)
        addr_type, addrs = body.addr
        self._check_can_start(st, body.mode, addr_type)
        if not addrs:
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, "no TCP address to connect to")
        sock, peer = await connect_first(addrs)
        st.reset_mover()
        st.mode, st.sock, st.state = c.MoverMode(body.mode), sock, c.MoverState.ACTIVE
        st.addr = (c.AddrType.TCP, [peer])
        st.task = asyncio.ensure_future(self._run(session, st))
        return m.ErrorReply(c.Error.NO_ERR)

    # --- MOVER: control --------------------------------------------------------------------------

    def _continue(self, session: Session, body: None) -> m.ErrorReply:
        st = self._st(session)
        with st.lock:
            if st.state != c.MoverState.PAUSED:
                raise NdmpError(c.Error.ILLEGAL_STATE_ERR, f"mover is {st.state.name}")
            st.state, st.pause_reason = c.MoverState.ACTIVE, c.MoverPauseReason.NA
            st.lock.notify_all()
        return m.ErrorReply(c.Error.NO_ERR)

    def _halt_now(self, session: Session, st: TapeState, reason: c.MoverHaltReason) -> None:
        with st.lock:
            was_listening = st.state == c.MoverState.LISTEN
            st.state, st.halt_reason = c.MoverState.HALTED, reason
            st.pause_reason = c.MoverPauseReason.NA
            st.lock.notify_all()
        if was_listening and st.task is not None and st.task is not asyncio.current_task():
            st.task.cancel()  # still waiting in accept()
        st.close_sockets()
        session.post_nowait(c.Message.NOTIFY_MOVER_HALTED, m.NotifyMoverHalted(reason))

    def _abort(self, session: Session, body: None) -> m.ErrorReply:
        st = self._st(session)
        if st.state not in (c.MoverState.LISTEN, c.MoverState.ACTIVE, c.MoverState.PAUSED):
            raise NdmpError(c.Error.ILLEGAL_STATE_ERR, f"mover is {st.state.name}")
        self._halt_now(session, st, c.MoverHaltReason.ABORTED)
        return m.ErrorReply(c.Error.NO_ERR)

    def _mover_close(self, session: Session, body: None) -> m.ErrorReply:
        st = self._st(session)
        if st.state not in (c.MoverState.PAUSED, c.MoverState.ACTIVE):
            raise NdmpError(c.Error.ILLEGAL_STATE_ERR, f"mover is {st.state.name}")
        self._halt_now(session, st, c.MoverHaltReason.CONNECT_CLOSED)
        return m.ErrorReply(c.Error.NO_ERR)

    def _stop(self, session: Session, body: None) -> m.ErrorReply:
        st = self._st(session)
        if st.state != c.MoverState.HALTED:
            raise NdmpError(c.Error.ILLEGAL_STATE_ERR, f"mover is {st.state.name}")
        st.close_sockets()
        with st.lock:
            st.reset_mover()
        return m.ErrorReply(c.Error.NO_ERR)

    def _mover_read(self, session: Session, body: m.OffsetLength) -> m.ErrorReply:
        st = self._st(session)
        with st.lock:
            if st.state != c.MoverState.ACTIVE or st.mode != c.MoverMode.WRITE:
                raise NdmpError(c.Error.ILLEGAL_STATE_ERR, "MOVER_READ needs an active mover in WRITE mode")
            if st.read_request is not None:
                raise NdmpError(c.Error.READ_IN_PROGRESS_ERR)
            st.read_request = (body.offset, body.length)
            st.bytes_left_to_read = body.length
            st.lock.notify_all()
        return m.ErrorReply(c.Error.NO_ERR)

    # --- the pump --------------------------------------------------------------------------------

    async def _run(self, session: Session, st: TapeState) -> None:
        sock = st.sock
        assert sock is not None
        sock.setblocking(True)
        pump = self._pump_to_tape if st.mode == c.MoverMode.READ else self._pump_from_tape
        reason = c.MoverHaltReason.CONNECT_CLOSED
        try:
            await asyncio.get_running_loop().run_in_executor(None, pump, session, st, sock)
        except MoverStopped:
            return  # halted by MOVER_ABORT / MOVER_CLOSE, which posted already
        except DataClosed:
            reason = c.MoverHaltReason.CONNECT_CLOSED
        except OSError as exc:
            log.warning("ndmp mover: %s", exc)
            reason = c.MoverHaltReason.INTERNAL_ERROR
        except Exception:  # noqa: BLE001
            log.exception("ndmp mover: pump failed")
            reason = c.MoverHaltReason.INTERNAL_ERROR
        with st.lock:
            if st.state == c.MoverState.HALTED:
                return
        self._halt_now(session, st, reason)

    def _pause(self, session: Session, st: TapeState, reason: c.MoverPauseReason) -> None:
        """Pause (from the pump thread), tell the DMA, and wait for CONTINUE (or a halt)."""
        with st.lock:
            if st.state == c.MoverState.HALTED:
                raise MoverStopped()
            st.state, st.pause_reason, st.seek_position = c.MoverState.PAUSED, reason, st.stream_pos
        session.post_from_thread(c.Message.NOTIFY_MOVER_PAUSED, m.NotifyMoverPaused(reason, st.stream_pos))
        with st.lock:
            st.lock.wait_for(lambda: st.state != c.MoverState.PAUSED)
            if st.state == c.MoverState.HALTED:
                raise MoverStopped()

    def _window_end(self, st: TapeState) -> int:
        return INFINITY if st.window_length == INFINITY else st.window_offset + st.window_length

    def _pump_to_tape(self, session: Session, st: TapeState, sock: socket.socket) -> None:
        record = bytearray(st.record_size)
        view = memoryview(record)
        fill = 0
        while True:
            try:
                n = sock.recv_into(view[fill:])
            except OSError:
                if st.state == c.MoverState.HALTED:
                    raise MoverStopped() from None
                raise
            if n == 0:
                break
            fill += n
            st.bytes_moved += n
            if fill == len(record):
                self._write_record(session, st, bytes(record))
                fill = 0
        if fill:
            record[fill:] = bytes(len(record) - fill)  # pad the last record, as NDMJOB does
            self._write_record(session, st, bytes(record))

    def _write_record(self, session: Session, st: TapeState, record: bytes) -> None:
        while True:
            if st.state == c.MoverState.HALTED:
                raise MoverStopped()
            if st.stream_pos + len(record) > self._window_end(st):
                self._pause(session, st, c.MoverPauseReason.EOW)
                continue
            device = st.device
            if device is None:  # the DMA closed the tape while paused and did not open another
                raise OSError(errno.ENXIO, "no tape open")
            try:
                device.write(record)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                self._pause(session, st, c.MoverPauseReason.EOM)
                continue
            st.record_num += 1
            st.stream_pos += len(record)
            return

    def _pump_from_tape(self, session: Session, st: TapeState, sock: socket.socket) -> None:
        pending = memoryview(b"")  # bytes of the current record not yet consumed
        pending_at = st.stream_pos
        while True:
            with st.lock:
                st.lock.wait_for(lambda: st.read_request is not None or st.state == c.MoverState.HALTED)
                if st.state == c.MoverState.HALTED:
                    raise MoverStopped()
                offset, length = st.read_request
            end = INFINITY if length == INFINITY else offset + length
            if offset < pending_at:
                st.stream_pos = offset - offset % st.record_size
                self._pause(session, st, c.MoverPauseReason.SEEK)  # DMA repositions, sets the window
                pending, pending_at = memoryview(b""), st.stream_pos
                continue
            position = offset
            while position < end:
                if pending_at + len(pending) <= position:  # need the next record
                    if st.stream_pos >= self._window_end(st):
                        self._pause(session, st, c.MoverPauseReason.EOW)
                        continue
                    device = st.device
                    if device is None:
                        raise OSError(errno.ENXIO, "no tape open")
                    try:
                        data = device.read(self.max_record_size)
                        if not data and device.status().gstat & Gstat.EOD:
                            data = None
                    except OSError as exc:
                        if exc.errno != errno.EIO:
                            raise
                        data = None  # end of data
                    if not data:
                        self._pause(session, st, c.MoverPauseReason.EOF if data == b"" else
                                    c.MoverPauseReason.EOM)
                        continue
                    pending_at, pending = st.stream_pos, memoryview(data)
                    st.stream_pos += len(data)
                    st.record_num += 1
                    continue
                start = position - pending_at
                stop = min(len(pending), end - pending_at)
                try:
                    sock.sendall(pending[start:stop])
                except OSError:
                    if st.state == c.MoverState.HALTED:
                        raise MoverStopped() from None
                    raise DataClosed() from None  # the data server has what it wanted
                st.bytes_moved += stop - start
                position = pending_at + stop
                if length != INFINITY:
                    st.bytes_left_to_read = end - position
            with st.lock:
                st.read_request = None
