"""Brick-level backup and restore jobs through the backup server, on tape (emulator and Dovecot)."""

from __future__ import annotations

import pytest
from bjobs_support import (
    DroppingStore,
    fill,
    helpers,
    make_env,
    make_site,
    msg,
    put,
    run_backup,
    run_restore,
    snapshot,
    uid_snapshot,
    wipe,
)

from reference.brick_cli import restore_dict
from reference.brick_jobs import BrickJobError, StateStore, mailbox_chain

INBOX = ("INBOX",)
PROJECTS = ("Projects",)


def _folders(env, mailbox=None):
    """Snapshot of the folders the tests fill (the emulator has more, empty, well-known ones)."""
    view = snapshot(env.store, mailbox or env.mailbox)
    return {path: rows for path, rows in view.items() if rows or path == PROJECTS}


def _verify(site, set_ids=None):
    """Re-read sets from tape and compare every object with the catalog (size, SHA-256)."""
    reader = site.reader()
    try:
        report = reader.verify(set_ids)
    finally:
        reader.close()
    assert not report.problems, report.problems
    return report


def _inbox_key(view):
    return {("INBOX",) + p[1:] if p[0].casefold() == "inbox" else p: rows for p, rows in view.items()}


def test_full_and_incremental_to_tape_then_restore_to_original(env, site):
    fill(env, count=16, size=70_000)      # ~1.5 MB: the full set spans the 1 MiB cartridges
    full = run_backup(site, env, "full")
    assert full.status == "ok" and full.level == "full"
    assert len(full.receipt.barcodes) >= 2, "the full set should span cartridges"
    assert full.summary.items_referenced == 1            # the duplicated body is stored once
    # the catalog records every item: path, size, sha256 — and they read back bit-exact
    record = site.catalog.data_set(full.receipt.data_set_id)
    assert record.kind == "mailbox" and record.backup_type == "full"
    items = [o for o in record.objects if o.kind == "item"]
    assert len(items) == full.summary.items_stored
    assert all(o.database == env.mailbox for o in items)
    assert _verify(site, [record.id]).ok

    inbox = list(env.store.list_items(env.mailbox, INBOX))
    env.store.delete_item(env.mailbox, INBOX, inbox[0].uid)
    env.store.set_flags(env.mailbox, INBOX, inbox[1].uid, frozenset({"\\Seen", "\\Answered"}))
    put(env.store, env.mailbox, PROJECTS, msg(500), date=helpers.BASE_DATE + 9000)
    incremental = run_backup(site, env, "incremental")
    assert incremental.level == "incremental"
    assert (incremental.summary.items_stored, incremental.summary.expunged, incremental.summary.flag_updates) == (1, 1, 1)
    expected = _folders(env)

    wipe(env)
    result = run_restore(site, env)
    assert result.result.ok
    assert [s.id for s in result.chain] == [full.receipt.data_set_id, incremental.receipt.data_set_id]
    assert _inbox_key(_folders(env)) == _inbox_key(expected)
    jobs = site.catalog.jobs()
    assert [(j["kind"], j["status"]) for j in reversed(jobs)] == [("backup", "ok"), ("backup", "ok"),
                                                                  ("restore", "ok")]


def test_restore_to_alternate_mailbox_twice_makes_no_duplicates(env, site):
    """Spec brick-level-imap.md §4 complaint #1: a restore run twice creates no duplicates."""
    fill(env, count=6)
    run_backup(site, env)
    expected = _folders(env)
    first = run_restore(site, env, target_mailbox=env.other, target_folder=("Recovered",))
    assert first.result.ok and first.result.plan.counts()["append"] == sum(len(r) for r in expected.values())
    restored = {p[1:]: rows for p, rows in _folders(env, env.other).items() if p[0] == "Recovered"}
    assert _inbox_key(restored) == _inbox_key(expected)
    before = uid_snapshot(env.store, env.other)
    second = run_restore(site, env, target_mailbox=env.other, target_folder=("Recovered",))
    assert second.result.ok and set(second.result.plan.counts()) == {"skip (exists)"}
    assert first.bodies_read > 0 and second.bodies_read == 0          # nothing to append: no body read
    assert uid_snapshot(env.store, env.other) == before
    assert _folders(env) == expected                     # the source mailbox was never touched


def test_dry_run_changes_nothing_and_reads_no_bodies(env, site):
    fill(env, count=5)
    run_backup(site, env)
    wipe(env)
    before = uid_snapshot(env.store, env.mailbox)
    outcome = run_restore(site, env, dry_run=True)
    assert outcome.result.dry_run and outcome.bodies_read == 0
    counts = outcome.result.plan.counts()
    assert counts["append"] == 5 + 2 + 1 and counts["create-folder"] == 1
    assert uid_snapshot(env.store, env.mailbox) == before
    job = site.catalog.jobs()[0]
    assert (job["kind"], job["level"], job["status"]) == ("restore", "dry-run", "ok")


