"""Faithfulness behaviours 18-27 of spec ese-backup-api.md §6 (restore, hard recovery, naming, HRESULTs)."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
from exchange_test_helpers import SG1, db_name, fill

from emulators.clock import VirtualClock
from emulators.exchange import ExchangeServer, errors
from emulators.exchange.harness import _announce, feed_sets, run_backup, run_restore
from emulators.exchange.ondisk.structs import DBSTATE_CLEAN_SHUTDOWN, DbHeader, LogHeader
from reference.protocols.exchange import ExchangeError, RestoreComplete, hresult_for_jet

ANN = "Microsoft Information Store"


def _prepared(server, tmp_path, n=30, incrementals=1):
    """A full + incrementals of SG1 with data written between; returns (sets, final snapshot)."""
    api = server.backup_api()
    db = server.database(SG1, db_name(server))
    fill(db, n)
    sets = [run_backup(api, SG1, "full", str(tmp_path / "full"))]
    for k in range(incrementals):
        fill(db, 15, 1000 * (k + 1))
        with db.transaction() as tx:
            tx.delete("items", b"k%06d" % k)
        sets.append(run_backup(api, SG1, "incremental", str(tmp_path / f"inc{k}")))
    return sets


def _dismount_for_restore(server, name=None):
    name = name or db_name(server)
    server.dismount(SG1, name)
    server.set_allow_restore_overwrite(SG1, name, True)


def test_B18_restore_requires_dismounted_and_overwritable(server, tmp_path):
    """Behaviour 18: AddDatabase on a mounted DB -> 0xC7FE1F41; flag off -> 0xC7FE1F46; unknown
    GUID -> 0xC7FE1F42."""
    (full,) = _prepared(server, tmp_path, incrementals=0)
    d = full.databases[0]
    ctx = server.backup_api().restore_open(ANN, SG1)
    with pytest.raises(ExchangeError) as e:
        ctx.add_database(d.name, d.guid, d.streams)
    assert (e.value.hr, e.value.symbol) == (0xC7FE1F41, "hrCBDatabaseInUse")
    server.dismount(SG1, d.name)
    with pytest.raises(ExchangeError) as e:
        ctx.add_database(d.name, d.guid, d.streams)
    assert (e.value.hr, e.value.symbol) == (0xC7FE1F46, "hrCBDatabaseCantBeOverwritten")
    server.set_allow_restore_overwrite(SG1, d.name, True)
    with pytest.raises(ExchangeError) as e:
        ctx.add_database("No Such Store (EXCH01)", uuid.UUID(int=12345), d.streams)
    assert (e.value.hr, e.value.symbol) == (0xC7FE1F42, "hrCBDatabaseNotFound")
    dest = ctx.add_database(d.name, d.guid, d.streams)
    assert dest == tuple(server.abspath(p) for p in server.storage_group(SG1).databases[0].files)
    ctx.close()


def test_B19_rsg_redirection(server, tmp_path):
    """Behaviour 19: with an RSG holding the DB, restored files silently go to the RSG; the
    original store is untouched."""
    sets = _prepared(server, tmp_path)
    name = db_name(server)
    live = server.database(SG1, name).snapshot()
    server.create_recovery_storage_group([(SG1, name)])
    rsg = server.recovery_storage_group
    ctx = server.backup_api().restore_open(ANN, SG1)
    d = sets[0].databases[0]
    dest = ctx.add_database(d.name, d.guid, d.streams)
    assert all(os.path.dirname(p) == server.abspath(rsg.folder) for p in dest)
    ctx.close()
    hr = run_restore(server.backup_api(), sets)
    assert hr == 0  # no roll-forward into a foreign log stream (documented choice)
    restored = server.database(rsg.name, name).snapshot()
    assert server.database(SG1, name).snapshot() == live
    assert restored == live  # nothing was written after the last incremental


def test_B19_rsg_without_the_db_fails(make_server, tmp_path):
    """Behaviour 19: an RSG that does not contain the DB makes the restore fail, even though the DB
    exists in its original storage group."""
    server = make_server(databases=2)
    (full,) = _prepared(server, tmp_path, incrementals=0)
    server.create_recovery_storage_group([(SG1, db_name(server, 2))])
    _dismount_for_restore(server)
    ctx = server.backup_api().restore_open(ANN, SG1)
    d = full.databases[0]
    with pytest.raises(ExchangeError) as e:
        ctx.add_database(d.name, d.guid, d.streams)
    assert e.value.hr == 0xC7FE1F42
    ctx.close()


def test_B20_restore_open_file_answers_file_level(server, tmp_path):
    """Behaviour 20: RestoreOpenFile answers hrRestoreAtFileLevel for DB streams and logs; the
    logs' generations land in the environment; logs go into the restore log path."""
    (full,) = _prepared(server, tmp_path, incrementals=0)
    _dismount_for_restore(server)
    ctx = server.backup_api().restore_open(ANN, SG1, str(tmp_path / "rst"))
    for path in (full.databases[0].streams[0], full.logs[0][0], full.logs[-1][0]):
        with pytest.raises(ExchangeError) as e:
            ctx.open_file(path)
        assert (e.value.hr, e.value.symbol) == (0xC7FF0FA5, "hrRestoreAtFileLevel")
    env = ctx.get_environment()
    gens = [int(os.path.basename(p)[3:8], 16) for p, _ in full.logs]
    assert (env.gen_low, env.gen_high, env.log_base_name) == (gens[0], gens[-1], "E00")
    assert env.restore_log_path == str(tmp_path / "rst")
    with pytest.raises(ExchangeError) as e:
        ctx.open_file(full.logs[0][0], sections=2)
    assert e.value.hr == 0xC7FF0BC4
    ctx.close()


