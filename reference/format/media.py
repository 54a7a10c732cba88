"""Media writer (server side): lays MTF data sets onto a tape device or a ``.bkf`` disk image.

Tape (spec ``mtf.md`` §7.2): ``TAPE+SPAD->P | FM | SSET ... [ESPB] | FM | ESET+SPAD->P | FM | ...``
written in physical blocks of ``P`` bytes through :class:`reference.protocols.tape.TapeDevice`.
Disk image: the same with every filemark replaced by an ``SFMB`` block of P bytes.

End of medium (§7.11, st "EOM behaviour when writing"): when a data block write fails with
ENOSPC (early warning), that block was not written; the writer closes the cartridge with
``FM EOTM FM``, asks ``next_medium`` for the next cartridge, writes a continuation ``TAPE`` and
repeats the context (SSET, VOLB, DIRB and, inside object data, a continuation FILE whose STAN has
``STREAM_CONTINUE``) before the data that was due. FLAs of everything after the spanning point
are unchanged; continuation DBLKs take the FLAs just below it. Trailing streams of a FILE whose
data continued (CSUM, XSHA, XCRC) are not repeated after the continued data (profile rule 4);
their values are kept in an ``XSPN`` vendor stream on the ESET.
"""

from __future__ import annotations

import datetime as _dt
import errno
import logging
import os
import random
import struct
from dataclasses import dataclass, field
from typing import Callable

from reference.errors import MailtapeError
from reference.protocols.tape import MtOp, TapeDevice

from . import mtf_structs as m
from .blocks import (XSPN_ENTRY, MediaIdentity, build_eotm, build_eset, build_tape, media_label,
                     retag, spad_exact)
from .targets import BkfTarget, ChangerFeeder, TapeTarget
from .tracker import DblkInfo, StreamTracker
from .writer import DataSetWriter, EsetInfo

__all__ = ["BkfTarget", "ChangerFeeder", "MediaFullError", "MediaIdentity", "MediaWriter",
           "SetPlacement", "TapeTarget", "XSPN_ENTRY", "media_label"]

log = logging.getLogger(__name__)


class MediaFullError(MailtapeError):
    """No further cartridge to continue a data set on (or a cartridge too small to make progress)."""


# --- the media writer -------------------------------------------------------------------------


@dataclass
class SetPlacement:
    """Where a data set landed (for the off-tape catalog)."""

    set_number: int
    first_sequence: int
    last_sequence: int
    sset_pba: int
    eset_pba: int
    spanned_files: list[int] = field(default_factory=list)


class _EndOfMedium(Exception):
    pass


