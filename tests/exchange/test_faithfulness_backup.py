"""Faithfulness behaviours 1-17 of spec ese-backup-api.md §6 (backup side)."""

from __future__ import annotations

import os

import pytest
from exchange_test_helpers import SG1, SG2, db_name, fill

from emulators.exchange import faults
from emulators.exchange.harness import run_backup
from emulators.exchange.ondisk.structs import CheckpointHeader, DbHeader, Trailer
from reference.protocols.exchange import BackupType, ExchangeError, InstanceEnd


def _info(ctx, name=SG1):
    return next(i for i in ctx.instances if i.name == name)


def _read_all(ctx, path, bufsize=65536):
    h, size = ctx.open_file(path)
    buf = bytearray(bufsize)
    out = bytearray()
    while True:
        n = ctx.read_file(h, buf)
        if n == 0:
            break
        out += buf[:n]
    ctx.close_file(h)
    return bytes(out), size


def _header(server, sg=SG1, n=1, file_index=0) -> DbHeader:
    db = server.database(sg, server.storage_group(sg).databases[n - 1].name)
    return db.files[file_index].header


def test_B01_concurrent_backup_same_sg_fails_other_sg_succeeds(make_server):
    """Behaviour 1: second Setup on an instance in backup -> -505 / 0xC80001F9; another SG works."""
    server = make_server(storage_groups=2)
    api = server.backup_api()
    a, b = api.backup_prepare(), api.backup_prepare()
    a.setup(_info(a).instance_id, BackupType.FULL)
    with pytest.raises(ExchangeError) as e:
        b.setup(_info(b).instance_id, BackupType.FULL)
    assert (e.value.jet, e.value.hr, e.value.symbol) == (-505, 0xC80001F9, "JET_errBackupInProgress")
    b.setup(_info(b, SG2).instance_id, BackupType.FULL)
    with pytest.raises(ExchangeError) as e:
        a.setup(_info(a).instance_id, BackupType.FULL)  # the same context again: still -505
    assert e.value.jet == -505
    a.end()
    b.end()
    c = api.backup_prepare()
    c.setup(_info(c).instance_id, BackupType.FULL)  # the lock was released by End
    c.end()


def test_B02_circular_logging_forbids_logs_only(server):
    """Behaviour 2: with circular logging, Setup(LOGS_ONLY) -> -526 / 0xC800020E; FULL works."""
    faults.set_circular_logging(server, SG1, True)
    ctx = server.backup_api().backup_prepare()
    with pytest.raises(ExchangeError) as e:
        ctx.setup(_info(ctx).instance_id, BackupType.LOGS_ONLY)
    assert (e.value.jet, e.value.hr) == (-526, 0xC800020E)
    ctx.setup(_info(ctx).instance_id, BackupType.FULL)
    ctx.end()


def test_B02_circular_logging_full_backup_restorable(server, tmp_path):
    """Behaviour 2: the full backup under circular logging is complete (point-in-time only)."""
    faults.set_circular_logging(server, SG1, True)
    db = server.database(SG1, db_name(server))
    fill(db, 40)
    bset = run_backup(server.backup_api(), SG1, "full", str(tmp_path / "f"))
    assert bset.logs and not bset.database_errors


def test_B03_incremental_without_full_fails(server, tmp_path):
    """Behaviour 3: LOGS_ONLY with a DB that never had a full -> -560 / 0xC8000230, also after a
    new DB is added after the last full."""
    api = server.backup_api()
    ctx = api.backup_prepare()
    with pytest.raises(ExchangeError) as e:
        ctx.setup(_info(ctx).instance_id, BackupType.LOGS_ONLY)
    assert (e.value.jet, e.value.hr) == (-560, 0xC8000230)
    assert server.events.ids()[-1] == 206
    ctx.end()
    run_backup(api, SG1, "full", str(tmp_path / "f"))
    run_backup(api, SG1, "incremental", str(tmp_path / "i1"))
    server.add_database(SG1)
    ctx = api.backup_prepare()
    with pytest.raises(ExchangeError) as e:
        ctx.setup(_info(ctx).instance_id, BackupType.LOGS_ONLY)
    assert e.value.jet == -560
    # and the instance was left not in backup: a retry (here a full) is possible
    ctx.setup(_info(ctx).instance_id, BackupType.FULL)
    ctx.end()


