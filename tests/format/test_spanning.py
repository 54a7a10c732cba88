"""Spanning across cartridges on the emulated drive (spec mtf.md §7.11; tape-drive.md §2.4 EOM).

Early warning is placed at every block boundary of a data set in turn; the family is read back
with the cartridges in any order and every object must come back bit-exact.
"""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("emulators.tape.drive", reason="emulated tape drive not available")

from mtf_helpers import Obj, TapeFamily, make_tree, read_media, recovered, write_objects  # noqa: E402
from reference.format import mtf_structs as m  # noqa: E402
from reference.format.media import MediaFullError, MediaIdentity, MediaWriter  # noqa: E402
from reference.format.tools import verification_report  # noqa: E402

RECORD = 8  # SIMH framing per record


def _family(tmp_path, P, ew_block, objs, sets=1, cartridges=500, flb=1024):
    """Write ``objs`` with early warning after ``ew_block`` data blocks of each cartridge."""
    capacity = (P + RECORD) * (ew_block + 1) + 4 + (P + RECORD) * 3 + 64
    family = TapeFamily(tmp_path, capacity, (P + RECORD) * 3 + 64, count=cartridges)
    mw = MediaWriter.for_tape(family.device, block_size=P, next_medium=family.next_medium,
                              identity=MediaIdentity(0xFEED0001, "fam", "", None),
                              rng=random.Random(0), flb=flb)
    mw.write_media_header()
    placements = []
    for s in range(sets):
        _w, placement = write_objects(mw, objs, name=f"job{s}")
        placements.append(placement)
    return family.finish(), placements


SPAN_OBJECTS = [
    Obj("Microsoft Information Store", ("SG1", "DB1"), "priv1.edb", random.Random(1).randbytes(9000)),
    Obj("Microsoft Information Store", ("SG1", "DB1"), "priv1.stm", b""),
    Obj("Microsoft Information Store", ("SG1",), "E0000001.log", random.Random(2).randbytes(2500)),
    Obj("Microsoft Information Store", ("SG1",), "E0000002.log", random.Random(3).randbytes(1)),
    Obj("Mailboxes", ("alice", "Inbox"), "m1.eml", random.Random(4).randbytes(1500)),
    Obj("Mailboxes", ("alice", "Inbox"), "m2.eml", random.Random(5).randbytes(4097)),
    # a name longer than one FLB: the FILE's header part spans FLBs (split inside a DBLK prefix)
    Obj("Mailboxes", ("alice", "Inbox"), "L" * 700 + ".eml", random.Random(6).randbytes(3000)),
]


@pytest.mark.parametrize("P", [1024, 2048])
def test_7_11_spanning_at_every_block_boundary(tmp_path, P, caplog):
    caplog.set_level("INFO", logger="reference.format.media")
    want = {o.name: o.data for o in SPAN_OBJECTS}
    spanned_any = 0
    for ew_block in range(6 * 1024 // P + 2, 36):
        folder = tmp_path / f"P{P}-ew{ew_block}"
        folder.mkdir()
        paths, placements = _family(folder, P, ew_block, SPAN_OBJECTS)
        reader, _ = read_media(list(reversed(paths)))  # any order: sorted by family + sequence
        lines, count, _ = verification_report(reader)
        assert lines == [], (ew_block, lines)
        assert recovered(reader) == want, ew_block
        assert [x.sequence for x in reader.catalog.media] == list(range(1, len(paths) + 1))
        spanned_any += bool(placements[0].spanned_files)
    assert spanned_any >= 5
    cases = {c for c in ("at a DBLK boundary", "inside object data", "inside a FILE's trailing streams",
                         "inside a DBLK's header part") if c in caplog.text}
    if P == 1024:
        assert len(cases) == 4, cases


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                  HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.sampled_from([1024, 4096]), st.integers(8, 60), st.integers(1, 2),
       st.sampled_from([512, 1024]))
def test_7_11_random_trees_span_and_reassemble(tmp_path_factory, seed, P, ew_block, sets, flb):
    rng = random.Random(seed)
    objs = make_tree(rng, rng.randrange(1, 9), sizes=(0, 1, 100, 3000, 20000, 50000))
    folder = tmp_path_factory.mktemp("span")
    paths, _ = _family(folder, P, ew_block, objs, sets=sets, flb=flb)
    order = paths[:]
    rng.shuffle(order)
    reader, _ = read_media(order)
    lines, count, _ = verification_report(reader)
    assert lines == []
    assert count == len(objs) * sets
    assert recovered(reader) == {o.name: o.data for o in objs}


