"""ONC-RPC record marking and whole-message decoding (spec §2 "Transport and record marking")."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.ndmp import constants as c
from reference.ndmp import messages as m
from reference.ndmp import wire


def test_spec2_record_mark_top_bit_is_last_fragment_rest_is_length():
    assert wire.frame(b"abcd") == struct.pack(">I", 0x80000004) + b"abcd"
    framed = wire.frame(b"abcdefghij", max_fragment=4)
    assert framed == (struct.pack(">I", 4) + b"abcd" + struct.pack(">I", 4) + b"efgh"
                      + struct.pack(">I", 0x80000002) + b"ij")
    assert wire.frame(b"") == struct.pack(">I", 0x80000000)


@given(payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=5),
       fragment=st.integers(1, 64), cut=st.integers(1, 17))
def test_reassembly_of_fragments_fed_in_arbitrary_pieces(payloads, fragment, cut):
    stream = b"".join(wire.frame(p, fragment) for p in payloads)
    r = wire.RecordReassembler(max_message=1000)
    out = []
    for i in range(0, len(stream), cut):
        out += r.feed(stream[i:i + cut])
    assert out == payloads
    assert r.pending == 0


def test_max_message_size_is_enforced_across_fragments_before_buffering():
    r = wire.RecordReassembler(max_message=10)
    r.feed(struct.pack(">I", 6) + b"123456")
    with pytest.raises(wire.MessageTooLarge):
        r.feed(struct.pack(">I", 0x80000005))  # 6 + 5 > 10, refused from the mark alone
    with pytest.raises(wire.MessageTooLarge):
        wire.RecordReassembler(max_message=10).feed(struct.pack(">I", 0xFFFFFFFF))


def test_async_and_blocking_readers_agree_and_report_mid_record_close():
    async def run(data: bytes, limit: int = 100):
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await wire.read_record(reader, limit)

    assert asyncio.run(run(wire.frame(b"hello", 2))) == b"hello"
    with pytest.raises(wire.PeerClosed) as exc:
        asyncio.run(run(wire.frame(b"hello")[:6]))
    assert exc.value.partial
    with pytest.raises(wire.PeerClosed) as exc:
        asyncio.run(run(b""))
    assert not exc.value.partial
    with pytest.raises(wire.MessageTooLarge):
        asyncio.run(run(wire.frame(b"x" * 101)))

    a, b = socket.socketpair()
    try:
        a.sendall(wire.frame(b"hello", 3) + wire.frame(b"x" * 50)[:10])
        a.shutdown(socket.SHUT_WR)
        assert wire.recv_record(b) == b"hello"
        with pytest.raises(wire.PeerClosed, match="mid-record"):
            wire.recv_record(b)
    finally:
        a.close()
        b.close()


def _header(code, mtype=c.MessageType.REQUEST, error=c.Error.NO_ERR, seq=1):
    return m.Header(sequence=seq, time_stamp=0, message_type=mtype, message_code=code, error_code=error)


def test_message_encode_decode_and_header_error_has_no_body():
    body = m.DataStartBackupRequest("tar", [m.Pval("FILESYSTEM", "/x")])
    msg = wire.decode_message(wire.encode_message(_header(c.Message.DATA_START_BACKUP), body))
    assert msg.body == body and msg.name == "DATA_START_BACKUP" and not msg.is_reply
    raw = wire.encode_message(_header(c.Message.DATA_GET_STATE, c.MessageType.REPLY, c.Error.NOT_AUTHORIZED_ERR),
                              m.DataGetStateReply())
    assert len(raw) == 24
    assert wire.decode_message(raw).body is None


def test_decode_errors_keep_the_header_so_the_server_can_answer():
    with pytest.raises(wire.UnknownMessage) as exc:
        wire.decode_message(wire.encode_message(_header(0x7777)))
    assert exc.value.header.message_code == 0x7777
    truncated = wire.encode_message(_header(c.Message.DATA_START_BACKUP), m.DataStartBackupRequest("tar"))[:-2]
    with pytest.raises(wire.MessageDecodeError) as exc:
        wire.decode_message(truncated)
    assert exc.value.header.message_code == c.Message.DATA_START_BACKUP
    with pytest.raises(wire.MessageDecodeError) as exc:
        wire.decode_message(b"\x00" * 10)
    assert exc.value.header is None
    with pytest.raises(wire.MessageDecodeError, match="post"):
        wire.decode_message(wire.encode_message(_header(c.Message.LOG_FILE, c.MessageType.REPLY)))


@given(raw=st.binary(max_size=80))
def test_message_decoder_fuzz_raises_only_decode_errors(raw):
    try:
        wire.decode_message(raw)
    except wire.MessageDecodeError:
        pass


@given(code=st.sampled_from(sorted(m.MESSAGES)), tail=st.binary(max_size=40))
def test_message_decoder_fuzz_with_valid_headers(code, tail):
    raw = wire.encode_message(_header(code)) + tail
    try:
        msg = wire.decode_message(raw)
    except wire.MessageDecodeError as exc:
        assert exc.header is not None and exc.header.message_code == code
    else:
        assert msg.code == code


# Requests as ndmjob (Amanda 3.5.1, Debian 12) sent them to our server for `ndmjob -q -D
# 127.0.0.1:PORT/4t,ndmp,s3cret-pw`, captured by a TCP proxy (record marks stripped): an independent
# XDR encoder (rpcgen) against our decoder, byte for byte.
NDMJOB_GOLDEN = [
    ("CONNECT_OPEN", "000000016b07a9ef0000000000000900000000000000000000000004"),
    ("CONNECT_CLIENT_AUTH", "000000026b07a9ef0000000000000901000000000000000000000001000000046e646d70"
                            "000000097333637265742d7077000000"),
    ("CONFIG_GET_HOST_INFO", "000000036b07a9ef00000000000001000000000000000000"),
    ("CONFIG_GET_SERVER_INFO", "000000046b07a9ef00000000000001080000000000000000"),
    ("CONFIG_GET_CONNECTION_TYPE", "000000056b07a9ef00000000000001020000000000000000"),
    ("CONFIG_GET_BUTYPE_INFO", "000000066b07a9ef00000000000001040000000000000000"),
    ("CONFIG_GET_FS_INFO", "000000076b07a9ef00000000000001050000000000000000"),
]


@pytest.mark.parametrize("name,hexbytes", NDMJOB_GOLDEN, ids=[g[0] for g in NDMJOB_GOLDEN])
def test_golden_bytes_captured_from_ndmjob_decode_and_reencode_identically(name, hexbytes):
    raw = bytes.fromhex(hexbytes)
    msg = wire.decode_message(raw)
    assert msg.name == name and not msg.is_reply and msg.header.error_code == 0
    assert msg.header.sequence == NDMJOB_GOLDEN.index((name, hexbytes)) + 1
    assert wire.encode_message(msg.header, msg.body) == raw
    if name == "CONNECT_OPEN":
        assert msg.body.protocol_version == 4
    if name == "CONNECT_CLIENT_AUTH":
        auth_type, text = msg.body.auth_data
        assert auth_type == c.AuthType.TEXT and (text.auth_id, text.auth_password) == ("ndmp", "s3cret-pw")