def test_B21_restore_env_round_trip(server, tmp_path):
    """Behaviour 21: SaveEnvironment -> Close -> Reopen -> GetEnvironment gives the same fields;
    LoadEnvironment works without a context; a corrupted file -> 0xC7FF0BC3."""
    sets = _prepared(server, tmp_path)
    _dismount_for_restore(server)
    api = server.backup_api()
    path = str(tmp_path / "rst")
    run_restore(api, sets[:1], restore_path=path, complete=False)
    saved = api.restore_load_environment(path)
    assert saved.databases and saved.gen_low > 0 and saved.src_instance_name == SG1
    ctx = api.restore_reopen(ANN, path)
    assert ctx.get_environment() == saved
    d = sets[1]
    for api_path, f in d.logs:
        _announce(ctx, api_path)
        shutil.copyfile(f, os.path.join(path, os.path.basename(api_path)))
    ctx.save_environment()
    hr = ctx.complete(path, path, SG1, RestoreComplete.ATTACH_DBS)
    ctx.close()
    assert hr == 0x88000242
    env = api.restore_load_environment(path)
    assert env.status_last_recover == 3 and env.hr_last_recover == hr
    raw = bytearray(open(os.path.join(path, "restore.env"), "rb").read())
    raw[-3] ^= 0x20
    open(os.path.join(path, "restore.env"), "wb").write(raw)
    with pytest.raises(ExchangeError) as e:
        api.restore_load_environment(path)
    assert (e.value.hr, e.value.symbol) == (0xC7FF0BC3, "hrRestoreEnvCorrupted")
    with pytest.raises(ExchangeError) as e:
        api.restore_reopen(ANN, path)
    assert e.value.hr == 0xC7FF0BC3


def _restore_expect(server, sets, jet, mutate=None, roll_forward=True):
    api = server.backup_api()
    ctx = api.restore_open(ANN, SG1)
    env = ctx.get_environment()
    try:
        feed_sets(ctx, env.restore_log_path, sets)
        if mutate:
            mutate(ctx, env.restore_log_path)
        with pytest.raises(ExchangeError) as e:
            ctx.complete(env.restore_log_path, env.restore_log_path, SG1 if roll_forward else None)
        assert e.value.jet == jet, str(e.value)
        assert e.value.hr == hresult_for_jet(jet)
        return e.value
    finally:
        ctx.close()


