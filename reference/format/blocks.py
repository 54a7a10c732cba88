"""Whole DBLKs the media writer makes itself: TAPE, EOTM, ESET (+XSPN), continuation copies."""

from __future__ import annotations

import datetime as _dt
import struct
from dataclasses import dataclass

from . import mtf_structs as m
from .writer import EsetInfo


@dataclass
class MediaIdentity:
    family_id: int
    media_name: str = ""
    label: str = ""
    date: _dt.datetime | None = None
    software: str = m.SOFTWARE_NAME


def media_label(barcode: str, date: _dt.datetime, family_id: int) -> str:
    """The ``MTF Media Label|1.0|...`` format NTBackup wrote (spec §7.5)."""
    stamp = date.strftime("%Y/%m/%d.%H:%M:%S")
    return f"MTF Media Label|1.0|mailtape|mailtape|{stamp}|{barcode}|1|{{{family_id:08X}}}||"


def build_tape(ident: MediaIdentity, sequence: int, *, block_size: int, flb: int,
               soft_filemarks: bool, continuation: bool) -> bytes:
    def nul(text: str) -> bytes:  # profile rule 9: count one UTF-16 NUL for file(1)
        return m.encode_string(text + "\0") if text else b""

    attr = (m.TAPE_SOFT_FILEMARK_BIT if soft_filemarks else 0) | (m.TAPE_MEDIA_LABEL_BIT if ident.label else 0)
    fixed = dict(family_id=ident.family_id, tape_attr=attr, sequence=sequence, pw_alg=0,
                 sfm_size=block_size // 512, mbc_type=0, flb_size=flb, vendor_id=m.VENDOR_ID,
                 media_date=ident.date, major_version=1)
    strings = dict(media_name=nul(ident.media_name), media_label=nul(ident.label),
                   software_name=nul(ident.software))
    return m.build_small_dblk(b"TAPE", fixed, strings, flb=flb, boundary=block_size,
                              attr=m.MTF_CONTINUATION if continuation else 0)


def build_eotm(last_eset_pba: int | None, *, block_size: int, flb: int) -> bytes:
    attr = m.MTF_NO_ESET_PBA if last_eset_pba is None else 0
    return m.build_small_dblk(b"EOTM", dict(last_eset_pba=last_eset_pba or 0), flb=flb,
                              boundary=block_size, attr=attr)


def build_eset(info: EsetInfo, cbid: int, spanned: list[bytes], *, block_size: int, flb: int,
               corrupt: int) -> bytes:
    streams = [m.stream(m.XSPN, b"".join(spanned))] if spanned else []
    return m.build_small_dblk(
        b"ESET", dict(eset_attr=info.sset_attr, corrupt_files=corrupt, mbc_fdd_pba=0,
                      mbc_tsmp_pba=0, fdd_sequence=0, set_number=info.set_number,
                      write_date=info.write_date),
        flb=flb, boundary=block_size, streams=streams, cbid=cbid)


XSPN_ENTRY = struct.Struct("<III32s")
"""XSPN entry: file ID, CSUM value, XCRC value, SHA-256 (zeros when absent)."""


def spad_exact(start: int, end: int) -> bytes:
    """Zero fill to 4 bytes from ``start`` then a SPAD stream ending exactly at ``end``."""
    header_at = m.align(start, 4)
    length = end - header_at - m.STREAM_HDR_SIZE
    if length < 0:
        raise ValueError("no room for a SPAD stream")
    return bytes(header_at - start) + m.build_stream_header(b"SPAD", length) + bytes(length)


def retag(prefix: bytes, *, fla: int, attr_or: int = 0, attr_and: int = 0xFFFFFFFF) -> bytearray:
    """A copy of a DBLK prefix with new FLA / block attributes and a fresh header checksum."""
    out = bytearray(prefix)
    attr = (struct.unpack_from("<I", out, 4)[0] & attr_and) | attr_or
    struct.pack_into("<I", out, 4, attr)
    struct.pack_into("<Q", out, 20, fla)
    struct.pack_into("<H", out, 50, m.xor16(out[:50]))
    return out
