"""Declarations (spec mtf.md §7.1, §7.3, §7.4): checksums, MTF_DATE_TIME, strings, CSUM."""

import datetime as dt
import struct

import pytest
from construct import ChecksumError
from hypothesis import given
from hypothesis import strategies as st

from reference.format import mtf_structs as m
from reference.format.xor32 import Xor32, xor32


def test_7_3_header_checksum_computed_on_build_and_verified_on_parse():
    raw = m.build_header(b"FILE", first_event=92, fla=7, cbid=3, displayable_size=5)
    assert len(raw) == m.DB_HDR_SIZE
    assert struct.unpack_from("<H", raw, 50)[0] == m.xor16(raw[:50])
    assert m.parse_header(raw).cbid == 3
    bad = bytearray(raw)
    bad[20] ^= 1
    with pytest.raises(ChecksumError):
        m.parse_header(bad)


def test_7_4_stream_header_checksum_and_the_eleven_words_xor_to_zero():
    raw = m.build_stream_header(b"STAN", 12345, media_attr=m.STREAM_CHECKSUMED)
    assert len(raw) == m.STREAM_HDR_SIZE
    assert m.xor16(raw) == 0  # why a window of stream headers passes the DBLK test (README)
    sid, _fs, media, length, ok = m.stream_header_fields(raw)
    assert (sid, media, length, ok) == (b"STAN", m.STREAM_CHECKSUMED, 12345, True)
    with pytest.raises(ChecksumError):
        m.StreamHdr.parse(raw[:8] + b"\x01" + raw[9:])


def test_7_1_fixed_part_sizes_match_the_offset_tables():
    sizes = {k: s.sizeof() + 52 for k, s in m.FIXED_PARTS.items()}
    assert sizes == {b"TAPE": 94, b"SSET": 98, b"VOLB": 73, b"DIRB": 84, b"FILE": 88, b"CFIL": 74,
                     b"ESET": 85, b"EOTM": 60, b"SFMB": 60, b"ESPB": 52}


@given(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)))
def test_7_1_date_time_round_trip(when):
    when = when.replace(microsecond=0)
    raw = m.DateTime.build(when)
    assert len(raw) == 5
    assert m.DateTime.parse(raw) == when


def test_7_1_date_time_bit_layout_and_unknown():
    assert m.DateTime.parse(bytes(5)) is None
    raw = m.DateTime.build(dt.datetime(2022, 10, 19, 14, 36, 2))
    bits = int.from_bytes(raw, "big")
    assert bits >> 26 == 2022 and (bits >> 22) & 15 == 10 and bits & 63 == 2


def test_7_1_strings_and_dirb_paths():
    assert m.encode_string("ab") == b"a\0b\0"
    assert m.decode_string("Microsoft SQL Server\0".encode("utf-16-le"), 2) == "Microsoft SQL Server"
    assert m.encode_dir_path([]) == b"\0\0"
    raw = m.encode_dir_path(["First Storage Group", "Mailbox Store"])
    assert m.decode_dir_path(raw, 2) == ["First Storage Group", "Mailbox Store"]


def test_7_1_spad_ends_on_the_boundary():
    for offset in (88, 1000, 1001, 1002, 1020, 1023):
        pad = m.padding_to(offset, 1024)
        assert (offset + len(pad)) % 1024 == 0
        assert any(pad)  # a real SPAD header, not just zeros


def _xor32_reference(data: bytes) -> int:
    data = data + bytes(-len(data) % 4)
    acc = 0
    for (w,) in struct.iter_unpack("<I", data):
        acc ^= w
    return acc


@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=6))
def test_7_4_csum_is_segmentation_independent(data, cuts):
    x = Xor32()
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    for a, b in zip(points, points[1:]):
        x.update(memoryview(data)[a:b])
    assert x.value() == _xor32_reference(data) == xor32(data)


@given(st.sampled_from(m.DBLK_TYPES), st.integers(0, 2**32 - 1), st.integers(52, 65532),
       st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1))
def test_fast_header_builder_is_byte_identical_to_the_construct_declaration(kind, attr, fe, size, fla, cbid):
    body = dict(type=kind, attr=attr, first_event=fe, os_id=14, os_ver=1, displayable_size=size,
                fla=fla, mbc_reserved=0, cbid=cbid, os_data=dict(size=0, offset=0), string_type=2)
    assert m.build_header(kind, attr=attr, first_event=fe, fla=fla, cbid=cbid,
                          displayable_size=size) == m.DbHdr.build(dict(body=dict(value=body)))


@given(st.binary(min_size=4, max_size=4), st.integers(0, 2**64 - 1), st.integers(0, 65535), st.integers(0, 65535))
def test_fast_stream_header_builder_is_byte_identical_to_the_construct_declaration(sid, length, fs, media):
    body = dict(id=sid, fs_attr=fs, media_attr=media, length=length, enc_alg=0, comp_alg=0)
    assert m.build_stream_header(sid, length, fs_attr=fs, media_attr=media) == \
        m.StreamHdr.build(dict(body=dict(value=body)))


_dates = st.one_of(st.none(), st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31))
                   .map(lambda d: d.replace(microsecond=0)))
_u32 = st.integers(0, 2**32 - 1)
_u16 = st.integers(0, 65535)


@given(st.sampled_from([b"FILE", b"DIRB"]), _u32, _dates, _dates, _dates, _dates, _u32, _u32, _u16, _u16)
def test_fast_fixed_part_builders_are_byte_identical_to_the_construct_declarations(
        kind, attr, modified, created, backup, accessed, dir_id, file_id, size, offset):
    fixed = dict(modified=modified, created=created, backup=backup, accessed=accessed, dir_id=dir_id,
                 name=dict(size=size, offset=offset))
    if kind == b"FILE":
        fixed.update(file_attr=attr, file_id=file_id)
    else:
        fixed.update(dirb_attr=attr)
    assert m._FAST_FIXED[kind](fixed) == m.FIXED_PARTS[kind].build(fixed)
    if kind == b"FILE":
        assert m.file_id_of(bytes(m.DB_HDR_SIZE) + m._FAST_FIXED[kind](fixed)) == file_id
    assert m.date_bytes(modified) == m.DateTime.build(modified)