def _gen_path(folder, gen):
    return os.path.join(folder, f"E00{gen:05X}.log")


def test_B22_missing_restored_generation(server, tmp_path):
    """Behaviour 22: a generation missing from the restored set -> -557."""
    sets = _prepared(server, tmp_path)
    _dismount_for_restore(server)
    mid = int(os.path.basename(sets[0].logs[1][0])[3:8], 16)
    _restore_expect(server, sets, -557, lambda ctx, f: os.remove(_gen_path(f, mid)))


def _twin(tmp_path, server, name, advance):
    """A server made with the same seed and clock start (so the same log signature) whose log
    generations were created at different times."""
    clock = VirtualClock()
    other = ExchangeServer.create(str(tmp_path / name), seed=server.seed, log_file_size=server.profile.log_file_size,
                                  clock=clock, server_name=server.server_name)
    db = other.database(SG1, db_name(other))
    for i in range(60):
        clock.advance(advance)
        fill(db, 1, i)
    return other


def test_B22_mixed_signatures(server, tmp_path):
    """Behaviour 22: a restored log with another signature -> -555."""
    sets = _prepared(server, tmp_path)
    _dismount_for_restore(server)
    other = ExchangeServer.create(str(tmp_path / "other"), seed=99, log_file_size=server.profile.log_file_size)
    fill(other.database(SG1, db_name(other)), 60)
    mid = int(os.path.basename(sets[0].logs[1][0])[3:8], 16)
    src = other.instance(SG1).log.archive_path(mid)

    def swap(ctx, folder):
        shutil.copyfile(src, _gen_path(folder, mid))

    _restore_expect(server, sets, -555, swap)
    other.shutdown()


def test_B22_broken_chain(server, tmp_path):
    """Behaviour 22: a log whose tmPrevGen is not the previous log's tmCreate -> -556."""
    sets = _prepared(server, tmp_path)
    _dismount_for_restore(server)
    other = _twin(tmp_path, server, "twin", 3600)
    mid = int(os.path.basename(sets[0].logs[1][0])[3:8], 16)
    src = other.instance(SG1).log.archive_path(mid)
    assert LogHeader.unpack(open(src, "rb").read(4096)).sign_log == server.instance(SG1).sign_log

    def swap(ctx, folder):
        shutil.copyfile(src, _gen_path(folder, mid))

    _restore_expect(server, sets, -556, swap)
    other.shutdown()


def test_B22_window_checks(server, tmp_path):
    """Behaviour 22: restored set starting after the DB's genLow -> -554; ending before the
    trailer's genHigh -> -553."""
    (full,) = _prepared(server, tmp_path, incrementals=0)
    _dismount_for_restore(server)
    first = int(os.path.basename(full.logs[0][0])[3:8], 16)
    last = int(os.path.basename(full.logs[-1][0])[3:8], 16)

    def drop_first(ctx, folder):
        os.remove(_gen_path(folder, first))
        ctx.env.gen_low = first + 1

    _restore_expect(server, [full], -554, drop_first)

    def drop_last(ctx, folder):
        for g in range(last - 1, last + 1):
            os.remove(_gen_path(folder, g))
        ctx.env.gen_high = last - 2

    _restore_expect(server, [full], -553, drop_last)


def test_B22_trailer_mismatch_and_non_backup_db(server, tmp_path):
    """Behaviour 22: DB/trailer signature or lgposMark mismatch -> -552; a plain database copied
    from disk (not from a backup stream) -> -615."""
    api = server.backup_api()
    db = server.database(SG1, db_name(server))
    fill(db, 20)
    f1 = run_backup(api, SG1, "copy", str(tmp_path / "c1"))
    fill(db, 5, 100)
    f2 = run_backup(api, SG1, "copy", str(tmp_path / "c2"))
    _dismount_for_restore(server)
    cb = server.profile.page_size
    live_edb = server.abspath(server.storage_group(SG1).databases[0].files[0])
    live_copy = str(tmp_path / "plain.edb")
    shutil.copyfile(live_edb, live_copy)  # clean-shutdown database, never streamed

    def foreign_trailer(ctx, folder):
        d = ctx.env.databases[0][3][0]
        other = open(f1.databases[0].files[0], "rb").read()[-cb:]
        with open(d, "r+b") as f:
            f.seek(-cb, 2)
            f.write(other)

    _restore_expect(server, [f2], -552, foreign_trailer)

    def plain(ctx, folder):
        shutil.copyfile(live_copy, ctx.env.databases[0][3][0])

    _restore_expect(server, [f2], -615, plain)


