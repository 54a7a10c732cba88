"""The walk over one medium (spec mtf.md §7.13): DBLKs, stream chains, resync, spanning state."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from construct import ConstructError

from . import mtf_structs as m
from .blocks import XSPN_ENTRY
from .catalog import Block, MediumEntry, ObjectEntry, Piece, SetEntry, VolumeEntry
from .sources import Medium

if TYPE_CHECKING:
    from .reader import MtfReader

RESYNC_STEP = 512
MAX_STREAMS = 4096


MAX_LISTED_IDS = 64
FIXED_STREAM_SIZES = {b"CSUM": 4, m.XCRC: 4, m.XSHA: 32}


def _plausible_stream(sid: bytes, length: int, kind: bytes, size: int, attr: int) -> bool:
    if not all(65 <= c <= 90 or 48 <= c <= 57 for c in sid):
        return False
    if FIXED_STREAM_SIZES.get(sid, length) != length:
        return False
    if sid == b"STAN" and kind == b"FILE" and not attr & m.MTF_CONTINUATION and size and length != size:
        return False
    return True


def _id_list(tag: str, first: int, stop: int) -> list[str]:
    """``tag:N`` for a lost ID range, at most MAX_LISTED_IDS of them (the message gives the range)."""
    return [f"{tag}:{i}" for i in range(first, min(stop, first + MAX_LISTED_IDS))]


def _plausible_type(kind: bytes) -> bool:
    return len(kind) == 4 and all(65 <= c <= 90 or 48 <= c <= 57 for c in kind)


def plausible_dblk(data, kind_required: bool = True) -> bool:
    """Header test used both by the walk and the resync scan (§7.13, README false positives)."""
    if len(data) < m.DB_HDR_SIZE:
        return False
    kind = bytes(data[:4])
    if kind in m.KNOWN_STREAMS or not _plausible_type(kind):
        return False
    if kind_required and kind not in m.DBLK_TYPES:
        return False
    if not m.header_ok(data):
        return False
    first_event = struct.unpack_from("<H", data, 8)[0]
    return first_event >= m.DB_HDR_SIZE and first_event % 4 == 0


class _WalkState:
    """What carries over from one medium to the next (set, volume, directory, open object)."""

    def __init__(self) -> None:
        self.set: SetEntry | None = None
        self.volume: VolumeEntry | None = None
        self.dir_id = 0
        self.open: dict[tuple[int, int], ObjectEntry] = {}
        self.last_cbid = -1
        self.last_fla = -1
        self.last_file_id = 0
        self.last_dir_id = 0
        self.damage_since: tuple[int, int] | None = None  # (offset, last good cbid) of a gap
        self.last_medium: tuple[int, int] | None = None  # (family ID, sequence) of the last TAPE
        self.last_pos = 0  # offset of the last accepted DBLK on the current medium
        self.previous_identified = False  # the previous medium had a readable TAPE block
        self.current_identified = False

    def open_objects(self):
        return list(self.open.values())


class _MediumWalk:
    def __init__(self, reader: MtfReader, state: _WalkState, index: int, medium: Medium):
        self.r = reader
        self.cat = reader.catalog
        self.s = state
        self.index = index
        self.med = medium
        self.flb = m.DEFAULT_FLB
        self.info = MediumEntry(medium.name)
        self.cat.media.append(self.info)
        self.tape_seen = False

    def problem(self, offset: int, kind: str, message: str, objects=()) -> None:
        self.r._problem(self.med, offset, kind, message, objects)

    def where(self, offset: int) -> str:
        return self.med.file_position(offset)

    def run(self) -> None:
        self.s.previous_identified, self.s.current_identified = self.s.current_identified, False
        self.s.last_pos = 0
        pos = 0
        size = self.med.size
        guard = 0
        while pos < size:
            guard += 1
            head = self.med.read(pos, m.DB_HDR_SIZE)
            if len(head) < m.DB_HDR_SIZE:
                if any(head):
                    self.problem(pos, "truncated", f"{len(head)} trailing bytes are not a DBLK")
                return
            if plausible_dblk(head, kind_required=False):
                try:
                    nxt = self.dblk(pos, bytes(head))
                except (struct.error, ValueError, KeyError, IndexError, OverflowError, ConstructError) as err:
                    self.problem(pos, "damaged", f"unreadable DBLK ({type(err).__name__}: {err})")
                    nxt = None
                if nxt is not None and nxt > pos:
                    pos = nxt
                    continue
                pos = self.resync(pos, reported=True)
                continue
            if not any(self.med.read(pos, self.flb)):
                pos += self.flb  # all-zero FLB: dead block (go-mtf does the same)
                continue
            pos = self.resync(pos)

    # -- resync (§7.13) --
    def resync(self, pos: int, reported: bool = False) -> int:
        start = pos
        s = self.s
        cand = (pos // RESYNC_STEP + 1) * RESYNC_STEP
        size = self.med.size
        while cand < size:
            fm = self.med.next_filemark(start)
            if fm is not None and fm <= cand:
                cand = fm  # a hardware filemark always starts a new section
                found = True
            else:
                head = self.med.read(cand, m.DB_HDR_SIZE)
                found = plausible_dblk(head) and self._sequence_ok(bytes(head), cand)
            if found:
                break
            cand += RESYNC_STEP
        cand = min(cand, size)
        objects = [f"set {s.set.number}"] if s.set is not None else []
        self.problem(start, "damage",
                     f"bad or unreadable DBLK at {self.where(start)}; resynchronised at "
                     f"offset {cand} ({cand - start} bytes skipped)", objects)
        s.damage_since = (start, s.last_file_id)
        return cand

    def _sequence_ok(self, head: bytes, pos: int) -> bool:
        kind, attr, _fe, _size, fla, cbid, _st, _c = m.header_fields(head)
        if kind in (b"TAPE", b"SFMB"):
            return True
        if kind == b"EOTM":
            return fla == 0 and cbid == 0
        if kind == b"SSET":
            return fla == 0 or bool(attr & m.MTF_CONTINUATION)
        return self._ids_plausible(kind, attr, fla, cbid, pos)

    def _ids_plausible(self, kind: bytes, attr: int, fla: int, cbid: int, pos: int) -> bool:
        """CBID and FLA of a DBLK inside a set: beyond the last good ones and not further than
        the FLBs walked since then allow (a DBLK takes at least one FLB). XOR16 is linear, so a
        uniform corruption of header words can verify; this catches the IDs it garbles."""
        s = self.s
        if s.set is None or attr & m.MTF_CONTINUATION or kind in (b"TAPE", b"SFMB", b"EOTM", b"SSET"):
            return True
        budget = max(0, pos - s.last_pos) // RESYNC_STEP + 2
        if kind == b"ESET":
            return fla == 0 and (cbid == 0 or s.last_cbid < cbid <= s.last_cbid + budget)
        return s.last_cbid < cbid <= s.last_cbid + budget and s.last_fla < fla <= s.last_fla + budget

    # -- one DBLK --
    def dblk(self, pos: int, head: bytes) -> int | None:
        kind, attr, first_event, size, fla, cbid, stype, _ = m.header_fields(head)
        if kind == b"SFMB":
            block = Block(self.med.name, pos, "SFMB", first_event, fla, cbid, attr, [])
            self._keep(block)
            return pos + first_event
        if not self._ids_plausible(kind, attr, fla, cbid, pos):
            self.problem(pos, "damage", f"{kind.decode('latin-1')} header verifies but its IDs cannot "
                         f"be right (CBID {cbid}, FLA {fla} after CBID {self.s.last_cbid}, "
                         f"FLA {self.s.last_fla})")
            return None
        fixed_struct = m.FIXED_PARTS.get(kind)
        fm = self.med.next_filemark(pos)
        if fm is not None and pos + first_event > fm and self.eom_at(fm):
            return fm  # DBLK cut by the end of the medium; repeated on the next cartridge
        prefix = bytes(self.med.read(pos, first_event))
        if len(prefix) < first_event:
            self.problem(pos, "truncated", f"{kind.decode('latin-1')} DBLK cut off by the end of the medium")
            return self.med.size
        fixed = None
        if fixed_struct is not None and len(prefix) >= 52 + fixed_struct.sizeof():
            fixed = fixed_struct.parse(prefix[52:])
        streams, end, stan = self.walk_streams(pos, kind, attr, first_event, size)
        block = Block(self.med.name, pos, kind.decode("latin-1"), (end or pos) - pos, fla, cbid,
                      attr, [(o, sid, ln, ma, ok) for (o, sid, ln, ma, ok, _d) in streams])
        self._keep(block)
        payloads = {sid: d for (_o, sid, _l, _m, ok, d) in streams if ok and d is not None}
        bad = [sid for (_o, sid, _l, _m, ok, _d) in streams if not ok]
        if m.XCRC.decode() in payloads and len(payloads[m.XCRC.decode()]) == 4:
            header_ok = struct.unpack("<I", payloads[m.XCRC.decode()])[0] == m.xcrc_value(prefix)
        else:
            header_ok = None
        handler = getattr(self, "on_" + kind.decode("latin-1").lower(), None) if fixed_struct else None
        if handler is not None and fixed is not None:
            handler(pos, attr, fla, cbid, stype, prefix, fixed, payloads, stan, header_ok, bad, end)
        else:
            block.note = "unknown DBLK type (skipped)" if fixed_struct is None else ""
            if fixed_struct is None:
                self.cat.unknown_blocks.append(block)
        if kind not in (b"TAPE", b"EOTM", b"SSET") and self.s.set is not None:
            s = self.s
            if not attr & m.MTF_CONTINUATION and cbid > s.last_cbid + 1:
                self.problem(pos, "lost", f"control blocks (CBID) {s.last_cbid + 1}..{cbid - 1} lost "
                             f"before this {kind.decode('latin-1')} (objects or directories among them "
                             "are gone)", _id_list("cbid", s.last_cbid + 1, cbid))
            self.s.last_cbid = max(self.s.last_cbid, cbid)
            if kind != b"ESET":
                self.s.last_fla = max(self.s.last_fla, fla)
        self.s.last_pos = pos
        if getattr(self, "_eset_seen", False):
            self._eset_seen = False
            if not any(sid == m.XSPN.decode() for sid in bad):
                self.s.set = None  # the set is closed: what follows belongs to the next one
        if bad:
            self.problem(pos, "damage", f"stream header checksum mismatch in {kind.decode('latin-1')} "
                         f"at {self.where(pos)}")
            return None
        if end is None:
            return None
        return end

    def ends_medium(self, offset: int) -> bool:
        """The filemark at ``offset`` closes the medium's data: EOTM follows, or (EOTM damaged)
        at most one more tape file follows it."""
        if self.eom_at(offset):
            return True
        marks = [f for f in self.med.filemarks if f >= offset]
        return bool(marks) and marks[0] == offset and len(marks) <= 2

    def eom_at(self, offset: int) -> bool:
        """True when an EOTM (end of medium) follows the filemark at ``offset``."""
        head = self.med.read(offset, m.DB_HDR_SIZE)
        return len(head) == m.DB_HDR_SIZE and bytes(head[:4]) == b"EOTM" and m.header_ok(head)

    def _keep(self, block: Block) -> None:
        if self.r._keep:
            self.cat.blocks.append(block)

    def walk_streams(self, pos: int, kind: bytes, attr: int, first_event: int, size: int = 0):
        """Stream chain from Offset To First Event to SPAD; returns (streams, end, stan).

        A stream header that verifies but cannot be right (not a 4-character ID, a known
        fixed-size stream of another size, a FILE's STAN longer than its Displayable Size, data
        running past the section end anywhere but in object data at the end of a medium) counts
        as damaged: XOR16 is linear, so a uniform corruption of the 10 words leaves it valid.
        """
        streams = []
        off = pos + first_event
        stan = None
        fm = self.med.next_filemark(pos)
        limit = min(self.med.size, fm if fm is not None else self.med.size)
        for _ in range(MAX_STREAMS):
            if off + m.STREAM_HDR_SIZE > limit:
                # The section ends inside this DBLK: the medium ended here (EOM) or was cut.
                return streams, limit if self.eom_at(limit) or limit == self.med.size else None, stan
            raw = self.med.read(off, m.STREAM_HDR_SIZE)
            sid_b, _fs, media_attr, length, ok = m.stream_header_fields(raw)
            sid = sid_b.decode("latin-1")
            if ok and not _plausible_stream(sid_b, length, kind, size, attr):
                ok = False
            if not ok:
                streams.append((off - pos, sid, length, media_attr, False, None))
                return streams, None, stan
            data_off = off + m.STREAM_HDR_SIZE
            if sid == "STAN" and media_attr & m.STREAM_CONTINUE and attr & m.MTF_CONTINUATION:
                data_off = pos + m.align(data_off - pos, self.flb)
            payload = None
            if length <= 64 and sid != "SPAD":
                payload = bytes(self.med.read(data_off, length))
            elif sid == m.XMET.decode() and length <= 1 << 20:
                payload = bytes(self.med.read(data_off, length))
            avail = max(0, min(length, limit - data_off))
            streams.append((off - pos, sid, length, media_attr, True, payload))
            if sid == "STAN" and stan is None:
                stan = (data_off, length, avail, media_attr)
            if avail < length:  # cut by a filemark / end of medium: the medium's section ends here
                # The medium ended here (EOM): object data, or a FILE's (small) trailing stream.
                small_trailer = kind == b"FILE" and length <= 1 << 16
                if (sid == "STAN" or small_trailer) and kind == b"FILE" and self.ends_medium(limit):
                    return streams, limit, stan
                streams[-1] = streams[-1][:4] + (False, None)
                return streams, None, stan
            end = data_off + length
            if sid == "SPAD":
                return streams, end, stan
            off = pos + m.align(end - pos, 4)
        return streams, None, stan

    # -- handlers --
    def on_tape(self, pos, attr, fla, cbid, stype, prefix, t, payloads, stan, header_ok, bad, end):
        info = self.info
        info.family_id, info.sequence = t.family_id, t.sequence
        if t.flb_size in (512, 1024):
            self.flb = info.flb = t.flb_size
        info.label = m.read_string(prefix, t.media_label, stype)
        info.media_name = m.read_string(prefix, t.media_name, stype)
        info.software = m.read_string(prefix, t.software_name, stype)
        info.vendor_id = t.vendor_id
        info.continuation = bool(attr & m.MTF_CONTINUATION)
        info.soft_filemark_size = t.sfm_size * 512
        prev = self.s.last_medium
        self.s.last_medium = (t.family_id, t.sequence)
        self.s.current_identified = True
        if info.continuation:
            # After a cartridge whose TAPE block was unreadable we cannot tell what is missing.
            checkable = self.index == 0 or self.s.previous_identified
            if checkable and (prev is None or prev[0] != t.family_id or prev[1] + 1 != t.sequence):
                self.problem(pos, "missing", f"continuation cartridge {t.sequence} of family "
                             f"0x{t.family_id:08X} without cartridge {t.sequence - 1} before it")
                self._close_open_objects()
        else:
            self._close_open_objects()

    def _close_open_objects(self) -> None:
        """Objects still waiting for their continuation will not get it: report them."""
        for entry in self.s.open.values():
            entry.incomplete = True
            self.r._problem_at(entry.medium, entry.offset, "incomplete",
                               f"object continues on a cartridge that was not given "
                               f"(have {entry.received} of {entry.size} bytes)", [entry.display_path])
        self.s.open.clear()

    def on_sset(self, pos, attr, fla, cbid, stype, prefix, f, payloads, stan, header_ok, bad, end):
        s = self.s
        if attr & m.MTF_CONTINUATION and s.set is not None and s.set.number in (f.set_number, 0):
            if s.set.number == 0:  # the set's own SSET was lost: this copy tells what it was
                s.set.number, s.set.name = f.set_number, m.read_string(prefix, f.name, stype)
                s.set.attr, s.set.write_date = f.sset_attr, f.write_date
                for entry in s.set.objects:
                    entry.set_number = f.set_number
                s.open = {(f.set_number, fid): e for (_n, fid), e in s.open.items()}
            return
        for entry in list(s.open.values()):
            entry.incomplete = True
        entry = SetEntry(f.set_number, m.read_string(prefix, f.name, stype),
                         m.read_string(prefix, f.description, stype),
                         m.read_string(prefix, f.user, stype), f.sset_attr, f.write_date, f.vendor_id)
        self.cat.sets.append(entry)
        s.set, s.volume, s.dir_id = entry, None, 0
        s.last_cbid, s.last_fla, s.last_file_id, s.last_dir_id = cbid, fla, 0, 0
        s.damage_since = None
        if header_ok is False:
            self.problem(pos, "damage", f"SSET of set {f.set_number}: header fields damaged (XCRC)")

    def _need_set(self, pos: int) -> SetEntry:
        s = self.s
        if s.set is None:
            s.set = SetEntry(0, name="(SSET lost)")
            self.cat.sets.append(s.set)
            s.volume, s.dir_id = None, 0
            s.last_cbid, s.last_fla, s.last_file_id, s.last_dir_id = -1, -1, 0, 0
        return s.set

    def on_volb(self, pos, attr, fla, cbid, stype, prefix, f, payloads, stan, header_ok, bad, end):
        st = self._need_set(pos)
        vol = VolumeEntry(m.read_string(prefix, f.device, stype), m.read_string(prefix, f.volume, stype),
                          m.read_string(prefix, f.machine, stype), payloads.get(m.XMET.decode()))
        if attr & m.MTF_CONTINUATION:
            for known in st.volumes:
                if (known.device, known.volume, known.machine) == (vol.device, vol.volume, vol.machine):
                    self.s.volume = known
                    return
        st.volumes.append(vol)
        self.s.volume = vol
        if header_ok is False:
            self.problem(pos, "damage", f"VOLB {vol.device!r}: header fields damaged (XCRC)")

    def on_dirb(self, pos, attr, fla, cbid, stype, prefix, f, payloads, stan, header_ok, bad, end):
        st = self._need_set(pos)
        path = m.decode_dir_path(prefix[f.name.offset: f.name.offset + f.name.size], stype) if f.name.size else []
        if header_ok is False:
            self.problem(pos, "damage", f"DIRB {'/'.join(path)!r} (ID {f.dir_id}): header fields damaged (XCRC)")
            path = [f"(damaged directory {f.dir_id})"]
        if not attr & m.MTF_CONTINUATION and f.dir_id > self.s.last_dir_id + 1 and self.s.last_dir_id:
            self.problem(pos, "lost", f"directories (DIRB IDs) {self.s.last_dir_id + 1}..{f.dir_id - 1} lost")
        st.dirs[f.dir_id] = path
        self.s.dir_id = f.dir_id
        self.s.last_dir_id = max(self.s.last_dir_id, f.dir_id)

    def on_file(self, pos, attr, fla, cbid, stype, prefix, f, payloads, stan, header_ok, bad, end):
        st = self._need_set(pos)
        s = self.s
        name = m.read_string(prefix, f.name, stype)
        vol = s.volume.device if s.volume else "(volume lost)"
        path = st.dirs.get(f.dir_id)
        if path is None:
            path = [f"(lost directory {f.dir_id})"]
        key = (st.number, f.file_id)
        if attr & m.MTF_CONTINUATION:
            entry = s.open.get(key)
            if entry is None:
                self.problem(pos, "orphan", f"continuation of object ID {f.file_id} ({name!r}) whose "
                             "start is on a cartridge that was not given or was damaged", [name])
                return
            if stan is not None:
                data_off, length, avail, _ma = stan
                if entry.received + length != entry.size:
                    entry.damaged = (f"continuation length {length} does not match "
                                     f"{entry.size - entry.received} bytes still due")
                entry.pieces.append(Piece(self.index, data_off, avail))
                if avail == length:
                    s.open.pop(key, None)
            return
        if f.file_id > s.last_file_id + 1 and (s.last_file_id or s.damage_since):
            self.problem(pos, "lost", f"objects (FILE IDs) {s.last_file_id + 1}..{f.file_id - 1} lost "
                         "to damage before this point", _id_list("file-id", s.last_file_id + 1, f.file_id))
        s.last_file_id = max(s.last_file_id, f.file_id)
        entry = ObjectEntry(st.number, vol, list(path), name, 0, f.file_id, f.dir_id, self.med.name, pos)
        if s.volume is not None and s.volume in st.volumes:
            entry.volume_index = st.volumes.index(s.volume)
        entry.header_ok = header_ok
        if stan is not None:
            data_off, length, avail, media_attr = stan
            entry.size = length
            entry.expects_csum = bool(media_attr & m.STREAM_CHECKSUMED)
            entry.pieces.append(Piece(self.index, data_off, avail))
            if avail < length:
                s.open[key] = entry
        if "CSUM" in payloads and len(payloads["CSUM"]) == 4:
            entry.csum = struct.unpack("<I", payloads["CSUM"])[0]
        if m.XSHA.decode() in payloads and len(payloads[m.XSHA.decode()]) == 32:
            entry.sha256 = payloads[m.XSHA.decode()]
        if bad:
            entry.damaged = f"stream header damaged in FILE at {self.where(pos)}"
        if header_ok is False:
            entry.damaged = "FILE header fields damaged (XCRC mismatch)"
        st.objects.append(entry)

    def on_cfil(self, pos, attr, fla, cbid, stype, prefix, f, payloads, stan, header_ok, bad, end):
        st = self._need_set(pos)
        if st.objects:
            st.objects[-1].corrupt_flag = True

    def on_eset(self, pos, attr, fla, cbid, stype, prefix, f, payloads, stan, header_ok, bad, end):
        sets = self.cat.sets
        if self.s.set is None and sets and sets[-1].number == f.set_number:
            st = sets[-1]  # a second ESET of the same set (MBC, SQL Server)
        else:
            st = self._need_set(pos)
        st.ended = True
        self._eset_seen = True
        raw = payloads.get(m.XSPN.decode())
        if raw is None:
            raw = self._read_stream(pos, prefix, m.XSPN)
        if raw:
            for i in range(0, len(raw) - XSPN_ENTRY.size + 1, XSPN_ENTRY.size):
                file_id, csum, crc, sha = XSPN_ENTRY.unpack_from(raw, i)
                st.spanned_digests[file_id] = (csum, crc, sha)
            for entry in st.objects:
                d = st.spanned_digests.get(entry.file_id)
                if d is not None:
                    if entry.csum is None:
                        entry.csum = d[0]
                    if entry.sha256 is None and any(d[2]):
                        entry.sha256 = d[2]
                    if entry.header_ok is None:
                        entry.header_ok = m.xcrc_value(self._file_prefix(entry)) == d[1]

    def _file_prefix(self, entry: ObjectEntry) -> bytes:
        med = self.r.media[[mm.name for mm in self.r.media].index(entry.medium)]
        head = med.read(entry.offset, m.DB_HDR_SIZE)
        first_event = struct.unpack_from("<H", head, 8)[0]
        return bytes(med.read(entry.offset, first_event))

    def _read_stream(self, pos: int, prefix: bytes, want: bytes) -> bytes | None:
        first_event = struct.unpack_from("<H", prefix, 8)[0]
        off = pos + first_event
        for _ in range(MAX_STREAMS):
            raw = self.med.read(off, m.STREAM_HDR_SIZE)
            if len(raw) < m.STREAM_HDR_SIZE:
                return None
            sid, _fs, _ma, length, ok = m.stream_header_fields(raw)
            if not ok or sid == b"SPAD":
                return None
            if sid == want:
                return bytes(self.med.read(off + m.STREAM_HDR_SIZE, min(length, 1 << 24)))
            off = pos + m.align(off + m.STREAM_HDR_SIZE + length - pos, 4)
        return None

    def on_eotm(self, pos, attr, fla, cbid, stype, prefix, f, payloads, stan, header_ok, bad, end):
        pass

    def on_espb(self, pos, attr, fla, cbid, stype, prefix, f, payloads, stan, header_ok, bad, end):
        pass
