"""The brick-level engine against every store (Dovecot over IMAP, the Exchange emulator).

Spec brick-level-imap.md §1.3 (design), §4 (user complaints: 1 duplicates, 2 UIDVALIDITY,
4 lost metadata), §6 (restore options); ese-backup-api.md §4 (overwrite/skip, alternate target).
"""

from __future__ import annotations

import random

import pytest
from brick_helpers import BASE_DATE, DAY, backup, catalog_view, msg, put, snapshot, uid_snapshot

from reference.agent.brick import (BackupState, BrickCatalog, RestoreOptions, Selection, plan_restore,
                                   run_restore)
from reference.agent.brick.model import ITEM
from reference.drivers.imap_errors import FolderIdentityChanged
from reference.errors import CorruptDataError, NotFoundError, UsageError

INBOX = ("INBOX",)


def seed(env) -> None:
    s, me = env.store, env.mailbox
    for folder in [("Projects", "2024"), ("Projects", "Old"), ("Mr. Smith",), ("Entwürfe ä€",)]:
        s.create_folder(me, folder)
    put(s, me, INBOX, msg(1), {"\\Seen"}, BASE_DATE)
    put(s, me, INBOX, msg(2), {"\\Flagged", "$Label1"}, BASE_DATE + DAY)
    put(s, me, INBOX, msg(3, mid=None), (), BASE_DATE + 2 * DAY)
    put(s, me, ("Projects", "2024"), msg(4, body=b"x" * 70000 + b"\r\n"), {"\\Answered"}, BASE_DATE + 3 * DAY)
    put(s, me, ("Projects", "Old"), msg(5), {"\\Seen"}, BASE_DATE - 300 * DAY)
    put(s, me, ("Mr. Smith",), msg(6), {"\\Draft"}, BASE_DATE + 4 * DAY)
    put(s, me, ("Entwürfe ä€",), msg(7, body="Grüße\r\n".encode()), (), BASE_DATE + 5 * DAY)


def test_full_backup_captures_every_item_byte_exact(env):
    """§1.3: raw RFC 5322 bytes + metadata sidecar (flags, internal date, Message-ID, size, sha256)."""
    seed(env)
    objects, job = backup(env)
    catalog = BrickCatalog.from_sets([objects])
    assert catalog_view(catalog, env.mailbox) == snapshot(env.store, env.mailbox)
    items = [o for o in objects if o.kind == ITEM]
    assert len(items) == 7 and job.summary.items_stored == 7
    first = next(o for o in items if o.meta["message_id"] == "<brick-1@mailtape.test>")
    assert first.content == msg(1) and first.meta["size"] == len(msg(1))
    assert first.meta["flags"] == ["\\Seen"] and first.meta["internal_date"] == BASE_DATE
    assert next(o for o in items if o.meta["message_id"] is None).content == msg(3, mid=None)
    assert env.mailbox in catalog.mailboxes()


def test_identical_bytes_are_stored_once_per_set(env):
    """Single-instance: the same octets in two folders (and twice in one) travel once."""
    s, me = env.store, env.mailbox
    s.create_folder(me, ("Copies",))
    for folder in (INBOX, ("Copies",), ("Copies",)):
        put(s, me, folder, msg(9), {"\\Seen"})
    objects, job = backup(env)
    items = [o for o in objects if o.kind == ITEM]
    assert len(items) == 3 and sum(o.content is not None for o in items) == 1
    assert (job.summary.items_stored, job.summary.items_referenced) == (1, 2)
    catalog = BrickCatalog.from_sets([objects])
    assert catalog_view(catalog, me) == snapshot(s, me)


def test_restore_to_alternate_mailbox_round_trips_item_by_item(env):
    """§6 alternate mailbox: folders re-created, bytes, flags and internal dates preserved."""
    seed(env)
    objects, _ = backup(env)
    catalog = BrickCatalog.from_sets([objects])
    result = run_restore(catalog, env.store, RestoreOptions(target_mailbox=env.other))
    assert result.ok, result.failed
    wanted = catalog_view(catalog, env.mailbox)
    got = snapshot(env.store, env.other, folders=set(wanted))
    assert got == wanted


@pytest.mark.parametrize("policy", ["skip", "overwrite", "copy"])
def test_restore_twice_creates_no_duplicates(env, policy):
    """§4 complaint 1: a second identical restore adds nothing, whatever the conflict policy."""
    seed(env)
    catalog = BrickCatalog.from_sets([backup(env)[0]])
    options = RestoreOptions(target_mailbox=env.other, conflict=policy)
    first = run_restore(catalog, env.store, options)
    after_first = snapshot(env.store, env.other)
    second = run_restore(catalog, env.store, options)
    assert first.ok and second.ok
    assert snapshot(env.store, env.other) == after_first
    assert [a.op for a, _uid in second.done] == []
    assert set(second.plan.counts()) == {"skip (exists)"}


