"""The server framework: connection status, version, authentication, gating, bad input, limits."""

from __future__ import annotations

import logging
import socket
import struct

import pytest

from ndmp_helpers import PASSWORD, USER, make_server
from reference.ndmp import constants as c
from reference.ndmp import messages as m
from reference.ndmp.auth import Credentials, md5_digest
from reference.ndmp.client import NdmpClient
from reference.ndmp.errors import NdmpError, NdmpProtocolError, NdmpRefused
from reference.ndmp.runner import ServerThread
from reference.ndmp.server import NdmpServer, ServerConfig
from reference.ndmp.wire import frame

M = c.Message


def test_spec2_first_message_is_notify_connection_status_connected_v4(connect):
    cl = connect(login=False)
    assert cl.connection_status.reason == c.ConnectionStatus.CONNECTED
    assert cl.connection_status.protocol_version == 4


def test_connect_open_negotiates_v4_only_and_only_once(connect):
    cl = connect(login=False)
    with pytest.raises(NdmpError) as exc:
        cl.open(3)  # the DMA would step down; we offer only 4
    assert exc.value.error == c.Error.ILLEGAL_ARGS_ERR
    cl.open(4)
    with pytest.raises(NdmpError) as exc:
        cl.open(4)
    assert exc.value.error == c.Error.ILLEGAL_STATE_ERR


def test_messages_before_connect_open_are_refused(connect):
    cl = connect(login=False)
    with pytest.raises(NdmpError) as exc:
        cl.call(M.CONFIG_GET_SERVER_INFO)
    assert exc.value.error == c.Error.ILLEGAL_STATE_ERR


def test_only_connect_and_auth_attr_and_server_info_before_authentication(connect):
    cl = connect(login=False)
    cl.open()
    info = cl.call(M.CONFIG_GET_SERVER_INFO)
    assert set(info.auth_type) == {c.AuthType.TEXT, c.AuthType.MD5}
    cl.call(M.CONFIG_GET_AUTH_ATTR, m.ConfigGetAuthAttrRequest(c.AuthType.MD5))
    for code in (M.CONFIG_GET_HOST_INFO, M.CONFIG_GET_BUTYPE_INFO, M.DATA_GET_STATE, M.DATA_STOP):
        with pytest.raises(NdmpError) as exc:
            cl.call(code)
        assert exc.value.error == c.Error.NOT_AUTHORIZED_ERR


@pytest.mark.parametrize("method", ["text", "md5"])
def test_auth_text_and_md5_succeed_with_the_right_password(connect, method):
    cl = connect(method=method)
    assert cl.call(M.CONFIG_GET_HOST_INFO).os_type


@pytest.mark.parametrize("method", ["text", "md5"])
def test_wrong_password_is_not_authorized_and_is_never_logged(server, caplog, method):
    caplog.set_level(logging.DEBUG)
    cl = NdmpClient(*server.address, timeout=10).connect()
    cl.open()
    with pytest.raises(NdmpError) as exc:
        (cl.auth_md5 if method == "md5" else cl.auth_text)(USER, "wrong-horse-battery")
    assert exc.value.error == c.Error.NOT_AUTHORIZED_ERR
    with pytest.raises(NdmpError):
        cl.call(M.CONFIG_GET_HOST_INFO)
    (cl.auth_md5 if method == "md5" else cl.auth_text)(USER, PASSWORD)
    cl.call(M.CONFIG_GET_HOST_INFO)
    cl.close()
    assert "authentication of user 'ndmp'" in caplog.text
    assert "wrong-horse-battery" not in caplog.text and PASSWORD not in caplog.text


def test_md5_needs_a_fresh_challenge_each_time(connect):
    cl = connect(login=False)
    cl.open()
    attr = cl.call(M.CONFIG_GET_AUTH_ATTR, m.ConfigGetAuthAttrRequest(c.AuthType.MD5))
    digest = md5_digest(attr.server_attr[1], "wrong")
    with pytest.raises(NdmpError):
        cl.call(M.CONNECT_CLIENT_AUTH, m.ConnectClientAuthRequest((c.AuthType.MD5, m.AuthMd5(USER, digest))))
    replay = md5_digest(attr.server_attr[1], PASSWORD)  # right digest, but the challenge is used up
    with pytest.raises(NdmpError) as exc:
        cl.call(M.CONNECT_CLIENT_AUTH, m.ConnectClientAuthRequest((c.AuthType.MD5, m.AuthMd5(USER, replay))))
    assert exc.value.error == c.Error.NOT_AUTHORIZED_ERR


