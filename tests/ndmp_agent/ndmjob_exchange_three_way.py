"""Three-way NDMP with the Exchange agent: ndmjob as DMA, ndmjob's tape daemon (file-backed tape),
our agent serving butype ``exchange`` over an emulated Exchange server. Run by
test_interop_exchange.py inside a private network namespace (``unshare -n``: the daemon binds
INADDR_ANY); prints a JSON report.

usage: ndmjob_exchange_three_way.py NDMJOB WORKDIR EXCHANGE_ROOT
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "ndmp"))

from agent_helpers import PASSWORD, SG, USER, agent_server, log_generations  # noqa: E402
from ndmjob_three_way import free_port, run, wait_ready  # noqa: E402
from ndmp_helpers import ndmjob_env  # noqa: E402


def mail_digest(exchange) -> str:
    from emulators.exchange.mailbox_store import ServerMailboxStore, snapshot

    store = ServerMailboxStore.for_server(exchange)
    snap = snapshot(store, [n for n, (sg, _db) in store.directory().items() if sg == SG])
    return hashlib.sha256(repr(sorted(snap.items(), key=repr)).encode()).hexdigest() if snap else ""


def main() -> None:
    ndmjob, work, exchange_root = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    env = ndmjob_env(ndmjob)
    tape = work / "tape0"
    tape.write_bytes(b"")
    report: dict = {"logs_before": log_generations(exchange_root)}
    tape_port = free_port()
    daemon = subprocess.Popen([str(ndmjob), "-o", "test-daemon", "-p", str(tape_port)], env=env, cwd=work,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        report["daemon"] = wait_ready(daemon)
        with agent_server(exchange_root) as (address, agent, exchange):
            data_agent = f"127.0.0.1:{address[1]}/4m,{USER},{PASSWORD}"
            common = ["-D", data_agent, "-T", f"127.0.0.1:{tape_port}/4t,ndmp,ndmp", "-f", str(tape),
                      "-B", "exchange", "-o", "time-limit=60"]
            report["backup"] = run([str(ndmjob), "-c", *common, "-E", f"STORAGE_GROUP={SG}", "-E", "LEVEL=full",
                                    "-I", str(work / "index.fh")], env, work)
            report["logs_after_backup"] = log_generations(exchange_root)
            report["agent_results"] = [{"status": r.status, "truncated": r.truncated, "error": r.error}
                                       for r in agent.results]
            report["mail_before"] = mail_digest(exchange)
            # lose the database, then restore it from ndmjob's tape through ndmjob
            db = exchange.storage_group(SG).databases[0]
            exchange.dismount(SG, db.name)
            for rel in db.files:
                os.remove(exchange.abspath(rel))
            exchange.set_allow_restore_overwrite(SG, db.name, True)
            report["restore"] = run([str(ndmjob), "-x", *common, "-E", f"STORAGE_GROUP={SG}"], env, work)
            report["mail_after"] = mail_digest(exchange)
    finally:
        daemon.stdin.close()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)
    index = work / "index.fh"
    report["index"] = index.read_text(errors="replace") if index.exists() else ""
    report["tape"] = str(tape)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
