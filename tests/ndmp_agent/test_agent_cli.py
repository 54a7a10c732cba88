"""``mailtape agent serve``: credentials required (env or --config), loopback by default, the password
never in its output, a DMA can back up through it, clean stop on SIGTERM and SIGINT."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from agent_helpers import PASSWORD, REPO, SG, USER, env_with_credentials, log_generations, mailtape

CODE = "import sys; from reference.cli.main import main; sys.exit(main(sys.argv[1:]))"


def _start(args: list[str], env: dict) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", CODE, "-v", "agent", "serve", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    line = ""
    while "listening on" not in line:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else "no listening line"
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
    port = int(line.split()[2].rsplit(":", 1)[1])
    return proc, port


def test_refuses_to_start_without_credentials(exchange_root):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTAPE_NDMP_")}
    p = mailtape("agent", "serve", "--exchange", str(exchange_root), "--listen", "127.0.0.1:0", env=env)
    assert p.returncode == 1 and "no NDMP user and password" in p.stderr and "Traceback" not in p.stderr


def test_refuses_a_non_loopback_address_without_allow_remote(exchange_root):
    p = mailtape("agent", "serve", "--exchange", str(exchange_root), "--listen", "0.0.0.0:0",
                 env=env_with_credentials())
    assert p.returncode != 0 and "--allow-remote" in p.stderr


def test_bad_config_file_is_a_one_line_error(exchange_root, tmp_path):
    bad = tmp_path / "agent.yaml"
    bad.write_text("ndmp: [1, 2]\n")
    p = mailtape("agent", "serve", "--exchange", str(exchange_root), "--config", str(bad), "--listen", "127.0.0.1:0")
    assert p.returncode == 1 and "'ndmp' must be a mapping" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serves_our_dma_and_stops_cleanly(exchange_root, site, tmp_path, stop):
    from reference.server.ndmp_dma import ndmp_backup

    config = tmp_path / "agent.yaml"
    config.write_text(f"ndmp:\n  user: {USER}\n  password: {PASSWORD}\n")
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTAPE_NDMP_")}
    proc, port = _start(["--exchange", str(exchange_root), "--listen", "127.0.0.1:0", "--config", str(config)], env)
    try:
        before = log_generations(exchange_root)
        [result] = site.runtime.run(ndmp_backup(site, f"ndmp://127.0.0.1:{port}", USER, PASSWORD, [SG], "full"))
        assert result.status == "ok" and result.truncated
        assert set(log_generations(exchange_root)).isdisjoint(before)
    finally:
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "agent stopped" in out
    assert PASSWORD not in out + err and f"authenticated as '{USER}'" in err