def test_restore_to_original_recreates_only_what_is_missing(env):
    """§6 original location: a deleted folder and a deleted item come back; nothing is doubled."""
    seed(env)
    s, me = env.store, env.mailbox
    catalog = BrickCatalog.from_sets([backup(env)[0]])
    s.delete_folder(me, ("Projects",))
    gone = next(i.uid for i in s.list_items(me, INBOX) if i.message_id == "<brick-2@mailtape.test>")
    s.delete_item(me, INBOX, gone)
    result = run_restore(catalog, s, RestoreOptions())
    assert result.ok, result.failed
    created = {a.folder for a in result.plan.actions if a.op == "create-folder"}
    assert {("Projects", "2024"), ("Projects", "Old")} <= created <= {("Projects",), ("Projects", "2024"),
                                                                        ("Projects", "Old")}
    assert result.plan.counts()["append"] == 3
    assert snapshot(s, me) == catalog_view(catalog, me)


def test_restore_under_alternate_folder(env):
    """§6 alternate folder: everything lands below the named folder, nothing elsewhere changes."""
    seed(env)
    s, me = env.store, env.mailbox
    catalog = BrickCatalog.from_sets([backup(env)[0]])
    before = snapshot(s, me)
    prefix = ("Recovered 2024-05-01",)
    result = run_restore(catalog, s, RestoreOptions(target_folder=prefix, mark_unread=True))
    assert result.ok, result.failed
    after = snapshot(s, me)
    assert {k: v for k, v in after.items() if k[:1] != prefix} == before
    restored = {k: v for k, v in after.items() if k[:1] == prefix and v}
    expected = {k: sorted((sha, tuple(f for f in flags if f != "\\Seen"), date) for sha, flags, date in v)
                for k, v in catalog_view(catalog, me, prefix).items() if v}
    assert restored == expected


def _activity(env, rng: random.Random, serial: list[int]) -> None:
    """Random user activity: new mail (some duplicates), flag changes, deletes, moves, folders."""
    s, me = env.store, env.mailbox
    folders = [f.path for f in s.list_folders(me) if f.uid_validity and f.path[0] != "Trash"]
    for _ in range(12):
        folder = rng.choice(folders)
        items = list(s.list_items(me, folder))
        roll = rng.random()
        if roll < 0.4 or not items:
            serial[0] += 1
            n = serial[0] if rng.random() < 0.8 else rng.randint(1, serial[0])    # some identical bodies
            put(s, me, folder, msg(n, mid=None if n % 5 == 0 else "default"),
                rng.sample(["\\Seen", "\\Flagged", "$Work"], rng.randint(0, 2)), BASE_DATE + n * 3600)
        elif roll < 0.65:
            item = rng.choice(items)
            s.set_flags(me, folder, item.uid, frozenset(rng.sample(["\\Seen", "\\Answered", "$Todo"], rng.randint(0, 3))))
        elif roll < 0.8:
            s.delete_item(me, folder, rng.choice(items).uid)
        elif roll < 0.92:
            item = rng.choice(items)
            target = rng.choice(folders)
            data = s.read_item(me, folder, item.uid)
            put(s, me, target, data, item.flags, item.internal_date)
            s.delete_item(me, folder, item.uid)
        else:
            serial[0] += 1
            new = ("Projects", f"New {serial[0]}")
            s.create_folder(me, new)
            folders.append(new)
    if rng.random() < 0.5:
        s.delete_folder(me, ("Mr. Smith",)) if ("Mr. Smith",) in folders else None


def test_incremental_chain_after_random_activity(env):
    """§1.3 incremental: UID > last uid + CHANGEDSINCE flag refresh + expunge tombstones; the chain
    full + incrementals reproduces the mailbox exactly after every round."""
    seed(env)
    s, me = env.store, env.mailbox
    rng = random.Random(20241109)
    serial = [100]
    objects, job = backup(env)
    chain = [objects]
    for round_no in range(3):
        _activity(env, rng, serial)
        objects, job = backup(env, job.state)
        chain.append(objects)
        assert job.level == "incremental"
        catalog = BrickCatalog.from_sets(chain)
        assert catalog_view(catalog, me) == snapshot(s, me), f"round {round_no}"
        stored = {o.meta["sha256"] for o in objects if o.kind == ITEM and o.content is not None}
        earlier = {o.meta["sha256"] for older in chain[:-1] for o in older if o.kind == ITEM and o.content is not None}
        assert not stored & earlier                  # no body is stored twice across the chain


