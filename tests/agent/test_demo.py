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