@pytest.mark.parametrize("policy", ["skip", "copy", "overwrite"])
def test_conflict_policies(env, site, policy):
    put(env.store, env.mailbox, INBOX, msg(1), date=helpers.BASE_DATE)
    put(env.store, env.mailbox, INBOX, msg(2), date=helpers.BASE_DATE + 60)
    run_backup(site, env)
    mine = msg(1, body=b"edited after the backup\r\n")                   # same Message-ID, other body
    for item in list(env.store.list_items(env.mailbox, INBOX)):
        env.store.delete_item(env.mailbox, INBOX, item.uid)
    put(env.store, env.mailbox, INBOX, mine, date=helpers.BASE_DATE)
    dry = restore_dict(run_restore(site, env, conflict=policy, dry_run=True))      # spec complaint #1:
    assert (dry["conflicts"], dry["would_duplicate"]) == (1, 1 if policy == "copy" else 0)   # the count
    outcome = run_restore(site, env, conflict=policy)
    assert outcome.result.ok
    bodies = sorted(env.store.read_item(env.mailbox, INBOX, i.uid) for i in env.store.list_items(env.mailbox, INBOX))
    expected = {"skip": sorted([mine, msg(2)]), "copy": sorted([mine, msg(1), msg(2)]),
                "overwrite": sorted([msg(1), msg(2)])}[policy]
    assert bodies == expected
    again = run_restore(site, env, conflict=policy)                       # idempotent under every policy
    assert not [a for a in again.result.plan.actions if a.op in ("append", "replace")]


def test_point_in_time_by_set_and_by_time(env, site):
    put(env.store, env.mailbox, INBOX, msg(1), date=helpers.BASE_DATE)
    full = run_backup(site, env)
    at_full = _folders(env)
    env.clock.advance(3600)
    put(env.store, env.mailbox, INBOX, msg(2), date=helpers.BASE_DATE + 60)
    incremental = run_backup(site, env, "incremental")
    at_incremental = _folders(env)

    by_set = run_restore(site, env, set_id=full.receipt.data_set_id, target_mailbox=env.other,
                         target_folder=("At full",))
    assert [s.id for s in by_set.chain] == [full.receipt.data_set_id]
    got = {p[1:]: r for p, r in _folders(env, env.other).items() if p[0] == "At full"}
    assert _inbox_key(got) == _inbox_key(at_full)

    full_done = site.catalog.data_set(full.receipt.data_set_id).completed
    by_time = run_restore(site, env, at=full_done + 1, target_mailbox=env.other, target_folder=("By time",))
    assert [s.id for s in by_time.chain] == [full.receipt.data_set_id]
    latest = run_restore(site, env, target_mailbox=env.other, target_folder=("Latest",))
    assert [s.id for s in latest.chain] == [full.receipt.data_set_id, incremental.receipt.data_set_id]
    got = {p[1:]: r for p, r in _folders(env, env.other).items() if p[0] == "Latest"}
    assert _inbox_key(got) == _inbox_key(at_incremental)


def test_dropped_connection_mid_backup_commits_nothing_and_next_backup_works(env, site):
    fill(env, count=6)
    full = run_backup(site, env)
    state_path = StateStore(site.root, env.server_name, "Mailboxes").path("incremental")
    base_before = state_path.read_bytes()
    put(env.store, env.mailbox, INBOX, msg(40), date=helpers.BASE_DATE + 7000)
    put(env.store, env.mailbox, INBOX, msg(41), date=helpers.BASE_DATE + 7060)
    source_before = _folders(env)
    sets_before = [s.id for s in site.catalog.data_sets()]

    with pytest.raises(BrickJobError, match="dropped.*nothing was committed"):
        run_backup(site, env, "incremental", store=DroppingStore(env.store, reads=1))
    assert [s.id for s in site.catalog.data_sets()] == sets_before          # nothing committed
    job = site.catalog.jobs()[0]
    assert job["status"] == "failed" and "dropped" in job["message"]
    assert state_path.read_bytes() == base_before                           # the base is untouched
    assert _folders(env) == source_before                                    # nothing lost at the source

    # a full can fail the same way, and the next backups work on the same media
    with pytest.raises(BrickJobError):
        run_backup(site, env, "full", store=DroppingStore(env.store, reads=3))
    incremental = run_backup(site, env, "incremental")
    assert incremental.status == "ok" and incremental.summary.items_stored == 2
    assert [s.id for s in mailbox_chain(site.catalog, env.server_name, "Mailboxes")] == \
        [full.receipt.data_set_id, incremental.receipt.data_set_id]
    again = run_backup(site, env, "full")
    assert again.status == "ok"
    wipe(env)
    assert run_restore(site, env).result.ok
    assert _inbox_key(_folders(env)) == _inbox_key(source_before)
    assert _verify(site).ok


@pytest.mark.imap
def test_uidvalidity_reset_between_backups_costs_metadata_only(dovecot, request, tmp_path):
    """Spec complaint #2: the server renumbers a folder (doveadm mailbox update --uid-validity);
    the incremental job re-maps the items without storing them again, reports the reset in its
    summary and warnings, and the restore has no duplicates."""
    env = make_env("dovecot", request, tmp_path)
    site = make_site(tmp_path / "site", env.clock)
    try:
        for n in range(4):
            put(env.store, env.mailbox, INBOX, msg(n), date=helpers.BASE_DATE + n)
        run_backup(site, env)
        validity = next(f for f in env.store.list_folders(env.mailbox) if f.path == INBOX).uid_validity
        dovecot.doveadm("mailbox", "update", "-u", env.mailbox, "--uid-validity", str(validity + 99), "INBOX")
        incremental = run_backup(site, env, "incremental")
        assert incremental.status == "warning" and "UIDVALIDITY" in incremental.warnings[0]
        [reset] = incremental.to_dict()["uidvalidity_resets"]
        assert (reset["remapped"], reset["read"]) == (4, 0) and incremental.summary.items_stored == 0
        outcome = run_restore(site, env, target_mailbox=env.other)
        assert outcome.result.ok and outcome.result.plan.counts() == {"append": 4}
        assert len(list(env.store.list_items(env.other, INBOX))) == 4
    finally:
        site.close()
        for close in env.closers:
            close()