def test_B04_full_log_range_checkpoint_to_forced_roll(server):
    """Behaviour 4: full log range = [checkpoint gen at Setup, last gen closed by the forced roll];
    the roll happens even though the current log is not full."""
    db = server.database(SG1, db_name(server))
    fill(db, 60)  # many generations; the checkpoint lags behind the tip
    inst = server.instance(SG1)
    with open(inst.chk_path, "rb") as f:
        chk = CheckpointHeader.unpack(f.read())
    ckpt = chk.checkpoint.generation
    assert ckpt == inst.checkpoint_generation and ckpt > 1
    ctx = server.backup_api().backup_prepare()
    ctx.setup(_info(ctx).instance_id, BackupType.FULL)
    cur = inst.log.gen
    offset_before = inst.log.off
    assert offset_before < inst.log.size  # current log not full
    logs = ctx.get_log_and_patch_files()
    gens = [int(os.path.basename(p)[3:8], 16) for p in logs]
    assert gens == list(range(ckpt, cur + 1))
    assert inst.log.gen == cur + 1
    assert all(os.path.dirname(p) == inst.log_dir for p in logs)
    ctx.end()


def test_B05_incremental_and_differential_ranges(server, tmp_path):
    """Behaviour 5: LOGS_ONLY range = [lowest gen on disk, last closed]; two differentials overlap
    and grow; an incremental returns only logs newer than the previous truncation."""
    api = server.backup_api()
    db = server.database(SG1, db_name(server))
    fill(db, 30)
    full = run_backup(api, SG1, "full", str(tmp_path / "f"))
    fill(db, 20, 100)
    d1 = run_backup(api, SG1, "differential", str(tmp_path / "d1"))
    fill(db, 20, 200)
    d2 = run_backup(api, SG1, "differential", str(tmp_path / "d2"))
    n1 = [os.path.basename(p) for p, _ in d1.logs]
    n2 = [os.path.basename(p) for p, _ in d2.logs]
    assert n2[: len(n1)] == n1 and len(n2) > len(n1)
    lowest = server.instance(SG1).log.archived_generations()[0]
    assert int(n2[0][3:8], 16) == lowest
    i1 = run_backup(api, SG1, "incremental", str(tmp_path / "i1"))
    fill(db, 10, 300)
    i2 = run_backup(api, SG1, "incremental", str(tmp_path / "i2"))
    last_i1 = int(os.path.basename(i1.logs[-1][0])[3:8], 16)
    first_i2 = int(os.path.basename(i2.logs[0][0])[3:8], 16)
    assert first_i2 > int(os.path.basename(full.logs[0][0])[3:8], 16)
    assert first_i2 <= last_i1 + 1


@pytest.mark.parametrize("profile,jet,hr", [("2003", -562, 0xC8000232), ("2007", -569, 0xC8000239)])
def test_B06_log_gap_since_last_backup(make_server, tmp_path, profile, jet, hr):
    """Behaviour 6: a log gap since the last backup -> -569 (2003 numbering -562) at
    GetLogAndPatchFiles of a LOGS_ONLY backup."""
    server = make_server(profile=profile)
    api = server.backup_api()
    db = server.database(SG1, db_name(server))
    fill(db, 20)
    run_backup(api, SG1, "full", str(tmp_path / "f"))
    fill(db, 60, 100)
    server.flush()
    high = _header(server).full_prev.gen_high
    on_disk = server.instance(SG1).log.archived_generations()
    assert on_disk[-1] > high + 1
    for g in on_disk:
        if g <= high + 1:
            faults.delete_log(server, SG1, g)
    ctx = api.backup_prepare()
    ctx.setup(_info(ctx).instance_id, BackupType.LOGS_ONLY)
    with pytest.raises(ExchangeError) as e:
        ctx.get_log_and_patch_files()
    assert (e.value.jet, e.value.hr) == (jet, hr)
    ctx.end()