def test_7_11_continuation_blocks_follow_the_profile(tmp_path):
    paths, placements = _family(tmp_path, 2048, 6, SPAN_OBJECTS)
    assert len(paths) >= 2 and placements[0].spanned_files
    reader, _ = read_media(paths)
    by_medium = {}
    for b in reader.catalog.blocks:
        by_medium.setdefault(b.medium, []).append(b)
    first = by_medium[str(paths[0])]
    assert first[0].kind == "TAPE" and first[-1].kind == "EOTM"
    assert (first[-1].fla, first[-1].cbid) == (0, 0)
    second = by_medium[str(paths[1])]
    assert second[0].kind == "TAPE" and second[0].attr & m.MTF_CONTINUATION
    assert second[1].kind == "SSET" and second[1].attr & m.MTF_CONTINUATION
    conts = [b for b in second if b.attr & m.MTF_CONTINUATION and b.kind != "TAPE"]
    flas = [b.fla for b in conts]
    assert flas == list(range(flas[0], flas[0] + len(flas)))  # FLAs just below the spanning point
    for b in conts:
        if b.kind == "FILE" and any(s[1] == "STAN" for s in b.streams):
            stan = [s for s in b.streams if s[1] == "STAN"][0]
            assert stan[3] & m.STREAM_CONTINUE
            assert [s[1] for s in b.streams] == ["STAN", "SPAD"]  # rule 4: no CSUM after it
        elif b.kind != "FILE":
            assert [s[1] for s in b.streams] == ["SPAD"]  # context repeated, streams dropped


def test_7_11_missing_cartridge_is_reported_and_the_rest_recovered(tmp_path):
    paths, placements = _family(tmp_path, 2048, 5, SPAN_OBJECTS)
    assert len(paths) >= 3
    reader, _ = read_media(paths[:1] + paths[2:])
    lines, _, _ = verification_report(reader)
    assert lines
    got = recovered(reader)
    assert got and all(got[name] == o.data for o in SPAN_OBJECTS for name in [o.name] if name in got)


def test_7_11_no_next_cartridge_raises_media_full(tmp_path):
    family = TapeFamily(tmp_path, 40000, 8000, count=1)
    mw = MediaWriter.for_tape(family.device, block_size=2048)
    mw.write_media_header()
    with pytest.raises(MediaFullError):
        write_objects(mw, [Obj("Mailboxes", ("a",), "big", bytes(100000))])


def test_7_2_append_a_set_to_a_recorded_cartridge(tmp_path):
    family = TapeFamily(tmp_path, 10_000_000, 100_000, count=1)
    mw = MediaWriter.for_tape(family.device, block_size=4096)
    mw.write_media_header()
    first = [Obj("Mailboxes", ("a",), "one.eml", b"1" * 5000)]
    write_objects(mw, first)
    family.device.close()
    family.device = family.drive.open()
    mw2 = MediaWriter.append_to_tape(family.device)
    assert mw2.next_set_number == 2 and mw2.identity.family_id == mw.identity.family_id
    second = [Obj("Mailboxes", ("b",), "two.eml", b"2" * 7000)]
    write_objects(mw2, second)
    paths = family.finish()
    reader, _ = read_media(paths)
    assert [s.number for s in reader.catalog.sets] == [1, 2]
    assert recovered(reader) == {"one.eml": first[0].data, "two.eml": second[0].data}
    assert verification_report(reader)[0] == []


