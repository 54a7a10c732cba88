"""Three-way NDMP backup and restore: ndmjob as DMA, ndmjob's tape daemon with a file-backed tape,
our Data server with the ``tar`` butype. Run by test_interop_ndmjob.py inside a private network
namespace (``unshare -n``), because ndmjob's daemon binds INADDR_ANY; prints a JSON report.

usage: ndmjob_three_way.py NDMJOB WORKDIR SOURCE_DIR
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ndmp_helpers import PASSWORD, USER, make_server, ndmjob_env  # noqa: E402
from reference.ndmp.runner import ServerThread  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, timeout: float = 20.0) -> str:
    seen = b""
    deadline = time.monotonic() + timeout
    while b"READY" not in seen:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"ndmjob tape daemon not READY: {seen!r}")
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            seen += os.read(proc.stdout.fileno(), 4096)
    return seen.decode()


def run(cmd: list[str], env: dict, cwd: Path) -> dict:
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=90)
    return {"cmd": cmd, "rc": p.returncode, "out": p.stdout + p.stderr}


def main() -> None:
    ndmjob, work, source = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    env = ndmjob_env(ndmjob)
    tape = work / "tape0"
    tape.write_bytes(b"")
    restored = work / "restored"
    restored.mkdir()
    report: dict = {}
    tape_port = free_port()
    daemon = subprocess.Popen([str(ndmjob), "-o", "test-daemon", "-p", str(tape_port)], env=env, cwd=work,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        report["daemon"] = wait_ready(daemon)
        with ServerThread(make_server) as st:
            data_agent = f"127.0.0.1:{st.address[1]}/4m,{USER},{PASSWORD}"
            tape_agent = f"127.0.0.1:{tape_port}/4t,ndmp,ndmp"
            limit = ["-o", "time-limit=60"]
            # ndmjob's own DATA-interface conformance series against our server
            (work / "tape_t").write_bytes(b"")
            report["test_data"] = run([str(ndmjob), "-o", "test-data", "-D", data_agent, "-T", tape_agent,
                                       "-f", str(work / "tape_t"), *limit], env, work)
            # DATA_CONNECT to the mover's MOVER_LISTEN address (the usual direction)
            common = ["-D", data_agent, "-T", tape_agent, "-f", str(tape), "-B", "tar", *limit]
            report["backup"] = run([str(ndmjob), "-c", *common, "-C", str(source), "-I", str(work / "index.fh")],
                                   env, work)
            report["restore"] = run([str(ndmjob), "-x", *common, "-C", str(restored)], env, work)
            # swap-connect: DATA_LISTEN here, MOVER_CONNECT on the tape agent
            (work / "tape_s").write_bytes(b"")
            (work / "restored_swap").mkdir()
            swap = ["-o", "swap-connect", "-D", data_agent, "-T", tape_agent, "-f", str(work / "tape_s"),
                    "-B", "tar", *limit]
            report["backup_swap"] = run([str(ndmjob), "-c", *swap, "-C", str(source)], env, work)
            report["restore_swap"] = run([str(ndmjob), "-x", *swap, "-C", str(work / "restored_swap")], env, work)
    finally:
        daemon.stdin.close()  # test-daemon exits when its stdin closes
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)
        report["daemon_rc"] = daemon.returncode
    index = work / "index.fh"
    report["index"] = index.read_text(errors="replace") if index.exists() else ""
    report["tape_size"] = tape.stat().st_size
    print(json.dumps(report))


if __name__ == "__main__":
    main()
