"""The CLI side: add_mailbox_backup / run_mailbox_restore (what `mailtape backup --mailboxes` and
`mailtape restore --mailbox` call), against the site's emulated Exchange and against Dovecot."""

from __future__ import annotations

import json
import socket

import pytest
from bjobs_support import helpers, make_site, msg, put, run_backup

from reference.brick_cli import add_mailbox_backup, parse_time, run_mailbox_restore
from reference.drivers.imap_errors import ImapAuthError
from reference.errors import UsageError
from reference.server.site import create_site, open_site_catalog

INBOX = ("INBOX",)


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def exchange_site(tmp_path):
    """A site whose SITE/exchange holds an emulated server with two mailboxes (as `mailtape
    exchange init` leaves it)."""
    from emulators.clock import VirtualClock
    from emulators.exchange.mailbox_store import ServerMailboxStore
    from emulators.exchange.server import ExchangeServer
    from reference.cli.commands.exchange import opened_server

    root = create_site(tmp_path / "site", drives=2, slots=10, cartridges=6, capacity_bytes=1 << 20,
                       settings={"seed": 3})
    (root / "exchange").rmdir()
    server = ExchangeServer.create(root / "exchange", server_name="EXCH01", clock=VirtualClock(), seed=2,
                                   log_file_size=64 * 1024)
    store = ServerMailboxStore.for_server(server)
    for name in ("jsmith", "recover"):
        store.create_mailbox(name)
    put(store, "jsmith", INBOX, msg(1), date=helpers.BASE_DATE)
    put(store, "jsmith", INBOX, msg(2), {"\\Seen"}, date=helpers.BASE_DATE + 60)
    server.shutdown()
    return root, opened_server


def test_exchange_backup_incremental_and_restore_through_the_cli_functions(exchange_site, capsys):
    root, opened_server = exchange_site
    full = add_mailbox_backup(root, None, ["jsmith"], None, None, "full", True)
    assert _json(capsys) == full
    assert (full["status"], full["level"], full["items"], full["data_set"]) == ("ok", "full", 2, 1)
    assert full["storage_group"] == "Mailboxes (jsmith)"          # a chain of its own, not "everyone"
    with opened_server(str(root / "exchange")) as (_server, store):
        put(store, "jsmith", INBOX, msg(3), date=helpers.BASE_DATE + 120)
    incremental = add_mailbox_backup(root, "exchange", "jsmith", (), None, "incremental", False)
    table = capsys.readouterr().out
    assert incremental["items"] == 1 and "single-instance savings" in table and "UIDVALIDITY resets" in table

    dry = run_mailbox_restore(root, None, "jsmith", None, "recover", "skip", True, None, None, True)
    assert _json(capsys) == dry
    assert dry["dry_run"] and dry["counts"] == {"append": 3} and [c["data_set"] for c in dry["chain"]] == [1, 2]
    with opened_server(str(root / "exchange")) as (_server, store):
        assert list(store.list_items("recover", INBOX)) == []            # the dry run changed nothing
    done = run_mailbox_restore(root, None, "jsmith", "Inbox", "recover", "skip", False, None, None, False)
    out = capsys.readouterr().out
    assert done["ok"] and done["counts"] == {"append": 3} and "Counts" in out
    point = run_mailbox_restore(root, None, "jsmith", None, "recover", "copy", True, None, 1, True,
                                to_folder="At set 1")
    assert point["counts"]["append"] == 2 and point["counts"]["create-folder"] >= 1   # the state at set 1
    everyone = add_mailbox_backup(root, None, (), None, None, "incremental", True)
    assert (everyone["storage_group"], everyone["level"], everyone["status"]) == ("Mailboxes", "full", "warning")
    capsys.readouterr()
    newest = run_mailbox_restore(root, None, "jsmith", None, "recover", "skip", True, None, None, True)
    assert [c["data_set"] for c in newest["chain"]] == [everyone["data_set"]]
    catalog = open_site_catalog(root)
    try:
        kinds = [(j["kind"], j["status"]) for j in reversed(catalog.jobs())]
    finally:
        catalog.close()
    assert kinds == [("backup", "ok"), ("backup", "ok"), ("restore", "ok"), ("restore", "ok"), ("restore", "ok"),
                     ("backup", "warning"), ("restore", "ok")]


def test_dry_run_prints_the_plan_table(exchange_site, capsys):
    root, _ = exchange_site
    add_mailbox_backup(root, None, (), None, None, "full", True)
    capsys.readouterr()
    run_mailbox_restore(root, None, "jsmith", None, None, "skip", True, None, None, False, to_folder="Again")
    out = capsys.readouterr().out
    assert "Restore plan (dry run: nothing was changed)" in out and "create-folder" in out


