"""``mailtape mtf ls|verify|extract|dump|convert`` over .bkf images and .tap cartridge families."""

import json
import random
import shutil
import subprocess

import pytest

from mtf_helpers import SHARED_MTF, Obj, write_bkf
from reference.cli.main import main
from reference.format.reader import MtfReader
from reference.format.sources import Medium
from reference.format.tools import extraction_path

OBJS = [
    Obj("Microsoft Information Store", ("First Storage Group", "Mailbox Store"), "priv1.edb",
        random.Random(1).randbytes(70000)),
    Obj("Microsoft Information Store", ("First Storage Group",), "E0000001.log", b"L" * 1000),
    Obj("Mailboxes", ("alice", "Inbox"), "0001.eml", b"Subject: hi\r\n\r\nbody\r\n"),
]


@pytest.fixture()
def bkf(tmp_path):
    path = tmp_path / "set.bkf"
    write_bkf(path, OBJS)
    return path


def run(capsys, *args):
    code = main(["mtf", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ls_and_json(bkf, capsys):
    code, out, _ = run(capsys, "ls", bkf)
    assert code == 0
    assert "Microsoft Information Store/First Storage Group/Mailbox Store/priv1.edb" in out
    code, out, _ = run(capsys, "ls", "--json", bkf)
    doc = json.loads(out)
    assert sorted(o["size"] for o in doc["sets"][0]["objects"]) == sorted(len(o.data) for o in OBJS)
    assert doc["media"][0]["family_id"] == 0x1234ABCD and doc["problems"] == []


def test_verify_ok_then_damage_names_medium_offset_and_object(bkf, tmp_path, capsys):
    code, out, _ = run(capsys, "verify", bkf)
    assert code == 0 and "0 problem(s)" in out
    data = bytearray(bkf.read_bytes())
    reader = MtfReader([Medium("x", bytes(data))])
    reader.read()
    edb = [e for e in reader.catalog.objects() if e.name == "priv1.edb"][0]
    data[edb.pieces[0].offset + 500] ^= 0x55
    bad = tmp_path / "bad.bkf"
    bad.write_bytes(data)
    code, _, err = run(capsys, "verify", bad)
    assert code == 1
    assert f"{bad} at {edb.offset}: object Microsoft Information Store/First Storage Group/" \
           "Mailbox Store/priv1.edb" in err and "SHA-256 mismatch" in err


def test_extract_writes_verified_objects(bkf, tmp_path, capsys):
    target = tmp_path / "out"
    code, out, _ = run(capsys, "extract", bkf, "-C", target)
    assert code == 0 and "3 object(s)" in out
    for o in OBJS:
        assert target.joinpath(o.volume, *o.path, o.name).read_bytes() == o.data


def test_extract_refuses_paths_that_escape_the_target(tmp_path):
    from reference.errors import CorruptDataError
    from reference.format.reader import ObjectEntry

    for volume, path, name in [("..", [], "x"), ("v", ["..", ".."], "x"), ("v", ["a/../../b"], "x"),
                               ("v", [], "../evil"), ("v", [], "a\\..\\b"), ("v", [""], "x")]:
        entry = ObjectEntry(1, volume, path, name, 0, 1, 1, "m", 0)
        with pytest.raises(CorruptDataError):
            extraction_path(tmp_path, entry)
    link = tmp_path / "v"
    link.symlink_to(tmp_path.parent)
    with pytest.raises(CorruptDataError):
        extraction_path(tmp_path, ObjectEntry(1, "v", [], "x", 0, 1, 1, "m", 0))


def test_dump_shows_blocks_and_streams(bkf, capsys):
    code, out, _ = run(capsys, "dump", "--hex", "32", bkf)
    assert code == 0
    assert "TAPE" in out and "FILE" in out and "STAN" in out and "XSHA" in out
    assert "54 41 50 45" in out  # hex of "TAPE"


def test_dump_and_ls_on_sql_server_sample(capsys):
    sample = SHARED_MTF / "sqlserver-a.bak"
    if not sample.is_file():
        pytest.skip(f"shared MTF samples not found at {SHARED_MTF}")
    code, out, _ = run(capsys, "ls", sample)
    assert code == 0 and "test-Full Database Backup" in out and "7 unknown DBLK(s)" in out


def test_convert_tap_family_to_bkf(tmp_path, capsys):
    pytest.importorskip("emulators.tape.drive")
    import test_spanning

    paths, _ = test_spanning._family(tmp_path, 2048, 8, test_spanning.SPAN_OBJECTS)
    assert len(paths) > 1
    code, out, err = run(capsys, "verify", "-q", *reversed(paths))
    assert code == 0, err
    out_bkf = tmp_path / "all.bkf"
    code, out, err = run(capsys, "convert", *paths, "-o", out_bkf)
    assert code == 0, err
    code, out, err = run(capsys, "verify", out_bkf)
    assert code == 0 and f"{len(test_spanning.SPAN_OBJECTS)} object(s)" in out
    target = tmp_path / "x"
    code, out, err = run(capsys, "extract", out_bkf, "-C", target)
    too_long = [o for o in test_spanning.SPAN_OBJECTS if len(o.name.encode()) > 255]
    assert code == (1 if too_long else 0)
    for o in test_spanning.SPAN_OBJECTS:
        if o in too_long:  # the OS limit (255 bytes), reported per object, nothing else stops
            assert f"{o.name}: cannot write: File name too long" in err
        else:
            assert target.joinpath(o.volume, *o.path, o.name).read_bytes() == o.data


def test_missing_file_is_one_line_error(tmp_path, capsys):
    code, _, err = run(capsys, "ls", tmp_path / "nope.bkf")
    assert code == 1 and err.count("\n") == 1 and "nope.bkf" in err


@pytest.mark.skipif(shutil.which("file") is None, reason="file(1) not installed")
def test_8_file_recognises_our_tape_block(tmp_path):
    """Spec §2 item 2 / §7.12 rule 9: file(1) prints name, label, software and vendor ID."""
    import datetime as dt

    from mtf_helpers import write_objects
    from reference.format.media import MediaIdentity, MediaWriter, media_label

    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    path = tmp_path / "labelled.bkf"
    mw = MediaWriter.create_bkf(path, identity=MediaIdentity(
        0xABCD, "Nightly", media_label("000001L9", when, 0xABCD), when))
    write_objects(mw, OBJS[:1])
    mw.close()
    out = subprocess.run(["file", str(path)], capture_output=True, text=True).stdout
    assert ("Windows NTbackup archive NT, name: Nightly, label: MTF Media Label|1.0|mailtape|mailtape|"
            "2026/01/02.03:04:05|000001L9|1|{0000ABCD}||, software (0x6d74): mailtape") in out


def test_extract_never_overwrites_the_same_path_from_another_set(tmp_path, capsys):
    path = tmp_path / "two.bkf"
    write_bkf(path, OBJS[:1], sets=2)
    code, out, err = run(capsys, "extract", path, "-C", tmp_path / "x")
    assert code == 1 and "same path as an object already extracted" in err
    code, out, err = run(capsys, "extract", path, "-C", tmp_path / "y", "--set", "2")
    assert code == 0 and "1 object(s)" in out