def test_auth_none_is_refused_unless_offered(connect):
    cl = connect(login=False)
    cl.open()
    with pytest.raises(NdmpError) as exc:
        cl.call(M.CONNECT_CLIENT_AUTH, m.ConnectClientAuthRequest((c.AuthType.NONE, None)))
    assert exc.value.error == c.Error.NOT_AUTHORIZED_ERR


def test_repeated_auth_failures_close_the_connection(connect):
    cl = connect(login=False)
    cl.open()
    for _ in range(3):
        with pytest.raises(NdmpError):
            cl.auth_text(USER, "nope")
    with pytest.raises(NdmpProtocolError):
        cl.call(M.CONFIG_GET_SERVER_INFO)


def test_md5_digest_layout_matches_the_ndmjob_rule():
    challenge = bytes(range(64))
    pw = b"ndmp"
    message = bytearray(128)
    message[0:4] = pw
    message[60:124] = challenge
    message[124:128] = pw
    import hashlib
    assert md5_digest(challenge, "ndmp") == hashlib.md5(bytes(message)).digest()
    assert md5_digest(challenge, "x" * 40) == md5_digest(challenge, "x" * 32)  # cut to 32


def test_unknown_message_code_gets_not_supported_and_the_connection_lives(connect):
    cl = connect()
    reply = cl.call_message(0x20001234)
    assert reply.header.error_code == c.Error.NOT_SUPPORTED_ERR
    reply = cl.call_message(M.SCSI_OPEN, m.DeviceOpenRequest("/dev/sg0"))  # declared, no service
    assert reply.header.error_code == c.Error.NOT_SUPPORTED_ERR
    assert cl.call(M.CONFIG_GET_HOST_INFO)


def test_malformed_body_gets_xdr_decode_error_and_the_connection_lives(connect):
    cl = connect()
    header = m.Header(sequence=100, message_type=c.MessageType.REQUEST, message_code=M.DATA_START_BACKUP)
    from reference.ndmp import xdr
    cl.send_raw(frame(xdr.encode(m.Header, header) + b"\x00\x00\x01\x00abc"))
    msg = cl._receive()
    assert msg.is_reply and msg.header.reply_sequence == 100
    assert msg.header.error_code == c.Error.XDR_DECODE_ERR
    cl._sequence = 100
    assert cl.call(M.CONFIG_GET_HOST_INFO)


def test_sequence_numbers_must_increase(connect):
    cl = connect()
    reply = cl.call_message(M.CONFIG_GET_HOST_INFO, sequence=1)
    assert reply.header.error_code == c.Error.SEQUENCE_NUM_ERR
    assert cl.call(M.CONFIG_GET_HOST_INFO)


def test_oversized_message_closes_only_that_connection(server, connect):
    bad = connect()
    bad.send_raw(struct.pack(">I", 0x80000000 | (64 << 20)))  # announces 64 MiB, above the 1 MiB limit
    with pytest.raises(NdmpProtocolError):
        bad._receive()
    good = connect()
    assert good.call(M.CONFIG_GET_HOST_INFO)


def test_garbage_and_mid_message_disconnects_leave_the_server_serving(server, connect, caplog):
    caplog.set_level(logging.INFO)
    for payload in (b"\x80\x00\x00\x05abcde", b"GET / HTTP/1.0\r\n\r\n", frame(b"\x00" * 30)[:20]):
        s = socket.create_connection(server.address)
        s.recv(4096)  # NOTIFY_CONNECTION_STATUS
        s.sendall(payload)
        s.close()
    cl = connect()
    assert cl.call(M.CONFIG_GET_SERVER_INFO).vendor_name == "mailtape"
    assert "middle of a message" in caplog.text or "undecodable" in caplog.text


