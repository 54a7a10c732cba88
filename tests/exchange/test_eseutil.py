"""``mailtape eseutil``: header dumps of database, log and checkpoint files."""

from __future__ import annotations

import os

from exchange_test_helpers import SG1, db_name, fill

from emulators.exchange import faults
from emulators.exchange.harness import run_backup
from reference.cli.main import main


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eseutil_dumps(server, tmp_path, capsys):
    fill(server.database(SG1, db_name(server)), 30)
    bset = run_backup(server.backup_api(), SG1, "full", str(tmp_path / "b"))
    server.shutdown()
    folder = server.abspath(server.storage_group(SG1).folder)
    code, out, _ = _run(["eseutil", "/mh", os.path.join(folder, "priv1.edb")], capsys)
    assert code == 0 and "State: Clean Shutdown" in out and "Previous Full Backup:" in out
    code, out, _ = _run(["eseutil", "--mh", bset.databases[0].files[0]], capsys)
    assert code == 0 and "Backup trailer (patch) page:" in out and "Dirty Shutdown" in out
    code, out, _ = _run(["eseutil", "/ml", os.path.join(folder, "E00.log")], capsys)
    assert code == 0 and "Integrity check passed" in out and "lGeneration:" in out
    code, out, _ = _run(["eseutil", "--mk", os.path.join(folder, "E00.chk")], capsys)
    assert code == 0 and "Checkpoint: (0x" in out
    code, out, _ = _run(["eseutil", "/k", os.path.join(folder, "priv1.edb")], capsys)
    assert code == 0 and "0 bad checksums" in out


def test_eseutil_errors_are_one_line(server, capsys):
    fill(server.database(SG1, db_name(server)), 20)
    faults.corrupt_page(server, SG1, db_name(server), pgno=2)
    folder = server.abspath(server.storage_group(SG1).folder)
    code, _, err = _run(["eseutil", "/k", os.path.join(folder, "priv1.edb")], capsys)
    assert code == 1 and "first pgno 2" in err and "Traceback" not in err
    code, _, err = _run(["eseutil", "--mh", os.path.join(folder, "E00.log")], capsys)
    assert code == 1 and "database header unreadable" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(["eseutil", "--ml", os.path.join(folder, "priv1.edb")], capsys)
    assert code == 1 and "not a log file" in err
    code, _, err = _run(["eseutil", "--mk", "/no/such/E00.chk"], capsys)
    assert code == 1 and "no such file" in err
    code, _, err = _run(["eseutil"], capsys)
    assert code == 2