def test_B22_errors_via_complete_carry_symbol(server, tmp_path):
    """Behaviour 22: errors from Complete are ExchangeErrors with the JET number and symbol."""
    sets = _prepared(server, tmp_path)
    _dismount_for_restore(server)
    mid = int(os.path.basename(sets[0].logs[1][0])[3:8], 16)
    err = _restore_expect(server, sets, -557, lambda ctx, f: os.remove(_gen_path(f, mid)))
    assert err.symbol == "JET_errMissingRestoreLogFiles"


@pytest.mark.parametrize("profile,code", [("2003", 558), ("2007", -610)])
def test_B23_stale_logs_with_other_signature(make_server, tmp_path, profile, code):
    """Behaviour 23: a stale log with another signature in the SG folder -> -610 (2007) or the
    +558 warning (2003: recovery ends after the restored logs)."""
    server = make_server(profile=profile)
    sets = _prepared(server, tmp_path)
    at_backup = server.database(SG1, db_name(server)).snapshot()
    fill(server.database(SG1, db_name(server)), 5, 5000)
    _dismount_for_restore(server)
    other = ExchangeServer.create(str(tmp_path / "other"), profile=profile, seed=77,
                                  log_file_size=server.profile.log_file_size)
    fill(other.database(SG1, db_name(other)), 120)
    inst = server.instance(SG1)
    stale_gen = inst.log.archived_generations()[-1]  # an archived generation after the backup
    stale = other.instance(SG1).log.archive_path(stale_gen)
    assert os.path.exists(stale)
    shutil.copyfile(stale, inst.log.archive_path(stale_gen))
    if code < 0:
        with pytest.raises(ExchangeError) as e:
            run_restore(server.backup_api(), sets)
        assert (e.value.jet, e.value.hr) == (-610, 0xC8000262)
    else:
        hr = run_restore(server.backup_api(), sets)
        assert hr == 0x8800022E
        assert server.database(SG1, db_name(server)).snapshot() == at_backup
    other.shutdown()


@pytest.mark.parametrize("profile,code", [("2003", 559), ("2007", -611)])
def test_B23_stale_logs_not_contiguous(make_server, tmp_path, profile, code):
    """Behaviour 23: an existing log with the right signature but a broken chain -> -611 / +559."""
    server = make_server(profile=profile)
    sets = _prepared(server, tmp_path)
    fill(server.database(SG1, db_name(server)), 30, 5000)  # the SG moves on past the backup
    _dismount_for_restore(server)
    twin = _twin(tmp_path, server, "twin", 7200) if profile == "2003" else None
    if twin is None:
        clock = VirtualClock()
        twin = ExchangeServer.create(str(tmp_path / "twin"), profile=profile, seed=server.seed,
                                     log_file_size=server.profile.log_file_size, clock=clock,
                                     server_name=server.server_name)
        for i in range(60):
            clock.advance(7200)
            fill(twin.database(SG1, db_name(twin)), 1, i)
    inst = server.instance(SG1)
    high = int(os.path.basename(sets[-1].logs[-1][0])[3:-4], 16)
    shutil.copyfile(twin.instance(SG1).log.archive_path(high + 1), inst.log.archive_path(high + 1))
    if code < 0:
        with pytest.raises(ExchangeError) as e:
            run_restore(server.backup_api(), sets)
        assert (e.value.jet, e.value.hr) == (-611, 0xC8000263)
    else:
        assert run_restore(server.backup_api(), sets) == 0x8800022F
    twin.shutdown()


