"""Levels, chains and failure paths of brick-level jobs (emulator store: fast and deterministic)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from bjobs_support import (
    fill,
    helpers,
    make_site,
    msg,
    put,
    run_backup,
    run_restore,
    snapshot,
)

from reference.agent.brick import Selection
from reference.brick_jobs import BrickJobError, StateStore, mailbox_chain, set_source
from reference.errors import NotFoundError
from reference.server.readback import MediaReader

INBOX = ("INBOX",)


@pytest.fixture
def esite(emulator_env, tmp_path):
    handle = make_site(tmp_path / "site", emulator_env.clock)
    yield handle
    handle.close()


def _folders_of(env, mailbox):
    return {p: rows for p, rows in snapshot(env.store, mailbox).items() if rows}


def _inbox(env, mailbox=None):
    return snapshot(env.store, mailbox or env.mailbox, folders={INBOX, ("Inbox",)})


def test_incremental_without_a_full_is_converted_to_full_with_a_warning(emulator_env, esite):
    env = emulator_env
    put(env.store, env.mailbox, INBOX, msg(1))
    result = run_backup(esite, env, "incremental")
    assert (result.requested_level, result.level, result.status) == ("incremental", "full", "warning")
    assert "converted to a full backup: no previous full backup" in result.warnings[0]
    job = esite.catalog.jobs()[0]
    assert (job["status"], job["level"]) == ("warning", "full")
    assert esite.catalog.data_set(result.receipt.data_set_id).backup_type == "full"


def test_changed_selection_makes_the_next_backup_a_full(emulator_env, esite):
    env = emulator_env
    put(env.store, env.mailbox, INBOX, msg(1))
    run_backup(esite, env, "full")
    other = run_backup(esite, env, "incremental", selection=Selection(mailboxes=(env.mailbox,), folders=("Inbox",)))
    assert other.level == "full" and "selection" in other.warnings[0]


def test_differential_and_incremental_chains_follow_the_spec(emulator_env, esite):
    """Spec brick-level-imap.md §6: differential = since the last full; incremental = since the
    last backup of any type. Chains: full + differential; full + differential + later incrementals."""
    env = emulator_env
    put(env.store, env.mailbox, INBOX, msg(1))
    full = run_backup(esite, env, "full")
    put(env.store, env.mailbox, INBOX, msg(2), date=helpers.BASE_DATE + 60)
    incremental = run_backup(esite, env, "incremental")
    gone = next(i.uid for i in env.store.list_items(env.mailbox, INBOX) if i.message_id == "<brick-2@mailtape.test>")
    env.store.delete_item(env.mailbox, INBOX, gone)                  # added after the full, then deleted
    put(env.store, env.mailbox, INBOX, msg(3), date=helpers.BASE_DATE + 120)
    differential = run_backup(esite, env, "differential")
    assert differential.level == "differential"
    assert (differential.summary.items_stored, differential.summary.expunged) == (1, 0)   # vs the full: #3
    ids = [full.receipt.data_set_id, incremental.receipt.data_set_id, differential.receipt.data_set_id]
    assert [s.id for s in mailbox_chain(esite.catalog, env.server_name, "Mailboxes")] == [ids[0], ids[2]]
    assert [s.id for s in mailbox_chain(esite.catalog, env.server_name, "Mailboxes", set_id=ids[1])] == ids[:2]
    expected = _inbox(env)
    run_restore(esite, env, target_mailbox=env.other)
    assert list(_inbox(env, env.other).values()) == list(expected.values())

    # the next incremental is based on the differential: nothing changed, nothing to record
    later = run_backup(esite, env, "incremental")
    assert (later.summary.items_stored, later.summary.expunged, later.summary.items_referenced) == (0, 0, 0)
    put(env.store, env.mailbox, INBOX, msg(4), date=helpers.BASE_DATE + 180)
    last = run_backup(esite, env, "incremental")
    assert last.summary.items_stored == 1
    assert [s.id for s in mailbox_chain(esite.catalog, env.server_name, "Mailboxes")] == \
        [ids[0], ids[2], later.receipt.data_set_id, last.receipt.data_set_id]
    expected = _inbox(env)
    run_restore(esite, env, target_mailbox=env.other, target_folder=("Latest",))
    assert list(snapshot(env.store, env.other, folders={("Latest", "Inbox"), ("Latest", "INBOX")}).values()) == \
        list(expected.values())


def test_stale_base_after_a_lost_state_update_converts_to_full(emulator_env, esite):
    """A set committed whose base file was not updated (crash between commit and save): the next
    incremental must not build on the older base."""
    env = emulator_env
    put(env.store, env.mailbox, INBOX, msg(1))
    run_backup(esite, env, "full")
    states = StateStore(esite.root, env.server_name, "Mailboxes")
    old = states.path("incremental").read_bytes()
    put(env.store, env.mailbox, INBOX, msg(2), date=helpers.BASE_DATE + 60)
    run_backup(esite, env, "incremental")
    states.path("incremental").write_bytes(old)
    result = run_backup(esite, env, "incremental")
    assert result.level == "full" and "newer incremental backup" in result.warnings[0]


def test_copy_backup_stands_alone_and_is_no_base(emulator_env, esite):
    env = emulator_env
    put(env.store, env.mailbox, INBOX, msg(1))
    full = run_backup(esite, env, "full")
    states = StateStore(esite.root, env.server_name, "Mailboxes")
    base = states.path("incremental").read_bytes()
    put(env.store, env.mailbox, INBOX, msg(2), date=helpers.BASE_DATE + 60)
    copy = run_backup(esite, env, "copy")
    assert copy.level == "copy" and copy.summary.items_stored == 2
    assert states.path("incremental").read_bytes() == base
    assert [s.id for s in mailbox_chain(esite.catalog, env.server_name, "Mailboxes",
                                        set_id=copy.receipt.data_set_id)] == [copy.receipt.data_set_id]
    incremental = run_backup(esite, env, "incremental")
    assert incremental.summary.items_stored == 1                     # #2 again: the copy was no base
    assert set_source(esite.catalog, full.receipt.data_set_id) == (env.server_name, "Mailboxes")


def test_server_failure_mid_set_cancels_the_pass_and_keeps_the_base(emulator_env, tmp_path):
    """No cartridge left for the rest of the set: the server fails the session, the pass thread
    stops, nothing is committed, the job is failed, the base stays."""
    env = emulator_env
    site = make_site(tmp_path / "one", env.clock, cartridges=1)
    try:
        put(env.store, env.mailbox, INBOX, msg(1))
        run_backup(site, env, "full")
        for n in range(40):
            put(env.store, env.mailbox, INBOX, msg(10 + n, body=bytes([65 + n % 26]) * 60_000),
                date=helpers.BASE_DATE + n)
        states = StateStore(site.root, env.server_name, "Mailboxes")
        base = states.path("incremental").read_bytes()
        with pytest.raises(BrickJobError, match="nothing was committed"):
            run_backup(site, env, "incremental")
        assert len(site.catalog.data_sets()) == 1
        assert site.catalog.jobs()[0]["status"] == "failed"
        assert states.path("incremental").read_bytes() == base
    finally:
        site.close()


def test_restore_errors_name_what_is_missing(emulator_env, esite):
    env = emulator_env
    with pytest.raises(NotFoundError, match="no brick-level backup"):
        run_restore(esite, env)
    put(env.store, env.mailbox, INBOX, msg(1))
    full = run_backup(esite, env)
    with pytest.raises(NotFoundError, match="not a brick-level backup"):
        run_restore(esite, env, set_id=full.receipt.data_set_id + 5)
    with pytest.raises(NotFoundError, match="does not exist"):
        run_restore(esite, env, target_mailbox="nobody")
    assert esite.catalog.jobs()[0]["status"] == "failed"


def test_rebuilt_catalog_knows_brick_sets(emulator_env, esite, tmp_path):
    """BackupMetadata.json in its own volume lets `catalog rebuild` restore kind, server, level."""
    from reference.server.catalog import Catalog
    from reference.server.readback import rebuild_catalog

    env = emulator_env
    fill(env, count=3)
    full = run_backup(esite, env)
    target = Catalog(tmp_path / "rebuilt.sqlite")
    try:
        rebuild_catalog(target, esite.media)
        [record] = target.data_sets()
        assert (record.kind, record.server, record.storage_group, record.backup_type) == \
            ("mailbox", env.server_name, "Mailboxes", "full")
        assert record.metadata["mailboxes"] == [env.mailbox]
        original = esite.catalog.data_set(full.receipt.data_set_id)
        assert sorted((o.path, o.sha256) for o in target.data_set(record.id).objects) == \
            sorted((o.path, o.sha256) for o in original.objects)
        # Restoring from the rebuilt catalog works: the rebuild puts each object's mailbox (the
        # VOLB volume) into its `database` column.
        rebuilt = SimpleNamespace(catalog=target, runtime=esite.runtime,
                                  reader=lambda: MediaReader(target, esite.media))
        outcome = run_restore(rebuilt, env, target_mailbox=env.other, set_id=record.id)
        assert outcome.result.ok and _folders_of(env, env.other) == _folders_of(env, env.mailbox)
    finally:
        target.close()


def test_damaged_body_on_tape_fails_that_item_only(emulator_env, esite):
    """A flipped byte in one message on the cartridge: the read-back XXH3-128 check catches it,
    that item fails with the reason, every other item is restored, the job is a warning."""
    env = emulator_env
    for n in range(4):
        put(env.store, env.mailbox, INBOX, msg(n, body=f"payload {n} DAMAGE-TARGET-{n}\r\n".encode()),
            date=helpers.BASE_DATE + n)
    full = run_backup(esite, env)
    [barcode] = full.receipt.barcodes
    tap = esite.library_path / "cartridges" / f"{barcode}.tap"
    raw = bytearray(tap.read_bytes())
    at = raw.index(b"DAMAGE-TARGET-2")
    raw[at] ^= 0x20
    tap.write_bytes(bytes(raw))
    outcome = run_restore(esite, env, target_mailbox=env.other)
    [(action, reason)] = outcome.result.failed
    assert action.item.message_id == "<brick-2@mailtape.test>" and "XXH3-128" in reason
    assert len(outcome.result.done) == 3
    bodies = {bytes(env.store.read_item(env.other, INBOX, i.uid)) for i in env.store.list_items(env.other, INBOX)}
    assert bodies == {msg(n, body=f"payload {n} DAMAGE-TARGET-{n}\r\n".encode()) for n in (0, 1, 3)}
    assert esite.catalog.jobs()[0]["status"] == "warning"


def test_odd_folder_names_round_trip_through_tape(emulator_env, esite):
    """Names with '/', '..', '%', '*', a backslash and non-ASCII are escaped in the DIRBs; the
    catalog paths must still match the media (read-back by path) and the restore is exact."""
    env = emulator_env
    folders = [("a/b",), ("..",), ("100%", "*"), ("back\\slash",), ("Entwürfe", "ñ")]
    for n, folder in enumerate(folders):
        env.store.create_folder(env.mailbox, folder)
        put(env.store, env.mailbox, folder, msg(n), date=helpers.BASE_DATE + n)
    full = run_backup(esite, env)
    reader = esite.reader()
    try:
        assert reader.verify([full.receipt.data_set_id]).ok
    finally:
        reader.close()
    outcome = run_restore(esite, env, target_mailbox=env.other, target_folder=("R",))
    assert outcome.result.ok
    for n, folder in enumerate(folders):
        [item] = env.store.list_items(env.other, ("R", *folder))
        assert env.store.read_item(env.other, ("R", *folder), item.uid) == msg(n)


def test_store_identity_keys_the_chain_when_no_server_name_is_given(emulator_env, esite):
    from reference.agent.brick import RestoreOptions
    from reference.brick_jobs import (
        backup_mailboxes,
        imap_identity,
        restore_mailboxes,
        store_identity,
    )
    from reference.drivers.imap_url import parse_imap_url

    env = emulator_env
    assert store_identity(env.store) == ("EXCHANGE01", "Mailboxes")
    urls = [parse_imap_url("imaps://bob@mail.test"), parse_imap_url("imaps://alice@mail.test")]
    assert imap_identity(urls) == ("imaps://mail.test:993", "Mailboxes (alice, bob)")
    put(env.store, env.mailbox, INBOX, msg(1))
    selection = Selection(mailboxes=(env.mailbox,))
    result = esite.runtime.run(backup_mailboxes(esite, env.store, selection, "full"))
    assert (result.server, result.storage_group) == ("EXCHANGE01", "Mailboxes")
    outcome = esite.runtime.run(restore_mailboxes(
        esite, env.store, RestoreOptions(selection=selection, target_mailbox=env.other),
        set_id=result.receipt.data_set_id))
    assert outcome.result.ok and outcome.result.plan.counts() == {"append": 1}


def test_the_pass_hands_back_in_bounded_batches(emulator_env, esite, monkeypatch):
    """Streaming with bounded memory: the pass never holds more than SEND_BATCH plus about one
    message before the loop sends it on; every item still reaches the tape."""
    import reference.brick_jobs as jobs

    env = emulator_env
    size = 30_000
    for n in range(20):
        put(env.store, env.mailbox, INBOX, msg(n, body=bytes([65 + n]) * size), date=helpers.BASE_DATE + n)
    monkeypatch.setattr(jobs, "SEND_BATCH", 64 * 1024)
    batches: list[int] = []
    take = jobs._Packer.take

    def recording_take(self):
        batch = take(self)
        batches.append(sum(len(c) for c in batch))
        return batch
    monkeypatch.setattr(jobs._Packer, "take", recording_take)
    result = run_backup(esite, env)
    assert result.items == 20
    assert len([b for b in batches if b]) >= 8
    assert max(batches) <= 64 * 1024 + size + 8 * 1024
