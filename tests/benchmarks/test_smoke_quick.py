"""Every benchmarks/bench_*.py runs in quick mode and returns well-formed rows (nothing is timed).

Each module runs in its own process through the harness, so one that hangs fails its test after
the timeout instead of stalling the suite.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import harness  # noqa: E402

KEYS = {"name", "value", "unit", "baseline", "ratio", "target"}
TIMEOUT = 240


@pytest.mark.slow
@pytest.mark.parametrize("module", harness.discover())
def test_benchmark_runs_quick_and_reports_rows(module, tmp_path):
    with harness.scratch_tempdir():
        env = dict(os.environ, MAILTAPE_BENCH_OUT=str(tmp_path / "out"))
        entry = harness.run_isolated(module, True, TIMEOUT, env=env)
    assert entry["status"] == "ok", f"{entry['error']}\n{entry.get('traceback', '')}"
    for row in entry["rows"]:
        assert KEYS <= set(row), f"{module}: row {row.get('name')!r} lacks {KEYS - set(row)}"
        assert isinstance(row["value"], (int, float)) and not math.isnan(row["value"])
        assert not row["criterion"].startswith("?"), f"{module}: unreadable target {row['target']!r}"
    if module == "bench_streaming":
        assert (tmp_path / "out" / "quick" / "streaming.png").exists()
