"""MTF 1.00a declarations (spec ``mtf.md`` §7): one ``construct`` declaration per structure serves
both parse and build; header checksums are computed on build and verified on parse.

All integers little-endian; strings UTF-16LE (string type 2) addressed by ``MTF_TAPE_ADDRESS``
(size, offset from the DBLK start); dates are ``MTF_DATE_TIME`` (5 bytes, big-endian bit packing).
"""

from __future__ import annotations

import datetime as _dt
import struct
import zlib

from construct import (
    Adapter,
    BitsInteger,
    BitStruct,
    Bytes,
    Checksum,
    Int8sl,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    Padding,
    RawCopy,
    Struct,
    this,
)

# --- sizes and constants (§7.1, §7.3, §7.4) ---------------------------------------------------

DB_HDR_SIZE = 52
STREAM_HDR_SIZE = 22
DEFAULT_FLB = 1024
STRING_TYPE_UTF16 = 2
OS_ID_WINDOWS_NT = 14

# Block attributes (common, low 16 bits; type specific, high 16 bits) - §7.3.
MTF_CONTINUATION = 0x1
MTF_COMPRESSION = 0x4
MTF_EOS_AT_EOM = 0x8
MTF_SET_MAP_EXISTS = 0x10000
MTF_FDD_ALLOWED = 0x20000
MTF_END_OF_FAMILY = 0x20000  # ESET
MTF_ABORTED_SET = 0x40000  # ESET
MTF_NO_ESET_PBA = 0x10000  # EOTM
MTF_INVALID_ESET_PBA = 0x20000  # EOTM

TAPE_SOFT_FILEMARK_BIT = 0x1
TAPE_MEDIA_LABEL_BIT = 0x2

SSET_NORMAL = 0x4
SSET_COPY = 0x2
SSET_DIFFERENTIAL = 0x8
SSET_INCREMENTAL = 0x10

VOLB_NON_VOLUME_BIT = 0x2
VOLB_DEV_VEND_SPEC_BIT = 0x20

DIRB_PATH_IN_STREAM_BIT = 0x20000
FILE_NAME_IN_STREAM_BIT = 0x20000
FILE_CORRUPT_BIT = 0x40000

# Stream media-format attributes - §7.4.
STREAM_CONTINUE = 0x1
STREAM_VARIABLE = 0x2
STREAM_VAR_END = 0x4
STREAM_CHECKSUMED = 0x20

DBLK_TYPES = (b"TAPE", b"SSET", b"VOLB", b"DIRB", b"FILE", b"CFIL", b"ESPB", b"ESET", b"EOTM", b"SFMB")
STANDARD_STREAMS = (
    b"STAN", b"CSUM", b"SPAD", b"PNAM", b"FNAM", b"CRPT", b"SPAR", b"TSMP", b"TFDD", b"MAP2",
    b"FDD2", b"NACL", b"NTEA", b"ADAT", b"NTED", b"NTQU", b"NTPR", b"NTRP", b"NTOI",
)
# Stream IDs seen in third-party media (SQL Server samples): never DBLK types when resyncing.
FOREIGN_STREAMS = (b"RAID", b"APAD", b"MQCI", b"MQDA", b"MQTL", b"OTCP")

# Our vendor profile (decision record: docs/format.md "Vendor ID and vendor streams").
VENDOR_ID = 0x6D74  # "mt" - unregistered, fixed
SOFTWARE_NAME = "mailtape"
XSHA = b"XSHA"  # SHA-256 (32 bytes) of the preceding STAN data
XCRC = b"XCRC"  # CRC-32 of this DBLK's bytes [0, Offset To First Event): protects names/ids
XMET = b"XMET"  # UTF-8 JSON metadata attached to a VOLB (backup metadata)
XSPN = b"XSPN"  # ESET: digests of files whose trailing streams a medium change dropped
VENDOR_STREAMS = (XSHA, XCRC, XMET, XSPN)
KNOWN_STREAMS = STANDARD_STREAMS + FOREIGN_STREAMS + VENDOR_STREAMS