def test_B06_gap_from_circular_logging(server, tmp_path):
    """Behaviour 6: logs removed by circular logging also make the next incremental fail."""
    api = server.backup_api()
    db = server.database(SG1, db_name(server))
    run_backup(api, SG1, "full", str(tmp_path / "f"))
    faults.set_circular_logging(server, SG1, True)
    fill(db, 80)
    server.flush()
    faults.set_circular_logging(server, SG1, False)
    ctx = api.backup_prepare()
    ctx.setup(_info(ctx).instance_id, BackupType.LOGS_ONLY)
    with pytest.raises(ExchangeError) as e:
        ctx.get_log_and_patch_files()
    assert e.value.jet == -562
    ctx.end()


def test_B07_sequence_errors(server, tmp_path):
    """Behaviour 7: -521 for DB OpenFile in LOGS_ONLY, DB OpenFile after the log list, log list or
    Truncate with a file open, Truncate before the log list."""
    api = server.backup_api()
    edb = server.abspath(server.storage_group(SG1).databases[0].files[0])
    run_backup(api, SG1, "full", str(tmp_path / "f"))
    ctx = api.backup_prepare()
    ctx.setup(_info(ctx).instance_id, BackupType.LOGS_ONLY)
    with pytest.raises(ExchangeError) as e:
        ctx.open_file(edb)
    assert (e.value.jet, e.value.hr) == (-521, 0xC8000209)
    with pytest.raises(ExchangeError) as e:
        ctx.truncate_logs()
    assert e.value.jet == -521
    ctx.end()

    ctx = api.backup_prepare()
    ctx.setup(_info(ctx).instance_id, BackupType.FULL)
    h, _ = ctx.open_file(edb)
    with pytest.raises(ExchangeError) as e:
        ctx.get_log_and_patch_files()
    assert e.value.jet == -521
    with pytest.raises(ExchangeError) as e:
        ctx.truncate_logs()
    assert e.value.jet == -521
    ctx.close_file(h)
    logs = ctx.get_log_and_patch_files()
    with pytest.raises(ExchangeError) as e:
        ctx.open_file(edb)
    assert e.value.jet == -521
    h, _ = ctx.open_file(logs[0])
    with pytest.raises(ExchangeError) as e:
        ctx.truncate_logs()
    assert e.value.jet == -521
    ctx.close_file(h)
    ctx.end()


def test_B07_no_backup_is_minus_520(server):
    """Behaviour 7 (state machine): calls without Setup -> -520 JET_errNoBackup."""
    ctx = server.backup_api().backup_prepare()
    for call in (ctx.get_log_and_patch_files, ctx.truncate_logs, lambda: ctx.instance_end(InstanceEnd.SUCCESS)):
        with pytest.raises(ExchangeError) as e:
            call()
        assert (e.value.jet, e.value.hr) == (-520, 0xC8000208)


def test_B08_truncation_requires_every_log_read(server, tmp_path):
    """Behaviour 8: Truncate before all listed logs were read to EOF and closed -> -616, nothing deleted."""
    db = server.database(SG1, db_name(server))
    fill(db, 40)
    ctx = server.backup_api().backup_prepare()
    ctx.setup(_info(ctx).instance_id, BackupType.FULL)
    for d in _info(ctx).databases:
        for s in d.streams:
            _read_all(ctx, s)
    logs = ctx.get_log_and_patch_files()
    assert len(logs) >= 2
    _read_all(ctx, logs[0])
    h, _ = ctx.open_file(logs[1])
    ctx.read_file(h, bytearray(4096))  # partial read
    ctx.close_file(h)
    before = sorted(os.listdir(server.instance(SG1).log_dir))
    with pytest.raises(ExchangeError) as e:
        ctx.truncate_logs()
    assert (e.value.jet, e.value.hr, e.value.symbol) == (-616, 0xC8000268, "JET_errLogFileNotCopied")
    assert server.events.ids()[-1] == 520
    assert sorted(os.listdir(server.instance(SG1).log_dir)) == before
    ctx.end()


