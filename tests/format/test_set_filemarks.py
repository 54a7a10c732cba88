"""The filemarks around a data set's ESET (spec mtf.md §7.12 layout: data, FM, ESET, FM): the
first is immediate (MTWEOFI, spec tape-drive.md: queued behind the buffered data, the drive keeps
streaming into the ESET), the last synchronises (MTWEOF: the set is on the medium before the
server catalogs it). So a set end stops the tape once, not twice."""

from __future__ import annotations

import random

from mtf_helpers import TapeFamily, make_tree, read_media, recovered, write_objects
from reference.format.media import MediaWriter
from reference.protocols.tape import MtOp

FILEMARKS = (MtOp.MTWEOF, MtOp.MTWEOFI)


class FilemarkLog:
    """The device, with the filemark requests it gets listed in order."""

    def __init__(self, device):
        self._device = device
        self.filemarks: list[MtOp] = []

    def mtop(self, op, count: int = 1) -> None:
        if op in FILEMARKS:
            self.filemarks.append(MtOp(op))
        self._device.mtop(op, count)

    def __getattr__(self, name):
        return getattr(self._device, name)


def test_a_set_ends_with_an_immediate_then_a_synchronising_filemark(tmp_path):
    family = TapeFamily(tmp_path, 64 << 20, 1 << 20, count=1)
    device = FilemarkLog(family.device)
    mw = MediaWriter.for_tape(device, block_size=4096)
    mw.write_media_header()
    objs = make_tree(random.Random(3), 6)
    write_objects(mw, objs[:3], name="first")
    write_objects(mw, objs[3:], name="second")
    # header FM; then per set: FM (immediate) before the ESET, FM (synchronising) after it
    assert device.filemarks == [MtOp.MTWEOF] + [MtOp.MTWEOFI, MtOp.MTWEOF] * 2
    reader, _media = read_media(family.finish())
    assert recovered(reader) == {o.name: o.data for o in objs}
    assert [s.number for s in reader.catalog.sets] == [1, 2]