def test_option_errors_are_usage_errors(exchange_site):
    root, _ = exchange_site
    with pytest.raises(UsageError, match="level"):
        add_mailbox_backup(root, None, (), None, None, "weekly", False)
    with pytest.raises(UsageError, match="--since"):
        add_mailbox_backup(root, None, (), None, "last tuesday", "full", False)
    with pytest.raises(UsageError, match="cannot be combined"):
        add_mailbox_backup(root, ["exchange", "imap://a@h:143"], (), None, None, "full", False)
    with pytest.raises(UsageError, match="give one"):
        run_mailbox_restore(root, None, "jsmith", None, None, "skip", True, "2004-11-09", 1, False)
    with pytest.raises(UsageError, match="conflict policy"):
        run_mailbox_restore(root, None, "jsmith", None, None, "merge", True, None, None, False)


def test_a_pattern_matching_no_mailbox_is_an_error_naming_what_exists(exchange_site):
    from reference.errors import NotFoundError
    from reference.server.site import open_site_catalog as catalog_of

    root, _ = exchange_site
    with pytest.raises(NotFoundError, match=r"no mailbox on EXCH01 matches nob\*.*jsmith"):
        add_mailbox_backup(root, None, ["nob*"], None, None, "full", True)
    catalog = catalog_of(root)
    try:
        assert catalog.jobs() == [] and catalog.data_sets() == []  # nothing was written
    finally:
        catalog.close()


def test_parse_time():
    assert parse_time("2004-11-09", "--at") == 1099958400.0
    assert parse_time("2004-11-09T02:00:00+02:00", "--at") == 1099958400.0
    assert parse_time("1099958400", "--at") == parse_time(1099958400, "--at") == 1099958400.0
    assert parse_time(None, "--at") is None


@pytest.mark.imap
def test_imap_url_backup_and_restore(dovecot, tmp_path, monkeypatch, capsys):
    from reference.drivers.imap import ImapMailboxStore

    user, password = dovecot.fresh_account()
    url = dovecot.url(user)
    with ImapMailboxStore(url, password, timeout=10) as store:
        put(store, user, INBOX, msg(1))
        store.create_folder(user, ("Archive", "2004"))
        put(store, user, ("Archive", "2004"), msg(2), {"\\Flagged"})
    root = create_site(tmp_path / "site", drives=2, slots=6, cartridges=4, capacity_bytes=1 << 20)
    monkeypatch.setenv("MAILTAPE_IMAP_PASSWORD", password)
    row = add_mailbox_backup(root, [url], (), ("INBOX", "Archive"), "2004-01-01", "full", True)
    assert (row["status"], row["items"], row["folders"]) == ("ok", 2, 3)
    assert row["server"] == f"imap://{dovecot.host}:{dovecot.port}" and row["storage_group"] == f"Mailboxes ({user})"
    capsys.readouterr()
    restored = run_mailbox_restore(root, (url,), user, None, None, "skip", False, None, None, True,
                                   to_folder="Restored")
    assert restored["ok"] and restored["counts"]["append"] == 2
    with ImapMailboxStore(url, password, timeout=10) as store:
        flags = [i.flags for i in store.list_items(user, ("Restored", "Archive", "2004"))]
    assert flags == [frozenset({"\\Flagged"})]

    monkeypatch.setenv("MAILTAPE_IMAP_PASSWORD", "wrong")
    with pytest.raises(ImapAuthError, match="refused"):
        add_mailbox_backup(root, [url], (), None, None, "incremental", True)
    catalog = open_site_catalog(root)
    try:
        job = catalog.jobs()[0]
        assert (job["kind"], job["status"]) == ("backup", "failed") and "refused" in job["message"]
        assert len(catalog.data_sets()) == 1
    finally:
        catalog.close()


@pytest.mark.imap
def test_connection_dropped_once_is_resumed_by_the_driver(dovecot, tmp_path):
    """A real TCP drop under the driver (socket shut down mid-backup): reads are re-opened once,
    so the backup completes and its restore is complete."""
    from bjobs_support import JobEnv

    from emulators.clock import VirtualClock
    from reference.drivers.imap import ImapMailboxStore

    user, password = dovecot.fresh_account()
    store = ImapMailboxStore(dovecot.url(user), password, timeout=10)
    env = JobEnv("dovecot", store, user, user, f"imap://{dovecot.host}:{dovecot.port}", VirtualClock())
    for n in range(6):
        put(store, user, INBOX, msg(n), date=helpers.BASE_DATE + n)

    class CutOnce:
        def __init__(self):
            self.reads = 0

        def __getattr__(self, name):
            return getattr(store, name)

        def read_item(self, mailbox, folder, uid):
            self.reads += 1
            if self.reads == 3:
                store._client._imap.sock.shutdown(socket.SHUT_RDWR)
            return store.read_item(mailbox, folder, uid)

    site = make_site(tmp_path / "site", env.clock)
    first_connection = store._client
    try:
        result = run_backup(site, env, "full", store=CutOnce())
        assert store._client is not first_connection                    # it did drop and reconnect
        assert result.status == "ok" and result.items == 6
    finally:
        site.close()
        store.close()