def test_B09_truncation_range(make_server, tmp_path):
    """Behaviour 9: truncation deletes logs strictly below min(checkpoint, copyMac), never the
    current log, and a full of some DBs never passes another DB's last-full genHigh."""
    server = make_server(databases=2)
    api = server.backup_api()
    d1 = server.database(SG1, db_name(server, 1))
    fill(d1, 60)
    inst = server.instance(SG1)
    ctx = api.backup_prepare()
    ctx.setup(_info(ctx).instance_id, BackupType.FULL)
    for d in _info(ctx).databases:
        for s in d.streams:
            _read_all(ctx, s)
    logs = ctx.get_log_and_patch_files()
    for p in logs:
        _read_all(ctx, p)
    ckpt = inst.checkpoint_generation
    expected = [inst.log.archive_path(g) for g in inst.log.archived_generations() if g < ckpt]
    assert ctx.get_truncate_log_files() == expected
    ctx.truncate_logs()
    ctx.instance_end(InstanceEnd.SUCCESS)
    ctx.end()
    remaining = inst.log.archived_generations()
    assert remaining and remaining[0] >= ckpt
    assert os.path.exists(inst.log.current_path)
    db2_high = _header(server, n=2).full_prev.gen_high
    assert db2_high > 0
    # now only DB 1 backed up: truncation stops at DB 2's last full genHigh
    fill(d1, 80, 1000)
    server.flush()
    bset = run_backup(api, SG1, "full", str(tmp_path / "only1"), databases=[db_name(server, 1)])
    assert len(bset.databases) == 1
    assert remaining[0] < db2_high < inst.checkpoint_generation  # truncation could go further...
    left = inst.log.archived_generations()
    assert left[0] == db2_high  # ...but stops at DB 2's last full genHigh


@pytest.mark.parametrize("profile", ["2003", "2007"])
def test_B10_copy_backup_leaves_chain_intact(make_server, tmp_path, profile):
    """Behaviour 10: a copy backup (FULL without truncate) does not change what the next
    incremental returns or requires; 2007 records CopyPrev, not FullPrev."""
    server = make_server(profile=profile)
    api = server.backup_api()
    db = server.database(SG1, db_name(server))
    fill(db, 20)
    run_backup(api, SG1, "full", str(tmp_path / "f"))
    full_prev = _header(server).full_prev
    fill(db, 20, 100)
    inc_logs_before = server.instance(SG1).log.archived_generations()
    run_backup(api, SG1, "copy", str(tmp_path / "c"))
    h = _header(server)
    assert h.full_prev == full_prev
    if profile == "2007":
        assert h.copy_prev.gen_low > 0
    i = run_backup(api, SG1, "incremental", str(tmp_path / "i"))
    gens = [int(os.path.basename(p)[3:-4], 16) for p, _ in i.logs]
    assert gens[0] == inc_logs_before[0]


def test_B11_unmounted_db_in_full_backup(make_server, tmp_path):
    """Behaviour 11: OpenFile on a dismounted DB -> -1203 / 0xC80004B3; the rest of the SG backs
    up, InstanceEnd(SUCCESS) works, the failed DB's header is not updated."""
    server = make_server(databases=2)
    fill(server.database(SG1, db_name(server, 1)), 10)
    faults.dismount(server, SG1, db_name(server, 2))
    ctx = server.backup_api().backup_prepare()
    info = _info(ctx)
    assert not info.databases[1].mounted and info.databases[0].mounted
    ctx.setup(info.instance_id, BackupType.FULL)
    with pytest.raises(ExchangeError) as e:
        ctx.open_file(info.databases[1].streams[0])
    assert (e.value.jet, e.value.hr) == (-1203, 0xC80004B3)
    for s in info.databases[0].streams:
        _read_all(ctx, s)
    for p in ctx.get_log_and_patch_files():
        _read_all(ctx, p)
    ctx.truncate_logs()
    ctx.instance_end(InstanceEnd.SUCCESS)
    ctx.end()
    assert _header(server, n=1).full_prev.gen_low > 0
    server.mount(SG1, db_name(server, 2))
    assert _header(server, n=2).full_prev.gen_low == 0


