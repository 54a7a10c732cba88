"""Storage engine: pages, checksums, record layer contract, checkpoint, determinism, pyfakefs."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from exchange_test_helpers import SG1, db_name, fill

from emulators.clock import VirtualClock
from emulators.exchange import ExchangeServer
from emulators.exchange.harness import run_backup
from emulators.exchange.ondisk.checksum import SEED, bad_pages, seal_pages
from emulators.exchange.ondisk.structs import CheckpointHeader, DbHeader, LogHeader
from emulators.exchange.records import RecordDatabase


def test_page_checksum_old_format():
    """Spec §3.3: DWORD0 = 0x89ABCDEF ^ xor(other DWORDs), DWORD1 = pgno; zero pages pass."""
    pages = np.random.default_rng(1).integers(0, 256, size=(4, 4096), dtype=np.uint8)
    seal_pages(pages, 7)
    w = pages.view("<u4")
    for i in range(4):
        assert w[i, 1] == 7 + i
        assert w[i, 0] == SEED ^ int(np.bitwise_xor.reduce(w[i, 1:]))
    assert bad_pages(pages.tobytes(), 4096, 7).size == 0
    assert list(bad_pages(pages.tobytes(), 4096, 8)) == [0, 1, 2, 3]  # misplaced
    pages[2, 999] ^= 1
    pages[3] = 0
    assert list(bad_pages(pages.tobytes(), 4096, 7)) == [2]


def test_record_layer_contract(server):
    db = server.database(SG1, db_name(server))
    assert isinstance(db, RecordDatabase)
    big = os.urandom(50_000)  # spans many pages
    with db.transaction() as tx:
        tx.put("t", b"b", big)
        tx.put("t", b"a", b"1")
        tx.put("t", b"ab", b"2")
        tx.put("stream.x", b"k", b"s")
        assert tx.get("t", b"a") == b"1"
        assert db.get("t", b"a") is None  # not committed yet
        tx.delete("t", b"ab")
        assert tx.get("t", b"ab") is None
    assert db.get("t", b"b") == big
    assert list(db.scan("t")) == [(b"a", b"1"), (b"b", big)]
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            tx.put("t", b"c", b"3")
            raise RuntimeError("rollback")
    assert db.get("t", b"c") is None
    assert db.bulk_load("t", ((b"p%03d" % i, b"v%d" % i) for i in range(300))) == 300
    assert [k for k, _ in db.scan("t", prefix=b"p01")] == [b"p%03d" % i for i in range(10, 20)]
    assert [k for k, _ in db.scan("t", prefix=b"p", start=b"p298")] == [b"p298", b"p299"]
    # stream.* tables live in the .stm on the 2003 profile
    assert db.files[1].tables["stream.x"].rows and "stream.x" not in db.files[0].tables


def test_data_lives_in_pages_and_survives_restart(server):
    name = db_name(server)
    db = server.database(SG1, name)
    fill(db, 40)
    snap = db.snapshot()
    server.shutdown()
    edb = server.abspath(server.storage_group(SG1).databases[0].files[0])
    raw = open(edb, "rb").read()
    hdr = DbHeader.unpack(raw[:4096], False)
    assert hdr.dbstate == 3 and len(raw) == (hdr.pgno_last + 2) * 4096
    assert bad_pages(raw[2 * 4096 :], 4096, 1).size == 0
    pages = np.frombuffer(raw[2 * 4096 :], dtype=np.uint8).reshape(-1, 4096)
    heap = pages[:, 40:].tobytes()  # page payloads, headers stripped
    assert b"k000005" + bytes([5]) * 700 in heap  # the record's key and value really are in the pages
    again = ExchangeServer.open(server.root)
    assert again.database(SG1, name).snapshot() == snap
    again.shutdown()


def test_checkpoint_advances_with_flush(server):
    inst = server.instance(SG1)
    fill(server.database(SG1, db_name(server)), 80)
    chk = CheckpointHeader.unpack(open(inst.chk_path, "rb").read())
    assert chk.checkpoint.generation == inst.checkpoint_generation
    assert inst.log.gen - chk.checkpoint.generation <= server.profile.checkpoint_depth_generations
    server.flush()
    chk = CheckpointHeader.unpack(open(inst.chk_path, "rb").read())
    assert chk.checkpoint.generation == inst.log.gen
    assert chk.sign_log == inst.sign_log


def test_log_headers_chain_and_attach(server):
    inst = server.instance(SG1)
    fill(server.database(SG1, db_name(server)), 30)
    gens = inst.log.archived_generations()
    headers = [LogHeader.unpack(open(inst.log.archive_path(g), "rb").read(4096)) for g in gens]
    for a, b in zip(headers, headers[1:]):
        assert b.tm_prev_gen == a.tm_create and b.generation == a.generation + 1
        assert b.sign_log == a.sign_log
    assert headers[-1].attach and headers[-1].attach[0].name == db_name(server)
    assert os.path.getsize(inst.log.archive_path(gens[0])) == server.profile.log_file_size


def test_same_seed_gives_identical_files(make_server, tmp_path):
    def digest(server):
        fill(server.database(SG1, db_name(server)), 30)
        run_backup(server.backup_api(), SG1, "full", str(tmp_path / f"b-{os.path.basename(server.root)}"))
        server.shutdown()
        out = {}
        for dirpath, _, files in os.walk(server.root):
            for f in files:
                p = os.path.join(dirpath, f)
                out[os.path.relpath(p, server.root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
        return out

    a = digest(make_server("a", seed=5))
    b = digest(make_server("b", seed=5))
    c = digest(make_server("c", seed=6))
    assert a == b
    assert a != c


def test_read_file_into_any_buffer(server):
    """read_file accepts any writable buffer (bytearray, memoryview slice, numpy array)."""
    fill(server.database(SG1, db_name(server)), 10)
    ctx = server.backup_api().backup_prepare()
    info = ctx.instances[0]
    ctx.setup(info.instance_id, 1)
    h, size = ctx.open_file(info.databases[0].streams[0])
    arr = np.zeros(3 * 4096 + 17, dtype=np.uint8)
    got = bytearray()
    while n := ctx.read_file(h, arr):
        got += arr[:n].tobytes()
    assert len(got) == size
    ctx.end()


def test_pyfakefs_backup_roundtrip(fs):
    """The engine uses Python's file API only, so it runs on pyfakefs."""
    from emulators.exchange.harness import run_restore

    server = ExchangeServer.create("/exch", log_file_size=16384, clock=VirtualClock())
    name = server.storage_group(SG1).databases[0].name
    fill(server.database(SG1, name), 15)
    bset = run_backup(server.backup_api(), SG1, "full", "/backup/full")
    fill(server.database(SG1, name), 5, 100)
    snap = server.database(SG1, name).snapshot()
    server.dismount(SG1, name)
    server.set_allow_restore_overwrite(SG1, name, True)
    run_restore(server.backup_api(), [bset])
    assert server.database(SG1, name).snapshot() == snap
    server.shutdown()


