"""The demo's whole story on a tiny site: every check passes and the report says so."""

from __future__ import annotations

import json

from rich.console import Console

from reference.demo import DemoSettings, run_demo


def test_demo_verifies_both_restores_on_a_tiny_site(tmp_path):
    workdir = tmp_path / "site"
    report = run_demo(workdir, DemoSettings(size_mb=6, mailboxes=8, activity_messages=40, cartridge_mb=16),
                      Console(file=open(tmp_path / "out.txt", "w")))
    assert report["verified"] is True
    assert [c["ok"] for c in report["checks"]] == [True, True]
    # issue 6: page for page, not only record for record (both restores, every store's data pages)
    for check in report["checks"]:
        assert check["pages"] > 100 and check["pages_equal"] == check["pages"]
    assert [b["level"] for b in report["backups"]] == ["full", "incremental", "differential"]
    saved = json.loads((workdir / "report.json").read_text())
    assert saved["verified"] is True and saved["data_sets"] == 6
    assert (workdir / "drives.png").stat().st_size > 0


def test_demo_refuses_a_non_empty_workdir(tmp_path):
    import pytest

    from reference.errors import MailtapeError

    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(MailtapeError, match="not empty"):
        run_demo(tmp_path, DemoSettings(size_mb=1, mailboxes=1))
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_a_page_that_differs_after_the_restore_fails_the_demo(tmp_path, monkeypatch):
    """A restored page changed where no record can see it (re-sealed checksum): the roll-forward
    check fails naming the file and page, and the report is not verified."""
    from emulators.exchange import ground_truth
    from emulators.exchange.faults import alter_page_silently

    real, calls = ground_truth.server_truth, []

    def damaging(server, *args, **kwargs):
        calls.append(args)
        if len(calls) == 3:  # incremental, before the disaster, *after the roll-forward*, RSG
            store = server.storage_group("First Storage Group").databases[0]
            alter_page_silently(server.abspath(store.files[1]), 3, server.profile.page_size)
        return real(server, *args, **kwargs)

    monkeypatch.setattr(ground_truth, "server_truth", damaging)
    report = run_demo(tmp_path / "site", DemoSettings(size_mb=6, mailboxes=8, activity_messages=40, cartridge_mb=16),
                      Console(file=open(tmp_path / "out.txt", "w")))
    assert report["verified"] is False
    rolled, rsg = report["checks"]
    assert rolled["ok"] is False and rsg["ok"] is True
    assert rolled["first_page_difference"].endswith("priv1.stm page 3 (offset 16384)")
    assert rolled["pages_equal"] == rolled["pages"] - 1