class MediaWriter:
    """Writes data sets of one media family; see docs/format.md ("Media writer")."""

    def __init__(self, target, *, flb: int = m.DEFAULT_FLB, identity: MediaIdentity | None = None,
                 next_medium: Callable[[int], TapeDevice] | None = None, sequence: int = 1,
                 next_set_number: int = 1, now: Callable[[], _dt.datetime] | None = None,
                 rng: random.Random | None = None):
        if target.block_size % flb:
            raise ValueError(f"physical block size {target.block_size} is not a multiple of FLB {flb}")
        self.target = target
        self.flb = flb
        self.P = target.block_size
        self._now = now or (lambda: _dt.datetime.now().replace(microsecond=0))
        rng = rng or random.Random()
        self.identity = identity or MediaIdentity(family_id=rng.getrandbits(32) or 1)
        if self.identity.date is None:
            self.identity.date = self._now()
        self.next_medium = next_medium
        self.sequence = sequence
        self.next_set_number = next_set_number
        self.last_eset_pba: int | None = None
        self.placements: list[SetPlacement] = []
        self._in_set = False

    # -- construction helpers --
    @classmethod
    def create_bkf(cls, path, *, block_size: int = m.DEFAULT_FLB, **kw) -> "MediaWriter":
        f = open(path, "wb")
        writer = cls(BkfTarget(f, block_size, name=str(path)), **kw)
        writer.write_media_header()
        return writer

    @classmethod
    def for_tape(cls, device: TapeDevice, *, block_size: int = 64 * 1024, **kw) -> "MediaWriter":
        return cls(TapeTarget(device, block_size), **kw)

    @classmethod
    def append_to_tape(cls, device: TapeDevice, *, read_size: int = 1 << 20, **kw) -> "MediaWriter":
        """Position after the last data set of a recorded cartridge (spec §7.2 "Appending").

        Reads the TAPE block, then the first block of each tape file (SSET / ESET / EOTM) and
        spaces over the rest; refuses a cartridge that ends with EOTM or whose last ESET carries
        ``MTF_END_OF_FAMILY``. Ends positioned at EOD.
        """
        device.mtop(MtOp.MTREW, 1)
        tape = device.read(read_size)
        if len(tape) < 94 or tape[:4] != b"TAPE" or not m.header_ok(tape):
            raise MailtapeError(f"{device.name}: no MTF media header (TAPE) at the start of the tape")
        t = m.TapeFixed.parse(tape[52:94])
        ident = MediaIdentity(t.family_id, m.read_string(tape, t.media_name, tape[48]),
                              m.read_string(tape, t.media_label, tape[48]), t.media_date)
        last_set, last_eset_pba = 0, None
        while True:
            pba = device.tell()
            try:
                block = device.read(read_size)
            except OSError:
                break  # EIO at end of data
            if not block:
                try:
                    block = device.read(read_size)
                except OSError:
                    break
                if not block:
                    break
            kind = bytes(block[:4])
            if kind == b"EOTM":
                raise MailtapeError(f"{device.name}: cartridge {t.sequence} is full (ends with EOTM); "
                                    "append to the next cartridge of the family")
            if kind == b"SSET" and len(block) >= 98:
                last_set = max(last_set, m.SsetFixed.parse(block[52:98]).set_number)
            if kind == b"ESET" and len(block) >= 85:
                if struct.unpack_from("<I", block, 4)[0] & m.MTF_END_OF_FAMILY:
                    raise MailtapeError(f"{device.name}: the family is closed (ESET END_OF_FAMILY)")
                last_eset_pba = pba
            device.mtop(MtOp.MTFSF, 1)
        device.mtop(MtOp.MTEOM, 1)
        writer = cls(TapeTarget(device, len(tape)), flb=t.flb_size, identity=ident,
                     sequence=t.sequence, next_set_number=last_set + 1, **kw)
        writer.last_eset_pba = last_eset_pba
        return writer

    @classmethod
    def append_to_bkf(cls, path, **kw) -> "MediaWriter":
        """Open a ``.bkf`` written by us and position after its last data set."""
        from .reader import MtfReader
        from .sources import BkfMedium

        medium = BkfMedium(path)
        try:
            cat = MtfReader([medium], keep_blocks=True).read()
            head = bytes(medium.read(0, 94))
        finally:
            medium.close()
        if not cat.media or cat.media[0].family_id is None:
            raise MailtapeError(f"{path}: not an MTF image (no TAPE block)")
        info = cat.media[0]
        t = m.TapeFixed.parse(head[52:94])
        block_size = info.soft_filemark_size or info.flb
        f = open(path, "r+b")
        f.seek(0, os.SEEK_END)
        if f.tell() % block_size:
            f.close()
            raise MailtapeError(f"{path}: size is not a multiple of the block size {block_size}")
        target = BkfTarget(f, block_size, name=str(path))
        target.filemarks = [b.offset // block_size for b in cat.blocks if b.kind == "SFMB"]
        target.sfmb_cbid = len(target.filemarks)
        ident = MediaIdentity(info.family_id, info.media_name, info.label, t.media_date, info.software or m.SOFTWARE_NAME)
        last = max((s.number for s in cat.sets), default=0)
        return cls(target, flb=info.flb, identity=ident, sequence=info.sequence or 1,
                   next_set_number=last + 1, **kw)

    def close(self) -> None:
        if isinstance(self.target, BkfTarget):
            self.target.file.close()

    # -- media header --
    def write_media_header(self, *, continuation: bool = False) -> None:
        """TAPE + SPAD to P, then a filemark: the start of a (new or continuation) cartridge."""
        tape = build_tape(self.identity, self.sequence, block_size=self.P, flb=self.flb,
                          soft_filemarks=self.target.soft_filemarks, continuation=continuation)
        self.target.write_block(tape)
        self.target.write_filemark()
        self.last_eset_pba = None

    # -- data sets --
    def begin_set(self, **sset) -> DataSetWriter:
        """Start the next data set; returns the agent-side writer feeding this media writer."""
        if self._in_set:
            raise RuntimeError("a data set is already open")
        self._start_set()
        return DataSetWriter(self.feed, set_number=self.next_set_number, flb=self.flb, **sset)

    def begin_raw_set(self) -> int:
        """Open a data set for bytes that arrive already formatted (an agent's DataSetWriter
        output, e.g. over the network) and are passed to :meth:`feed`; finish with
        :meth:`end_set`. Returns the set number the agent's SSET must carry."""
        if self._in_set:
            raise RuntimeError("a data set is already open")
        self._start_set()
        return self.next_set_number

    def _start_set(self) -> None:
        self._in_set = True
        self._tracker = StreamTracker(f"data set {self.next_set_number}")
        self._in_off = 0           # original offset of the next input byte
        self._raw = bytearray()    # uncommitted original input bytes from self._raw_start
        self._raw_start = 0
        self._chunk = None         # the chunk being fed (valid only inside feed)
        self._chunk_start = 0
        self._out = bytearray()    # output bytes not yet written (< one block)
        self._base = 0             # original offset = output offset on this medium + base
        self._out_off = 0          # output offset of self._out[0]
        self._skip: DblkInfo | None = None
        self._replace: DblkInfo | None = None
        self._spanned: dict[int, bytes] = {}
        self._first_sequence = self.sequence
        self._sset_pba = self.target.pba()
        self._first_sset_pba = self._sset_pba
        self._medium_start = 0  # original offset where this cartridge's share of the set begins

    def feed(self, chunk) -> None:
        """Sink for :class:`DataSetWriter`: the data set's bytes, in order.

        Full blocks are written straight from ``chunk`` (no copy); only a partial block and the
        not yet committed tail of the input (needed again after an end of medium) are copied.
        """
        view = memoryview(chunk).cast("B")
        self._tracker.feed(view)
        start = self._in_off
        self._in_off += len(view)
        self._chunk, self._chunk_start = view, start
        try:
            try:
                self._emit(view, start, direct=True)
            except _EndOfMedium:
                pass  # the new cartridge got everything from the split point on (re-emitted)
            self._drain(final=False)
        finally:
            keep = max(self._base + self._out_off if self._base is not None else 0, self._raw_start)
            kept = self._raw_from(min(keep, self._in_off))
            self._raw = bytearray(kept)
            self._raw_start = self._in_off - len(self._raw)
            self._chunk = None

    def _raw_from(self, offset: int):
        """Original input bytes [offset, end of input so far)."""
        chunk = self._chunk
        if chunk is not None and offset >= self._chunk_start:
            return chunk[offset - self._chunk_start:]
        head = memoryview(self._raw)[max(0, offset - self._raw_start):]
        if chunk is None:
            return head
        return bytes(head) + bytes(chunk)

    def _put(self, data, direct: bool) -> None:
        """Append output; in ``direct`` mode write whole blocks from ``data`` without copying."""
        if not direct:
            self._out += data
            return
        P = self.P
        i, n = 0, len(data)
        if self._out:
            take = min(max(P - len(self._out), 0), n)
            self._out += data[:take]
            i = take
            while len(self._out) >= P:
                block = bytes(self._out[:P])
                del self._out[:P]
                self._write_data_block(block)
        whole = (n - i) // P * P
        if whole:
            self._write_data_blocks(data[i:i + whole])
            i += whole
        if i < n:
            self._out += data[i:]

    # The output filter: continuation inserts, dropped trailers, replaced trailers.
    def _emit(self, data, orig: int, direct: bool = False) -> None:
        pos, end = orig, orig + len(data)
        while pos < end:
            skip = self._skip
            if skip is not None:
                stop = skip.end
                pos = end if stop is None else min(end, stop)
                if stop is not None and pos == stop:
                    self._finish_skip()
                continue
            rep = self._replace
            if rep is not None and pos >= rep.data_end:
                stop = rep.end
                if stop is None:
                    return  # the trailer's end is not known yet; more input will follow
                upto = min(end, stop)
                if self._rep_done < upto:
                    tail = spad_exact(rep.data_end - rep.start, stop - rep.start)
                    piece = tail[self._rep_done - rep.data_end: upto - rep.data_end]
                    self._rep_done = upto
                    self._put(piece, direct)
                pos = upto
                if pos < stop:
                    return
                self._record_span(rep)
                self._replace = None
                continue
            stop = end if rep is None else min(end, rep.data_end)
            self._put(data[pos - orig: stop - orig], direct)
            pos = stop

    def _finish_skip(self) -> None:
        skip, self._skip = self._skip, None
        self._record_span(skip)
        self._base = skip.end - self._skip_total
        self._medium_start = skip.end
        self._out += self._layout(self._skip_blocks, self._base)

    def _record_span(self, info: DblkInfo) -> None:
        cap = info.captured
        csum = struct.unpack("<I", cap[b"CSUM"])[0] if len(cap.get(b"CSUM", b"")) == 4 else 0
        crc = struct.unpack("<I", cap[m.XCRC])[0] if len(cap.get(m.XCRC, b"")) == 4 else 0
        sha = cap.get(m.XSHA, b"")[:32].ljust(32, b"\0")
        self._spanned[info.file_id] = XSPN_ENTRY.pack(info.file_id, csum, crc, sha)

    def _drain(self, final: bool) -> None:
        """Write every full block (and, if ``final``, the last one padded with an ESPB)."""
        while True:
            try:
                while len(self._out) >= self.P:
                    block = bytes(self._out[: self.P])
                    self._write_data_block(block)
                    del self._out[: self.P]
                if final and self._out:
                    fill = len(self._out)
                    espb = m.build_small_dblk(
                        b"ESPB", {}, flb=self.flb, boundary=self.P - fill, with_crc=False,
                        fla=(self._base + self._out_off + fill) // self.flb, cbid=self._espb_cbid)
                    self._write_data_block(bytes(self._out) + espb)
                    self._out.clear()
                    self._espb_used = True
                return
            except _EndOfMedium:
                continue

    def _write_data_blocks(self, data) -> None:
        """Whole blocks straight from ``data``: runs of them in one call where the device offers
        ``write_blocks`` (the emulated drive), else, and for any block it does not take
        (early warning, first block of a set...), one :meth:`_write_data_block` each."""
        P = self.P
        many = getattr(self.target.device, "write_blocks", None) if isinstance(self.target, TapeTarget) else None
        i, n = 0, len(data)
        while i < n:
            if many is not None and (self._out_off or self._base):  # not the SSET's block (PBA patch)
                count = many(data[i:], P)
                if count:
                    i += count * P
                    self._out_off += count * P
                    self._tracker.prune(self._base + self._out_off)
                    continue
            self._write_data_block(data[i:i + P])
            i += P

    def _write_data_block(self, block) -> None:
        if self._out_off == 0 and self._base == 0:
            block = bytearray(block)
            struct.pack_into("<Q", block, 80, self._sset_pba)  # SSET Physical Block Address
        try:
            self.target.write_block(block)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            self._change_medium()
            raise _EndOfMedium from None
        self._out_off += self.P
        self._tracker.prune(self._base + self._out_off)

    # -- end of medium (§7.11) --
    def _retry(self, action) -> None:
        try:
            action()
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            action()  # st allows the next write after an ENOSPC (for trailers)

    def _change_medium(self) -> None:
        X = self._base + self._out_off  # original offset of the block that was not written
        if X < self._raw_start or (X <= self._medium_start and X != 0):
            raise MediaFullError(
                f"{self.target.name}: cartridge {self.sequence} reached early warning before any "
                "data of the set fitted on it (cartridge too small for block size "
                f"{self.P})")
        target = self.target
        self._retry(target.write_filemark)
        self._retry(lambda: target.write_block(build_eotm(self.last_eset_pba, block_size=self.P, flb=self.flb)))
        self._retry(target.write_filemark)
        self._next_cartridge()
        # What was due at X, and the context to repeat before it.
        info = self._tracker.at(X)
        prefix_extra = b""
        cont_file = None
        skip = None
        if info is None or info.start == X:
            case = "at a DBLK boundary"
            spanning = X
            context = self._tracker.context_before(X)
        elif info.kind == b"FILE" and info.data_start is not None and info.data_start <= X < info.data_end:
            case = "inside object data"
            spanning = X
            context = self._tracker.context_before(info.start)
            cont_file = info
            self._replace = info
            self._rep_done = info.data_end
        elif info.kind == b"FILE" and info.data_start is not None and X >= info.data_end:
            case = "inside a FILE's trailing streams"
            context = self._tracker.context_before(info.start)
            skip = info
            spanning = None
        elif len(info.head) >= X - info.start:
            case = "inside a DBLK's header part"
            spanning = info.start
            context = self._tracker.context_before(info.start)
            prefix_extra = bytes(info.head[: X - info.start])
        else:
            raise MediaFullError(f"{target.name}: cannot continue inside a {info.kind!r} DBLK "
                                 f"of more than {len(info.head)} bytes at offset {X}")
        log.info("end of medium: cartridge %d full at data-set offset %d (%s); continuing on %d",
                 self.sequence - 1, X, case, self.sequence)
        blocks = [self._continuation_prefix(c) for c in context]
        if cont_file is not None:
            head = self._continuation_prefix(cont_file, padded=False)
            head += m.build_stream_header(b"STAN", cont_file.data_end - X, media_attr=m.STREAM_CONTINUE)
            blocks.append(head + bytes(m.align(len(head), self.flb) - len(head)))
        total = sum(len(b) for b in blocks)
        self._out = bytearray()
        self._out_off = 0
        self._sset_pba = self.target.pba()
        if skip is not None:
            # The FILE's data is complete on the previous cartridge: drop the rest of its trailer
            # and put the context where the next DBLK begins.
            self._skip = skip
            self._replace = None
            self._skip_blocks, self._skip_total = blocks, total
            self._base = X - total  # provisional; fixed when the skip ends
        else:
            self._base = spanning - total
            self._medium_start = X
            self._out += self._layout(blocks, self._base) + prefix_extra
        # Re-emit the original bytes from X on (they are still held in self._raw).
        self._emit(self._raw_from(X), X)

    def _layout(self, blocks: list[bytes], base: int) -> bytearray:
        out = bytearray()
        for b in blocks:
            fla = (base + len(out)) // self.flb
            fixed = retag(b[: struct.unpack_from("<H", b, 8)[0]], fla=fla, attr_or=m.MTF_CONTINUATION)
            if fixed[:4] == b"SSET":
                struct.pack_into("<Q", fixed, 80, self._sset_pba)
            out += fixed + b[len(fixed):]
        return out

    def _continuation_prefix(self, info: DblkInfo, padded: bool = True) -> bytes:
        """The DBLK's fixed part and strings, streams dropped, SPAD to FLB (one or more FLBs)."""
        prefix = bytes(info.head[: info.first_event])
        if not padded:
            return prefix
        return prefix + m.padding_to(len(prefix), self.flb)

    def _next_cartridge(self) -> None:
        if self.next_medium is None:
            raise MediaFullError(f"{self.target.name}: end of medium on cartridge {self.sequence} "
                                 "and no next cartridge")
        if isinstance(self.target, TapeTarget):
            try:
                self.target.device.mtop(MtOp.MTOFFL, 1)
            except OSError as err:
                log.warning("unload of %s failed: %s", self.target.name, err)
        device = self.next_medium(self.sequence + 1)
        if device is None:
            raise MediaFullError(f"no cartridge for sequence {self.sequence + 1}")
        self.target = TapeTarget(device, self.P)
        self.sequence += 1
        self.write_media_header(continuation=True)

    # -- closing a set --
    def end_set(self, info: EsetInfo) -> SetPlacement:
        """Pad the data to the block boundary, then ``FM ESET FM`` (SFMBs on disk)."""
        cbid = info.next_cbid
        self._espb_cbid = cbid
        self._espb_used = False
        self._drain(final=True)
        if self._espb_used:
            cbid += 1
        spanned = [self._spanned[k] for k in sorted(self._spanned)]
        target = self.target
        # Immediate: the ESET and the set's closing filemark follow at once, and that last one
        # synchronises (the data is on the medium before anyone catalogs it); a synchronising
        # filemark here too would stop the tape once more per set for nothing.
        self._retry(lambda: target.write_filemark(immediate=True))
        eset = build_eset(info, cbid, spanned, block_size=self.P, flb=self.flb,
                          corrupt=info.corrupt_files)
        try:
            eset_pba = target.pba()
            target.write_block(eset)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            # EOM right after the set's data: EOTM here, continuation SSET (EOS_AT_EOM) there.
            log.info("end of medium: cartridge %d full at the ESET of set %d (data complete)",
                     self.sequence, info.set_number)
            self._retry(lambda: target.write_block(build_eotm(self.last_eset_pba, block_size=self.P, flb=self.flb)))
            self._retry(target.write_filemark)
            self._next_cartridge()
            sset = self._tracker.sset
            self._sset_pba = self.target.pba()
            prefix = retag(sset.head[: sset.first_event], fla=0,
                           attr_or=m.MTF_CONTINUATION | m.MTF_EOS_AT_EOM)
            struct.pack_into("<Q", prefix, 80, self._sset_pba)
            self.target.write_block(bytes(prefix) + m.padding_to(len(prefix), self.P))
            self.target.write_filemark()
            eset_pba = self.target.pba()
            self.target.write_block(eset)
        self.target.write_filemark()
        self.last_eset_pba = eset_pba
        placement = SetPlacement(info.set_number, self._first_sequence, self.sequence,
                                 self._first_sset_pba, eset_pba, sorted(self._spanned))
        self.placements.append(placement)
        self.next_set_number = info.set_number + 1
        self._in_set = False
        return placement




