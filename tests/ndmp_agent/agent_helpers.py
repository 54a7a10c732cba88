"""Shared helpers for the NDMP agent tests: an emulated Exchange server, a site, the agent server."""

from __future__ import annotations

import contextlib
import glob
import os
import subprocess
import sys
from pathlib import Path

from reference.ndmp.auth import Credentials

USER, PASSWORD = "dma", "agent-s3cret"
REPO = Path(__file__).resolve().parents[2]
SG = "First Storage Group"


def mailtape(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    code = "import sys; from reference.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120, **kw)


def make_exchange(root: Path, size_mb: str = "3") -> Path:
    from click.testing import CliRunner

    from reference.cli.commands.exchange import command

    result = CliRunner().invoke(command, ["init", str(root), "--profile", "2007", "--size-mb", size_mb,
                                          "--mailboxes", "3"])
    assert result.exit_code == 0, result.output
    return root


def log_generations(exchange_root: Path, storage_group: str = SG) -> list[str]:
    """The numbered log files of a storage group on disk (what truncation deletes)."""
    return sorted(Path(p).name for p in glob.glob(str(exchange_root / "Mailbox" / storage_group / "E00*.log"))
                  if Path(p).name != "E00.log")


@contextlib.contextmanager
def agent_server(exchange_root: Path):
    """The agent (exchange butype) on a loopback port, on its own loop thread; yields (address, agent,
    emulated Exchange server)."""
    from reference.agent.ndmp_butypes import make_agent_server
    from reference.cli.commands.exchange import opened_server, save_clock
    from reference.ndmp.runner import ServerThread
    from reference.runtime import Runtime

    with opened_server(str(exchange_root)) as (server, _store):
        runtime = Runtime(server.clock)
        holder = {}

        def make():
            srv, agent = make_agent_server(server.backup_api(), runtime, Credentials({USER: PASSWORD}))
            holder["agent"] = agent
            return srv

        try:
            with ServerThread(make) as st:
                yield st.address, holder["agent"], server
        finally:
            if "agent" in holder:
                holder["agent"].close()
            save_clock(server)


def make_site(root: Path, cartridges: int = 4, capacity_bytes: int | None = None) -> Path:
    from reference.server.site import create_site

    return create_site(root, drives=2, slots=6, cartridges=cartridges, capacity_bytes=capacity_bytes,
                       settings={"seed": 7})


def env_with_credentials() -> dict:
    env = dict(os.environ)
    env["MAILTAPE_NDMP_USER"], env["MAILTAPE_NDMP_PASSWORD"] = USER, PASSWORD
    return env


SIMU_GAP_MAGIC = 0x0BEEFEE0  # ndmjob's tape simulator (ndma_tape_simulator.c): 4 x u_long gaps


def ndmjob_tape_to_simh(source: Path, target: Path) -> int:
    """Convert ndmjob's simulated tape file (32-byte gaps: magic, rectype BOT_/DATA/FILE/EOT_, prev_size,
    size, as 64-bit little-endian; verified on the file ndmjob writes) into a SIMH ``.tap`` our MTF reader opens; returns records."""
    import struct

    data = source.read_bytes()
    out = bytearray()
    pos = records = 0
    while pos + 32 <= len(data):
        magic, rectype, _prev_size, size = struct.unpack_from("<4Q", data, pos)
        if magic != SIMU_GAP_MAGIC:
            raise ValueError(f"{source}: no simulator gap at offset {pos}")
        kind = rectype.to_bytes(4, "little")
        pos += 32
        if kind == b"DATA":
            record = data[pos:pos + size]
            out += struct.pack("<I", size) + record + (b"\0" if size % 2 else b"") + struct.pack("<I", size)
            pos += size
            records += 1
        elif kind == b"FILE":
            out += struct.pack("<I", 0)
        elif kind == b"EOT_":
            break
        elif kind != b"BOT_":
            raise ValueError(f"{source}: unknown simulator record {kind!r} at offset {pos - 32}")
    out += struct.pack("<I", 0xFFFFFFFF)
    target.write_bytes(bytes(out))
    return records
