"""The NDMP Tape service: TAPE_* on a :class:`~reference.protocols.tape.TapeDevice`, plus the Mover
(:mod:`reference.ndmp.mover`), sharing one per-connection state.

The embedding code supplies ``open_device(name, write) -> TapeDevice`` (the tape emulator or the
real st driver); TAPE_OPEN calls it. The Mover moves the image between the data connection and
the open tape in records of MOVER_SET_RECORD_SIZE bytes, inside the window of
MOVER_SET_WINDOW, in a worker thread; every device call from a handler also runs in a worker
thread, since a real drive blocks.

See :mod:`reference.ndmp.mover` for the Mover (modes, records, windows, pauses).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any, Callable

from reference.protocols.tape import Gstat, MtOp, TapeDevice

from . import constants as c
from . import messages as m
from .errors import NdmpError
from .mover import MAX_RECORD_SIZE, MoverHandlers, TapeState
from .server import NdmpServer, Session

log = logging.getLogger("mailtape.ndmp.tape")

OpenDevice = Callable[[str, bool], TapeDevice]

_MTIO = {c.TapeMtioOp.FSF: MtOp.MTFSF, c.TapeMtioOp.BSF: MtOp.MTBSF, c.TapeMtioOp.FSR: MtOp.MTFSR,
         c.TapeMtioOp.BSR: MtOp.MTBSR, c.TapeMtioOp.REW: MtOp.MTREW, c.TapeMtioOp.EOF: MtOp.MTWEOF,
         c.TapeMtioOp.OFF: MtOp.MTOFFL, c.TapeMtioOp.TUR: MtOp.MTNOP}
_ONE_AT_A_TIME = {c.TapeMtioOp.FSF, c.TapeMtioOp.BSF, c.TapeMtioOp.FSR, c.TapeMtioOp.BSR, c.TapeMtioOp.EOF}


def ndmp_error_of(exc: OSError, op: str) -> int:
    """The NDMP error for an st errno (spec tape-drive.md §2: ENOSPC at EOM, EIO at end of data...)."""
    code = exc.errno
    if code == errno.ENOSPC:
        return c.Error.EOM_ERR
    if code in (errno.EROFS, errno.EACCES):
        return c.Error.WRITE_PROTECT_ERR
    if code == errno.EBADF:
        return c.Error.PERMISSION_ERR
    if code == errno.ENOMEDIUM:
        return c.Error.NO_TAPE_LOADED_ERR
    if code == errno.EBUSY:
        return c.Error.DEVICE_BUSY_ERR
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return c.Error.NO_DEVICE_ERR
    if code == errno.EIO and op in ("read", "fsr", "fsf"):
        return c.Error.EOM_ERR if op != "fsr" else c.Error.EOF_ERR
    if code == errno.EINVAL:
        return c.Error.ILLEGAL_ARGS_ERR
    return c.Error.IO_ERR


class TapeService(MoverHandlers):
    """Registers TAPE_* and MOVER_* (and CONFIG_GET_TAPE_INFO) on an :class:`NdmpServer`."""

    KEY = "tape"

    def __init__(self, open_device: OpenDevice, devices: list[str] | None = None,
                 max_record_size: int = MAX_RECORD_SIZE):
        self.open_device = open_device
        self.devices = devices or []
        self.max_record_size = max_record_size

    def install(self, server: NdmpServer) -> None:
        M = c.Message
        for code, handler in [
            (M.CONFIG_GET_TAPE_INFO, self._tape_info),
            (M.TAPE_OPEN, self._open), (M.TAPE_CLOSE, self._close), (M.TAPE_GET_STATE, self._get_state),
            (M.TAPE_MTIO, self._mtio), (M.TAPE_WRITE, self._write), (M.TAPE_READ, self._read),
            (M.MOVER_GET_STATE, self._mover_state), (M.MOVER_SET_RECORD_SIZE, self._set_record_size),
            (M.MOVER_SET_WINDOW, self._set_window), (M.MOVER_LISTEN, self._listen),
            (M.MOVER_CONNECT, self._connect), (M.MOVER_CONTINUE, self._continue),
            (M.MOVER_ABORT, self._abort), (M.MOVER_STOP, self._stop), (M.MOVER_CLOSE, self._mover_close),
            (M.MOVER_READ, self._mover_read),
        ]:
            server.register(code, handler)

    def _st(self, session: Session) -> TapeState:
        st = session.service_state(self.KEY, TapeState)
        if not st.hooked:
            st.hooked = True
            session.on_close(lambda: self._on_session_close(session, st))
        return st

    async def _on_session_close(self, session: Session, st: TapeState) -> None:
        with st.lock:
            was_listening = st.state == c.MoverState.LISTEN
            if st.state not in (c.MoverState.IDLE, c.MoverState.HALTED):
                st.state, st.halt_reason = c.MoverState.HALTED, c.MoverHaltReason.ABORTED
            st.lock.notify_all()
        if was_listening and st.task is not None:
            st.task.cancel()  # still in accept()
        st.close_sockets()
        if st.task is not None and not st.task.done():
            try:
                await asyncio.wait_for(asyncio.shield(st.task), 10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                log.warning("ndmp mover: pump did not stop within 10 s of its connection closing")
        if st.device is not None:
            device, st.device = st.device, None
            await asyncio.get_running_loop().run_in_executor(None, device.close)

    @staticmethod
    async def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # --- TAPE ------------------------------------------------------------------------------------

    def _tape_info(self, session: Session, body: None) -> m.ConfigGetTapeInfoReply:
        return m.ConfigGetTapeInfoReply(c.Error.NO_ERR, [
            m.DeviceInfo("mailtape tape", [m.DeviceCapability(name, 0, [])]) for name in self.devices])

    def _device(self, st: TapeState) -> TapeDevice:
        if st.device is None:
            raise NdmpError(c.Error.DEV_NOT_OPEN_ERR)
        return st.device

    def _mover_quiet(self, st: TapeState) -> None:
        """Direct tape I/O only while the mover is not moving (IDLE, PAUSED, HALTED)."""
        if st.state in (c.MoverState.ACTIVE, c.MoverState.LISTEN):
            raise NdmpError(c.Error.ILLEGAL_STATE_ERR, f"mover is {st.state.name}")

    async def _open(self, session: Session, body: m.TapeOpenRequest) -> m.ErrorReply:
        st = self._st(session)
        if st.device is not None:
            raise NdmpError(c.Error.DEVICE_OPENED_ERR, st.device_name)
        if body.mode not in (c.TapeOpenMode.READ, c.TapeOpenMode.RDWR, c.TapeOpenMode.RAW):
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, f"open mode {int(body.mode)}")
        write = body.mode in (c.TapeOpenMode.RDWR, c.TapeOpenMode.RAW)
        try:
            st.device = await self._blocking(self.open_device, body.device, write)
        except OSError as exc:
            raise NdmpError(ndmp_error_of(exc, "open"), f"{body.device}: {exc}") from None
        st.device_name, st.writable = body.device, write
        log.info("ndmp tape: %s opened %s (%s)", session.peer, body.device, "rw" if write else "ro")
        return m.ErrorReply(c.Error.NO_ERR)

    async def _close(self, session: Session, body: None) -> m.ErrorReply:
        st = self._st(session)
        device = self._device(st)
        self._mover_quiet(st)
        st.device = None
        try:
            await self._blocking(device.close)
        except OSError as exc:
            raise NdmpError(ndmp_error_of(exc, "close"), str(exc)) from None
        return m.ErrorReply(c.Error.NO_ERR)

    async def _get_state(self, session: Session, body: None) -> m.TapeGetStateReply:
        st = self._st(session)
        status = await self._blocking(self._device(st).status)
        unsupported = 0x2 | 0x10 | 0x20  # SOFT_ERRORS, TOTAL_SPACE, SPACE_REMAIN
        if status.fileno < 0:
            unsupported |= 0x1
        if status.blkno < 0:
            unsupported |= 0x8
        flags = 0x8  # NOREWIND: our devices are the no-rewind node
        if status.gstat & Gstat.WR_PROT or not st.writable:
            flags |= 0x10
        return m.TapeGetStateReply(
            unsupported=unsupported, error=c.Error.NO_ERR, flags=flags, file_num=max(status.fileno, 0),
            soft_errors=0, block_size=status.blksize, blockno=max(status.blkno, 0))

    async def _mtio(self, session: Session, body: m.TapeMtioRequest) -> m.TapeMtioReply:
        st = self._st(session)
        device = self._device(st)
        self._mover_quiet(st)
        op = body.tape_op
        if op not in _MTIO:
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, f"tape_op {int(op)}")

        def run() -> m.TapeMtioReply:
            if op not in _ONE_AT_A_TIME:
                device.mtop(_MTIO[op], 1)
                return m.TapeMtioReply(c.Error.NO_ERR, 0)
            for done in range(body.count):  # one at a time, so a stop knows the residue
                try:
                    device.mtop(_MTIO[op], 1)
                except OSError as exc:
                    if exc.errno in (errno.EIO, errno.ENOSPC) and op != c.TapeMtioOp.EOF:
                        # BOT, a filemark or end of data stopped the motion: not an error in NDMP,
                        # the residue says how far it got (as NDMJOB's test-tape expects)
                        return m.TapeMtioReply(c.Error.NO_ERR, body.count - done)
                    return m.TapeMtioReply(ndmp_error_of(exc, op.name.lower()), body.count - done)
            return m.TapeMtioReply(c.Error.NO_ERR, 0)

        try:
            return await self._blocking(run)
        except OSError as exc:
            raise NdmpError(ndmp_error_of(exc, op.name.lower()), str(exc)) from None

    async def _write(self, session: Session, body: m.TapeWriteRequest) -> m.TapeWriteReply:
        st = self._st(session)
        device = self._device(st)
        self._mover_quiet(st)
        if not st.writable:
            raise NdmpError(c.Error.PERMISSION_ERR, "tape opened read-only")
        if not body.data_out:
            return m.TapeWriteReply(c.Error.NO_ERR, 0)  # v4: a zero-length write is a no-op
        if len(body.data_out) > self.max_record_size:
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, f"record of {len(body.data_out)} bytes")
        try:
            count = await self._blocking(device.write, body.data_out)
        except OSError as exc:
            raise NdmpError(ndmp_error_of(exc, "write"), str(exc)) from None
        return m.TapeWriteReply(c.Error.NO_ERR, count)

    async def _read(self, session: Session, body: m.TapeReadRequest) -> m.TapeReadReply:
        st = self._st(session)
        device = self._device(st)
        self._mover_quiet(st)
        if body.count > self.max_record_size:
            raise NdmpError(c.Error.ILLEGAL_ARGS_ERR, f"count {body.count}")
        if body.count == 0:
            return m.TapeReadReply(c.Error.NO_ERR, b"")  # v4: a zero-length read is a no-op
        try:
            # read the whole block and cut it: NDMP returns the first ``count`` bytes of a longer
            # record, where st would refuse with ENOMEM and skip the block
            data = await self._blocking(device.read, self.max_record_size)
            if not data:
                at_eod = bool((await self._blocking(device.status)).gstat & Gstat.EOD)
        except OSError as exc:
            raise NdmpError(ndmp_error_of(exc, "read"), str(exc)) from None
        if not data:
            # st reads 0 bytes at a filemark, and once more at end of data (GMT_EOD), then EIO
            raise NdmpError(c.Error.EOM_ERR if at_eod else c.Error.EOF_ERR, "end of data" if at_eod else "filemark")
        return m.TapeReadReply(c.Error.NO_ERR, data[:body.count])