def test_B24_roll_forward_vs_point_in_time(server, tmp_path):
    """Behaviour 24: roll-forward replays restored then current logs (+578 when the SG runs);
    point-in-time stops after the restored logs; DBs end Clean Shutdown; ATTACH_DBS mounts."""
    sets = _prepared(server, tmp_path)
    name = db_name(server)
    at_backup = server.database(SG1, name).snapshot()
    fill(server.database(SG1, name), 10, 7000)
    with server.database(SG1, name).transaction() as tx:
        tx.delete("items", b"k%06d" % 20)
    latest = server.database(SG1, name).snapshot()
    assert latest != at_backup
    _dismount_for_restore(server)
    hr = run_restore(server.backup_api(), sets, roll_forward=True, restore_path=str(tmp_path / "r1"))
    assert hr == 0x88000242  # JET_wrnTargetInstanceRunning
    assert server.is_mounted(SG1, name)
    assert server.database(SG1, name).snapshot() == latest
    _dismount_for_restore(server)
    hr = run_restore(server.backup_api(), sets, roll_forward=False, restore_path=str(tmp_path / "r2"),
                     flags=RestoreComplete.NONE)
    assert hr == 0
    assert not server.is_mounted(SG1, name)
    edb = server.abspath(server.storage_group(SG1).databases[0].files[0])
    hdr = DbHeader.unpack(open(edb, "rb").read(server.profile.page_size), False)
    assert hdr.dbstate == DBSTATE_CLEAN_SHUTDOWN
    server.mount(SG1, name)
    assert server.database(SG1, name).snapshot() == at_backup
    # the store keeps working after a point-in-time restore, and survives a restart
    fill(server.database(SG1, name), 3, 9000)
    after = server.database(SG1, name).snapshot()
    server.shutdown()
    again = ExchangeServer.open(server.root)
    assert again.database(SG1, name).snapshot() == after
    again.shutdown()


def test_B25_logs_outside_range_deleted(server, tmp_path):
    """Behaviour 25: logs in the restore folder outside [genLow, genHigh] are deleted before replay."""
    sets = _prepared(server, tmp_path, incrementals=0)
    _dismount_for_restore(server)
    path = str(tmp_path / "rst")
    run_restore(server.backup_api(), sets, restore_path=path, complete=False)
    env = server.backup_api().restore_load_environment(path)
    src = os.path.join(path, f"E00{env.gen_low:05X}.log")
    stray_low = os.path.join(path, f"E00{env.gen_high + 5:05X}.log")
    shutil.copyfile(src, stray_low)
    ctx = server.backup_api().restore_reopen(ANN, path)
    ctx.complete(path, path, None, RestoreComplete.KEEP_LOG_FILES)
    ctx.close()
    assert not os.path.exists(stray_low)
    assert os.path.exists(src)  # KEEP_LOG_FILES keeps the restored set itself


def test_B26_log_naming_2003(make_server):
    """Behaviour 26: 2003 logs are E0n%05X.log, 5,242,880 bytes; res1/res2; E0n.chk."""
    server = make_server(log_file_size=None, storage_groups=2)
    inst = server.instance(SG1)
    assert os.path.getsize(inst.log.current_path) == 5_242_880
    names = set(os.listdir(inst.log_dir))
    assert {"E00.log", "E00.chk", "res1.log", "res2.log", "priv1.edb", "priv1.stm"} <= names
    assert os.path.basename(inst.log.archive_path(0x1B)) == "E000001B.log"
    assert os.path.basename(server.instance("Second Storage Group").log.current_path) == "E01.log"
    inst.log.roll()
    assert os.path.exists(os.path.join(inst.log_dir, "E0000001.log"))


def test_B26_log_naming_2007(make_server):
    """Behaviour 26: 2007 logs are E0n%08X.log, 1 MiB; .jrs reserve logs; .edb only."""
    server = make_server(profile="2007", log_file_size=None)
    inst = server.instance(SG1)
    assert os.path.getsize(inst.log.current_path) == 1_048_576
    names = set(os.listdir(inst.log_dir))
    assert {"E00.log", "E00.chk", "E00res00001.jrs", "E00res00002.jrs", "Mailbox Database.edb"} <= names
    assert not any(n.endswith(".stm") for n in names)
    assert os.path.basename(inst.log.archive_path(1)) == "E0000000001.log"


