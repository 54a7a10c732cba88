"""Damaged headers, pages, logs and restore environments give the spec's error (an
ExchangeError with HRESULT and JET number), never a Python traceback."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from exchange_test_helpers import SG1, db_name, fill
from hypothesis import given
from hypothesis import strategies as st

from emulators.clock import VirtualClock
from emulators.exchange import ExchangeServer, faults
from emulators.exchange.api import restore_env
from emulators.exchange.harness import run_backup, run_restore
from emulators.exchange.ondisk.structs import CheckpointHeader, DbHeader, LogHeader, Trailer
from reference.protocols.exchange import ExchangeError, RestoreEnvironment


def test_damaged_header_uses_shadow_then_fails_1206(server):
    name = db_name(server)
    fill(server.database(SG1, name), 10)
    snap = server.database(SG1, name).snapshot()
    server.dismount(SG1, name)
    path = server.abspath(server.storage_group(SG1).databases[0].files[0])
    cb = server.profile.page_size
    with open(path, "r+b") as f:
        f.seek(60)
        f.write(b"\xff\xff")
    server.mount(SG1, name)  # page 0 bad: the shadow header (page 1) is used
    assert server.database(SG1, name).snapshot() == snap
    server.dismount(SG1, name)
    with open(path, "r+b") as f:
        for page in (0, 1):
            f.seek(page * cb + 60)
            f.write(b"\xff\xff")
    with pytest.raises(ExchangeError) as e:
        server.mount(SG1, name)
    assert (e.value.jet, e.value.hr) == (-1206, 0xC80004B6)


def test_corrupt_page_fails_the_read_1018_not_the_mount(server):
    """Spec §3.3: -1018 is a *read* verification error. Like ESE (whose B-trees are on disk), the
    emulator does not scan a database at mount; the first read that touches the bad page fails."""
    name = db_name(server)
    fill(server.database(SG1, name), 10)
    server.dismount(SG1, name)
    faults.corrupt_page(server, SG1, name, pgno=2)
    db = server.mount(SG1, name)
    with pytest.raises(ExchangeError) as e:
        db.snapshot()
    assert e.value.jet == -1018 and "page 2" in str(e.value)


def test_corrupt_log_during_soft_recovery_501(make_server):
    server = make_server()
    name = db_name(server)
    fill(server.database(SG1, name), 30)
    inst = server.instance(SG1)
    gen = inst.checkpoint_generation
    assert gen < inst.log.gen
    faults.crash(server)
    with open(os.path.join(server.abspath(server.storage_group(SG1).folder), f"E00{gen:05X}.log"), "r+b") as f:
        f.seek(4096 + 20)
        f.write(b"\x00garbage")
    with pytest.raises(ExchangeError) as e:
        ExchangeServer.open(server.root)
    assert e.value.jet == -501


def test_missing_log_during_soft_recovery_528(make_server):
    server = make_server()
    fill(server.database(SG1, db_name(server)), 30)
    gen = server.instance(SG1).checkpoint_generation
    faults.delete_log(server, SG1, gen)
    faults.crash(server)
    with pytest.raises(ExchangeError) as e:
        ExchangeServer.open(server.root)
    assert e.value.jet == -528


@given(st.binary(min_size=0, max_size=9000))
def test_header_parsers_reject_garbage_cleanly(raw):
    for parse in (lambda b: DbHeader.unpack(b), LogHeader.unpack, CheckpointHeader.unpack, Trailer.unpack):
        try:
            parse(raw)
        except ValueError:
            pass


@given(st.binary(max_size=300))
def test_restore_env_garbage_is_corrupted(raw):
    with pytest.raises(ExchangeError) as e:
        restore_env.decode(raw)
    assert e.value.hr == 0xC7FF0BC3


def test_restore_env_missing_is_open_failed(tmp_path):
    with pytest.raises(ExchangeError) as e:
        restore_env.load(str(tmp_path))
    assert e.value.hr == 0xC7FF0BB9


@pytest.fixture(scope="module")
def template():
    """A server with a full backup set, copied fresh for each fuzz example."""
    with tempfile.TemporaryDirectory() as tmp:
        server = ExchangeServer.create(os.path.join(tmp, "srv"), log_file_size=16384, clock=VirtualClock())
        name = server.storage_group(SG1).databases[0].name
        fill(server.database(SG1, name), 25)
        bset = run_backup(server.backup_api(), SG1, "full", os.path.join(tmp, "set"))
        server.dismount(SG1, name)
        server.set_allow_restore_overwrite(SG1, name, True)
        server.shutdown()
        yield tmp, bset


flips = st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 255)), min_size=1, max_size=4)


@given(which=st.sampled_from(["edb", "stm", "log0", "loglast"]), flips=flips)
def test_damaged_backup_set_gives_exchange_error(template, which, flips):
    tmp, bset = template
    with tempfile.TemporaryDirectory() as work:
        shutil.copytree(os.path.join(tmp, "srv"), os.path.join(work, "srv"))
        shutil.copytree(os.path.join(tmp, "set"), os.path.join(work, "set"))
        rebase = lambda p: os.path.join(work, "set", os.path.basename(p))  # noqa: E731
        sets = [type(bset)(bset.kind, bset.sg_name, os.path.join(work, "set"),
                           [type(d)(d.name, d.guid, d.streams, tuple(rebase(f) for f in d.files)) for d in bset.databases],
                           [(a, rebase(f)) for a, f in bset.logs])]
        target = {"edb": sets[0].databases[0].files[0], "stm": sets[0].databases[0].files[1],
                  "log0": sets[0].logs[0][1], "loglast": sets[0].logs[-1][1]}[which]
        size = os.path.getsize(target)
        with open(target, "r+b") as f:
            for off, x in flips:
                f.seek(off % size)
                b = f.read(1)
                f.seek(off % size)
                f.write(bytes([b[0] ^ x]))
        server = ExchangeServer.open(os.path.join(work, "srv"))
        try:
            run_restore(server.backup_api(), sets, roll_forward=False)
            # restored and mounted: a damaged data page shows on the first read (-1018), not before
            server.database(SG1, bset.databases[0].name).snapshot()
        except ExchangeError as e:
            assert e.hr & 0x80000000
        finally:
            server.shutdown()


def test_truncated_restored_stream_is_an_exchange_error(template):
    tmp, bset = template
    with tempfile.TemporaryDirectory() as work:
        shutil.copytree(os.path.join(tmp, "srv"), os.path.join(work, "srv"))
        shutil.copytree(os.path.join(tmp, "set"), os.path.join(work, "set"))
        edb = os.path.join(work, "set", os.path.basename(bset.databases[0].files[0]))
        with open(edb, "r+b") as f:
            f.truncate(os.path.getsize(edb) - 5000)
        d = bset.databases[0]
        sets = [type(bset)(bset.kind, bset.sg_name, work,
                           [type(d)(d.name, d.guid, d.streams, (edb, os.path.join(work, "set", os.path.basename(d.files[1]))))],
                           [(a, os.path.join(work, "set", os.path.basename(f))) for a, f in bset.logs])]
        server = ExchangeServer.open(os.path.join(work, "srv"))
        try:
            with pytest.raises(ExchangeError) as e:
                run_restore(server.backup_api(), sets)
            assert e.value.jet == -552
        finally:
            server.shutdown()


def test_unknown_service_and_instance(server):
    api = server.backup_api()
    with pytest.raises(ExchangeError) as e:
        api.backup_prepare("Microsoft Key Management Service")
    assert e.value.hr == 0xC7FF07D7
    with pytest.raises(ExchangeError) as e:
        api.restore_open("Microsoft Information Store", "No Such Group")
    assert e.value.hr == 0xC7FE1F45
    ctx = api.backup_prepare()
    with pytest.raises(ExchangeError) as e:
        ctx.setup(99, 1)
    assert e.value.hr == 0xC7FF07D1
    with pytest.raises(ExchangeError) as e:
        ctx.setup(1, 0x4)
    assert e.value.jet == -900
    ctx.setup(1, 1)
    with pytest.raises(ExchangeError) as e:
        ctx.open_file("/etc/passwd")
    assert e.value.hr == 0xC7FF0BC5
    with pytest.raises(ExchangeError) as e:
        ctx.read_file(1234, bytearray(10))
    assert e.value.hr == 0xC7FF07D3
    ctx.end()
    assert isinstance(RestoreEnvironment("x", "y"), RestoreEnvironment)
