"""The media writer's runs of whole blocks (``MediaWriter._write_data_blocks``): where the device
offers ``write_blocks`` (the emulated drive) a chunk's blocks go down in one call; the cartridges
must come out byte-identical to one ``write()`` per block, spanning (spec mtf.md §7.11) included.
"""

from __future__ import annotations

import datetime as dt
import random

from hypothesis import HealthCheck, given, settings, strategies as st

from mtf_helpers import TapeFamily, make_tree, read_media, recovered
from reference.format.media import MediaIdentity, MediaWriter
from reference.format.writer import DataSetWriter

RECORD = 8
DATE = dt.datetime(2026, 11, 26, 6, 0, 0)


class PerBlockOnly:
    """The same device without ``write_blocks``: what a real st drive offers."""

    def __init__(self, device):
        self._device = device

    def __getattr__(self, name):
        if name == "write_blocks":
            raise AttributeError(name)
        return getattr(self._device, name)


def data_set(objs, set_number: int) -> bytes:
    out = bytearray()
    w = DataSetWriter(out.extend, set_number=set_number, name="job", write_date=DATE)
    w.begin_volume("Microsoft Information Store", "SG1", "EXCH01")
    w.begin_directory(["SG1", "DB1"])
    for o in objs:
        w.add_file(o.name, len(o.data), o.data, modified=DATE)
    return bytes(out), w.end()


def write_family(folder, objs, P, ew_block, chunks, batched: bool):
    capacity = (P + RECORD) * (ew_block + 1) + 4 + (P + RECORD) * 3 + 64
    family = TapeFamily(folder, capacity, (P + RECORD) * 3 + 64, count=200)
    wrap = (lambda d: d) if batched else PerBlockOnly

    def next_medium(sequence):
        device = family.next_medium(sequence)
        return None if device is None else wrap(device)

    mw = MediaWriter.for_tape(wrap(family.device), block_size=P, next_medium=next_medium,
                              identity=MediaIdentity(0xFEED0002, "fam", "", DATE), rng=random.Random(0),
                              now=lambda: DATE)
    mw.write_media_header()
    number = mw.begin_raw_set()
    raw, eset = data_set(objs, number)
    view, i = memoryview(bytearray(raw)), 0
    for size in chunks:  # a reused writable buffer per chunk, as the transfer pool delivers them
        mw.feed(view[i:i + size])
        i += size
    mw.feed(view[i:])
    placement = mw.end_set(eset)
    return family.finish(), placement


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.sampled_from([1024, 4096]), st.integers(6, 40),
       st.lists(st.integers(1, 40000), max_size=6))
def test_block_runs_write_the_same_cartridges_as_one_write_per_block(tmp_path_factory, seed, P, ew_block, chunks):
    rng = random.Random(seed)
    objs = make_tree(rng, rng.randrange(1, 7), sizes=(0, 1, 100, 3000, 20000, 50000))
    images = []
    for batched in (False, True):
        folder = tmp_path_factory.mktemp("runs")
        paths, placement = write_family(folder, objs, P, ew_block, chunks, batched)
        images.append(([p.read_bytes() for p in paths], placement))
    assert images[0] == images[1]
    reader, _ = read_media(paths)
    assert recovered(reader) == {o.name: o.data for o in objs}
