"""Little-endian layouts of the headers (spec §3.2-3.6). Offsets follow ESE where the spec gives
them; fields only this emulator needs live in documented spare areas (``EMU_*``)."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from .checksum import SEED, header_ok, seal_header

HEADER_BLOCK = 4096  # log / checkpoint header size, and the minimum DB header page

FILETYPE_DATABASE = 1
FILETYPE_STREAMING = 2
FILETYPE_LOG = 3
FILETYPE_CHECKPOINT = 4
FILETYPE_TRAILER = 5  # emulator choice for the PATCHHDR page (ESE gives it no file type)

DBSTATE_JUST_CREATED = 1
DBSTATE_DIRTY_SHUTDOWN = 2
DBSTATE_CLEAN_SHUTDOWN = 3
DBSTATE_NAMES = {1: "Just Created", 2: "Dirty Shutdown", 3: "Clean Shutdown", 4: "Being Converted", 5: "Force Detach"}


# ---------------------------------------------------------------------------------------------
# LOGTIME, LGPOS, SIGNATURE, BKINFO


@dataclass(frozen=True)
class LogTime:
    """``LOGTIME``: sec, min, hour, day, month, year-1900, then ms low 7 bits + UTC flag, ms high."""

    raw: bytes = bytes(8)

    @classmethod
    def from_seconds(cls, t: float) -> "LogTime":
        tm = time.gmtime(int(t))
        ms = int(round((t - int(t)) * 1000)) % 1000
        return cls(bytes([tm.tm_sec, tm.tm_min, tm.tm_hour, tm.tm_mday, tm.tm_mon, tm.tm_year - 1900,
                          (ms & 0x7F) | 0x80, (ms >> 7) & 0x07]))

    @property
    def is_zero(self) -> bool:
        return not any(self.raw)

    def __str__(self) -> str:
        if self.is_zero:
            return "00/00/1900 00:00:00"
        s, mi, h, d, mo, y = self.raw[:6]
        ms = (self.raw[6] & 0x7F) | ((self.raw[7] & 0x07) << 7)
        return f"{mo:02d}/{d:02d}/{1900 + y:04d} {h:02d}:{mi:02d}:{s:02d}.{ms:03d}"


@dataclass(frozen=True)
class LgPos:
    """``LGPOS``: (ib, isec, lGeneration) — a byte position in the log stream."""

    ib: int = 0
    isec: int = 0
    generation: int = 0

    FMT = struct.Struct("<HHi")

    def pack(self) -> bytes:
        return self.FMT.pack(self.ib, self.isec, self.generation)

    @classmethod
    def unpack(cls, b, off=0) -> "LgPos":
        return cls(*cls.FMT.unpack_from(b, off))

    @classmethod
    def at(cls, generation: int, offset: int) -> "LgPos":
        return cls(offset % 512, offset // 512, generation)

    def __str__(self) -> str:
        return f"(0x{self.generation:X},{self.isec:X},{self.ib:X})"


@dataclass(frozen=True)
class Signature:
    """``JET_SIGNATURE``: ulRandom, logtimeCreate, szComputerName[16]."""

    random: int = 0
    created: LogTime = LogTime()
    computer: str = ""

    SIZE = 28

    def pack(self) -> bytes:
        name = self.computer.encode("ascii", "replace")[:15].ljust(16, b"\0")
        return struct.pack("<I", self.random) + self.created.raw + name

    @classmethod
    def unpack(cls, b, off=0) -> "Signature":
        rnd = struct.unpack_from("<I", b, off)[0]
        created = LogTime(bytes(b[off + 4 : off + 12]))
        name = bytes(b[off + 12 : off + 28]).split(b"\0", 1)[0].decode("ascii", "replace")
        return cls(rnd, created, name)

    @property
    def is_zero(self) -> bool:
        return self.random == 0 and self.created.is_zero

    def __str__(self) -> str:
        return f"Create time:{self.created} Rand:{self.random} Computer:{self.computer}"


@dataclass(frozen=True)
class BkInfo:
    """``JET_BKINFO`` (24 bytes): lgposMark, logtimeMark, genLow, genHigh."""

    mark: LgPos = LgPos()
    time_mark: LogTime = LogTime()
    gen_low: int = 0
    gen_high: int = 0

    SIZE = 24

    def pack(self) -> bytes:
        return self.mark.pack() + self.time_mark.raw + struct.pack("<II", self.gen_low, self.gen_high)

    @classmethod
    def unpack(cls, b, off=0) -> "BkInfo":
        low, high = struct.unpack_from("<II", b, off + 16)
        return cls(LgPos.unpack(b, off), LogTime(bytes(b[off + 8 : off + 16])), low, high)

    @property
    def is_empty(self) -> bool:
        return self.gen_low == 0 and self.gen_high == 0


# ---------------------------------------------------------------------------------------------
# Database / streaming-file header (page 0 and its shadow, page 1)

DB_MAGIC = SEED
EMU_HEAP_END = 512        # u64 bytes of record heap flushed to pages
EMU_LSN_FLUSHED = 520     # u64 every logged change up to this LSN is in the pages
EMU_PGNO_LAST = 528       # u32 last page in use
EMU_FILE_INDEX = 532      # u32 0 = .edb, 1 = .stm
EMU_DB_GUID = 536         # 16 bytes, the store's GUID
EMU_DB_MAGIC = 552        # b"MTDB"


@dataclass
class DbHeader:
    version: int = 0x620
    update: int = 0x0B
    dbtime_dirtied: int = 0
    sign_db: Signature = field(default_factory=Signature)
    dbstate: int = DBSTATE_JUST_CREATED
    lgpos_consistent: LgPos = LgPos()
    time_consistent: LogTime = LogTime()
    time_attach: LogTime = LogTime()
    lgpos_attach: LgPos = LgPos()
    time_detach: LogTime = LogTime()
    lgpos_detach: LgPos = LgPos()
    dbid: int = 1
    sign_log: Signature = field(default_factory=Signature)
    full_prev: BkInfo = BkInfo()
    inc_prev: BkInfo = BkInfo()
    full_cur: BkInfo = BkInfo()
    flags: int = 0
    page_size: int = 4096
    gen_min_required: int = 0
    gen_max_required: int = 0
    snapshot_cur: BkInfo = BkInfo()
    gen_max_committed: int = 0
    copy_prev: BkInfo = BkInfo()
    diff_prev: BkInfo = BkInfo()
    heap_end: int = 0
    lsn_flushed: int = 0
    pgno_last: int = 0
    file_index: int = 0
    guid: bytes = bytes(16)
    filetype: int = FILETYPE_DATABASE
    has_copy_diff: bool = True

    def pack(self, page_size: int) -> bytearray:
        b = bytearray(page_size)
        struct.pack_into("<III", b, 4, DB_MAGIC, self.version, 0)  # +12 attrib: 0 = database
        struct.pack_into("<Q", b, 16, self.dbtime_dirtied)
        b[24:52] = self.sign_db.pack()
        struct.pack_into("<I", b, 52, self.dbstate)
        b[56:64] = self.lgpos_consistent.pack()
        b[64:72] = self.time_consistent.raw
        b[72:80] = self.time_attach.raw
        b[80:88] = self.lgpos_attach.pack()
        b[88:96] = self.time_detach.raw
        b[96:104] = self.lgpos_detach.pack()
        struct.pack_into("<I", b, 104, self.dbid)
        b[108:136] = self.sign_log.pack()
        b[136:160] = self.full_prev.pack()
        b[160:184] = self.inc_prev.pack()
        b[184:208] = self.full_cur.pack()
        struct.pack_into("<I", b, 208, self.flags)
        struct.pack_into("<I", b, 216, self.update)
        struct.pack_into("<I", b, 236, 0 if page_size == 4096 else page_size)
        struct.pack_into("<ii", b, 296, self.gen_min_required, self.gen_max_required)
        b[316:340] = self.snapshot_cur.pack()
        struct.pack_into("<i", b, 416, self.gen_max_committed)
        if self.has_copy_diff:
            b[420:444] = self.copy_prev.pack()
            b[444:468] = self.diff_prev.pack()
        struct.pack_into("<QQII", b, EMU_HEAP_END, self.heap_end, self.lsn_flushed, self.pgno_last, self.file_index)
        b[EMU_DB_GUID : EMU_DB_GUID + 16] = self.guid
        b[EMU_DB_MAGIC : EMU_DB_MAGIC + 4] = b"MTDB"
        b[667] = self.filetype
        seal_header(b)
        return b

    @classmethod
    def unpack(cls, b, has_copy_diff: bool = True) -> "DbHeader":
        if len(b) < 4096:
            raise ValueError("database header shorter than 4096 bytes")
        if struct.unpack_from("<I", b, 4)[0] != DB_MAGIC:
            raise ValueError("bad database header magic")
        if not header_ok(b):
            raise ValueError("database header checksum mismatch")
        cb = struct.unpack_from("<I", b, 236)[0] or 4096
        h = cls(
            version=struct.unpack_from("<I", b, 8)[0],
            update=struct.unpack_from("<I", b, 216)[0],
            dbtime_dirtied=struct.unpack_from("<Q", b, 16)[0],
            sign_db=Signature.unpack(b, 24),
            dbstate=struct.unpack_from("<I", b, 52)[0],
            lgpos_consistent=LgPos.unpack(b, 56),
            time_consistent=LogTime(bytes(b[64:72])),
            time_attach=LogTime(bytes(b[72:80])),
            lgpos_attach=LgPos.unpack(b, 80),
            time_detach=LogTime(bytes(b[88:96])),
            lgpos_detach=LgPos.unpack(b, 96),
            dbid=struct.unpack_from("<I", b, 104)[0],
            sign_log=Signature.unpack(b, 108),
            full_prev=BkInfo.unpack(b, 136),
            inc_prev=BkInfo.unpack(b, 160),
            full_cur=BkInfo.unpack(b, 184),
            flags=struct.unpack_from("<I", b, 208)[0],
            page_size=cb,
            snapshot_cur=BkInfo.unpack(b, 316),
            has_copy_diff=has_copy_diff,
        )
        h.gen_min_required, h.gen_max_required = struct.unpack_from("<ii", b, 296)
        h.gen_max_committed = struct.unpack_from("<i", b, 416)[0]
        if has_copy_diff:
            h.copy_prev = BkInfo.unpack(b, 420)
            h.diff_prev = BkInfo.unpack(b, 444)
        h.heap_end, h.lsn_flushed, h.pgno_last, h.file_index = struct.unpack_from("<QQII", b, EMU_HEAP_END)
        h.guid = bytes(b[EMU_DB_GUID : EMU_DB_GUID + 16])
        h.filetype = b[667]
        return h


# ---------------------------------------------------------------------------------------------
# Log file header (first 4096 bytes of every generation)

LOG_FLAG_CIRCULAR = 0x1
EMU_LOG_LSN_FIRST = 80   # u64 next LSN when the generation was created
EMU_LOG_USED = 88        # u32 spare (0)
ATTACH_OFFSET = 1024     # rgbAttach
ATTACH_SIZE = 2048


@dataclass(frozen=True)
class AttachEntry:
    dbid: int
    sign_db: Signature
    name: str


def pack_attach(entries: list[AttachEntry]) -> bytes:
    out = bytearray()
    for e in entries:
        name = e.name.encode("utf-8")[:200]
        out += bytes([e.dbid]) + e.sign_db.pack() + bytes([len(name)]) + name
    out += b"\0"
    if len(out) > ATTACH_SIZE:
        raise ValueError("too many attached databases for rgbAttach")
    return bytes(out)


def unpack_attach(b, off=ATTACH_OFFSET) -> list[AttachEntry]:
    entries = []
    end = off + ATTACH_SIZE
    while off < end and b[off] != 0:
        dbid = b[off]
        sig = Signature.unpack(b, off + 1)
        n = b[off + 29]
        name = bytes(b[off + 30 : off + 30 + n]).decode("utf-8", "replace")
        entries.append(AttachEntry(dbid, sig, name))
        off += 30 + n
    return entries


@dataclass
class LogHeader:
    generation: int
    tm_create: LogTime
    tm_prev_gen: LogTime
    sign_log: Signature
    file_size: int
    page_size: int = 4096
    version: tuple[int, int, int] = (7, 3704, 8)
    flags: int = 0
    lsn_first: int = 1
    checkpoint: LgPos = LgPos()
    attach: list[AttachEntry] = field(default_factory=list)

    def pack(self) -> bytearray:
        b = bytearray(HEADER_BLOCK)
        struct.pack_into("<iHHHH", b, 4, self.generation, 512, HEADER_BLOCK // 512,
                         min(0xFFFF, self.file_size // 512), 0 if self.page_size == 4096 else self.page_size)
        b[16:24] = self.tm_create.raw
        b[24:32] = self.tm_prev_gen.raw
        struct.pack_into("<III", b, 32, *self.version)
        b[44:72] = self.sign_log.pack()
        struct.pack_into("<I", b, 72, self.flags)
        struct.pack_into("<Q", b, EMU_LOG_LSN_FIRST, self.lsn_first)
        b[96:104] = self.checkpoint.pack()
        struct.pack_into("<I", b, 104, self.file_size)
        b[667] = FILETYPE_LOG
        att = pack_attach(self.attach)
        b[ATTACH_OFFSET : ATTACH_OFFSET + len(att)] = att
        seal_header(b)
        return b

    @classmethod
    def unpack(cls, b) -> "LogHeader":
        if len(b) < HEADER_BLOCK:
            raise ValueError("log header shorter than 4096 bytes")
        if b[667] != FILETYPE_LOG:
            raise ValueError("not a log file (file type byte)")
        if not header_ok(b[:HEADER_BLOCK]):
            raise ValueError("log header checksum mismatch")
        gen, _cbsec, _csechdr, _csecfile, cbpage = struct.unpack_from("<iHHHH", b, 4)
        return cls(
            generation=gen,
            tm_create=LogTime(bytes(b[16:24])),
            tm_prev_gen=LogTime(bytes(b[24:32])),
            sign_log=Signature.unpack(b, 44),
            file_size=struct.unpack_from("<I", b, 104)[0],
            page_size=cbpage or 4096,
            version=struct.unpack_from("<III", b, 32),
            flags=struct.unpack_from("<I", b, 72)[0],
            lsn_first=struct.unpack_from("<Q", b, EMU_LOG_LSN_FIRST)[0],
            checkpoint=LgPos.unpack(b, 96),
            attach=unpack_attach(b),
        )


# ---------------------------------------------------------------------------------------------
# Checkpoint file E0n.chk


@dataclass
class CheckpointHeader:
    checkpoint: LgPos
    sign_log: Signature
    last_full_backup_checkpoint: LgPos = LgPos()
    full_backup: LgPos = LgPos()
    full_backup_time: LogTime = LogTime()
    inc_backup: LgPos = LgPos()
    inc_backup_time: LogTime = LogTime()
    flags: int = 0
    lsn_checkpoint: int = 0
    attach: list[AttachEntry] = field(default_factory=list)

    def pack(self) -> bytearray:
        b = bytearray(HEADER_BLOCK)
        b[4:12] = self.last_full_backup_checkpoint.pack()
        b[12:20] = self.checkpoint.pack()
        b[20:48] = self.sign_log.pack()
        struct.pack_into("<I", b, 48, self.flags)
        b[128:136] = self.full_backup.pack()
        b[136:144] = self.full_backup_time.raw
        b[144:152] = self.inc_backup.pack()
        b[152:160] = self.inc_backup_time.raw
        struct.pack_into("<Q", b, 200, self.lsn_checkpoint)
        b[667] = FILETYPE_CHECKPOINT
        att = pack_attach(self.attach)
        b[ATTACH_OFFSET : ATTACH_OFFSET + len(att)] = att
        seal_header(b)
        return b

    @classmethod
    def unpack(cls, b) -> "CheckpointHeader":
        if len(b) < HEADER_BLOCK or b[667] != FILETYPE_CHECKPOINT:
            raise ValueError("not a checkpoint file")
        if not header_ok(b[:HEADER_BLOCK]):
            raise ValueError("checkpoint checksum mismatch")
        return cls(
            checkpoint=LgPos.unpack(b, 12),
            sign_log=Signature.unpack(b, 20),
            last_full_backup_checkpoint=LgPos.unpack(b, 4),
            full_backup=LgPos.unpack(b, 128),
            full_backup_time=LogTime(bytes(b[136:144])),
            inc_backup=LgPos.unpack(b, 144),
            inc_backup_time=LogTime(bytes(b[152:160])),
            flags=struct.unpack_from("<I", b, 48)[0],
            lsn_checkpoint=struct.unpack_from("<Q", b, 200)[0],
            attach=unpack_attach(b),
        )


# ---------------------------------------------------------------------------------------------
# Backup trailer page (PATCHHDR), the last page of a database backup stream

TRAILER_MARK = b"PATCHHDR"


@dataclass
class Trailer:
    bkinfo: BkInfo
    sign_db: Signature
    sign_log: Signature
    gen_min_required: int = 0
    gen_max_required: int = 0
    gen_max_committed: int = 0

    def pack(self, page_size: int) -> bytearray:
        b = bytearray(page_size)
        struct.pack_into("<I", b, 4, SEED)
        b[8:16] = TRAILER_MARK
        b[16:40] = self.bkinfo.pack()
        b[40:68] = self.sign_db.pack()
        b[68:96] = self.sign_log.pack()
        struct.pack_into("<iii", b, 96, self.gen_min_required, self.gen_max_required, self.gen_max_committed)
        b[667] = FILETYPE_TRAILER
        seal_header(b)
        return b

    @classmethod
    def unpack(cls, b) -> "Trailer":
        if len(b) < 4096 or bytes(b[8:16]) != TRAILER_MARK or b[667] != FILETYPE_TRAILER:
            raise ValueError("not a backup trailer page")
        if not header_ok(b):
            raise ValueError("trailer page checksum mismatch")
        mn, mx, mc = struct.unpack_from("<iii", b, 96)
        return cls(BkInfo.unpack(b, 16), Signature.unpack(b, 40), Signature.unpack(b, 68), mn, mx, mc)
