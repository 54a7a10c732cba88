"""Damage, resync and fuzzing (spec mtf.md §7.13, §2 items 4-5).

Corruption at random offsets: every object the damage did not touch is recovered bit-exact, and
every touched object is either recovered bit-exact (the damage hit padding) or named in the
report (by name, by its FILE offset, by file ID or by a lost CBID range).
"""

import random
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtf_helpers import make_tree, read_media, recovered, write_bkf
from reference.format.reader import MtfReader
from reference.format.sources import Medium, TapMedium
from reference.format.tools import verification_report


def _clean_image(tmp_path, seed=3, n=10):
    objs = make_tree(random.Random(seed), n)
    path = tmp_path / "clean.bkf"
    write_bkf(path, objs)
    reader, _ = read_media([path])
    files = [b for b in reader.catalog.blocks if b.kind == "FILE"]
    extents = {e.name: (b.offset, b.offset + b.length, b.cbid, e.file_id)
               for e, b in zip(reader.catalog.objects(), files)}
    return objs, path.read_bytes(), extents


def _reported(lines, name, extent) -> bool:
    start, _end, cbid, file_id = extent
    text = "\n".join(lines)
    return (name in text or f" at {start}:" in text or f"file-id:{file_id}" in text
            or re.search(rf"\bcbid:{cbid}\b", text) is not None)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_7_13_corruption_loses_only_what_it_touches_and_reports_it(tmp_path, data):
    objs, image, extents = _clean_image(tmp_path)
    damaged = bytearray(image)
    ranges = []
    for _ in range(data.draw(st.integers(1, 3))):
        start = data.draw(st.integers(0, len(image) - 1))
        length = data.draw(st.integers(1, 700))
        end = min(len(image), start + length)
        rng = random.Random(data.draw(st.integers(0, 2**32)))
        uniform = data.draw(st.sampled_from([None, 0xA5, 0xFF]))  # uniform XOR keeps XOR16 valid
        for i in range(start, end):
            damaged[i] ^= uniform or rng.randrange(1, 256)
        ranges.append((start, end))
    medium = Medium("damaged.bkf", bytes(damaged))
    reader = MtfReader([medium])
    reader.read()
    got = recovered(reader)
    lines, _, _ = verification_report(reader)
    for o in objs:
        a, b, _cbid, _fid = extents[o.name]
        touched = any(s < b and a < e for s, e in ranges)
        if not touched:
            assert got.get(o.name) == o.data, f"untouched {o.name} not recovered; report: {lines}"
        elif got.get(o.name) != o.data:
            assert _reported(lines, o.name, extents[o.name]), f"{o.name} lost silently: {lines}"
    assert lines or all(got.get(o.name) == o.data for o in objs)


def test_7_13_damaged_file_header_reports_the_cbid_gap_and_continues(tmp_path):
    objs, image, extents = _clean_image(tmp_path, n=6)
    victim = sorted(extents.items(), key=lambda kv: kv[1][0])[2]
    damaged = bytearray(image)
    damaged[victim[1][0] + 20] ^= 0xFF  # FLA byte of the common header: XOR fails
    reader = MtfReader([Medium("d.bkf", bytes(damaged))])
    reader.read()
    lines, _, _ = verification_report(reader)
    assert any("resynchronised" in line for line in lines), lines
    assert any(f"control blocks (CBID) {victim[1][2]}..{victim[1][2]} lost" in line for line in lines), lines
    got = recovered(reader)
    assert victim[0] not in got
    assert all(got[o.name] == o.data for o in objs if o.name != victim[0])


def test_2_4_damaged_name_is_caught_by_xcrc(tmp_path):
    objs, image, extents = _clean_image(tmp_path, n=4)
    name, (start, *_rest) = next(iter(sorted(extents.items(), key=lambda kv: kv[1][0])))
    damaged = bytearray(image)
    damaged[start + 88] ^= 0x01  # first byte of the name: no header checksum covers it
    reader = MtfReader([Medium("d.bkf", bytes(damaged))])
    reader.read()
    lines, _, _ = verification_report(reader)
    assert any(f" at {start}:" in line and "XCRC" in line for line in lines), lines


def test_fuzz_sample_tail_and_bkf_never_crash_on_random_input():
    for seed in range(30):
        rng = random.Random(seed)
        blob = rng.randbytes(rng.randrange(0, 5000))
        reader = MtfReader([Medium("r", blob)])
        reader.read()
        verification_report(reader)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_mutated_images_never_crash_or_hang(tmp_path, data):
    objs, image, _ = _clean_image(tmp_path, seed=9, n=4)
    blob = bytearray(image)
    for _ in range(data.draw(st.integers(1, 20))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    reader = MtfReader([Medium("m", bytes(blob))])
    reader.read()
    lines, count, total = verification_report(reader)
    assert total <= len(blob) * 2 or count == 0 or lines  # never invents unbounded data


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.integers(0, 2**32 - 1))
def test_fuzz_simh_index_never_crashes(tmp_path, blob, word):
    path = tmp_path / "f.tap"
    path.write_bytes(word.to_bytes(4, "little") + blob)
    medium = TapMedium(path)
    try:
        reader = MtfReader([medium])
        reader.read()
        verification_report(reader)
    finally:
        medium.close()


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_media_writer_input_fails_cleanly(tmp_path, data):
    """The server feeds bytes received from an agent: malformed input is a CorruptDataError."""
    import io

    from reference.errors import CorruptDataError
    from reference.format.media import MediaWriter
    from reference.format.writer import DataSetWriter

    good = io.BytesIO()
    w = DataSetWriter(good)
    w.begin_volume("Mailboxes")
    w.begin_directory("a")
    w.add_file("x.eml", 3000, bytes(3000))
    info = w.end()
    blob = bytearray(good.getvalue())
    for _ in range(data.draw(st.integers(1, 10))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    mw = MediaWriter.create_bkf(tmp_path / f"f{data.draw(st.integers(0, 10**9))}.bkf")
    mw.begin_raw_set()
    try:
        for i in range(0, len(blob), 700):
            mw.feed(bytes(blob[i:i + 700]))
        mw.end_set(info)
    except CorruptDataError:
        pass
    finally:
        mw.close()
