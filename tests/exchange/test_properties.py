"""Property tests: random workloads of puts and deletes with backups in between; restoring the
chain reproduces the records exactly (roll-forward: the present; point-in-time: the moment of the
last backup in the chain); a crash loses nothing committed."""

from __future__ import annotations

import os
import tempfile

from hypothesis import given
from hypothesis import strategies as st

from emulators.clock import VirtualClock
from emulators.exchange import ExchangeServer, faults
from emulators.exchange.harness import run_backup, run_restore

SG = "First Storage Group"
TABLES = ("items", "stream.body")

change = st.tuples(
    st.sampled_from(["put", "put", "put", "delete"]),
    st.sampled_from(TABLES),
    st.integers(0, 12),
    st.integers(0, 9000),
)
transaction = st.lists(change, min_size=1, max_size=4)
step = st.tuples(st.lists(transaction, min_size=0, max_size=5),
                 st.sampled_from(["none", "none", "logs", "copy", "full"]))


def _apply(db, model, txs, salt):
    for n, tx_changes in enumerate(txs):
        with db.transaction() as tx:
            for op, table, k, size in tx_changes:
                key = b"key%02d" % k
                if op == "put":
                    value = bytes([(k + size + salt + n) % 256]) * size + b"|%d" % salt
                    tx.put(table, key, value)
                    model.setdefault(table, {})[key] = value
                else:
                    tx.delete(table, key)
                    model.setdefault(table, {}).pop(key, None)


def _snapshot(db):
    return {t: dict(db.scan(t)) for t in TABLES}


def _norm(model):
    return {t: dict(model.get(t, {})) for t in TABLES}


@given(steps=st.lists(step, min_size=1, max_size=5), differential=st.booleans(), roll_forward=st.booleans(),
       profile=st.sampled_from(["2003", "2007"]))
def test_backup_restore_reproduces_records(steps, differential, roll_forward, profile):
    with tempfile.TemporaryDirectory() as tmp:
        server = ExchangeServer.create(os.path.join(tmp, "srv"), profile=profile, log_file_size=16384,
                                       clock=VirtualClock())
        try:
            name = server.storage_group(SG).databases[0].name
            db = server.database(SG, name)
            api = server.backup_api()
            model: dict = {}
            chain: list = []
            at_chain_end = None
            for i, (txs, backup) in enumerate(steps):
                _apply(db, model, txs, i)
                if i == 0:
                    backup = "full"
                if backup == "none":
                    continue
                kind = {"logs": "differential" if differential else "incremental"}.get(backup, backup)
                bset = run_backup(api, SG, kind, os.path.join(tmp, f"b{i}"))
                assert not bset.database_errors
                if kind == "full":
                    chain = [bset]
                elif kind == "incremental":
                    chain.append(bset)
                elif kind == "differential":
                    chain = [chain[0], bset]
                if kind != "copy":
                    at_chain_end = _norm(model)
            assert _snapshot(db) == _norm(model)
            final = _norm(model)
            server.dismount(SG, name)
            server.set_allow_restore_overwrite(SG, name, True)
            run_restore(api, chain, roll_forward=roll_forward, restore_path=os.path.join(tmp, "restore"))
            got = _snapshot(server.database(SG, name))
            assert got == (final if roll_forward else at_chain_end)
        finally:
            server.shutdown()


@given(txs=st.lists(transaction, min_size=1, max_size=25), flush_at=st.integers(0, 25),
       log_size=st.sampled_from([8192, 16384, 65536]))
def test_crash_loses_nothing_committed(txs, flush_at, log_size):
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "srv")
        server = ExchangeServer.create(root, log_file_size=log_size, clock=VirtualClock())
        name = server.storage_group(SG).databases[0].name
        db = server.database(SG, name)
        model: dict = {}
        _apply(db, model, txs[:flush_at], 0)
        server.flush()
        _apply(db, model, txs[flush_at:], 1)
        faults.crash(server)
        again = ExchangeServer.open(root)
        try:
            assert _snapshot(again.database(SG, name)) == _norm(model)
        finally:
            again.shutdown()


@given(pre=st.lists(transaction, min_size=1, max_size=12),
       during=st.lists(st.tuples(st.integers(0, 6), transaction, st.booleans()), max_size=8),
       after_list=st.lists(transaction, max_size=4), buffer_pages=st.integers(1, 5), roll_forward=st.booleans())
def test_fuzzy_backup_with_concurrent_writes(pre, during, after_list, buffer_pages, roll_forward):
    """Writes (and page flushes) while the database streams are read: the restored database is the
    state at the log roll of GetLogAndPatchFiles (point-in-time) or the present (roll-forward)."""
    from reference.protocols.exchange import InstanceEnd

    from emulators.exchange.harness import BackupSet, SavedDatabase

    with tempfile.TemporaryDirectory() as tmp:
        server = ExchangeServer.create(os.path.join(tmp, "srv"), log_file_size=16384, clock=VirtualClock())
        try:
            name = server.storage_group(SG).databases[0].name
            db = server.database(SG, name)
            model: dict = {}
            _apply(db, model, pre, 0)
            api = server.backup_api()
            ctx = api.backup_prepare()
            info = ctx.instances[0]
            ctx.setup(info.instance_id, 1)
            d = info.databases[0]
            saved = []
            buf = bytearray(buffer_pages * 4096 + 123)
            chunk = 0
            for stream in d.streams:
                h, _ = ctx.open_file(stream)
                dest = os.path.join(tmp, os.path.basename(stream))
                with open(dest, "wb") as out:
                    while n := ctx.read_file(h, buf):
                        out.write(buf[:n])
                        for at, txs, flush in during:
                            if at == chunk:
                                _apply(db, model, [txs], 100 + chunk)
                                if flush:
                                    server.flush()
                        chunk += 1
                ctx.close_file(h)
                saved.append(dest)
            at_roll = _norm(model)
            logs = []
            for p in ctx.get_log_and_patch_files():
                dest = os.path.join(tmp, os.path.basename(p))
                hh, _ = ctx.open_file(p)
                with open(dest, "wb") as out:
                    while n := ctx.read_file(hh, buf):
                        out.write(buf[:n])
                ctx.close_file(hh)
                logs.append((p, dest))
            ctx.truncate_logs()
            ctx.instance_end(InstanceEnd.SUCCESS)
            ctx.end()
            _apply(db, model, after_list, 999)
            final = _norm(model)
            server.dismount(SG, name)
            server.set_allow_restore_overwrite(SG, name, True)
            bset = BackupSet("full", SG, tmp, [SavedDatabase(d.display_name, d.guid, d.streams, tuple(saved))], logs)
            run_restore(api, [bset], roll_forward=roll_forward, restore_path=os.path.join(tmp, "restore"))
            assert _snapshot(server.database(SG, name)) == (final if roll_forward else at_roll)
        finally:
            server.shutdown()
