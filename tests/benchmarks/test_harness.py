"""The benchmark harness: target rules, verdicts, error rows, discovery, scratch dir, bench.json."""

from __future__ import annotations

import json
import sys
import tempfile
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import harness  # noqa: E402


def row(**kw):
    base = {"name": "x", "value": 1.0, "unit": "MB/s", "baseline": 1.0, "ratio": 1.0, "target": None}
    base.update(kw)
    return base


@pytest.mark.parametrize("target, unit, expected", [
    ("ratio >= 0.85", "MB/s", "ratio >= 0.85"),
    ("ratio <= 25", "ms", "ratio <= 25"),
    ("value < 200", "MB", "value < 200"),
    ("value <= 0", "per TB", "value <= 0"),
    (0.9, "MB/s", "ratio >= 0.9"),        # bench_tape
    (0.1, "s", "ratio <= 0.1"),           # bench_brick, incremental pass
    (1000.0, "MB/s", "value >= 1000"),    # bench_exchange, verified read
    (30.0, "s/GiB", "value <= 30"),       # bench_exchange, bulk load
    (">= 2", "MB/s", "ratio >= 2"),
])
def test_target_rules(target, unit, expected):
    assert str(harness.criterion(row(target=target, unit=unit))) == expected


def test_explicit_overrides_beat_the_guess():
    rule = harness.criterion(row(target=50, unit="MB/s", target_on="ratio", better="lower"))
    assert str(rule) == "ratio <= 50"


@pytest.mark.parametrize("fields, verdict", [
    ({"ratio": 0.9, "target": "ratio >= 0.85"}, "PASS"),
    ({"ratio": 0.8, "target": "ratio >= 0.85"}, "MISS"),
    ({"value": 250.0, "unit": "MB", "target": "value < 200"}, "MISS"),
    ({"value": 0, "unit": "per TB", "target": "value <= 0"}, "PASS"),
    ({"ratio": float("nan"), "target": 0.5}, "n/a"),
    ({"ratio": None, "target": 0.5}, "n/a"),
    ({"target": None}, "n/a"),
])
def test_verdicts(fields, verdict):
    assert harness.verdict(row(**fields))[0] == verdict


def test_unreadable_target_is_reported_not_raised():
    assert harness.verdict(row(target="fast please"))[0] == "n/a"


def _fake_module(monkeypatch, name, run):
    module = types.ModuleType(f"benchmarks.{name}")
    if run is not None:
        module.run = run
    monkeypatch.setitem(sys.modules, f"benchmarks.{name}", module)


def test_a_raising_benchmark_becomes_an_error_entry(monkeypatch):
    def run(quick=False):
        raise RuntimeError("drive on fire")

    _fake_module(monkeypatch, "bench_fake_raises", run)
    entry = harness.run_module("bench_fake_raises", quick=True)
    assert entry["status"] == "error"
    assert "drive on fire" in entry["error"] and "RuntimeError" in entry["traceback"]


def test_a_module_without_run_or_with_bad_rows_is_an_error(monkeypatch):
    _fake_module(monkeypatch, "bench_fake_norun", None)
    assert harness.run_module("bench_fake_norun", quick=True)["status"] == "error"
    _fake_module(monkeypatch, "bench_fake_badrows", lambda quick=False: "not rows")
    assert harness.run_module("bench_fake_badrows", quick=True)["status"] == "error"


def test_rows_get_a_verdict_and_quick_is_passed(monkeypatch):
    seen = {}

    def run(quick=False):
        seen["quick"] = quick
        return [row(ratio=2.0, target="ratio >= 1")]

    _fake_module(monkeypatch, "bench_fake_ok", run)
    entry = harness.run_module("bench_fake_ok", quick=True)
    assert seen == {"quick": True}
    assert entry["status"] == "ok" and entry["rows"][0]["verdict"] == "PASS"
    assert entry["rows"][0]["criterion"] == "ratio >= 1"


def test_discovery_finds_the_benchmark_modules():
    names = harness.discover()
    assert {"bench_streaming", "bench_backup"} <= set(names)
    assert all(n.startswith("bench_") for n in names)


def test_only_selects_by_short_or_full_name_and_rejects_unknown():
    names = ["bench_a", "bench_b", "bench_c"]
    assert harness.selected(names, ("a", "bench_c")) == ["bench_a", "bench_c"]
    assert harness.selected(names, ("b,c",)) == ["bench_b", "bench_c"]
    assert harness.selected(names, ()) == names
    with pytest.raises(Exception, match="no benchmark zzz"):
        harness.selected(names, ("zzz",))


