"""The engine's invariants catch what they promise to catch (each check is shown failing)."""

from __future__ import annotations

import pytest

from reference.protocols.exchange import BackupType
from scenarios.engine import Runner, run_scenario
from scenarios.faults import FaultyDevice, InvariantViolation
from scenarios.library import decode_blob, encode_blob
from scenarios.schema import STEP_FIELDS, Step, parse_scenario
from scenarios.site import SimulatedSite
from scenarios.statemachine import scratch_dir


def step(step_kind: str, **given) -> Step:
    return Step(step_kind, {name: rule.default for name, rule in STEP_FIELDS[step_kind].items()} | given, 0)


@pytest.fixture
def sim(tmp_path_factory):
    import tempfile

    root = tempfile.mkdtemp(dir=scratch_dir())
    site = SimulatedSite.create(root, {"size_mb": 1, "mailboxes": 3, "log_file_kb": 64}, seed=5)
    yield site
    site.close()
    import shutil

    shutil.rmtree(root, ignore_errors=True)


def test_truncating_logs_before_the_catalog_has_them_is_caught(sim):
    """Invariant 2: the guard around truncate_logs refuses a truncation no committed set licenses."""
    context = sim.api.backup_prepare("Microsoft Information Store")
    instance = context.instances[0]
    context.setup(instance.instance_id, BackupType.FULL)
    context.get_log_and_patch_files()
    with pytest.raises(InvariantViolation, match="truncates logs before"):
        context.truncate_logs()
    context.end()


def test_a_restore_that_differs_from_the_ground_truth_is_caught(sim):
    """Invariant 1: a point-in-time restore is compared with the truth of its backup."""
    runner = Runner(sim)
    assert runner.execute(step("backup", level="full")).status == "ok"
    point = sim.history[0]
    database = next(iter(point.databases))
    table = next(iter(point.databases[database]))
    point.databases[database][table] = {}  # the truth now disagrees with what was backed up
    with pytest.raises(InvariantViolation, match="differs from the state at backup 1"):
        runner.execute(step("restore", mode="point-in-time", backup=1))


def test_a_fault_that_fires_but_leaves_the_job_ok_is_a_silent_loss(sim, monkeypatch):
    """Invariant 4: a job that reports ok right after a fault hit it breaks the promise."""
    def swallow(self, block):
        armed = self._board.tape
        if armed is not None and not armed.fired:
            armed.fired = True
            self._board.fired.append("tape-write-error (swallowed)")
        return self._device.write(block)

    monkeypatch.setattr(FaultyDevice, "write", swallow)
    runner = Runner(sim)
    runner.execute(step("fault", kind="tape-write-error", at_step=1))
    with pytest.raises(InvariantViolation, match="silent fault"):
        runner.execute(step("backup", level="full"))


def test_a_tape_write_error_fails_the_job_keeps_the_logs_and_commits_nothing(sim):
    runner = Runner(sim)
    runner.execute(step("fault", kind="tape-write-error", at_step=3))
    outcome = runner.execute(step("backup", level="full"))
    assert outcome.status == "failed" and "write error" in outcome.message
    assert sim.site.catalog.data_sets() == [] and sim.api.truncations == []
    assert runner.execute(step("backup", level="full")).status == "ok"
    assert runner.outcome() == "reported"


def test_a_media_that_disagrees_with_the_catalog_is_caught(sim):
    """Invariant 3: verify re-reads every committed set; a damaged block is a violation."""
    runner = Runner(sim)
    runner.execute(step("backup", level="full"))
    record = sim.site.catalog.data_sets()[0]
    for drive in sim.site._live.values():
        if drive.cartridge is not None:
            sim.site.media.unload(drive_number(sim, drive))
    path = sim.cartridge_path(record.first_barcode)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InvariantViolation, match="catalog disagrees with the media"):
        runner.execute(step("verify"))


def drive_number(sim, drive) -> int:
    return next(n for n, d in sim.site._live.items() if d is drive)


SCENARIO = """\
name: determinism
description: Same seed, same everything.
seed: 9
site: {size_mb: 1, mailboxes: 3}
steps:
  - backup: {level: full}
  - activity: {messages: 10}
  - backup: {level: incremental}
expect: {outcome: verified}
"""


def test_one_seed_gives_the_same_run_twice():
    first, second = (run_scenario(parse_scenario(SCENARIO), scratch_dir()) for _ in range(2))
    assert first.ok and second.ok
    key = lambda r: (r.virtual_seconds, r.bytes, r.backhitches, [(s.kind, s.status, s.message) for s in r.steps])
    assert key(first) == key(second)


def test_a_replay_blob_holds_the_whole_scenario():
    steps = [{"backup": {"level": "full"}}, {"fault": {"kind": "crash-agent", "at_step": 3}}]
    scenario = decode_blob(encode_blob(4, {"databases": 2}, steps))
    assert scenario.seed == 4 and scenario.site["databases"] == 2
    assert [(s.kind, s.args.get("kind")) for s in scenario.steps] == [("backup", None), ("fault", "crash-agent")]


def test_backup_site_fixture_runs_steps_with_invariants(backup_site):
    assert backup_site.step("backup", level="full").status == "ok"
    backup_site.step("activity", messages=5)
    assert backup_site.step("restore", mode="point-in-time", backup=1).status == "ok"
    assert backup_site.verify().ok