def test_four_groups_five_databases_and_limits(make_server):
    server = make_server(storage_groups=4, databases=5)
    assert [sg.name for sg in server.storage_groups][-1] == "Fourth Storage Group"
    assert server.instance("Fourth Storage Group").prefix == "E03"
    assert server.storage_group("Fourth Storage Group").databases[-1].files[0].endswith("priv20.edb")
    from reference.errors import MailtapeError

    with pytest.raises(MailtapeError):
        server.add_database(SG1)


def test_read_latency_wrapper_charges_the_clock(server, tmp_path):
    """The latency wrapper charges read_file bytes to the virtual clock at the given rate."""
    from emulators.exchange.latency import with_read_latency
    from reference.protocols.exchange import BackupContext, ExchangeBackupApi

    fill(server.database(SG1, db_name(server)), 20)
    api = with_read_latency(server.backup_api(), bytes_per_second=1e6)
    assert isinstance(api, ExchangeBackupApi)
    assert isinstance(api.backup_prepare(), BackupContext)
    t0 = server.clock.now()
    bset = run_backup(api, SG1, "full", str(tmp_path / "f"))
    total = sum(os.path.getsize(f) for d in bset.databases for f in d.files) + sum(
        os.path.getsize(f) for _, f in bset.logs)
    assert server.clock.now() - t0 == pytest.approx(total / 1e6, rel=1e-3)


