"""Pages as ESE writes them (issue 6) and the lazily built record index (issue 10).

A page's dbtime is the LSN of the newest heap entry that wrote into it, so the data pages depend
on the heap alone, never on when flushes happened: a replayed database is page-identical to the
live one. Opening (mounting) reads only the header; the record index is built on first need."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from exchange_test_helpers import SG1, db_name, fill
from hypothesis import given, settings
from hypothesis import strategies as st

from emulators.exchange import ground_truth
from emulators.exchange.engine.pagefile import OP_DELETE, OP_PUT, PageFile
from emulators.exchange.harness import run_backup, run_restore
from emulators.exchange.ondisk.checksum import bad_pages
from emulators.exchange.ondisk.structs import DbHeader
from reference.protocols.exchange import ExchangeError

CB = 4096


def _new_file(path) -> PageFile:
    return PageFile.create(str(path), CB, DbHeader(), has_copy_diff=False)


def _data_pages(path) -> bytes:
    with open(path, "rb") as f:
        f.seek(2 * CB)
        return f.read()


entries = st.lists(st.tuples(st.integers(0, 3),  # LSN step (0: same transaction)
                             st.sampled_from(["t", "u", "stream.body"]), st.integers(0, 40),
                             st.integers(0, 9000), st.booleans(),  # value size, delete
                             st.sampled_from(["", "", "", "flush", "reopen"])),
                   min_size=1, max_size=60)


@settings(max_examples=40, deadline=None)
@given(ops=entries)
def test_pages_depend_on_the_heap_not_on_when_flushes_happened(tmp_path_factory, ops):
    """Issue 6: the same entries flushed at arbitrary moments (and across a reopen) or once at the
    end give byte-identical data pages; the digests of the live file (unflushed tail rendered,
    nothing written) equal those of the flushed file."""
    tmp = tmp_path_factory.mktemp("pages")
    live, once = _new_file(tmp / "live.edb"), _new_file(tmp / "once.edb")
    lsn = 1
    for step, table, k, size, delete, then in ops:
        lsn += step
        op, value = (OP_DELETE, b"") if delete else (OP_PUT, bytes([k]) * size)
        for pf in (live, once):
            pf.append(lsn, op, table, b"key%d" % k, value)
        if then == "flush":
            live.flush(lsn)
        elif then == "reopen":
            live.flush(lsn)
            live.close()
            live = PageFile.open(str(tmp / "live.edb"), CB, False)
    rendered = live.data_page_digests(hashlib.sha256)
    live.flush(lsn)
    once.flush(lsn)
    assert live.data_page_digests(hashlib.sha256) == rendered
    live.close()
    once.close()
    pages = _data_pages(tmp / "live.edb")
    assert pages == _data_pages(tmp / "once.edb")
    assert [hashlib.sha256(pages[i:i + CB]).digest() for i in range(0, len(pages), CB)] == rendered
    assert bad_pages(pages, CB, 1).size == 0


def test_page_dbtime_is_the_lsn_of_the_last_entry_written_into_it(tmp_path):
    """ESE stamps a page with the dbtime of its last change: a value spanning pages stamps every
    page it touches; a page that only an older entry touches keeps the older LSN."""
    pf = _new_file(tmp_path / "f.edb")
    pf.append(5, OP_PUT, "t", b"a", b"x" * 10)
    pf.append(9, OP_PUT, "t", b"b", b"y" * (3 * CB))  # starts on page 1, ends on page 4
    pf.append(12, OP_PUT, "t", b"c", b"z" * 10)  # on page 4 only
    pf.flush(12)
    pages = np.frombuffer(_data_pages(tmp_path / "f.edb"), dtype=np.uint8).reshape(-1, CB)
    assert [int(pages[i, 8:16].view("<u8")[0]) for i in range(len(pages))] == [9, 9, 9, 12]
    pf.close()


def test_live_digests_write_nothing(server):
    """Ground truth of a live database renders its unflushed pages without writing them."""
    db = server.database(SG1, db_name(server))
    fill(db, 20)
    edb = db.files[0]
    before = os.path.getsize(edb.path), edb.header.heap_end
    digests = ground_truth.database_pages(db)
    assert (os.path.getsize(edb.path), edb.header.heap_end) == before and edb.dirty_bytes > 0
    server.flush()
    assert ground_truth.database_pages(db) == digests


def _pages(server, group=SG1):
    return ground_truth.server_pages(server, [group])[f"{group}/{db_name(server)}"]


@pytest.mark.parametrize("profile", ["2003", "2007"])
def test_restores_are_page_identical(make_server, tmp_path, profile):
    """Issue 6: after a roll-forward restore every data page equals the state before the
    disaster; a point-in-time restore equals the state at its backup (header pages excepted).
    Many checkpoints ran live; the replay flushes once."""
    server = make_server(profile=profile)
    api, name = server.backup_api(), db_name(server)
    db = server.database(SG1, name)
    fill(db, 60)
    sets = [run_backup(api, SG1, "full", str(tmp_path / "full"))]
    fill(db, 40, 1000)
    with db.transaction() as tx:
        tx.delete("items", b"k%06d" % 3)
    sets.append(run_backup(api, SG1, "incremental", str(tmp_path / "inc")))
    at_incremental = _pages(server)
    fill(db, 30, 2000)
    before_disaster = _pages(server)
    assert before_disaster != at_incremental
    server.dismount(SG1, name)
    server.set_allow_restore_overwrite(SG1, name, True)
    run_restore(api, sets, roll_forward=True, restore_path=str(tmp_path / "r1"))
    assert _pages(server) == before_disaster
    server.dismount(SG1, name)
    run_restore(api, sets, roll_forward=False, restore_path=str(tmp_path / "r2"))
    assert _pages(server) == at_incremental


def test_a_silently_changed_page_is_named(server):
    """A page changed with a good checksum (faults.alter_page_silently): records cannot see it,
    the page comparison names the file and page."""
    from emulators.exchange import faults

    db = server.database(SG1, db_name(server))
    fill(db, 30)
    server.flush()
    truth = ground_truth.server_truth(server)
    stm = db.files[1]
    faults.alter_page_silently(stm.path, 3, CB)
    assert bad_pages(_data_pages(stm.path), CB, 1).size == 0
    [check] = ground_truth.compare_truths(truth, ground_truth.server_truth(server))
    assert check.records_equal and not check.ok
    assert check.first_difference == f"{os.path.basename(stm.path)} page 3 (offset {4 * CB})"
    assert check.pages_equal == check.pages - 1


# -- the lazy index (issue 10) ---------------------------------------------------------------


def test_mount_and_backup_read_no_record_index(server, tmp_path):
    """Mounting reads the header only; a backup reads raw pages; neither builds the index. The
    first read does."""
    name = db_name(server)
    fill(server.database(SG1, name), 30)
    server.dismount(SG1, name)
    db = server.mount(SG1, name)
    assert all(f._tables is None for f in db.files)
    run_backup(server.backup_api(), SG1, "full", str(tmp_path / "full"))
    fill(db, 5, 100, stream=False)  # appends (a log replay, a new write) do not need it either
    assert all(f._tables is None for f in db.files)
    assert db.get("items", b"k000007") == bytes([7]) * 700
    assert db.files[0]._tables is not None


def test_hard_recovery_replays_without_an_index(server, tmp_path, monkeypatch):
    name = db_name(server)
    fill(server.database(SG1, name), 30)
    sets = [run_backup(server.backup_api(), SG1, "full", str(tmp_path / "full"))]
    fill(server.database(SG1, name), 30, 500)
    latest = server.database(SG1, name).snapshot()
    server.dismount(SG1, name)
    server.set_allow_restore_overwrite(SG1, name, True)
    built = []
    real = PageFile._build_index
    monkeypatch.setattr(PageFile, "_build_index", lambda self: built.append(self.path) or real(self))
    run_restore(server.backup_api(), sets, roll_forward=True, restore_path=str(tmp_path / "r"))
    assert built == []
    assert server.database(SG1, name).snapshot() == latest


@settings(max_examples=30, deadline=None)
@given(before=st.lists(st.tuples(st.integers(0, 25), st.integers(0, 6000), st.booleans()), max_size=25),
       after=st.lists(st.tuples(st.integers(0, 25), st.integers(0, 6000), st.booleans(), st.booleans()),
                      max_size=25))
def test_appends_before_the_index_exists_are_found(tmp_path_factory, before, after):
    """Entries on disk at open, then appends (some flushed, some only in memory) made before
    anything needed the index: the first read indexes all of them, newest entry winning."""
    path = str(tmp_path_factory.mktemp("lazy") / "f.edb")
    pf, model, lsn = _new_file(path), {}, 0
    for k, size, delete in before:
        lsn += 1
        pf.append(lsn, OP_DELETE if delete else OP_PUT, "t", b"%d" % k, bytes([k]) * size)
        model.pop(k, None) if delete else model.__setitem__(k, bytes([k]) * size)
    pf.flush(lsn)
    pf.close()
    pf = PageFile.open(path, CB, False)
    for k, size, delete, flush in after:
        lsn += 1
        pf.append(lsn, OP_DELETE if delete else OP_PUT, "t", b"%d" % k, bytes([k]) * size)
        model.pop(k, None) if delete else model.__setitem__(k, bytes([k]) * size)
        if flush:
            pf.flush(lsn)
    assert pf._tables is None
    idx = pf.tables.get("t")
    assert {int(k): pf.read_heap(*idx.locate(k)) for k in idx.keys_from(b"", None)} == model if idx else not model
    assert all(pf.get("t", b"%d" % k) == v for k, v in model.items())
    pf.close()


def test_a_bad_page_fails_the_read_not_the_open(tmp_path):
    """-1018 comes from reading the page (spec §3.3), as in ESE: open and appends to the last page
    still work; the first read that needs the bad page (here: building the index) fails."""
    path = str(tmp_path / "f.edb")
    pf = _new_file(path)
    for i in range(50):
        pf.append(i + 1, OP_PUT, "t", b"%03d" % i, bytes([i]) * 500)
    pf.flush(50)
    pf.close()
    with open(path, "r+b") as f:
        f.seek(3 * CB + 100)  # data page 2
        f.write(b"\xff")
    pf = PageFile.open(path, CB, False)
    pf.append(51, OP_PUT, "t", b"new", b"v")
    pf.flush(51)
    with pytest.raises(ExchangeError) as e:
        pf.get("t", b"new")
    assert e.value.jet == -1018 and "page 2" in str(e.value)
    pf.close()


def test_a_bad_last_page_fails_the_commit_before_it_is_logged(server):
    """Appending needs the partially filled last page: it is read (and verified) before the
    transaction is logged, so a -1018 there leaves no logged change the pages never got."""
    from emulators.exchange import faults

    name = db_name(server)
    fill(server.database(SG1, name), 10, size=333, stream=False)
    server.dismount(SG1, name)
    edb = server.abspath(server.database_config(SG1, name).files[0])
    last = DbHeader.unpack(open(edb, "rb").read(CB), False).pgno_last
    faults.corrupt_page(server, SG1, name, pgno=last)
    db = server.mount(SG1, name)
    log = server.instance(SG1).log
    lsn = log.next_lsn
    with pytest.raises(ExchangeError) as e:
        with db.transaction() as tx:
            tx.put("items", b"new", b"value")
    assert e.value.jet == -1018 and f"page {last}" in str(e.value)
    assert log.next_lsn == lsn
