"""Interop with Amanda's ndmjob (spec ndmp.md §3) against the Exchange agent: ndmjob queries it and
sees butype ``exchange`` with its env and the storage groups; a three-way backup (DMA and tape
daemon = ndmjob) puts a complete MTF image on ndmjob's file-backed tape that our MTF reader
verifies; ndmjob restores it; and since ndmjob never sends MAILTAPE_DATA_COMMIT, no log is truncated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent_helpers import PASSWORD, SG, USER, agent_server, mailtape, ndmjob_tape_to_simh

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "ndmp"))

from ndmp_helpers import ndmjob_env, ndmjob_or_skip  # noqa: E402
from test_interop_ndmjob import _clean_ndmjob_side_effects, _netns_available  # noqa: E402,F401

pytestmark = pytest.mark.ndmp


@pytest.fixture(scope="module")
def ndmjob():
    return ndmjob_or_skip()


def test_spec3_ndmjob_query_sees_the_exchange_butype_and_storage_groups(ndmjob, exchange_root):
    with agent_server(exchange_root) as (address, _agent, _exchange):
        p = subprocess.run([str(ndmjob), "-q", "-D", f"127.0.0.1:{address[1]}/4m,{USER},{PASSWORD}",
                            "-o", "time-limit=20"], env=ndmjob_env(ndmjob), capture_output=True, text=True,
                           timeout=60)
    out = p.stdout + p.stderr
    assert "Backup type info of exchange format" in out, out
    for line in ("set        STORAGE_GROUP=", "set        LEVEL=full", "set        MTF_IMAGE=medium",
                 f"File system {SG}", "hostname   EXCH01"):
        assert line in out, (line, out)


def test_spec3_three_way_backup_to_ndmjob_tape_verifies_restores_and_never_truncates(ndmjob, exchange_root,
                                                                                      tmp_path):
    reason = _netns_available()
    if reason:
        pytest.skip(f"needs a private network namespace for ndmjob's INADDR_ANY daemon: {reason}")
    work = tmp_path / "work"
    work.mkdir()
    script = f'ip link set lo up && exec "{sys.executable}" "{HERE / "ndmjob_exchange_three_way.py"}" "$@"'
    p = subprocess.run(["unshare", "-n", "sh", "-c", script, "sh", str(ndmjob), str(work), str(exchange_root)],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(p.stdout.strip().splitlines()[-1])
    assert "Operation ended OKAY" in report["backup"]["out"], report["backup"]["out"]
    # ndmjob never commits: the agent kept every log and ended the instance without truncation
    assert set(report["logs_before"]) <= set(report["logs_after_backup"])
    [outcome] = report["agent_results"]
    assert outcome["status"] == "failed" and not outcome["truncated"]
    assert "MAILTAPE_DATA_COMMIT" in outcome["error"]
    # ndmjob's index: file history per object and our post-backup env
    index = report["index"]
    sg = SG.replace(" ", "%20")
    for name in ("Mailbox%20Database/Mailbox%20Database.edb", "Mailbox%20Database/DatabaseBackupInfo",
                 "BackupMetadata.json"):
        assert f"DHf /{sg}/{name} UNIX f- " in index, index
    assert "DE BACKUP_LEVEL=full" in index and "DE MTF_IMAGE=medium" in index
    # the tape ndmjob's daemon wrote holds a complete MTF image: our reader verifies it
    tap = tmp_path / "ndmjob.tap"
    assert ndmjob_tape_to_simh(Path(report["tape"]), tap) > 0
    verify = mailtape("mtf", "verify", str(tap))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "4 object(s)" in verify.stdout and "0 problem(s)" in verify.stdout
    assert "ok  Microsoft Information Store/Mailbox Database/Mailbox Database.edb" in verify.stdout
    # ... and ndmjob restores it through the agent: the lost database comes back with every item
    assert "Operation ended OKAY" in report["restore"]["out"], report["restore"]["out"]
    assert report["mail_before"] and report["mail_after"] == report["mail_before"]
