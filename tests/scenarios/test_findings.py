"""What the simulation found in other components: minimal failing tests, marked xfail with the
reason, so the owner sees them and they turn green (XPASS → strict failure) once fixed."""

from __future__ import annotations

import pytest

from scenarios.schema import STEP_FIELDS, Step


def step(step_kind: str, **given) -> Step:
    return Step(step_kind, {name: rule.default for name, rule in STEP_FIELDS[step_kind].items()} | given, 0)


# Found by `mailtape scenarios fuzz`: with every store of the group dismounted and no full backup in
# the catalog, an incremental reported ok (Exchange's -560 check only looks at mounted stores) yet
# could never be restored. Fixed: the agent converts to full when the catalog holds no full.
def test_incremental_without_any_full_backup_is_not_reported_ok(backup_site):
    backup_site.step("fault", kind="dismount-database")
    outcome = backup_site.step("backup", level="incremental")
    assert outcome.status != "ok", outcome.message


LONE_SLEEP = """
import asyncio
from emulators.clock import VirtualClock, new_event_loop
clock = VirtualClock()
async def main():
    await asyncio.sleep(0.5)
    await asyncio.sleep(1e-8)
new_event_loop(clock).run_until_complete(main())
"""


# Found by the scenario state machine (a mailbox pass hung at 100% CPU): a timer the virtual
# clock landed on exactly was never due (asyncio's 1e-9 s resolution is below the float step of
# epoch-sized times). Fixed in emulators/clock.py (VIRTUAL_RESOLUTION); kept as a regression test.
def test_a_lone_sleep_completes_on_the_virtual_clock():
    import subprocess
    import sys

    try:
        subprocess.run([sys.executable, "-c", LONE_SLEEP], timeout=5, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail("asyncio.sleep(0.5) on a VirtualTimeEventLoop did not return (the loop spins)")


# Found by `mailtape scenarios fuzz` (seed 61): after a point-in-time restore of full 1 the
# generations written after full 1 (the abandoned timeline) stayed on disk and the log sequence
# went on; a later roll-forward restore of full 1 replayed both timelines and mounted a database
# that never existed (mail deleted by the point-in-time restore came back), reporting success.
# Fixed in emulators/exchange (engine/timeline.py): like real ESE, hard recovery compares the
# lgposConsistent logged with the re-attach after the point-in-time restore with the replayed
# database's last detach and refuses with JET_errConsistentTimeMismatch -551, so the faithful
# outcome is a refused (reported) restore, not a verified one.
TWO_TIMELINES = """\
name: roll-forward-after-point-in-time
description: A point-in-time restore, new mail, then a roll-forward restore of the same full.
seed: 0
site: {size_mb: 1, mailboxes: 4, capacity_mb: 16, cartridges: 6, log_file_kb: 64}
steps:
  - activity: {messages: 1}
  - backup: {level: full}
  - activity: {messages: 3}
  - backup: {level: full}
  - restore: {mode: point-in-time, backup: 1}
  - activity: {messages: 1}
  - restore: {mode: roll-forward, backup: 1}
expect: {outcome: reported}
"""


def test_roll_forward_after_a_point_in_time_restore_does_not_mix_timelines():
    from scenarios.engine import run_scenario
    from scenarios.schema import parse_scenario
    from scenarios.statemachine import scratch_dir

    result = run_scenario(parse_scenario(TWO_TIMELINES, "two-timelines.yaml"), scratch_dir())
    assert not result.violations, result.violations
    assert result.ok, (result.outcome, result.steps)
    *before, last = result.steps
    assert all(s.status == "ok" for s in before), before
    assert last.status == "failed" and "jet=-551" in last.message, last.message