def _recreate(env, folder) -> None:
    """Simulate a server that renumbers a folder: same messages, new UIDs and UIDVALIDITY."""
    s, me = env.store, env.mailbox
    keep = [(s.read_item(me, folder, i.uid), i.flags, i.internal_date) for i in s.list_items(me, folder)]
    s.delete_folder(me, folder)
    s.create_folder(me, folder)
    for data, flags, date in keep:
        put(s, me, folder, data, flags, date)


def test_uidvalidity_change_rereads_folder_without_duplicates(env):
    """§4 complaint 2: a new UIDVALIDITY re-lists the folder; items are matched by Message-ID +
    INTERNALDATE + size, so no body is read or stored again and the view has no duplicates."""
    seed(env)
    s, me, box = env.store, env.mailbox, ("Mr. Smith",)
    put(s, me, box, msg(10), {"\\Seen"}, BASE_DATE + 7 * DAY)
    put(s, me, box, msg(11, mid=None), (), BASE_DATE + 8 * DAY)
    objects, job = backup(env)
    chain = [objects]
    _recreate(env, box)
    put(s, me, box, msg(50), {"\\Seen"})
    objects, job = backup(env, job.state)
    chain.append(objects)
    [change] = job.summary.uidvalidity_changes
    assert tuple(change["folder"]) == box and change["new"] != change["old"]
    assert change["remapped"] == 2 and change["read"] == 2       # msg 11 has no Message-ID; msg 50 is new
    assert job.summary.items_stored == 1                          # only msg 50's body
    catalog = BrickCatalog.from_sets(chain)
    assert len(catalog.items(me, box)) == 4
    assert catalog_view(catalog, me) == snapshot(s, me)


@pytest.mark.imap
def test_uidvalidity_change_by_doveadm(request, dovecot):
    """§1.3 / fixture gotcha 11: doveadm mailbox update --uid-validity keeps UIDs but voids them."""
    from brick_stores import FACTORIES
    env = FACTORIES["dovecot"](request)
    request.addfinalizer(lambda: [close() for close in env.closers])
    seed(env)
    s, me = env.store, env.mailbox
    objects, job = backup(env)
    list(s.list_items(me, INBOX))                 # the driver has INBOX selected when it changes
    env.renumber(INBOX)
    later, job2 = backup(env, job.state)
    assert len(job2.summary.uidvalidity_changes) == 1 and job2.summary.items_stored == 0
    assert catalog_view(BrickCatalog.from_sets([objects, later]), me) == snapshot(s, me)


class _ChangesUnderneath:
    """Wraps a store; the first read in ``folder`` renumbers it first and reports the change."""

    def __init__(self, env, folder):
        self.env, self.folder, self.fired = env, folder, False
        self.inner = env.store

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def read_item(self, mailbox, folder, uid):
        if folder == self.folder and not self.fired:
            self.fired = True
            old = next(f for f in self.inner.list_folders(mailbox) if f.path == folder).uid_validity
            _recreate(self.env, folder)
            new = next(f for f in self.inner.list_folders(mailbox) if f.path == folder).uid_validity
            raise FolderIdentityChanged("changed under the pass", mailbox=mailbox, folder=folder, old=old, new=new)
        return self.inner.read_item(mailbox, folder, uid)


def test_identity_change_during_a_pass_restarts_that_folder(env):
    seed(env)
    wrapped = _ChangesUnderneath(env, ("Projects", "2024"))
    objects, job = backup(env, store=wrapped)
    assert wrapped.fired
    assert catalog_view(BrickCatalog.from_sets([objects]), env.mailbox) == snapshot(env.store, env.mailbox)


def _diverge(env) -> dict:
    """After the backup: msg 1 re-flagged, msg 2 replaced by other bytes (same Message-ID), msg 6 deleted."""
    s, me = env.store, env.mailbox
    items = {i.message_id: i for i in s.list_items(me, INBOX)}
    s.set_flags(me, INBOX, items["<brick-1@mailtape.test>"].uid, frozenset({"\\Flagged"}))
    s.delete_item(me, INBOX, items["<brick-2@mailtape.test>"].uid)
    put(s, me, INBOX, msg(2, body=b"edited draft\r\n"), (), BASE_DATE + DAY)
    smith = list(s.list_items(me, ("Mr. Smith",)))
    s.delete_item(me, ("Mr. Smith",), smith[0].uid)
    return items


