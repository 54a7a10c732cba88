"""Hypothesis state machine against a live server: random valid and malformed requests, abrupt
disconnects and re-logins. Invariants: every request gets exactly one reply with its sequence
number (or, for garbage, the connection closes); authentication gates everything but the CONNECT
messages, CONFIG_GET_AUTH_ATTR and CONFIG_GET_SERVER_INFO; and a fresh client is always served."""

from __future__ import annotations

import logging
import socket
import struct

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ndmp_helpers import PASSWORD, USER, EmulatedDrives
from ndmp_strategies import for_type
from reference.ndmp import constants as c
from reference.ndmp import messages as m
from reference.ndmp import xdr
from reference.ndmp.auth import Credentials
from reference.ndmp.client import NdmpClient
from reference.ndmp.data import Butype, DataService
from reference.ndmp.errors import NdmpProtocolError
from reference.ndmp.runner import ServerThread
from reference.ndmp.server import PRE_AUTH, NdmpServer, ServerConfig
from reference.ndmp.tape import TapeService
from reference.ndmp.wire import frame

M = c.Message
# never let random bodies make the server dial out, or close the session on purpose
_EXCLUDED = {M.DATA_CONNECT, M.MOVER_CONNECT, M.CONNECT_CLOSE}
REQUESTS = sorted(code for code, spec in m.MESSAGES.items() if not spec.is_post and code not in _EXCLUDED)


def _small_backup(job):
    yield b"fuzz" * 16


def _make(tape_root):
    s = NdmpServer(ServerConfig(credentials=Credentials({USER: PASSWORD}), max_message=4096))
    s.add_service(DataService([Butype("gen", _small_backup)]))
    s.add_service(TapeService(EmulatedDrives(tape_root)))
    return s


_server: ServerThread | None = None


class _ErrorRecords(logging.Handler):
    """Collects ERROR records: a handler bug is logged with a traceback at that level."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


_errors = _ErrorRecords()


@pytest.fixture(scope="module", autouse=True)
def live_server(tmp_path_factory):
    global _server
    logger = logging.getLogger("mailtape.ndmp")
    logger.addHandler(_errors)
    tape_root = tmp_path_factory.mktemp("tapes")
    try:
        with ServerThread(lambda: _make(tape_root)) as st_:
            _server = st_
            yield st_
    finally:
        logger.removeHandler(_errors)
        _server = None


@st.composite
def requests(draw):
    code = draw(st.sampled_from(REQUESTS))
    body_type = m.MESSAGES[code].request
    return code, (draw(for_type(body_type)) if body_type is not None else None)


class ServerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.client: NdmpClient | None = None
        self.authenticated = False
        self.opened = False

    def _fresh(self, login: bool) -> None:
        if self.client is not None:
            self.client._drop()
        self.client = NdmpClient(*_server.address, timeout=10)
        self.client.connect()
        self.opened = self.authenticated = False
        if login:
            self.client.open()
            self.client.auth_md5(USER, PASSWORD)
            self.opened = self.authenticated = True

    @rule(login=st.booleans())
    def reconnect(self, login):
        self._fresh(login)

    @precondition(lambda self: self.client is not None)
    @rule(req=requests())
    def send_request(self, req):
        code, body = req
        try:
            reply = self.client.call_message(code, body)
        except NdmpProtocolError:
            # only a run of failed authentications may close the connection on us
            assert code in (M.CONNECT_CLIENT_AUTH,)
            self.client = None
            return
        assert reply.header.message_code == code and reply.is_reply
        err = reply.header.error_code
        if not self.opened:
            assert code == M.CONNECT_OPEN or err == c.Error.ILLEGAL_STATE_ERR
        elif not self.authenticated and code not in PRE_AUTH:
            assert err == c.Error.NOT_AUTHORIZED_ERR
        else:
            assert err in (c.Error.NO_ERR, c.Error.NOT_SUPPORTED_ERR)
        if code == M.CONNECT_OPEN and err == 0 and reply.body.error == 0:
            self.opened = True
        if code == M.CONNECT_CLIENT_AUTH and err == 0 and reply.body.error == 0:
            self.authenticated = True

    @precondition(lambda self: self.client is not None)
    @rule(code=st.sampled_from(REQUESTS), junk=st.binary(min_size=1, max_size=64))
    def send_malformed_body(self, code, junk):
        seq = self.client._sequence = self.client._sequence + 1
        header = m.Header(sequence=seq, message_type=c.MessageType.REQUEST, message_code=code)
        self.client.send_raw(frame(xdr.encode(m.Header, header) + junk))
        try:
            msg = self.client._receive()
            while not msg.is_reply:
                msg = self.client._receive()
        except NdmpProtocolError:
            self.client = None
            return
        assert msg.header.reply_sequence == seq

    @precondition(lambda self: self.client is not None)
    @rule(junk=st.binary(max_size=40), oversize=st.booleans())
    def send_garbage_then_drop(self, junk, oversize):
        if oversize:
            junk = struct.pack(">I", 0x80000000 | 10_000) + junk  # above the 4096-byte limit
        try:
            self.client.send_raw(junk)
        except OSError:
            pass
        self.client._drop()
        self.client = None

    @precondition(lambda self: self.client is not None)
    @rule(seq=st.integers(0, 2**32 - 1), mtype=st.sampled_from([0, 0, 1, 2]),
          code=st.one_of(st.sampled_from(REQUESTS), st.integers(0, 2**32 - 1)),
          error=st.one_of(st.just(0), st.integers(0, 40)), junk=st.binary(max_size=32))
    def send_arbitrary_header(self, seq, mtype, code, error, junk):
        header = struct.pack(">6I", seq, 0, mtype, code, 0, error)
        try:
            self.client.send_raw(frame(header + junk))
            self.client.sock.shutdown(socket.SHUT_WR)  # the server answers, then sees EOF and closes
            self.client.sock.settimeout(5)
            while True:  # drain whatever answer comes, if any; the invariant checks the server
                if not self.client.sock.recv(65536):
                    break
        except OSError:
            pass
        self.client._drop()
        self.client = None

    @invariant()
    def no_handler_crashed(self):
        assert not _errors.records, [r.getMessage() for r in _errors.records]

    @invariant()
    def a_fresh_client_is_served(self):
        if _server is None:
            return
        with socket.create_connection(_server.address, timeout=10):
            pass
        probe = NdmpClient(*_server.address, timeout=10).connect()
        probe.open()
        assert probe.call(M.CONFIG_GET_SERVER_INFO).vendor_name == "mailtape"
        probe.close()

    def teardown(self):
        if self.client is not None:
            self.client._drop()


ServerMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=12, deadline=None)
test_server_state_machine = ServerMachine.TestCase
