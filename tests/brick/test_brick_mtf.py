"""Brick-level sets on MTF: written through the format library's DataSetWriter into a .bkf, read
back with its MtfReader, and restored from there (spec mtf.md; docs/brick-level.md "Packaging")."""

from __future__ import annotations

import datetime as dt

import pytest

from brick_helpers import BASE_DATE, backup, catalog_view, msg, put, snapshot
from hypothesis import given
from hypothesis import strategies as st

from reference.agent.brick import BrickCatalog, RestoreOptions, run_restore
from reference.agent.brick.mtf import DEVICE, escape_name, read_brick_sets, unescape_name, write_brick_set
from reference.format import MtfReader
from reference.format.media import MediaIdentity, MediaWriter
from reference.format.sources import open_medium

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5)


def _write_bkf(path, passes) -> None:
    mw = MediaWriter.create_bkf(path, block_size=1024, flb=1024,
                                identity=MediaIdentity(0x0B51C, "brick media", "", WHEN), now=lambda: WHEN)
    for number, objects in enumerate(passes, 1):
        writer = mw.begin_set(name=f"brick {number}", user="DOMAIN\\backup", write_date=WHEN)
        write_brick_set(objects, writer)
        mw.end_set(writer.end())
    mw.close()


def _read_bkf(path):
    reader = MtfReader([open_medium(path)])
    catalog = reader.read()
    return reader, catalog


def test_full_and_incremental_survive_a_bkf_round_trip(env, tmp_path):
    s, me = env.store, env.mailbox
    s.create_folder(me, ("Mr. Smith",))
    put(s, me, ("INBOX",), msg(1), {"\\Seen"})
    put(s, me, ("Mr. Smith",), msg(2, body=b"y" * 5000 + b"\r\n"), {"$Label1"}, BASE_DATE + 60)
    full, job = backup(env)
    put(s, me, ("Mr. Smith",), msg(3), ())
    s.set_flags(me, ("INBOX",), next(iter(s.list_items(me, ("INBOX",)))).uid, frozenset({"\\Flagged"}))
    incremental, _ = backup(env, job.state)
    path = tmp_path / "brick.bkf"
    _write_bkf(path, [full, incremental])

    reader, mtf_catalog = _read_bkf(path)
    assert not [p for p in mtf_catalog.problems if p.kind != "info"], mtf_catalog.problems
    assert all(v.device == DEVICE for st_ in mtf_catalog.sets for v in st_.volumes)
    sets = read_brick_sets(reader, mtf_catalog)
    assert len(sets) == 2
    from_tape = BrickCatalog.from_sets(sets)
    assert catalog_view(from_tape, me) == catalog_view(BrickCatalog.from_sets([full, incremental]), me)
    assert catalog_view(from_tape, me) == snapshot(s, me)

    result = run_restore(from_tape, s, RestoreOptions(target_mailbox=env.other))
    assert result.ok, result.failed
    wanted = catalog_view(from_tape, me)
    assert snapshot(s, env.other, folders=set(wanted)) == wanted


def test_damaged_body_on_media_is_reported_not_restored(env, tmp_path):
    s, me = env.store, env.mailbox
    put(s, me, ("INBOX",), msg(1, body=b"precious body\r\n"), {"\\Seen"})
    full, _ = backup(env)
    path = tmp_path / "brick.bkf"
    _write_bkf(path, [full])
    blob = bytearray(path.read_bytes())
    at = blob.find(b"precious body")
    blob[at] ^= 0xFF
    path.write_bytes(bytes(blob))
    reader, mtf_catalog = _read_bkf(path)
    catalog = BrickCatalog.from_sets(read_brick_sets(reader, mtf_catalog))
    result = run_restore(catalog, s, RestoreOptions(target_mailbox=env.other))
    assert not result.ok and "SHA-256" in result.failed[0][1]
    assert list(s.list_items(env.other, ("INBOX",))) == []


def test_damaged_metadata_record_is_a_clear_error(env, tmp_path):
    from reference.errors import CorruptDataError
    put(env.store, env.mailbox, ("INBOX",), msg(1), {"\\Seen"})
    full, _ = backup(env)
    path = tmp_path / "brick.bkf"
    _write_bkf(path, [full])
    blob = bytearray(path.read_bytes())
    at = blob.find(b'"message_id": "<brick-1@')
    blob[at + 3] ^= 0x01
    path.write_bytes(bytes(blob))
    reader, mtf_catalog = _read_bkf(path)
    with pytest.raises(CorruptDataError, match="records.jsonl"):
        read_brick_sets(reader, mtf_catalog)


@given(st.text(min_size=1, max_size=30))
def test_escaped_folder_names_are_safe_and_reversible(name):
    """Path safety: a DIRB component never holds '/', '\\', NUL, or is '.'/'..'; the name comes back."""
    escaped = escape_name(name)
    assert unescape_name(escaped) == name
    assert not {"/", "\\", "\0"} & set(escaped) and escaped not in (".", "..", "")