def test_7_11_spanning_through_the_emulated_library(tmp_path):
    library = pytest.importorskip("emulators.tape.library")
    from emulators.tape.drive import EmulatedDrive
    from reference.format.media import ChangerFeeder

    P = 4096
    library.create_library(tmp_path / "lib", drives=1, slots=6, import_export=0, media="LTO-6",
                           capacity_bytes=60_000, early_warning_bytes=20_000)
    drive = EmulatedDrive("LTO-6")
    changer = library.EmulatedLibrary(tmp_path / "lib", drives={0: drive})
    feeder = ChangerFeeder(changer, drive.open)
    mw = MediaWriter.for_tape(feeder.first(), block_size=P, next_medium=feeder)
    mw.write_media_header()
    objs = [Obj("Mailboxes", ("carol", "Inbox"), f"{i}.eml", random.Random(i).randbytes(9000)) for i in range(8)]
    write_objects(mw, objs)
    feeder.device.close()
    changer.unload(None, 0)
    assert len(feeder.used) > 1
    names = [e.barcode for e in changer.status().slots if e.number in feeder.used]
    paths = [changer.cartridge_path(n) for n in names]
    reader, _ = read_media(paths)
    assert verification_report(reader)[0] == []
    assert recovered(reader) == {o.name: o.data for o in objs}


def test_7_11_gaps_in_a_family_are_reported(tmp_path):
    paths, placements = _family(tmp_path, 2048, 6, SPAN_OBJECTS)
    assert len(paths) >= 3
    reader, _ = read_media([paths[0], paths[2]])
    kinds = {p.kind for p in reader.catalog.problems}
    assert "missing" in kinds
    lines, _, _ = verification_report(reader)
    reader_last_missing, _ = read_media(paths[:-1])  # the ESET (and XSPN digests) is on the last one
    lines_last, _, _ = verification_report(reader_last_missing)
    assert any("no ESET" in line or "CSUM missing" in line or "incomplete" in line for line in lines_last)