def test_B12_corrupt_page_fails_that_db_only(make_server, tmp_path):
    """Behaviour 12: a bad-checksum page -> ReadFile -1018 / 0xC80003FA after ESE's retries, for that
    DB only; the other DB and the logs back up."""
    server = make_server(databases=2)
    for n in (1, 2):
        fill(server.database(SG1, db_name(server, n)), 20)
    faults.corrupt_page(server, SG1, db_name(server, 1), pgno=3)
    t0 = server.clock.now()
    bset = run_backup(server.backup_api(), SG1, "full", str(tmp_path / "f"))
    err = bset.database_errors[db_name(server, 1)]
    assert (err.jet, err.hr, err.symbol) == (-1018, 0xC80003FA, "JET_errReadVerifyFailure")
    assert [d.name for d in bset.databases] == [db_name(server, 2)]
    assert bset.logs
    assert server.clock.now() - t0 == pytest.approx(sum(0.1 * n for n in range(1, 17)))
    assert _header(server, n=1).full_prev.gen_low == 0 and _header(server, n=2).full_prev.gen_low > 0
    ids = server.events.ids()
    assert 474 in ids and 217 in ids and ids[-1] == 213  # checksum event, DB error, backup completed


def test_B12_misplaced_page_and_zero_page(server, tmp_path):
    """Behaviour 12: a page with the wrong pgno fails -1018; an all-zero page is not an error."""
    db = server.database(SG1, db_name(server))
    fill(db, 20)
    faults.corrupt_page(server, SG1, db_name(server), pgno=2, misplace=True)
    bset = run_backup(server.backup_api(), SG1, "full", str(tmp_path / "a"))
    assert bset.database_errors[db_name(server)].jet == -1018
    server.flush()
    path = server.abspath(server.storage_group(SG1).databases[0].files[0])
    cb = server.profile.page_size
    with open(path, "r+b") as f:
        f.seek(3 * cb)  # pgno 2
        f.write(bytes(cb))
    bset = run_backup(server.backup_api(), SG1, "full", str(tmp_path / "b"))
    assert not bset.database_errors


def test_B13_corrupt_log_aborts_instance(server, tmp_path):
    """Behaviour 13: a corrupt log during backup -> -612 and the whole backup is aborted (-520)."""
    db = server.database(SG1, db_name(server))
    fill(db, 20)
    ctx = server.backup_api().backup_prepare()
    ctx.setup(_info(ctx).instance_id, BackupType.FULL)
    for s in _info(ctx).databases[0].streams:
        _read_all(ctx, s)
    logs = ctx.get_log_and_patch_files()
    gen = int(os.path.basename(logs[1])[3:8], 16)
    faults.corrupt_log(server, SG1, gen)
    _read_all(ctx, logs[0])
    h, _ = ctx.open_file(logs[1])
    with pytest.raises(ExchangeError) as e:
        ctx.read_file(h, bytearray(65536))
    assert (e.value.jet, e.value.hr) == (-612, 0xC8000264)
    assert 477 in server.events.ids()
    with pytest.raises(ExchangeError) as e:
        ctx.open_file(logs[2])
    assert e.value.jet == -520
    with pytest.raises(ExchangeError) as e:
        ctx.instance_end(InstanceEnd.SUCCESS)
    assert e.value.jet == -520
    ctx.end()
    assert _header(server).full_prev.gen_low == 0


