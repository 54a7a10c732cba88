"""Scenario engine throughput (issue 9): simulated backup + restore + verify cycles on small sites.

1. **cycles per minute** — one cycle = a full backup of a small site (about 2 MiB of mail, one
   store) through agent, server and emulated tape, a point-in-time restore of it compared with the
   ground truth, and a verify of the media against the catalog; each on the virtual clock. The
   baseline is the same bytes handled by plain file operations (copy the store and logs, copy them
   back, hash both): the ratio says what the whole simulated data path costs over moving the bytes.
   Target: at least 60 cycles a minute (a cycle well under a second of wall time).
2. **virtual seconds per wall second** — how much faster than real time a scenario runs (baseline
   1: real time). Target: ratio >= 100.

Sites live in /dev/shm when the machine has it (as the engine's do). ``quick``: fewer cycles.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path

SITE = {"size_mb": 2, "mailboxes": 6, "databases": 1, "log_file_kb": 128, "capacity_mb": 32, "cartridges": 8}


def _one_cycle(sim, runner, number: int) -> None:
    from scenarios.schema import STEP_FIELDS, Step

    def step(kind, **given):
        args = {name: rule.default for name, rule in STEP_FIELDS[kind].items()} | given
        outcome = runner.execute(Step(kind, args, 0))
        if outcome.status != "ok":
            raise RuntimeError(f"benchmark cycle {number}: {kind} {outcome.status}: {outcome.message}")

    step("activity", messages=10)
    step("backup", level="full")
    step("restore", mode="point-in-time", backup=sim.history[-1].number)
    step("verify")


def _baseline_cycle(exchange_root: Path, scratch: Path) -> None:
    files = [p for p in exchange_root.rglob("*") if p.is_file() and p.suffix.lower() in (".edb", ".stm", ".log")]
    copy = scratch / "copy"
    copy.mkdir(exist_ok=True)
    for path in files:
        shutil.copyfile(path, copy / path.name)
    back = scratch / "back"
    back.mkdir(exist_ok=True)
    for path in files:
        shutil.copyfile(copy / path.name, back / path.name)
        if hashlib.sha256((back / path.name).read_bytes()).digest() != hashlib.sha256(path.read_bytes()).digest():
            raise RuntimeError("baseline copy differs")
    shutil.rmtree(copy)
    shutil.rmtree(back)


def run(quick: bool = False) -> list[dict]:
    import logging

    from scenarios.engine import Runner
    from scenarios.site import SimulatedSite
    from scenarios.statemachine import scratch_dir

    logging.getLogger("mailtape").setLevel(logging.CRITICAL)
    cycles = 3 if quick else 10
    root = Path(tempfile.mkdtemp(prefix="bench-scenarios-", dir=scratch_dir()))
    try:
        sim = SimulatedSite.create(root / "site", SITE, seed=1)
        try:
            runner = Runner(sim)
            _one_cycle(sim, runner, 0)  # warm-up: content pools, first labels
            virtual_start = sim.clock.now()
            started = time.perf_counter()
            for number in range(1, cycles + 1):
                _one_cycle(sim, runner, number)
            wall = time.perf_counter() - started
            virtual = sim.clock.now() - virtual_start
            base_started = time.perf_counter()
            for _ in range(cycles):
                _baseline_cycle(sim.exchange.root and Path(sim.exchange.root), root)
            base_wall = time.perf_counter() - base_started
        finally:
            sim.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    per_minute = cycles * 60.0 / wall
    baseline = cycles * 60.0 / base_wall
    speedup = virtual / wall
    return [
        {"name": "scenario cycles (backup + restore + verify, 2 MiB site)", "value": round(per_minute, 1),
         "unit": "cycles/min", "baseline": round(baseline, 1), "ratio": round(per_minute / baseline, 4),
         "target": "value >= 60"},
        {"name": "simulation speed (virtual seconds per wall second)", "value": round(speedup, 1),
         "unit": "x real time", "baseline": 1.0, "ratio": round(speedup, 1), "target": "ratio >= 100"},
    ]


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