@pytest.mark.parametrize("policy", ["skip", "copy", "overwrite"])
def test_conflict_policies(env, policy):
    """§6 / ese-backup-api §4: overwrite replaces, skip keeps what is there, copy adds beside it."""
    seed(env)
    s, me = env.store, env.mailbox
    catalog = BrickCatalog.from_sets([backup(env)[0]])
    _diverge(env)
    result = run_restore(catalog, s, RestoreOptions(selection=Selection(folders=("INBOX", "Mr. Smith")),
                                                    conflict=policy))
    assert result.ok, result.failed
    inbox = {(i.message_id, i.size): i for i in s.list_items(me, INBOX)}
    edited = ("<brick-2@mailtape.test>", len(msg(2, body=b"edited draft\r\n")))
    original = ("<brick-2@mailtape.test>", len(msg(2)))
    restored_smith = len(list(s.list_items(me, ("Mr. Smith",))))
    assert restored_smith == 1                                  # a missing item comes back under every policy
    flags_1 = inbox[("<brick-1@mailtape.test>", len(msg(1)))].flags
    if policy == "skip":
        assert edited in inbox and original not in inbox and flags_1 == {"\\Flagged"}
    elif policy == "copy":
        assert edited in inbox and original in inbox and flags_1 == {"\\Flagged"}
    else:
        assert edited not in inbox and original in inbox and flags_1 == {"\\Seen"}
        assert result.plan.counts()["set-flags"] == 1 and result.plan.counts()["replace"] == 1
        wanted = catalog_view(catalog, me)
        assert {k: v for k, v in snapshot(s, me).items() if k in wanted and k[0] in ("INBOX", "Mr. Smith")} == \
            {k: v for k, v in wanted.items() if k[0] in ("INBOX", "Mr. Smith")}


def test_dry_run_returns_the_plan_and_changes_nothing(env):
    seed(env)
    s, me = env.store, env.mailbox
    catalog = BrickCatalog.from_sets([backup(env)[0]])
    _diverge(env)
    s.delete_folder(me, ("Projects",))
    before = uid_snapshot(s, me)
    result = run_restore(catalog, s, RestoreOptions(conflict="overwrite"), dry_run=True)
    assert uid_snapshot(s, me) == before
    assert result.dry_run and result.done == [] and result.ok
    counts = result.plan.counts()
    assert counts["create-folder"] == 3 and counts["append"] == 3 and counts["replace"] == 1
    assert plan_restore(catalog, s, RestoreOptions(conflict="overwrite")).counts() == counts


def test_selection_patterns_and_date_filter(env):
    """Include a subtree, exclude a subfolder, and a received-date window (ARCserve 'filters')."""
    seed(env)
    s, me = env.store, env.mailbox
    selection = Selection(folders=("Projects", "INBOX"), exclude_folders=("Projects/Old",),
                          since=BASE_DATE + DAY)
    objects, job = backup(env, selection=selection)
    catalog = BrickCatalog.from_sets([objects])
    taken = {f.path for f in catalog.folders(me)}
    assert ("Projects", "2024") in taken and ("Projects", "Old") not in taken and ("Mr. Smith",) not in taken
    ids = {o.meta["message_id"] for o in objects if o.kind == ITEM}
    assert ids == {"<brick-2@mailtape.test>", None, "<brick-4@mailtape.test>"}
    assert job.summary.filtered_out == 1
    later, job2 = backup(env, job.state, selection=selection)     # filtered items are not re-read
    assert [o for o in later if o.kind == ITEM] == [] and job2.summary.bytes_read == 0
    nobody = Selection(mailboxes=("nobody*",))
    with pytest.raises(NotFoundError, match="no mailbox"):
        plan_restore(catalog, s, RestoreOptions(selection=nobody))


def test_alternate_target_must_exist_and_options_are_checked(env):
    seed(env)
    catalog = BrickCatalog.from_sets([backup(env)[0]])
    with pytest.raises(NotFoundError, match="does not exist"):
        plan_restore(catalog, env.store, RestoreOptions(target_mailbox="nosuchmailbox"))
    with pytest.raises(UsageError):
        RestoreOptions(conflict="merge")
    with pytest.raises(UsageError):
        RestoreOptions(target_folder="Recovered")


def test_state_survives_json_and_corruption_is_named(tmp_path, env):
    seed(env)
    _objects, job = backup(env)
    path = tmp_path / "brick-state.json"
    job.state.save(path)
    loaded = BackupState.load(path)
    assert loaded == job.state
    path.write_text('{"version": 99}')
    with pytest.raises(CorruptDataError, match="brick-state.json"):
        BackupState.load(path)