def test_connection_limit_refuses_with_notify_connection_status():
    with ServerThread(lambda: make_server(max_connections=1)) as st:
        first = NdmpClient(*st.address).login(USER, PASSWORD)
        with pytest.raises(NdmpRefused, match="too many connections"):
            NdmpClient(*st.address).connect()
        first.close()
        for _ in range(50):  # the server notices the close asynchronously
            try:
                NdmpClient(*st.address).login(USER, PASSWORD).close()
                break
            except NdmpRefused:
                import time
                time.sleep(0.05)
        else:
            pytest.fail("slot not released after the first client closed")


def test_listening_beyond_loopback_needs_allow_remote():
    with pytest.raises(ValueError, match="beyond loopback"):
        NdmpServer(ServerConfig(host="0.0.0.0"))
    NdmpServer(ServerConfig(host="0.0.0.0", allow_remote=True))
    assert ServerConfig().host == "127.0.0.1"
    assert "s3cret" not in repr(Credentials({"u": "s3cret"}))


def test_handler_exceptions_become_undefined_err(connect):
    def boom(session, body):
        raise RuntimeError("handler bug")

    with ServerThread(lambda: _with_handler(M.CONFIG_GET_TAPE_INFO, boom)) as st:
        cl = NdmpClient(*st.address).login(USER, PASSWORD)
        with pytest.raises(NdmpError) as exc:
            cl.call(M.CONFIG_GET_TAPE_INFO)
        assert exc.value.error == c.Error.UNDEFINED_ERR
        assert cl.call(M.CONFIG_GET_HOST_INFO)
        cl.close()


def _with_handler(code, handler):
    server = make_server()
    server.register(code, handler)
    return server


def test_register_refuses_posts_and_duplicates():
    server = make_server()
    with pytest.raises(ValueError):
        server.register(M.NOTIFY_DATA_HALTED, lambda s, b: None)
    with pytest.raises(ValueError):
        server.register(M.DATA_GET_STATE, lambda s, b: None)


def test_extension_negotiation(connect):
    cl = connect()
    ext = cl.call(M.CONFIG_GET_EXT_LIST)
    assert [(e.class_id, e.class_version) for e in ext.class_list] == [(c.MAILTAPE_EXT_CLASS, [1])]
    with pytest.raises(NdmpError) as exc:
        cl.call(M.CONFIG_SET_EXT_LIST, m.ConfigSetExtListRequest(0, [m.ClassList(0x2FFF, [1])]))
    assert exc.value.error == c.Error.CLASS_NOT_SUPPORTED
    with pytest.raises(NdmpError) as exc:
        cl.call(M.CONFIG_SET_EXT_LIST, m.ConfigSetExtListRequest(0, [m.ClassList(c.MAILTAPE_EXT_CLASS, [1]),
                                                                     m.ClassList(c.MAILTAPE_EXT_CLASS, [1])]))
    assert exc.value.error == c.Error.EXT_DUPL_CLASSES
    cl.call(M.CONFIG_SET_EXT_LIST, m.ConfigSetExtListRequest(0, [m.ClassList(c.MAILTAPE_EXT_CLASS, [1])]))
    with pytest.raises(NdmpError) as exc:
        cl.call(M.CONFIG_SET_EXT_LIST, m.ConfigSetExtListRequest(0, []))
    assert exc.value.error == c.Error.ILLEGAL_STATE_ERR


def test_connect_close_has_no_reply_and_ends_the_session(server, connect):
    cl = connect()
    cl.send(M.CONNECT_CLOSE, None)
    cl.sock.settimeout(5)
    assert cl.sock.recv(100) == b""


def test_request_carrying_a_header_error_code_is_refused_not_dispatched(connect):
    cl = connect(login=False)
    from reference.ndmp import xdr
    header = m.Header(sequence=5, message_type=c.MessageType.REQUEST, message_code=M.CONNECT_OPEN,
                      error_code=c.Error.IO_ERR)
    cl.send_raw(frame(xdr.encode(m.Header, header)))  # no body, as a header error implies
    msg = cl._receive()
    assert msg.header.reply_sequence == 5 and msg.header.error_code == c.Error.XDR_DECODE_ERR
    cl._sequence = 5
    cl.open()