def test_scratch_dir_is_the_temp_dir_on_the_repo_filesystem_and_is_removed():
    before = tempfile.gettempdir()
    with harness.scratch_tempdir() as work:
        assert tempfile.gettempdir() == str(work)
        assert work.is_relative_to(harness.OUT_DIR)
        made = Path(tempfile.mkdtemp())
        assert made.parent == work
    assert not work.exists()
    assert tempfile.gettempdir() == before


def test_machine_facts_name_the_machine(tmp_path):
    facts = harness.machine_facts(tmp_path)
    assert facts["cores"] >= 1 and facts["python"].count(".") == 2
    assert facts["work_filesystem"]["mount"].startswith("/")
    assert facts["work_filesystem"]["type"] != "?"


def test_cli_writes_bench_json_and_exits_1_on_error(monkeypatch, tmp_path):
    _fake_module(monkeypatch, "bench_fake_good", lambda quick=False: [row(ratio=0.5, target="ratio >= 1")])

    def boom(quick=False):
        raise ValueError("boom")

    _fake_module(monkeypatch, "bench_fake_bad", boom)
    monkeypatch.setattr(harness, "discover", lambda: ["bench_fake_bad", "bench_fake_good"])
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(harness.main, ["--quick", "--in-process", "--json", str(out)])
    assert result.exit_code == 1, result.output
    assert "ERROR" in result.output and "MISS" in result.output
    document = json.loads(out.read_text())
    assert document["quick"] is True
    assert document["summary"] == {"PASS": 0, "MISS": 1, "n/a": 0, "ERROR": 1}
    assert {"cpu_model", "cores", "memory_bytes", "python", "numpy", "work_filesystem", "load_average_start",
            "load_average_end"} <= set(document["machine"])
    assert [b["module"] for b in document["benchmarks"]] == ["bench_fake_bad", "bench_fake_good"]


def test_cli_only_runs_the_named_benchmark(monkeypatch, tmp_path):
    calls = []
    for name in ("bench_fake_one", "bench_fake_two"):
        _fake_module(monkeypatch, name, lambda quick=False, n=name: calls.append(n) or [])
    monkeypatch.setattr(harness, "discover", lambda: ["bench_fake_one", "bench_fake_two"])
    result = CliRunner().invoke(harness.main, ["--only", "fake_two", "--in-process", "--json", "-"])
    assert result.exit_code == 0, result.output
    assert calls == ["bench_fake_two"]


def _child_env(tmp_path):
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(harness.REPO), env.get("PYTHONPATH", "")])
    return env


def test_isolated_run_returns_the_rows_of_the_child(tmp_path):
    (tmp_path / "childpkg").mkdir()
    (tmp_path / "childpkg" / "__init__.py").write_text("")
    (tmp_path / "childpkg" / "bench_child_ok.py").write_text(
        "print('noise on stdout')\n"
        "def run(quick=False):\n"
        "    return [{'name': 'q', 'value': 2.0, 'unit': 'MB/s', 'baseline': 1.0, 'ratio': 2.0,\n"
        "             'target': 'ratio >= 1', 'quick': quick}]\n")
    entry = harness.run_isolated("childpkg.bench_child_ok", True, 60, env=_child_env(tmp_path))
    assert entry["status"] == "ok", entry
    assert entry["module"] == "bench_child_ok"
    assert entry["rows"][0]["verdict"] == "PASS" and entry["rows"][0]["quick"] is True


def test_isolated_run_kills_a_hanging_benchmark(tmp_path):
    (tmp_path / "childhang").mkdir()
    (tmp_path / "childhang" / "__init__.py").write_text("")
    (tmp_path / "childhang" / "bench_hang.py").write_text(
        "import time\n"
        "def run(quick=False):\n"
        "    time.sleep(600)\n")
    entry = harness.run_isolated("childhang.bench_hang", True, 3, env=_child_env(tmp_path))
    assert entry["status"] == "error" and "timed out after 3 s" in entry["error"]
    assert entry["seconds"] < 60


def test_isolated_run_reports_a_dying_benchmark(tmp_path):
    (tmp_path / "childdie").mkdir()
    (tmp_path / "childdie" / "__init__.py").write_text("")
    (tmp_path / "childdie" / "bench_die.py").write_text(
        "import os, sys\n"
        "def run(quick=False):\n"
        "    sys.stderr.write('segfault, sort of\\n')\n"
        "    os._exit(139)\n")
    entry = harness.run_isolated("childdie.bench_die", True, 60, env=_child_env(tmp_path))
    assert entry["status"] == "error" and "segfault, sort of" in entry["error"]
