"""Interop with Amanda's ndmjob (spec §3): it queries our Data server, authenticates with TEXT and
MD5, and runs a three-way backup and restore through its own tape daemon (file-backed tape)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ndmp_helpers import PASSWORD, USER, ndmjob_env

pytestmark = pytest.mark.ndmp

HERE = Path(__file__).resolve().parent
AMANDA_DEBUG_GLOB = "/var/log/amanda/client/ndmjob.*.debug"


@pytest.fixture(autouse=True)
def _clean_ndmjob_side_effects():
    """ndmjob leaves a debug log under /var/log/amanda/client and creates /tmp/amanda (spec §3)."""
    before = set(glob.glob(AMANDA_DEBUG_GLOB))
    created = [d for d in ("/tmp/amanda", "/var/log/amanda/client", "/var/log/amanda") if not os.path.exists(d)]
    yield
    for path in set(glob.glob(AMANDA_DEBUG_GLOB)) - before:
        try:
            os.remove(path)
        except OSError:
            pass
    for folder in created:  # only folders ndmjob made during this test, and only when empty
        try:
            os.rmdir(folder)
        except OSError:
            pass


def _query(ndmjob, server, agent_flags, password=PASSWORD):
    port = server.address[1]
    p = subprocess.run([str(ndmjob), "-q", "-D", f"127.0.0.1:{port}/{agent_flags},{USER},{password}",
                        "-o", "time-limit=20"], env=ndmjob_env(ndmjob), capture_output=True, text=True,
                       timeout=60)
    return p.stdout + p.stderr


@pytest.mark.parametrize("flags", ["4t", "4m"])
def test_spec3_ndmjob_query_sees_our_server_and_butypes(ndmjob, server, flags):
    out = _query(ndmjob, server, flags)
    assert "Data Agent 127.0.0.1 NDMPv4" in out, out
    assert "vendor     mailtape" in out
    assert "NDMP4_AUTH_TEXT NDMP4_AUTH_MD5" in out
    assert "addr_types (1)  NDMP4_ADDR_TCP" in out
    assert "Backup type info of tar format" in out and "set        HIST=y" in out


def test_spec3_ndmjob_with_a_wrong_password_is_refused(ndmjob, server):
    out = _query(ndmjob, server, "4t", password="wrong")
    assert "connect-auth-text-failed" in out and "Backup type info" not in out
    out = _query(ndmjob, server, "4m", password="wrong")
    assert "Backup type info" not in out


def test_spec3_ndmjob_auth_none_is_refused(ndmjob, server):
    out = _query(ndmjob, server, "4n")
    assert "Backup type info" not in out


def _netns_available() -> str | None:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "unshare or ip (iproute2) missing"
    p = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    return None if p.returncode == 0 else f"unshare -n not permitted: {p.stderr.strip()}"


def test_spec3_three_way_backup_and_restore_through_ndmjob_tape_daemon(ndmjob, source_tree, tmp_path):
    """DMA = ndmjob -c/-x, Tape = ndmjob -o test-daemon (simulated tape in a file), Data = ours;
    also ndmjob's ``-o test-data`` conformance series and the swap-connect direction."""
    reason = _netns_available()
    if reason:
        pytest.skip(f"needs a private network namespace so ndmjob's INADDR_ANY daemon stays on loopback: "
                    f"{reason}")
    work = tmp_path / "work"
    work.mkdir()
    script = f'ip link set lo up && exec "{sys.executable}" "{HERE / "ndmjob_three_way.py"}" "$@"'
    p = subprocess.run(["unshare", "-n", "sh", "-c", script, "sh", str(ndmjob), str(work), str(source_tree)],
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(p.stdout.strip().splitlines()[-1])
    assert "READY" in report["daemon"]
    assert 'FINAL test-data Passed' in report["test_data"]["out"], report["test_data"]["out"]
    assert "fail=0" in report["test_data"]["out"]
    for step in ("backup", "restore", "backup_swap", "restore_swap"):
        assert "Operation ended OKAY" in report[step]["out"], (step, report[step]["out"])
    # ndmjob's index: our post-backup env and file history (with the byte offset of each member)
    index = report["index"]
    assert "DE TAR_FILES=6" in index and f"DE FILESYSTEM={source_tree}" in index
    assert "DHf /sub/blob.bin UNIX f- " in index and " s179204 " in index
    assert report["tape_size"] > (source_tree / "sub/blob.bin").stat().st_size
    original = {str(q.relative_to(source_tree)): q.read_bytes() for q in source_tree.rglob("*") if q.is_file()}
    for restored in (work / "restored", work / "restored_swap"):
        got = {str(q.relative_to(restored)): q.read_bytes() for q in restored.rglob("*") if q.is_file()}
        assert got == original  # bit-exact through a real tape agent, in both connection directions


# --- ndmjob against our Tape service (emulated LTO drive, SIMH cartridge); no ndmjob daemon ---------

@pytest.fixture
def tape_server(tmp_path):
    from ndmp_helpers import EmulatedDrives, make_full_server
    from reference.ndmp.runner import ServerThread

    drives = EmulatedDrives(tmp_path / "tapes")
    drives.root.mkdir()
    with ServerThread(lambda: make_full_server(drives)) as st:
        yield st, drives


def _ndmjob(ndmjob, *args, timeout=120):
    p = subprocess.run([str(ndmjob), *args, "-o", "time-limit=100"], env=ndmjob_env(ndmjob),
                       capture_output=True, text=True, timeout=timeout)
    return p.stdout + p.stderr


def test_ndmjob_test_mover_conformance_series_passes_against_our_mover(ndmjob, tape_server):
    st, drives = tape_server
    agent = f"127.0.0.1:{st.address[1]}/4m,{USER},{PASSWORD}"
    out = _ndmjob(ndmjob, "-o", "test-mover", "-T", agent, "-f", str(drives.path("drive0")))
    assert "FINAL test-mover Passed" in out and "fail=0" in out, out


def test_ndmjob_test_tape_passes_until_its_own_zero_length_write_quirk(ndmjob, tape_server):
    """ndmjob's client refuses a 0-byte TAPE_WRITE itself (NOT_SUPPORTED, never sent) at T-BW #6,
    with any tape agent, its own included (spec §3); the series before it must pass."""
    st, drives = tape_server
    agent = f"127.0.0.1:{st.address[1]}/4t,{USER},{PASSWORD}"
    out = _ndmjob(ndmjob, "-o", "test-tape", "-T", agent, "-f", str(drives.path("drive0")))
    assert "Test T-OC Passed -- pass=8 warn=0 fail=0" in out, out
    assert "Test T-BGS Passed -- pass=4 warn=0 fail=0" in out, out


def test_ndmjob_backup_and_restore_with_our_data_and_tape_agents(ndmjob, tape_server, source_tree, tmp_path):
    """DMA = ndmjob; Data and Tape/Mover = ours; the tape is an emulated LTO-9 cartridge."""
    st, drives = tape_server
    agent = f"127.0.0.1:{st.address[1]}/4m,{USER},{PASSWORD}"
    common = ["-D", agent, "-T", agent, "-f", str(drives.path("drive0")), "-B", "tar"]
    out = _ndmjob(ndmjob, "-c", *common, "-C", str(source_tree), "-I", str(tmp_path / "index"))
    assert "Operation ended OKAY" in out, out
    restored = tmp_path / "restored"
    restored.mkdir()
    out = _ndmjob(ndmjob, "-x", *common, "-C", str(restored))
    assert "Operation ended OKAY" in out, out
    original = {str(q.relative_to(source_tree)): q.read_bytes() for q in source_tree.rglob("*") if q.is_file()}
    got = {str(q.relative_to(restored)): q.read_bytes() for q in restored.rglob("*") if q.is_file()}
    assert got == original
    assert (drives.path("drive0").with_suffix(".tap")).stat().st_size > (source_tree / "sub/blob.bin").stat().st_size
