"""MTF reader: walks DBLKs and streams, verifies, resyncs after damage, reassembles spanned objects.

Walk (spec ``mtf.md`` §7.13 and ``samples/mtf/README.md``): read the 52-byte common header and
verify it; SFMB advances by its own size; every other DBLK (known or not) is walked through its
stream chain up to and including SPAD. On a bad header the reader steps through the medium in
512-byte steps and accepts only a known DBLK type whose XOR verifies, whose Offset To First
Event is sane and whose FLA/CBID are beyond the last good ones; the CBID gap is reported as lost.
Media are sorted by media family and sequence; objects continued across media are joined.
"""

from __future__ import annotations

import hashlib

from . import mtf_structs as m
from .catalog import Catalog, ObjectEntry, Problem  # noqa: F401 (ObjectEntry: public here too)
from .sources import Medium
from .walk import _MediumWalk, _WalkState
from .xor32 import Xor32


class MtfReader:
    """Reads media (``Medium`` objects) into a :class:`Catalog`; ``keep_blocks`` for ``dump``."""

    def __init__(self, media: list[Medium], *, keep_blocks: bool = False):
        self.catalog = Catalog()
        self._keep = keep_blocks
        self.media = self._order(media)
        self._state = _WalkState()  # what carries over from one medium to the next

    # -- ordering media (§7.11: family ID + sequence) --
    def _order(self, media: list[Medium]) -> list[Medium]:
        """Sorted by (family ID, sequence); a medium whose TAPE block is unreadable keeps the
        place it was given in (the best guess left)."""
        keyed, loose = [], {}
        for idx, med in enumerate(media):
            head = med.read(0, m.DB_HDR_SIZE + 42)
            if len(head) >= 94 and bytes(head[:4]) == b"TAPE" and m.header_ok(head):
                t = m.TapeFixed.parse(bytes(head[52:94]))
                keyed.append(((t.family_id, t.sequence, idx), med))
            else:
                loose[idx] = med
        keyed.sort(key=lambda kv: kv[0])
        ordered = iter(med for _, med in keyed)
        return [loose[i] if i in loose else next(ordered) for i in range(len(media))]

    # -- main walk --
    def read(self) -> Catalog:
        for index in range(len(self.media)):
            self.walk(index)
        for entry in self._state.open_objects():
            entry.incomplete = True
            self._problem_at(entry.medium, entry.offset, "incomplete",
                             f"object continues on a cartridge that was not given "
                             f"(have {entry.received} of {entry.size} bytes)", [entry.display_path])
        for s in self.catalog.sets:
            if not s.ended:
                self._problem_at(self.media[-1].name if self.media else "-", 0, "incomplete",
                                 f"data set {s.number} has no ESET (set not finished on the given media)")
        return self.catalog

    def walk(self, index: int) -> None:
        """Walk medium ``index`` into the catalog, carrying the set, volume, directory and open
        objects over from the media walked before it: one step of :meth:`read`, for a caller that
        loads cartridges one at a time (a restore reads only as far as it needs)."""
        medium = self.media[index]
        for off, msg in medium.problems:
            self._problem(medium, off, "medium", msg)
        _MediumWalk(self, self._state, index, medium).run()

    def _problem(self, medium: Medium, offset: int, kind: str, message: str, objects=()) -> None:
        self.catalog.problems.append(Problem(medium.name, offset, kind, message, list(objects)))

    def _problem_at(self, name: str, offset: int, kind: str, message: str, objects=()) -> None:
        self.catalog.problems.append(Problem(name, offset, kind, message, list(objects)))

    # -- verification and extraction --
    def iter_object(self, entry: ObjectEntry, chunk: int = 1 << 20):
        for piece in entry.pieces:
            yield from self.media[piece.medium].iter_range(piece.offset, piece.length, chunk)

    def verify_object(self, entry: ObjectEntry, sink=None) -> list[str]:
        """Hash the object's data (optionally copying it to ``sink``); returns what is wrong."""
        sha = hashlib.sha256() if entry.sha256 else None
        xor = Xor32() if entry.csum is not None else None
        got = 0
        for view in self.iter_object(entry):
            if sha is not None:
                sha.update(view)
            if xor is not None:
                xor.update(view)
            if sink is not None:
                sink(view)
            got += len(view)
        wrong = []
        if entry.damaged:
            wrong.append(entry.damaged)
        if got != entry.size:
            wrong.append(f"have {got} of {entry.size} bytes")
        elif sha is not None and sha.digest() != entry.sha256:
            wrong.append("SHA-256 mismatch (XSHA)")
        if entry.expects_csum and entry.csum is None:
            wrong.append("CSUM missing (STAN says one follows; for a spanned object it is kept in "
                         "the ESET of the last cartridge)")
        if got == entry.size and xor is not None and xor.value() != entry.csum:
            wrong.append(f"CSUM mismatch (stored 0x{entry.csum:08X}, data 0x{xor.value():08X})")
        if entry.header_ok is False:
            wrong.append("FILE header damaged (XCRC mismatch): name or IDs unreliable")
        if entry.corrupt_flag:
            wrong.append("writer marked the object corrupt (CFIL)")
        return wrong