def test_7_11_two_families_are_not_joined(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    paths_a, _ = _family(tmp_path / "a", 2048, 6, SPAN_OBJECTS)
    objs_b = [Obj("Mailboxes", ("zed",), "z.eml", b"z" * 20000)]
    family = TapeFamily(tmp_path / "b", 10_000_000, 100_000, count=1)
    mw = MediaWriter.for_tape(family.device, block_size=2048, identity=MediaIdentity(0x0B0B0B0B))
    mw.write_media_header()
    write_objects(mw, objs_b)
    paths_b = family.finish()
    reader, _ = read_media(paths_b + paths_a[:1])  # family A's first cartridge only
    got = recovered(reader)
    assert got["z.eml"] == objs_b[0].data
    lines, _, _ = verification_report(reader)
    assert any("incomplete" in line or "not given" in line for line in lines)


def test_compressed_cartridges_are_read_through_the_tag_bytes(tmp_path):
    from emulators.tape.cartridge import Cartridge
    from emulators.tape.drive import EmulatedDrive
    from reference.protocols.tape import MtOp

    cart = Cartridge.create(tmp_path / "z.tap", barcode="ZIP001L6", capacity_bytes=10_000_000,
                            compression=True)
    drive = EmulatedDrive("LTO-6")
    drive.load(cart)
    device = drive.open()
    device.mtop(MtOp.MTCOMPRESSION, 1)
    mw = MediaWriter.for_tape(device, block_size=4096)
    mw.write_media_header()
    objs = [Obj("Mailboxes", ("a",), "text.eml", b"hello world " * 5000),
            Obj("Mailboxes", ("a",), "rand.bin", random.Random(3).randbytes(30000))]
    write_objects(mw, objs)
    device.close()
    drive.unload()
    assert (tmp_path / "z.tap").stat().st_size < 60000 + 30000  # the text compressed
    reader, _ = read_media([tmp_path / "z.tap"])
    assert verification_report(reader)[0] == []
    assert recovered(reader) == {o.name: o.data for o in objs}


class _RefuseOnce:
    """Fault-injection wrapper: the first write whose block starts with ``magic`` fails with
    ENOSPC (as st does at early warning), everything else goes to the emulated device."""

    def __init__(self, device, magic: bytes):
        self._device, self._magic, self.fired = device, magic, False
        self.name = device.name

    def write(self, block):
        import errno

        if not self.fired and bytes(block[:4]) == self._magic:
            self.fired = True
            raise OSError(errno.ENOSPC, "early warning (injected)")
        return self._device.write(block)

    def __getattr__(self, name):
        return getattr(self._device, name)


def test_7_11_eom_at_the_eset_continues_with_an_eos_at_eom_sset(tmp_path, caplog):
    caplog.set_level("INFO", logger="reference.format.media")
    family = TapeFamily(tmp_path, 10_000_000, 100_000, count=3)
    wrapped = _RefuseOnce(family.device, b"ESET")
    mw = MediaWriter.for_tape(wrapped, block_size=4096, next_medium=family.next_medium)
    mw.write_media_header()
    objs = [Obj("Mailboxes", ("a",), "one.eml", b"1" * 9000)]
    write_objects(mw, objs)
    paths = family.finish()
    assert wrapped.fired and len(paths) == 2 and "at the ESET" in caplog.text
    reader, _ = read_media(paths)
    assert verification_report(reader)[0] == []
    second = [b for b in reader.catalog.blocks if b.medium == str(paths[1])]
    assert [b.kind for b in second[:3]] == ["TAPE", "SSET", "ESET"]
    assert second[1].attr & m.MTF_EOS_AT_EOM and second[1].attr & m.MTF_CONTINUATION
    assert recovered(reader) == {"one.eml": objs[0].data}
    assert reader.catalog.sets[0].ended


def test_7_11_eom_before_a_set_starts_puts_the_whole_set_on_the_next_cartridge(tmp_path):
    family = TapeFamily(tmp_path, 10_000_000, 100_000, count=3)
    wrapped = _RefuseOnce(family.device, b"SSET")
    mw = MediaWriter.for_tape(wrapped, block_size=4096, next_medium=family.next_medium)
    mw.write_media_header()
    objs = [Obj("Mailboxes", ("a",), "one.eml", b"1" * 9000)]
    write_objects(mw, objs)
    paths = family.finish()
    reader, _ = read_media(paths)
    assert verification_report(reader)[0] == []
    first = [b.kind for b in reader.catalog.blocks if b.medium == str(paths[0])]
    assert first == ["TAPE", "EOTM"]
    assert recovered(reader) == {"one.eml": objs[0].data}


@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                  HealthCheck.too_slow])
@given(st.data())
def test_7_13_damage_on_one_cartridge_of_a_family(tmp_path_factory, data):
    """Bytes of one cartridge's records are corrupted: every object whose DBLKs (and, when it
    spans, the ESET holding its digests) are untouched comes back bit-exact; the rest is reported."""
    import struct as _struct

    from reference.format.sources import TapMedium

    folder = tmp_path_factory.mktemp("dmg")
    paths, _ = _family(folder, 2048, 7, SPAN_OBJECTS)
    clean, media = read_media(paths)
    extents = {}  # name -> list of (medium name, start, end)
    eset_extent = None
    by_name = {str(p): med for p, med in zip(paths, media)}
    for b in clean.catalog.blocks:
        if b.kind == "FILE":
            raw = bytes(by_name[b.medium].read(b.offset, 88))
            file_id = _struct.unpack_from("<I", raw, 80)[0]
            name = [e.name for e in clean.catalog.objects() if e.file_id == file_id][0]
            extents.setdefault(name, []).append((b.medium, b.offset, b.offset + b.length))
        if b.kind == "ESET":
            eset_extent = (b.medium, b.offset, b.offset + b.length)
    spans = {e.name for e in clean.catalog.objects() if len({p.medium for p in e.pieces}) > 1}
    victim = data.draw(st.sampled_from(paths))
    tap = TapMedium(victim)
    records = [(tap._rec_stream[i], tap._rec_file[i], tap._rec_len[i]) for i in range(len(tap._rec_stream))]
    tap.close()
    blob = bytearray(victim.read_bytes())
    stream_start, file_off, length = data.draw(st.sampled_from(records))
    at = data.draw(st.integers(0, length - 1))
    n = data.draw(st.integers(1, min(400, length - at)))
    for i in range(n):
        blob[file_off + at + i] ^= 0xA5
    victim.write_bytes(blob)
    damage = (str(victim), stream_start + at, stream_start + at + n)

    def hit(extent):
        return extent[0] == damage[0] and extent[1] < damage[2] and damage[1] < extent[2]

    reader, _ = read_media(paths)
    got = recovered(reader)
    lines, _, _ = verification_report(reader)
    for o in SPAN_OBJECTS:
        touched = any(hit(x) for x in extents[o.name]) or (o.name in spans and hit(eset_extent))
        if not touched:
            assert got.get(o.name) == o.data, (o.name, damage, lines)
        elif got.get(o.name) != o.data:
            text = "\n".join(lines)
            assert o.name in text or any(f" at {x[1]}:" in text for x in extents[o.name]) or "cbid:" in text, \
                (o.name, lines)
