"""Issue 6, "verify": after a restore, compare the restored databases and mailboxes with the
emulator's ground truth (``mailtape exchange snapshot`` + ``mailtape verify SITE --against``):
records, mailbox items and every data page of every database file."""

from __future__ import annotations

import glob
import os

from emulators.exchange.faults import alter_page_silently
from reference.cli.main import main


def _run(*args: str) -> int:
    return main([str(a) for a in args])


def test_restores_are_checked_against_snapshots(tmp_path, capsys):
    site = tmp_path / "site"
    assert _run("library", "init", site / "library", "--drives", "2", "--slots", "8", "--cartridges", "4",
                "--capacity-mb", "64") == 0
    assert _run("exchange", "init", site / "exchange", "--mailboxes", "4", "--size-mb", "2") == 0
    assert _run("backup", site) == 0
    assert _run("exchange", "snapshot", site / "exchange", "after-full") == 0
    assert _run("exchange", "activity", site / "exchange", "--messages", "15") == 0
    assert _run("backup", site, "--level", "incremental") == 0
    assert _run("exchange", "snapshot", site / "exchange", "before-disaster") == 0
    capsys.readouterr()

    # The server moved on since the full: the check says so, naming what differs.
    assert _run("verify", site, "--against", "after-full") == 1
    assert "records differ" in capsys.readouterr().out

    for path in glob.glob(str(site / "exchange" / "mdbdata" / "priv1.*")):
        os.remove(path)
    assert _run("restore", site, "-g", "First Storage Group", "--dismount") == 0
    capsys.readouterr()
    assert _run("verify", site, "--against", "before-disaster") == 0
    out = capsys.readouterr().out
    assert "matches ground-truth snapshot 'before-disaster'" in out
    # roll-forward: page for page (header pages 0-1 aside) the state before the disaster
    assert "First Storage Group/Mailbox Store (EXCH01): records equal," in out and " pages equal" in out

    # Point in time: the full alone, into the Recovery Storage Group, equals the state at the full.
    assert _run("restore", site, "-g", "First Storage Group", "--backup", "1", "--point-in-time",
                "--recovery-storage-group") == 0
    assert _run("verify", site, "--against", "after-full", "--recovery-storage-group") == 0
    assert "pages equal" in capsys.readouterr().out
    assert _run("verify", site, "--against", "before-disaster", "--recovery-storage-group") == 1


def test_a_changed_page_is_named_by_file_and_page(tmp_path, capsys):
    site = tmp_path / "site"
    assert _run("exchange", "init", site / "exchange", "--mailboxes", "3", "--size-mb", "1") == 0
    assert _run("exchange", "snapshot", site / "exchange", "now") == 0
    assert _run("verify", site, "--against", "now") == 0
    capsys.readouterr()
    alter_page_silently(site / "exchange" / "mdbdata" / "priv1.stm", 3, 4096)  # checksum still good
    assert _run("verify", site, "--against", "now") == 1
    out = capsys.readouterr().out
    assert "records equal" in out  # the records cannot see it
    assert "MISMATCH database First Storage Group/Mailbox Store (EXCH01): priv1.stm page 3 (offset 16384) " \
           "differs from the snapshot" in out


def test_unknown_snapshot_is_a_clear_error(tmp_path, capsys):
    site = tmp_path / "site"
    assert _run("exchange", "init", site / "exchange", "--mailboxes", "1", "--size-mb", "0.1") == 0
    assert _run("exchange", "snapshot", site / "exchange", "one") == 0
    capsys.readouterr()
    assert _run("verify", site, "--against", "two") == 1
    err = capsys.readouterr().err
    assert "no ground-truth snapshot 'two'" in err and "have: one" in err
    assert _run("exchange", "snapshot", site / "exchange", "../escape") == 2
