"""The XDR combinators and the NDMP v4 message declarations (spec §2 "XDR rules", §4)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndmp_strategies import for_type
from reference.ndmp import constants as c
from reference.ndmp import messages as m
from reference.ndmp import xdr


def test_spec2_integers_are_4_bytes_big_endian_and_u_quad_is_high_then_low():
    assert xdr.encode(xdr.UInt(), 0x01020304) == b"\x01\x02\x03\x04"
    assert xdr.encode(xdr.UShort(), 10000) == b"\x00\x00\x27\x10"
    assert xdr.encode(xdr.Bool(), True) == b"\x00\x00\x00\x01"
    assert xdr.encode(xdr.UQuad(), (5 << 32) | 7) == b"\x00\x00\x00\x05\x00\x00\x00\x07"
    assert xdr.encode(xdr.Int(), -1) == b"\xff\xff\xff\xff"


def test_spec2_strings_and_opaques_are_length_then_bytes_padded_to_4():
    assert xdr.encode(xdr.String(), "tar") == b"\x00\x00\x00\x03tar\x00"
    assert xdr.encode(xdr.String(), "") == b"\x00\x00\x00\x00"
    assert xdr.encode(xdr.Opaque(), b"abcd") == b"\x00\x00\x00\x04abcd"
    assert xdr.encode(xdr.Opaque(fixed=3), b"xyz") == b"xyz\x00"  # fixed: no length


def test_spec2_tcp_addr_union_is_discriminant_then_a_list():
    addr = (c.AddrType.TCP, [m.TcpAddr(0x7F000001, 10000, [m.Pval("K", "v")])])
    raw = xdr.encode(m.Addr, addr)
    assert raw == (struct.pack(">III", 1, 1, 0x7F000001) + struct.pack(">I", 10000) + struct.pack(">I", 1)
                   + b"\x00\x00\x00\x01K\x00\x00\x00" + b"\x00\x00\x00\x01v\x00\x00\x00")
    assert xdr.decode(m.Addr, raw) == addr
    assert xdr.encode(m.Addr, (c.AddrType.LOCAL, None)) == b"\x00\x00\x00\x00"


def test_header_layout_is_six_u_longs():
    h = m.Header(sequence=1, time_stamp=2, message_type=c.MessageType.REPLY,
                 message_code=c.Message.CONNECT_OPEN, reply_sequence=9, error_code=c.Error.SEQUENCE_NUM_ERR)
    assert xdr.encode(m.Header, h) == struct.pack(">6I", 1, 2, 1, 0x900, 9, 24)


def test_spec2_message_and_error_codes_match_the_v4_table():
    assert c.Message.CONNECT_OPEN == 0x900 and c.Message.CONFIG_GET_BUTYPE_INFO == 0x104
    assert c.Message.DATA_START_BACKUP == 0x401 and c.Message.DATA_CONNECT == 0x40A
    assert c.Message.NOTIFY_DATA_READ == 0x505 and c.Message.LOG_MESSAGE == 0x603
    assert c.Message.FH_ADD_FILE == 0x703 and c.Message.MOVER_CONNECT == 0xA09
    assert c.Error.ILLEGAL_STATE_ERR == 19 and c.Error.UNDEFINED_ERR == 20
    assert c.Error.SEQUENCE_NUM_ERR == 24 and c.Error.EXT_DN_ILLEGAL == 30
    assert c.Message.MAILTAPE_DATA_COMMIT >= c.EXT_PROPRIETARY_BASE


def test_every_message_in_the_brief_is_declared():
    names = {m.message_name(code) for code in m.MESSAGES}
    wanted = """CONNECT_OPEN CONNECT_CLIENT_AUTH CONNECT_CLOSE CONFIG_GET_HOST_INFO CONFIG_GET_SERVER_INFO
    CONFIG_GET_CONNECTION_TYPE CONFIG_GET_AUTH_ATTR CONFIG_GET_BUTYPE_INFO CONFIG_GET_FS_INFO
    DATA_START_BACKUP DATA_START_RECOVER DATA_ABORT DATA_STOP DATA_GET_STATE DATA_LISTEN DATA_CONNECT
    DATA_GET_ENV MOVER_LISTEN MOVER_CONNECT MOVER_SET_WINDOW MOVER_SET_RECORD_SIZE MOVER_CONTINUE
    MOVER_ABORT MOVER_STOP MOVER_CLOSE MOVER_READ MOVER_GET_STATE TAPE_OPEN TAPE_CLOSE TAPE_GET_STATE
    TAPE_MTIO TAPE_READ TAPE_WRITE NOTIFY_DATA_HALTED NOTIFY_MOVER_HALTED NOTIFY_MOVER_PAUSED
    NOTIFY_DATA_READ NOTIFY_CONNECTION_STATUS LOG_MESSAGE LOG_FILE FH_ADD_FILE""".split()
    assert set(wanted) <= names
    assert all(m.MESSAGES[int(code)].is_post for code in c.Message if 0x500 <= code < 0x800)


def test_mover_paused_end_of_medium_round_trips():
    post = m.NotifyMoverPaused(c.MoverPauseReason.EOM, 123456789012)
    raw = xdr.encode(m.NotifyMoverPaused, post)
    assert raw[:4] == b"\x00\x00\x00\x01"
    assert xdr.decode(m.NotifyMoverPaused, raw) == post


def test_unknown_enum_values_decode_as_plain_ints():
    raw = struct.pack(">I", 999)
    assert xdr.decode(m.NotifyDataHalted, raw).reason == 999


def test_hostile_lengths_are_refused_before_allocating():
    with pytest.raises(xdr.XdrError, match="needs"):
        xdr.decode(xdr.Opaque(), b"\xff\xff\xff\xf0abcd")
    with pytest.raises(xdr.XdrError, match="cannot fit"):
        xdr.decode(m.ConfigGetButypeInfoReply, struct.pack(">II", 0, 0x7FFFFFFF))
    with pytest.raises(xdr.XdrError, match="maximum"):
        xdr.decode(xdr.Opaque(maximum=4), b"\x00\x00\x00\x08" + b"x" * 8)


def test_trailing_bytes_and_bad_values_are_named():
    with pytest.raises(xdr.XdrError, match="unexpected bytes"):
        xdr.decode(m.ErrorReply, b"\x00" * 8)
    with pytest.raises(xdr.XdrError, match="16 bits"):
        xdr.decode(m.ConnectOpenRequest, struct.pack(">I", 0x10000))
    with pytest.raises(xdr.XdrError, match="no arm"):
        xdr.decode(m.AuthData, struct.pack(">I", 7))
    with pytest.raises(xdr.XdrError, match="ConnectOpenRequest.protocol_version"):
        xdr.encode(m.ConnectOpenRequest, m.ConnectOpenRequest(70000))


def test_credentials_never_appear_in_reprs():
    text = m.ConnectClientAuthRequest((c.AuthType.TEXT, m.AuthText("ndmp", "hunter2")))
    md5 = m.AuthMd5("ndmp", b"\x01" * 16)
    assert "hunter2" not in repr(text) and "hunter2" not in repr(text.auth_data[1])
    assert "\\x01" not in repr(md5)


_BODY_TYPES = sorted({spec.request for spec in m.MESSAGES.values() if spec.request}
                     | {spec.reply for spec in m.MESSAGES.values() if spec.reply}, key=lambda t: t.__name__)


@pytest.mark.parametrize("body_type", _BODY_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=15)
@given(data=st.data())
def test_every_body_round_trips(body_type, data):
    value = data.draw(for_type(body_type))
    raw = xdr.encode(body_type, value)
    assert len(raw) % 4 == 0
    assert xdr.decode(body_type, raw) == value


@pytest.mark.parametrize("body_type", _BODY_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=15)
@given(raw=st.binary(max_size=96))
def test_decoder_fuzz_only_ever_raises_xdr_error(body_type, raw):
    try:
        value = xdr.decode(body_type, raw)
    except xdr.XdrError:
        return
    assert xdr.encode(body_type, value) == raw  # whatever decodes re-encodes to the same bytes