def test_one_context_walks_storage_groups_sequentially(make_server, tmp_path):
    """Bacula's pattern: one HCCX, Setup ... InstanceEnd per storage group, then End."""
    from reference.protocols.exchange import BackupType, InstanceEnd

    server = make_server(storage_groups=2)
    for sg in server.storage_groups:
        fill(server.database(sg.name, sg.databases[0].name), 5)
    ctx = server.backup_api().backup_prepare()
    assert [i.name for i in ctx.instances] == ["First Storage Group", "Second Storage Group"]
    for info in ctx.instances:
        ctx.setup(info.instance_id, BackupType.FULL)
        for s in info.databases[0].streams:
            h, _ = ctx.open_file(s)
            while ctx.read_file(h, bytearray(65536)):
                pass
            ctx.close_file(h)
        for p in ctx.get_log_and_patch_files():
            assert os.path.basename(p).startswith("E0%d" % (info.instance_id - 1))
            h, _ = ctx.open_file(p)
            while ctx.read_file(h, bytearray(65536)):
                pass
            ctx.close_file(h)
        ctx.truncate_logs()
        ctx.instance_end(InstanceEnd.SUCCESS)
    ctx.end()
    for sg in server.storage_groups:
        assert server.database(sg.name, sg.databases[0].name).files[0].header.full_prev.gen_low > 0


def test_registered_services_and_nodes(make_server):
    """HrESEBackupRestoreGetRegistered / GetNodes: the Information Store and its storage groups."""
    server = make_server(storage_groups=2)
    api = server.backup_api()
    assert api.get_registered() == [("Microsoft Information Store", "Microsoft Information Store", 0x3)]
    tree = api.get_nodes()
    assert tree["name"] == "EXCH01" and tree["flags"] == 0x1
    assert [n["name"] for n in tree["children"][0]["children"]] == ["First Storage Group", "Second Storage Group"]


from hypothesis import example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@example([(False, b"", b"", None), (True, b"", b"", None), (False, b"", b"", None)])  # put, delete, scan
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=3), st.binary(max_size=2),
                          st.one_of(st.none(), st.binary(max_size=2))), max_size=700))
def test_table_index_scans_in_key_order(ops):
    """The lazily merged sorted key list always matches a sorted model (puts, deletes, re-puts)."""
    from emulators.exchange.engine.index import TableIndex

    idx, model = TableIndex(), {}
    for n, (put, key, prefix, start) in enumerate(ops):
        if put:
            idx.put(key, n << 20, n)
            model[key] = n
        else:
            assert idx.delete(key) == (model.pop(key, None) is not None)
        if n % 97 == 0 or n == len(ops) - 1:
            want = sorted(k for k in model if k.startswith(prefix) and (start is None or k >= start))
            assert idx.keys_from(prefix, start) == want
            assert all(idx.locate(k) == (model[k] << 20, model[k]) for k in want)


@given(records=st.lists(st.tuples(st.integers(0, 30), st.integers(1, 6000), st.integers(0, 20000), st.booleans()),
                        min_size=1, max_size=40),
       chunk_pages=st.sampled_from([1, 2, 3, 64]))
def test_index_rebuild_across_page_and_chunk_boundaries(records, chunk_pages):
    """Keys and entry headers straddling page and read-chunk boundaries rebuild exactly on reopen."""
    import tempfile

    from emulators.exchange.engine import pagefile

    old = pagefile.SCAN_CHUNK_BYTES
    pagefile.SCAN_CHUNK_BYTES = chunk_pages * 4096
    try:
        with tempfile.TemporaryDirectory() as tmp:
            server = ExchangeServer.create(os.path.join(tmp, "s"), log_file_size=65536, clock=VirtualClock())
            name = server.storage_group(SG1).databases[0].name
            db = server.database(SG1, name)
            model = {}
            for k, klen, vlen, delete in records:
                key = (b"%02d" % k) * (klen // 2 + 1)
                with db.transaction() as tx:
                    if delete and key in model:
                        tx.delete("t", key)
                        del model[key]
                    else:
                        tx.put("t", key, bytes([k]) * vlen)
                        model[key] = bytes([k]) * vlen
            server.shutdown()
            again = ExchangeServer.open(server.root)
            assert dict(again.database(SG1, name).scan("t")) == model
            again.shutdown()
    finally:
        pagefile.SCAN_CHUNK_BYTES = old