def test_B14_database_stream_shape(server, tmp_path):
    """Behaviour 14: length (pgnoLast+3) x cbPage; pages 0 and 1 identical headers with
    FullCur.genLow = copyMic, genHigh = 0; trailer genHigh = gen current at end of DB read;
    pages added after OpenFile are not in the stream."""
    db = server.database(SG1, db_name(server))
    fill(db, 30)
    inst = server.instance(SG1)
    cb = server.profile.page_size
    ctx = server.backup_api().backup_prepare()
    ctx.setup(_info(ctx).instance_id, BackupType.FULL)
    copy_mic = inst.checkpoint_generation
    edb = _info(ctx).databases[0].streams[0]
    pgno_last = db.files[0].header.pgno_last
    h, size = ctx.open_file(edb)
    assert size == (pgno_last + 3) * cb
    fill(db, 30, 500)
    server.flush()
    assert db.files[0].header.pgno_last > pgno_last
    buf = bytearray(5000)  # not page aligned on purpose
    data = bytearray()
    while n := ctx.read_file(h, buf):
        data += buf[:n]
    ctx.close_file(h)
    gen_at_end = inst.log.gen
    assert len(data) == size
    assert data[:cb] == data[cb : 2 * cb]
    hdr = DbHeader.unpack(bytes(data[:cb]), False)
    assert (hdr.full_cur.gen_low, hdr.full_cur.gen_high) == (copy_mic, 0)
    trailer = Trailer.unpack(bytes(data[-cb:]))
    assert trailer.bkinfo.gen_high == gen_at_end and trailer.bkinfo.gen_low == copy_mic
    assert trailer.sign_db == hdr.sign_db and trailer.sign_log == hdr.sign_log
    ctx.end()


def test_B15_instance_end_success_before_log_list_is_abort(server, tmp_path):
    """Behaviour 15: InstanceEnd(SUCCESS) before the log list = abort (no header update)."""
    ctx = server.backup_api().backup_prepare()
    ctx.setup(_info(ctx).instance_id, BackupType.FULL)
    for s in _info(ctx).databases[0].streams:
        _read_all(ctx, s)
    ctx.instance_end(InstanceEnd.SUCCESS)
    assert _header(server).full_prev.gen_low == 0
    ctx.setup(_info(ctx).instance_id, BackupType.FULL)  # lock released
    ctx.end()
    with pytest.raises(ExchangeError) as e:
        c2 = server.backup_api().backup_prepare()
        c2.setup(_info(c2).instance_id, BackupType.LOGS_ONLY)
    assert e.value.jet == -560


def test_B16_end_without_instance_end_is_error(server, tmp_path):
    """Behaviour 16: HrESEBackupEnd without InstanceEnd = InstanceEnd(ERROR)."""
    ctx = server.backup_api().backup_prepare()
    ctx.setup(_info(ctx).instance_id, BackupType.FULL)
    for s in _info(ctx).databases[0].streams:
        _read_all(ctx, s)
    for p in ctx.get_log_and_patch_files():
        _read_all(ctx, p)
    ctx.truncate_logs()
    ctx.end()
    assert _header(server).full_prev.gen_low == 0
    assert server.instance(SG1).backup_state is None


def test_B17_header_bookkeeping(server07, tmp_path):
    """Behaviour 17: Full+truncate -> FullPrev (Inc/Diff cleared); Full -> CopyPrev; LogsOnly+truncate
    -> IncPrev; LogsOnly -> DiffPrev; genLow/genHigh = copied range."""
    server, api = server07, server07.backup_api()
    db = server.database(SG1, db_name(server))

    def gens(bset):
        g = [int(os.path.basename(p)[3:-4], 16) for p, _ in bset.logs]
        return g[0], g[-1]

    fill(db, 10)
    f = run_backup(api, SG1, "full", str(tmp_path / "f"))
    h = _header(server)
    assert (h.full_prev.gen_low, h.full_prev.gen_high) == gens(f)
    fill(db, 10, 100)
    d = run_backup(api, SG1, "differential", str(tmp_path / "d"))
    assert (h.diff_prev.gen_low, h.diff_prev.gen_high) == gens(d)
    fill(db, 10, 200)
    i = run_backup(api, SG1, "incremental", str(tmp_path / "i"))
    assert (h.inc_prev.gen_low, h.inc_prev.gen_high) == gens(i)
    c = run_backup(api, SG1, "copy", str(tmp_path / "c"))
    assert (h.copy_prev.gen_low, h.copy_prev.gen_high) == gens(c)
    assert not h.inc_prev.is_empty
    run_backup(api, SG1, "full", str(tmp_path / "f2"))
    assert h.inc_prev.is_empty and h.diff_prev.is_empty and not h.full_prev.is_empty
    # and it is on disk (header and shadow)
    server.flush()
    raw = open(db.files[0].path, "rb").read(2 * server.profile.page_size)
    on_disk = DbHeader.unpack(raw[: server.profile.page_size])
    assert on_disk.full_prev == h.full_prev and raw[: server.profile.page_size] == raw[server.profile.page_size :]