def test_B26_generation_must_match_file_name(server, tmp_path):
    """Behaviour 26: a log whose file name generation differs from its header -> -513."""
    sets = _prepared(server, tmp_path, incrementals=0)
    _dismount_for_restore(server)
    g0 = int(os.path.basename(sets[0].logs[0][0])[3:8], 16)

    def rename(ctx, folder):
        shutil.copyfile(_gen_path(folder, g0 + 1), _gen_path(folder, g0))

    _restore_expect(server, sets, -513, rename)


def test_B27_hresult_mapping():
    """Behaviour 27: every engine error surfaces as 0xC8000000 | -jet (warnings 0x88000000 | n)."""
    codes = [v for v in vars(errors).values() if isinstance(v, errors.JetCode)]
    assert len(codes) > 30
    for c in codes:
        err = errors.jet_error(c, "x")
        expected = (0xC8000000 | -c.number) if c.number < 0 else (0x88000000 | c.number)
        assert err.hr == expected and err.jet == c.number and err.symbol == c.symbol
    assert errors.BackupInProgress.hr == 0xC80001F9
    assert errors.ReadVerifyFailure.hr == 0xC80003FA
    assert errors.TargetInstanceRunning.hr == 0x88000242


def test_B22_errors_as_hr_error_from_ese_call_profile(server, tmp_path):
    """Behaviour 22: with the profile switch, Complete's engine errors arrive as hrErrorFromESECall
    (0xC7FF1004) with the JET error as GetLastError()."""
    import dataclasses

    sets = _prepared(server, tmp_path)
    _dismount_for_restore(server)
    server.profile = dataclasses.replace(server.profile, complete_errors_via_ese_call=True)
    mid = int(os.path.basename(sets[0].logs[1][0])[3:8], 16)
    path = str(tmp_path / "rst")
    run_restore(server.backup_api(), sets, restore_path=path, complete=False)
    os.remove(_gen_path(path, mid))
    ctx = server.backup_api().restore_reopen(ANN, path)
    with pytest.raises(ExchangeError) as e:
        ctx.complete(path, path, SG1)
    assert (e.value.hr, e.value.jet) == (0xC7FF1004, -557)
    ctx.close()


def test_B18_alternate_server_matches_by_display_name(make_server, tmp_path):
    """Behaviour 18: a target store with the same display name (another server, other GUID) is
    accepted; the restored data appears there."""
    server = make_server()
    (full,) = _prepared(server, tmp_path, incrementals=0)
    snap = server.database(SG1, db_name(server)).snapshot()
    other = make_server("alt", seed=42)
    assert other.storage_group(SG1).databases[0].guid != server.storage_group(SG1).databases[0].guid
    name = db_name(other)
    other.dismount(SG1, name)
    other.set_allow_restore_overwrite(SG1, name, True)
    hr = run_restore(other.backup_api(), [full], roll_forward=False)
    assert hr == 0
    assert other.database(SG1, name).snapshot() == snap


def test_B14_profile_without_trailer_page(server, tmp_path):
    """§7 profile switch: without the trailer page the stream is (pgnoLast + 2) pages and still restores."""
    import dataclasses

    server.profile = dataclasses.replace(server.profile, trailer_page=False)
    name = db_name(server)
    db = server.database(SG1, name)
    fill(db, 20)
    pgno_last = db.files[0].header.pgno_last
    full = run_backup(server.backup_api(), SG1, "full", str(tmp_path / "f"))
    assert os.path.getsize(full.databases[0].files[0]) == (pgno_last + 2) * server.profile.page_size
    fill(db, 5, 300)
    snap = db.snapshot()
    _dismount_for_restore(server)
    assert run_restore(server.backup_api(), [full]) == 0x88000242
    assert server.database(SG1, name).snapshot() == snap
