"""``mailtape exchange init|activity|status|mailboxes`` against the real emulated server."""

from __future__ import annotations

import json

import pytest

from emulators.exchange.mailbox_store import ServerMailboxStore, snapshot
from emulators.exchange.server import ExchangeServer
from reference.cli.main import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def server_root(tmp_path, capsys):
    root = tmp_path / "exch"
    code, out, err = run(capsys, "exchange", "init", str(root), "--storage-groups", "2", "--databases", "2",
                         "--mailboxes", "6", "--size-mb", "2", "--seed", "5", "--server", "MAIL01")
    assert code == 0, err
    return root


def test_init_creates_a_populated_server(server_root, capsys):
    assert (server_root / "mdbdata" / "priv1.edb").exists()
    assert (server_root / "mdbdata" / "priv1.stm").exists(), "Exchange 2003 stores keep bodies in the .stm"
    code, out, err = run(capsys, "exchange", "mailboxes", str(server_root), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 6
    assert {row["storage_group"] for row in rows} == {"First Storage Group", "Second Storage Group"}
    assert 2 << 20 <= sum(row["bytes"] for row in rows) < 3 << 20
    assert all(row["folders"] >= 11 and row["legacy_dn"].endswith("/cn=" + row["mailbox"]) for row in rows)


def test_init_defaults_and_2007_profile(tmp_path, capsys):
    code, out, err = run(capsys, "exchange", "init", str(tmp_path / "e2007"), "--profile", "2007", "--size-mb", "0.5")
    assert code == 0, err
    assert "10 mailboxes" in out
    assert (tmp_path / "e2007" / "Mailbox" / "First Storage Group" / "Mailbox Database.edb").exists()
    assert not list((tmp_path / "e2007").rglob("*.stm"))


def test_init_is_deterministic_for_a_seed(tmp_path, capsys):
    views = []
    for name in ("a", "b"):
        assert run(capsys, "exchange", "init", str(tmp_path / name), "--size-mb", "0.5", "--seed", "9")[0] == 0
        server = ExchangeServer.open(tmp_path / name)
        try:
            views.append(snapshot(ServerMailboxStore.for_server(server)))
        finally:
            server.shutdown()
    assert views[0] == views[1]


def test_init_with_edge_cases_makes_odd_mail(tmp_path, capsys):
    root = tmp_path / "edgy"
    code, out, err = run(capsys, "exchange", "init", str(root), "--size-mb", "3", "--mailboxes", "3", "--edge-cases")
    assert code == 0, err
    assert run(capsys, "exchange", "activity", str(root), "--messages", "20", "--edge-cases")[0] == 0
    server = ExchangeServer.open(root)
    try:
        store = ServerMailboxStore.for_server(server)
        items = [i for m in store.list_mailboxes() for f in store.list_folders(m) for i in store.list_items(m, f.path)]
        names = {name for m in store.list_mailboxes() for f in store.list_folders(m) for name in f.path}
    finally:
        server.shutdown()
    assert any(i.message_id is None for i in items)
    assert names & {"a/b", "..", "*", "%", "Ünïcödé", "日本語", "back\\slash", "[Gmail]", "INBOX.child", " lead"}


def test_init_refuses_an_existing_root(server_root, capsys):
    code, out, err = run(capsys, "exchange", "init", str(server_root))
    assert code == 1
    assert str(server_root) in err and "already exists" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("args, needle", [
    (["--storage-groups", "5"], "storage-groups"),
    (["--databases", "0"], "databases"),
    (["--profile", "2010"], "profile"),
    (["--mailboxes", "0", "--size-mb", "1"], "--mailboxes"),
    (["--server", "has space"], "NetBIOS"),
    (["--server", "MUCHTOOLONGSERVERNAME"], "NetBIOS"),
])
def test_init_rejects_bad_options(tmp_path, capsys, args, needle):
    code, out, err = run(capsys, "exchange", "init", str(tmp_path / "x"), *args)
    assert code == 2
    assert needle in err
    assert not (tmp_path / "x" / "server.json").exists()


def test_activity_changes_mail_and_moves_the_clock_on(server_root, capsys):
    before = json.loads(run(capsys, "exchange", "status", str(server_root), "--json")[1])
    code, out, err = run(capsys, "exchange", "activity", str(server_root), "--messages", "40", "--seed", "3")
    assert code == 0, err
    assert "40 deliver" in out and "seed 3" in out
    after = json.loads(run(capsys, "exchange", "status", str(server_root), "--json")[1])
    assert after["virtual_time"] > before["virtual_time"]
    rows = json.loads(run(capsys, "exchange", "mailboxes", str(server_root), "--json")[1])
    assert sum(row["items"] for row in rows) >= 40


def test_activity_rate_sets_the_virtual_pace(server_root, capsys):
    slow = run(capsys, "exchange", "activity", str(server_root), "--messages", "30", "--seed", "1", "--rate", "6")[1]
    minutes = float(slow.split(" over ")[1].split(" virtual")[0])
    assert 30 * 10 * 0.5 < minutes < 30 * 10 * 2, "6 per hour: about 10 virtual minutes between deliveries"
    code, out, err = run(capsys, "exchange", "activity", str(server_root), "--rate", "0")
    assert code == 2 and "--rate" in err


def test_activity_without_seed_differs_between_runs(server_root, capsys):
    first = run(capsys, "exchange", "activity", str(server_root), "--messages", "5")[1]
    second = run(capsys, "exchange", "activity", str(server_root), "--messages", "5")[1]
    assert first.split("(seed ")[1] != second.split("(seed ")[1]


def test_status_reports_groups_databases_and_logs(server_root, capsys):
    code, out, err = run(capsys, "exchange", "status", str(server_root), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["server"] == "MAIL01" and info["profile"] == "2003"
    assert info["log_file_size"] == 5 * 1024 * 1024
    [first, second] = info["storage_groups"]
    assert (first["prefix"], second["prefix"]) == ("E00", "E01")
    assert first["circular_logging"] is False
    assert first["log_generations"][0] >= 1 and first["checkpoint_generation"] <= first["current_generation"]
    assert [db["mounted"] for db in first["databases"]] == [True, True]
    assert set(first["databases"][0]["files"]) == {"priv1.edb", "priv1.stm"}
    assert sum(db["mailboxes"] for g in info["storage_groups"] for db in g["databases"]) == 6
    code, text, err = run(capsys, "exchange", "status", str(server_root))
    assert code == 0 and "First Storage Group" in text and "priv1.stm" in text and "circular logging off" in text


def test_mailboxes_table(server_root, capsys):
    code, out, err = run(capsys, "exchange", "mailboxes", str(server_root))
    assert code == 0, err
    assert "6 mailboxes" in out and "First Storage" in out


def test_commands_on_a_folder_without_server_fail_clearly(tmp_path, capsys):
    for sub in ("status", "mailboxes", "activity"):
        code, out, err = run(capsys, "exchange", sub, str(tmp_path))
        assert code == 1
        assert str(tmp_path) in err and "no Exchange server" in err
