"""Three-way NDMP driven by *our* DMA: our agent (butype ``exchange``) streams to ndmjob's tape daemon
(its Mover, file-backed simulated tapes limited by ``-o tape-limit`` (its help says tape-size; the parser takes tape-limit)), our DMA handles
NOTIFY_MOVER_PAUSED(EOM) by continuing on the next tape file, records the set in the catalog and
only then commits. Run by test_dma_three_way.py inside ``unshare -n`` (the daemon binds
INADDR_ANY); prints a JSON report.

usage: ndmjob_tape_three_way.py NDMJOB WORKDIR EXCHANGE_ROOT SITE_ROOT TAPE_SIZE
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "ndmp"))

from agent_helpers import PASSWORD, SG, USER, agent_server, log_generations  # noqa: E402
from ndmjob_three_way import free_port, wait_ready  # noqa: E402
from ndmp_helpers import ndmjob_env  # noqa: E402


def main() -> None:
    from emulators.clock import VirtualClock
    from reference.server.ndmp_dma import RemoteTape, ndmp_backup_three_way
    from reference.server.site import open_site

    ndmjob, work, exchange_root, site_root, tape_size = (Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]),
                                                         Path(sys.argv[4]), sys.argv[5])
    env = ndmjob_env(ndmjob)
    tapes = [work / f"tape{n}" for n in range(4)]
    for tape in tapes:
        tape.write_bytes(b"")
    report: dict = {"logs_before": log_generations(exchange_root)}
    tape_port = free_port()
    daemon = subprocess.Popen([str(ndmjob), "-o", "test-daemon", "-o", f"tape-limit={tape_size}",
                               "-p", str(tape_port)], env=env, cwd=work,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    site = open_site(site_root, clock=VirtualClock())
    try:
        report["daemon"] = wait_ready(daemon)
        with agent_server(exchange_root) as (address, agent, _exchange):
            remote = RemoteTape(f"127.0.0.1:{tape_port}", "ndmp", "ndmp", [str(t) for t in tapes])
            result = site.runtime.run(ndmp_backup_three_way(site, f"127.0.0.1:{address[1]}", USER, PASSWORD,
                                                            remote, SG, "full"))
            report["result"] = {k: getattr(result, k) for k in result.__dataclass_fields__}
            report["agent_results"] = [{"status": r.status, "truncated": r.truncated, "error": r.error}
                                       for r in agent.results]
        report["logs_after"] = log_generations(exchange_root)
        if result.data_set_id is not None:
            record = site.catalog.data_set(result.data_set_id)
            report["catalog"] = {"kind": record.kind, "status": record.status, "cartridges": record.cartridges,
                                 "objects": [[o.path, o.size, o.fla, o.sha256] for o in record.objects],
                                 "media": record.metadata.get("media")}
    finally:
        site.close()
        daemon.stdin.close()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)
    report["tapes"] = [str(t) for t in tapes]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
