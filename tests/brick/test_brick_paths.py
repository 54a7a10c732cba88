"""Path safety and cross-store restores (docs/brick-level.md "Folder names").

Folder names with '/', '..', wildcards, '\\' or non-ASCII are stored byte-exact and restored below
the chosen target only; a store that cannot hold a name (IMAP: its delimiter, or '..' on Dovecot)
refuses that folder clearly and the rest of the restore goes on.
"""

from __future__ import annotations

import pytest
from brick_helpers import BASE_DATE, backup, catalog_view, msg, put, snapshot

from reference.agent.brick import BrickCatalog, RestoreOptions, Selection, run_restore
from reference.agent.brick.model import FOLDER

ODD = [("..",), ("a/b",), ("*",), ("%",), ("back\\slash",), ("Grüße 日本",), ("dot.name", ".."), ("~tilde",)]


def _emulator(request):
    from brick_stores import FACTORIES
    env = FACTORIES["emulator"](request)
    request.addfinalizer(lambda: [c() for c in env.closers])
    return env


def _seed_odd(env) -> None:
    s, me = env.store, env.mailbox
    for n, folder in enumerate(ODD):
        s.create_folder(me, folder)
        put(s, me, folder, msg(n + 1, subject=f"in {'/'.join(folder)}"), {"\\Seen"}, BASE_DATE + n)


def test_odd_folder_names_restore_byte_exact_below_the_target(request):
    env = _emulator(request)
    _seed_odd(env)
    s = env.store
    objects, _ = backup(env)
    assert {o.folder for o in objects if o.kind == FOLDER} >= set(ODD)
    catalog = BrickCatalog.from_sets([objects])
    before = {f.path for f in s.list_folders(env.other)}
    prefix = ("Recovered",)
    result = run_restore(catalog, s, RestoreOptions(target_mailbox=env.other, target_folder=prefix))
    assert result.ok, result.failed
    added = {f.path for f in s.list_folders(env.other)} - before
    assert all(path[:1] == prefix for path in added)                 # never outside the target
    assert {prefix + folder for folder in ODD} <= added
    wanted = {k: v for k, v in catalog_view(catalog, env.mailbox, prefix).items() if k[1:] in ODD}
    assert {k: v for k, v in snapshot(s, env.other).items() if k in wanted} == wanted


@pytest.mark.imap
def test_emulator_backup_restored_into_dovecot(request, dovecot):
    """Exchange (emulator) → IMAP (Dovecot): what IMAP can hold arrives byte-exact; 'a/b' (holds the
    delimiter) and '..' (Dovecot refuses it) fail by name, and nothing else is touched."""
    from reference.drivers.imap import ImapMailboxStore
    env = _emulator(request)
    _seed_odd(env)
    put(env.store, env.mailbox, ("Inbox",), msg(99), {"\\Flagged"}, BASE_DATE)
    catalog = BrickCatalog.from_sets([backup(env)[0]])
    user, password = dovecot.fresh_account()
    with ImapMailboxStore(dovecot.url(user), password) as imap:
        options = RestoreOptions(selection=Selection(mailboxes=(env.mailbox,)), target_mailbox=user)
        result = run_restore(catalog, imap, options)
        failed = {a.folder for a, _why in result.failed if a.op == "create-folder"}
        assert failed == {("..",), ("a/b",), ("dot.name", ".."), ("~tilde",)}
        assert all("folder" in why for _a, why in result.failed)
        got = snapshot(imap, user)
        wanted = catalog_view(catalog, env.mailbox)
        for folder in [("*",), ("%",), ("back\\slash",), ("Grüße 日本",)]:
            assert got[folder] == wanted[folder]
        inbox = next(k for k in got if k == ("INBOX",))
        assert got[inbox] == wanted[("Inbox",)]                          # Exchange's Inbox is IMAP's INBOX
        again = run_restore(catalog, imap, options)                       # still no duplicates
        assert snapshot(imap, user) == got and not [a for a, _ in again.done if a.op == "append"]


@pytest.mark.imap
def test_incremental_without_condstore_still_sees_flag_changes_and_expunges(dovecot):
    """Servers without CONDSTORE: every item is listed and compared with the state."""
    from reference.drivers.imap import ImapMailboxStore
    from brick_stores import StoreEnv
    user, password = dovecot.fresh_account()
    with ImapMailboxStore(dovecot.url(user), password, use_condstore=False) as store:
        env = StoreEnv("dovecot-plain", store, user, user)
        uids = [put(store, user, ("INBOX",), msg(n)) for n in range(3)]
        full, job = backup(env)
        store.set_flags(user, ("INBOX",), uids[0], frozenset({"\\Answered"}))
        store.delete_item(user, ("INBOX",), uids[1])
        later, job2 = backup(env, job.state)
        assert (job2.summary.flag_updates, job2.summary.expunged, job2.summary.items_stored) == (1, 1, 0)
        assert catalog_view(BrickCatalog.from_sets([full, later]), user) == snapshot(store, user)