def test_B17_2003_has_no_copy_diff_fields(server, tmp_path):
    """Behaviour 17 on the 2003 profile (UNVERIFIED point, §7): copy/differential leave no trace."""
    api = server.backup_api()
    run_backup(api, SG1, "full", str(tmp_path / "f"))
    h = _header(server)
    before = (h.full_prev, h.inc_prev)
    run_backup(api, SG1, "copy", str(tmp_path / "c"))
    run_backup(api, SG1, "differential", str(tmp_path / "d"))
    assert (h.full_prev, h.inc_prev) == before
    assert h.copy_prev.is_empty and h.diff_prev.is_empty


def test_stop_service_mid_backup_is_801(server):
    """Fault: the server stops the backup -> -801 on later calls; InstanceEnd releases the lock."""
    ctx = server.backup_api().backup_prepare()
    ctx.setup(_info(ctx).instance_id, BackupType.FULL)
    assert faults.stop_service_mid_backup(server, SG1) == 1
    with pytest.raises(ExchangeError) as e:
        ctx.get_log_and_patch_files()
    assert (e.value.jet, e.value.hr) == (-801, 0xC8000321)
    ctx.instance_end(InstanceEnd.SUCCESS)
    ctx.setup(_info(ctx).instance_id, BackupType.FULL)
    ctx.end()


def test_log_disk_full_is_529(server):
    """Fault: a full log disk -> Setup and the next log roll fail -529."""
    faults.fill_log_disk(server, SG1)
    ctx = server.backup_api().backup_prepare()
    with pytest.raises(ExchangeError) as e:
        ctx.setup(_info(ctx).instance_id, BackupType.FULL)
    assert e.value.jet == -529
    db = server.database(SG1, db_name(server))
    with pytest.raises(ExchangeError) as e:
        fill(db, 40)
    assert e.value.jet == -529
    with pytest.raises(ExchangeError) as e:
        fill(db, 1)
    assert e.value.jet == -510  # a log write failed earlier
    faults.fill_log_disk(server, SG1, False)
    fill(db, 5, 900)


def test_one_database_file_open_at_a_time(make_server):
    """§7 UNVERIFIED choice: a second database file of the SG opened while one is open -> -521."""
    server = make_server(databases=2)
    ctx = server.backup_api().backup_prepare()
    info = _info(ctx)
    ctx.setup(info.instance_id, BackupType.FULL)
    h, _ = ctx.open_file(info.databases[0].streams[0])
    with pytest.raises(ExchangeError) as e:
        ctx.open_file(info.databases[1].streams[0])
    assert e.value.jet == -521
    ctx.close_file(h)
    h, _ = ctx.open_file(info.databases[1].streams[0])
    ctx.close_file(h)
    ctx.end()


def test_full_with_all_logs_returns_every_log_on_disk(server):
    """§7 UNVERIFIED choice: FULL_WITH_ALL_LOGS lists every generation on disk."""
    fill(server.database(SG1, db_name(server)), 40)
    inst = server.instance(SG1)
    lowest = inst.log.archived_generations()[0]
    assert lowest < inst.checkpoint_generation
    ctx = server.backup_api().backup_prepare()
    ctx.setup(_info(ctx).instance_id, BackupType.FULL_WITH_ALL_LOGS)
    logs = ctx.get_log_and_patch_files()
    assert int(os.path.basename(logs[0])[3:8], 16) == lowest
    ctx.end()


def test_server_shutdown_mid_backup_is_801(make_server):
    """JetTerm during a backup (service stopped): later calls -801."""
    server = make_server()
    ctx = server.backup_api().backup_prepare()
    ctx.setup(_info(ctx).instance_id, BackupType.FULL)
    server.shutdown()
    with pytest.raises(ExchangeError) as e:
        ctx.get_log_and_patch_files()
    assert e.value.jet == -801
    ctx.end()