def xor16(data) -> int:
    """MTF header checksum: XOR of the little-endian 16-bit words (§7.3)."""
    words = struct.unpack(f"<{len(data) // 2}H", data)
    acc = 0
    for w in words:
        acc ^= w
    return acc


def align(value: int, unit: int) -> int:
    return -(-value // unit) * unit


# --- MTF_DATE_TIME (§7.1) ---------------------------------------------------------------------

_DateBits = BitStruct(
    "year" / BitsInteger(14), "month" / BitsInteger(4), "day" / BitsInteger(5),
    "hour" / BitsInteger(5), "minute" / BitsInteger(6), "second" / BitsInteger(6),
)


class _DateAdapter(Adapter):
    """datetime (naive, local) <-> MTF_DATE_TIME; all-zero means unknown (None)."""

    def _decode(self, obj, context, path):
        if obj.year == 0 and obj.month == 0 and obj.day == 0:
            return None
        try:
            return _dt.datetime(obj.year, obj.month, obj.day, obj.hour, obj.minute, obj.second)
        except ValueError:
            return None  # damaged or nonsensical date: unknown rather than a crash

    def _encode(self, obj, context, path):
        if obj is None:
            return dict(year=0, month=0, day=0, hour=0, minute=0, second=0)
        return dict(year=obj.year, month=obj.month, day=obj.day, hour=obj.hour,
                    minute=obj.minute, second=obj.second)


DateTime = _DateAdapter(_DateBits)

# --- common block header and stream header (§7.3, §7.4) ---------------------------------------

TapeAddress = Struct("size" / Int16ul, "offset" / Int16ul)

DbHdrBody = Struct(
    "type" / Bytes(4), "attr" / Int32ul, "first_event" / Int16ul, "os_id" / Int8ul,
    "os_ver" / Int8ul, "displayable_size" / Int64ul, "fla" / Int64ul, "mbc_reserved" / Int16ul,
    Padding(6), "cbid" / Int32ul, Padding(4), "os_data" / TapeAddress, "string_type" / Int8ul,
    Padding(1),
)
DbHdr = Struct("body" / RawCopy(DbHdrBody), "checksum" / Checksum(Int16ul, xor16, this.body.data))

StreamHdrBody = Struct(
    "id" / Bytes(4), "fs_attr" / Int16ul, "media_attr" / Int16ul, "length" / Int64ul,
    "enc_alg" / Int16ul, "comp_alg" / Int16ul,
)
StreamHdr = Struct("body" / RawCopy(StreamHdrBody), "checksum" / Checksum(Int16ul, xor16, this.body.data))

# --- DBLK-specific parts, starting at offset 52 (§7.5-§7.8) -----------------------------------

TapeFixed = Struct(
    "family_id" / Int32ul, "tape_attr" / Int32ul, "sequence" / Int16ul, "pw_alg" / Int16ul,
    "sfm_size" / Int16ul, "mbc_type" / Int16ul, "media_name" / TapeAddress,
    "media_label" / TapeAddress, "media_password" / TapeAddress, "software_name" / TapeAddress,
    "flb_size" / Int16ul, "vendor_id" / Int16ul, "media_date" / DateTime, "major_version" / Int8ul,
)  # 94 - 52 = 42 bytes
SsetFixed = Struct(
    "sset_attr" / Int32ul, "pw_alg" / Int16ul, "comp_alg" / Int16ul, "vendor_id" / Int16ul,
    "set_number" / Int16ul, "name" / TapeAddress, "description" / TapeAddress,
    "password" / TapeAddress, "user" / TapeAddress, "pba" / Int64ul, "write_date" / DateTime,
    "sw_major" / Int8ul, "sw_minor" / Int8ul, "time_zone" / Int8sl, "mtf_minor" / Int8ul,
    "catalog_version" / Int8ul,
)  # 98 - 52 = 46
VolbFixed = Struct(
    "volb_attr" / Int32ul, "device" / TapeAddress, "volume" / TapeAddress,
    "machine" / TapeAddress, "write_date" / DateTime,
)  # 73 - 52 = 21
DirbFixed = Struct(
    "dirb_attr" / Int32ul, "modified" / DateTime, "created" / DateTime, "backup" / DateTime,
    "accessed" / DateTime, "dir_id" / Int32ul, "name" / TapeAddress,
)  # 84 - 52 = 32
FileFixed = Struct(
    "file_attr" / Int32ul, "modified" / DateTime, "created" / DateTime, "backup" / DateTime,
    "accessed" / DateTime, "dir_id" / Int32ul, "file_id" / Int32ul, "name" / TapeAddress,
)  # 88 - 52 = 36
CfilFixed = Struct(
    "cfil_attr" / Int32ul, Padding(8), "stream_offset" / Int64ul, "stream_number" / Int16ul,
)  # 74 - 52 = 22
EsetFixed = Struct(
    "eset_attr" / Int32ul, "corrupt_files" / Int32ul, "mbc_fdd_pba" / Int64ul,
    "mbc_tsmp_pba" / Int64ul, "fdd_sequence" / Int16ul, "set_number" / Int16ul,
    "write_date" / DateTime,
)  # 85 - 52 = 33
EotmFixed = Struct("last_eset_pba" / Int64ul)  # 60 - 52 = 8
SfmbFixed = Struct("entries" / Int32ul, "used" / Int32ul)  # array of UINT64 PBAs follows at 60
EspbFixed = Struct()

FIXED_PARTS = {
    b"TAPE": TapeFixed, b"SSET": SsetFixed, b"VOLB": VolbFixed, b"DIRB": DirbFixed,
    b"FILE": FileFixed, b"CFIL": CfilFixed, b"ESET": EsetFixed, b"EOTM": EotmFixed,
    b"SFMB": SfmbFixed, b"ESPB": EspbFixed,
}
STRING_FIELDS = {
    b"TAPE": ("media_name", "media_label", "media_password", "software_name"),
    b"SSET": ("name", "description", "password", "user"),
    b"VOLB": ("device", "volume", "machine"),
    b"DIRB": ("name",),
    b"FILE": ("name",),
}

# --- strings ----------------------------------------------------------------------------------


def encode_string(text: str, string_type: int = STRING_TYPE_UTF16) -> bytes:
    return text.encode("utf-16-le" if string_type == STRING_TYPE_UTF16 else "latin-1")


def decode_string(raw: bytes, string_type: int) -> str:
    """Decode an MTF string; cut at the first NUL like go-mtf (SQL Server counts a NUL)."""
    if string_type == STRING_TYPE_UTF16:
        text = bytes(raw[: len(raw) - len(raw) % 2]).decode("utf-16-le", errors="replace")
    else:
        text = bytes(raw).decode("latin-1")
    return text.split("\0", 1)[0]


def encode_dir_path(components: list[str]) -> bytes:
    """DIRB name: components separated and terminated by NUL; the root is a single NUL (§7.7)."""
    return encode_string("".join(c + "\0" for c in components) or "\0")


def decode_dir_path(raw: bytes, string_type: int) -> list[str]:
    enc = "utf-16-le" if string_type == STRING_TYPE_UTF16 else "latin-1"
    raw = bytes(raw[: len(raw) - len(raw) % 2]) if string_type == STRING_TYPE_UTF16 else bytes(raw)
    return [c for c in raw.decode(enc, errors="replace").split("\0") if c]


def read_string(dblk, address, string_type: int) -> str:
    if address.size == 0:
        return ""
    return decode_string(dblk[address.offset: address.offset + address.size], string_type)


# --- building ---------------------------------------------------------------------------------


# Hot-path builders: byte-identical to DbHdr / StreamHdr and the FILE / DIRB fixed parts
# (tests/format/test_structs.py checks it), ~50x faster than construct's interpreter, which
# matters once per object and stream.
_DB_HDR_BODY = struct.Struct("<4sIHBBQQH6xI4xHHBx")
_STREAM_HDR_BODY = struct.Struct("<4sHHQHH")


_FILE_FIXED = struct.Struct("<I5s5s5s5sIIHH")
_DIRB_FIXED = struct.Struct("<I5s5s5s5sIHH")


def date_bytes(value: _dt.datetime | None) -> bytes:
    """:data:`DateTime` built by hand (a packed 40-bit big-endian field; None: all zero)."""
    if value is None:
        return bytes(5)
    bits = (value.year << 26 | value.month << 22 | value.day << 17 | value.hour << 12
            | value.minute << 6 | value.second)
    return bits.to_bytes(5, "big")


def _file_fixed(f: dict) -> bytes:
    return _FILE_FIXED.pack(f["file_attr"], date_bytes(f["modified"]), date_bytes(f["created"]),
                            date_bytes(f["backup"]), date_bytes(f["accessed"]), f["dir_id"], f["file_id"],
                            f["name"]["size"], f["name"]["offset"])


def _dirb_fixed(f: dict) -> bytes:
    return _DIRB_FIXED.pack(f["dirb_attr"], date_bytes(f["modified"]), date_bytes(f["created"]),
                            date_bytes(f["backup"]), date_bytes(f["accessed"]), f["dir_id"],
                            f["name"]["size"], f["name"]["offset"])


def file_id_of(dblk, offset: int = 0) -> int:
    """The FILE ID of the FILE DBLK at ``offset`` (fixed part: attributes, four dates, DIRB ID,
    then FILE ID), without parsing the rest; the media writer notes one per object."""
    return struct.unpack_from("<I", dblk, offset + DB_HDR_SIZE + _FILE_FIXED.size - 8)[0]


_FAST_FIXED = {b"FILE": _file_fixed, b"DIRB": _dirb_fixed}
"""Fixed parts written once per object or folder (a mailbox set has one per message): the
construct build of their four dates costs ~90 us each, these ~2 us."""
_FIXED_SIZES = {kind: part.sizeof() for kind, part in FIXED_PARTS.items()}


def build_header(kind: bytes, *, attr: int = 0, first_event: int, fla: int = 0, cbid: int = 0,
                 displayable_size: int = 0, os_id: int = OS_ID_WINDOWS_NT, os_ver: int = 1,
                 string_type: int = STRING_TYPE_UTF16) -> bytes:
    """The common header of :data:`DbHdr`, checksum included."""
    body = _DB_HDR_BODY.pack(kind, attr, first_event, os_id, os_ver, displayable_size, fla, 0,
                             cbid, 0, 0, string_type)
    return body + struct.pack("<H", xor16(body))


def build_stream_header(stream_id: bytes, length: int, *, fs_attr: int = 0, media_attr: int = 0) -> bytes:
    """A :data:`StreamHdr`, checksum included."""
    body = _STREAM_HDR_BODY.pack(stream_id, fs_attr, media_attr, length, 0, 0)
    return body + struct.pack("<H", xor16(body))


def stream(stream_id: bytes, payload: bytes, **attrs) -> bytes:
    """A whole small stream: header + payload (the caller 4-aligns the next one)."""
    return build_stream_header(stream_id, len(payload), **attrs) + payload


def padding_to(offset: int, boundary: int) -> bytes:
    """Zero fill to 4 bytes, then a SPAD stream ending exactly on a multiple of ``boundary``.

    ``offset`` is the position (relative to any origin aligned to ``boundary``) where the
    padding begins. If the SPAD header does not fit before the boundary, it pads to the next one.
    """
    start = align(offset, 4)
    end = align(start + STREAM_HDR_SIZE, boundary)
    return bytes(start - offset) + build_stream_header(b"SPAD", end - start - STREAM_HDR_SIZE) + bytes(
        end - start - STREAM_HDR_SIZE)


def build_dblk_prefix(kind: bytes, fixed: dict, strings: dict[str, bytes] | None = None, *,
                      attr: int = 0, fla: int = 0, cbid: int = 0, displayable_size: int = 0,
                      extra_fixed: bytes = b"", min_first_event: int = 0) -> bytes:
    """Common header + fixed part + string area, padded so streams start 4-aligned.

    ``strings`` maps the TAPE_ADDRESS field names to encoded bytes; their addresses are filled in.
    """
    build = _FAST_FIXED.get(kind) or FIXED_PARTS[kind].build
    fixed = dict(fixed)
    strings = strings or {}
    fixed_size = _FIXED_SIZES[kind] + len(extra_fixed)
    offset = DB_HDR_SIZE + fixed_size
    area = bytearray()
    for field in STRING_FIELDS.get(kind, ()):
        raw = strings.get(field, b"")
        fixed[field] = dict(size=len(raw), offset=offset + len(area) if raw else 0)
        area += raw
    body = build(fixed) + extra_fixed + area
    first_event = max(align(DB_HDR_SIZE + len(body), 4), min_first_event)
    header = build_header(kind, attr=attr, first_event=first_event, fla=fla, cbid=cbid,
                          displayable_size=displayable_size)
    blob = header + body
    return blob + bytes(first_event - len(blob))


def xcrc_value(prefix) -> int:
    """CRC-32 of a DBLK's bytes before its first stream; an SSET's PBA field (filled in by the
    media writer after the agent computed the CRC) counts as zero."""
    prefix = bytes(prefix)
    if prefix[:4] == b"SSET" and len(prefix) >= 88:
        prefix = prefix[:80] + bytes(8) + prefix[88:]
    return zlib.crc32(prefix)


def crc_stream(prefix: bytes) -> bytes:
    """The XCRC vendor stream protecting a DBLK's header, fixed part and strings."""
    return stream(XCRC, struct.pack("<I", xcrc_value(prefix)))


def build_small_dblk(kind: bytes, fixed: dict, strings: dict[str, bytes] | None = None, *,
                     flb: int, boundary: int | None = None, streams: list[bytes] = (),
                     with_crc: bool = True, **header) -> bytes:
    """A complete non-FILE DBLK: prefix, streams, XCRC, SPAD up to ``boundary`` (default FLB)."""
    prefix = build_dblk_prefix(kind, fixed, strings, **header)
    out = bytearray(prefix)
    for s in list(streams) + ([crc_stream(prefix)] if with_crc else []):
        out += bytes(align(len(out), 4) - len(out)) + s
    out += padding_to(len(out), boundary or flb)
    return bytes(out)


def parse_header(data, offset: int = 0):
    """Parse + verify a common header (raises construct ChecksumError / StreamError)."""
    return DbHdr.parse(bytes(data[offset: offset + DB_HDR_SIZE])).body.value


def header_fields(data, offset: int = 0):
    """Fast unchecked decode of the common header fields (type, attr, first_event, fla, cbid...)."""
    (kind, attr, first_event, os_id, os_ver, size, fla, _mbc, cbid, os_size, os_off, stype,
     csum) = struct.unpack_from("<4sIHBBQQH6xI4xHHBxH", data, offset)
    return kind, attr, first_event, size, fla, cbid, stype, csum


def header_ok(data, offset: int = 0) -> bool:
    return xor16(data[offset: offset + 50]) == struct.unpack_from("<H", data, offset + 50)[0]


def stream_header_fields(data, offset: int = 0):
    """(id, fs_attr, media_attr, length, checksum_ok) of a stream header, unchecked decode."""
    sid, fs_attr, media_attr, length = struct.unpack_from("<4sHHQ", data, offset)
    ok = xor16(data[offset: offset + 20]) == struct.unpack_from("<H", data, offset + 20)[0]
    return sid, fs_attr, media_attr, length, ok
