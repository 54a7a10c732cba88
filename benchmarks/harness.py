"""Run every ``benchmarks/bench_*.py``, judge each figure against its target, print and save them.

Why ratios: a figure in MB/s or seconds says more about the machine than about the code, so every
benchmark measures a baseline in the same run (``dd``, ``cat``, a plain copy) and the target is
normally on ``ratio = value / baseline``. A row's ``target`` is either

* a string ``"[ratio|value] OP NUMBER"`` (OP one of ``>= <= > <``), e.g. ``"ratio >= 0.85"``,
  ``"value <= 200"`` — preferred, it says exactly what is checked; or
* a bare number: it applies to ``value`` when it is above 10 (no ratio target here is that
  large), otherwise to ``ratio``; "at most" for time and memory units (s, ms, s/GiB, MB, per TB...),
  "at least" for everything else (MB/s, fractions). A row may state ``target_on`` / ``better``
  ("higher" | "lower") to override the guess.

Each module runs in its own process (``--in-process`` for debugging), killed after ``--timeout``
seconds. A module that raises, fails to import, dies or times out becomes one ERROR row; the rest
still run. Work files of every benchmark go into a scratch folder under ``benchmarks/out/``
(git-ignored, same filesystem as the repository), made the temp dir (``TMPDIR``) for the run and
removed afterwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import math
import os
import pkgutil
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import click

PACKAGE_DIR = Path(__file__).resolve().parent
REPO = PACKAGE_DIR.parent
OUT_DIR = PACKAGE_DIR / "out"

_LOWER_UNITS = {"s", "ms", "us", "µs", "ns", "min", "b", "bytes", "kb", "kib", "mb", "mib", "gb", "gib"}
_TARGET = re.compile(r"^\s*(?P<on>ratio|value)?\s*(?P<op><=|>=|<|>)?\s*(?P<num>[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)"
                     r"\s*(?P<rest>.*)$")
_OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}


@dataclass(frozen=True)
class Criterion:
    """What a row's target checks: ``on`` (ratio|value) ``op`` ``bound``."""

    on: str
    op: str
    bound: float

    def __str__(self) -> str:
        return f"{self.on} {self.op} {self.bound:g}"

    def check(self, row: dict) -> bool | None:
        figure = row.get(self.on)
        if not isinstance(figure, (int, float)) or isinstance(figure, bool) or math.isnan(figure):
            return None
        return _OPS[self.op](figure, self.bound)


def lower_is_better(unit: str) -> bool:
    """Time, memory and per-volume event counts are better small; rates and fractions large."""
    text = (unit or "").strip().lower()
    if "/s" in text:
        return False
    return text in _LOWER_UNITS or text.startswith("s/") or "per tb" in text or text.endswith("/tb")


def criterion(row: dict) -> Criterion | None:
    """Parse ``row['target']`` (see the module docstring); None when the row has no target."""
    target = row.get("target")
    if target is None or target == "":
        return None
    if isinstance(target, str):
        match = _TARGET.match(target)
        if not match:
            raise ValueError(f"unreadable target {target!r} (want e.g. 'ratio >= 0.85')")
        bound = float(match["num"])
        on = match["on"] or row.get("target_on") or ("value" if abs(bound) > 10 else "ratio")
        op = match["op"] or ("<=" if _lower(row) else ">=")
        return Criterion(on, op, bound)
    bound = float(target)
    on = row.get("target_on") or ("value" if abs(bound) > 10 else "ratio")
    return Criterion(on, "<=" if _lower(row) else ">=", bound)


def _lower(row: dict) -> bool:
    better = row.get("better")
    if better in ("higher", "lower"):
        return better == "lower"
    return lower_is_better(str(row.get("unit", "")))


def verdict(row: dict) -> tuple[str, str]:
    """(PASS | MISS | n/a, the criterion as text)."""
    try:
        rule = criterion(row)
    except (TypeError, ValueError) as error:
        return "n/a", f"? ({error})"
    if rule is None:
        return "n/a", ""
    ok = rule.check(row)
    return ("n/a" if ok is None else "PASS" if ok else "MISS"), str(rule)


# --------------------------------------------------------------------------------------------
# discovery and running


def discover() -> list[str]:
    """Names of the ``bench_*`` modules beside this file, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR)]) if m.name.startswith("bench_"))


def selected(names: list[str], only: tuple[str, ...]) -> list[str]:
    if not only:
        return names
    wanted = {w.strip().removeprefix("bench_") for item in only for w in item.split(",") if w.strip()}
    unknown = wanted - {n.removeprefix("bench_") for n in names}
    if unknown:
        raise click.BadParameter(f"no benchmark {', '.join(sorted(unknown))} (have: "
                                 f"{', '.join(n.removeprefix('bench_') for n in names)})", param_hint="--only")
    return [n for n in names if n.removeprefix("bench_") in wanted]


def run_module(name: str, quick: bool) -> dict:
    """Import and run one benchmark module in this process; an exception becomes an ``error`` entry.

    ``name`` is a module of this package (``bench_tape``) or any importable dotted name."""
    started = time.perf_counter()
    short = name.rsplit(".", 1)[-1]
    entry: dict = {"module": short, "status": "ok", "rows": [], "error": None}
    try:
        module = importlib.import_module(name if "." in name else f"benchmarks.{name}")
        runner = getattr(module, "run", None)
        if not callable(runner):
            raise TypeError(f"{module.__name__} has no run(quick) function")
        rows = runner(quick=quick)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise TypeError(f"{module.__name__}.run() returned {type(rows).__name__}, not a list of dicts")
        for row in rows:
            row = dict(row)
            row["verdict"], row["criterion"] = verdict(row)
            entry["rows"].append(row)
    except Exception as error:  # noqa: BLE001 - one broken benchmark must not stop the others
        entry["status"] = "error"
        entry["error"] = f"{type(error).__name__}: {error}"
        entry["traceback"] = traceback.format_exc()
    entry["seconds"] = round(time.perf_counter() - started, 2)
    return entry


RESULT_MARK = "BENCH-RESULT "


def run_isolated(name: str, quick: bool, timeout: float | None, env: dict | None = None) -> dict:
    """Run one module in a child process (``python -m benchmarks.harness --child NAME``).

    A benchmark that hangs, crashes the interpreter or leaks memory then costs only its own row:
    after ``timeout`` seconds its whole process group is killed and the row says so."""
    started = time.perf_counter()
    short = name.rsplit(".", 1)[-1]
    command = [sys.executable, "-m", "benchmarks.harness", "--child", name] + (["--quick"] if quick else [])
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, start_new_session=True)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        return {"module": short, "status": "error", "rows": [], "seconds": round(time.perf_counter() - started, 2),
                "error": f"timed out after {timeout:g} s (killed)", "traceback": err[-4000:]}
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_MARK):
            entry = json.loads(line[len(RESULT_MARK):])
            entry["seconds"] = round(time.perf_counter() - started, 2)
            return entry
    tail = " | ".join(err.strip().splitlines()[-2:]) or f"exit status {child.returncode}"
    return {"module": short, "status": "error", "rows": [], "seconds": round(time.perf_counter() - started, 2),
            "error": f"benchmark process died: {tail}", "traceback": err[-4000:]}


@contextlib.contextmanager
def scratch_tempdir():
    """A scratch folder on the repository's filesystem, made the temp dir for the run."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    work = tempfile.mkdtemp(prefix="tmp.", dir=OUT_DIR)
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = work
    tempfile.tempdir = work
    try:
        yield Path(work)
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# machine facts


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def filesystem_of(path: Path) -> dict:
    """Mount point, device and type of the filesystem holding ``path`` (from /proc/self/mounts)."""
    real = os.path.realpath(path)
    best = {"mount": "?", "device": "?", "type": "?"}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            device, mount, fstype = line.split()[:3]
            mount = mount.replace("\\040", " ")
            inside = real == mount or real.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best["mount"] if best["mount"] != "?" else ""):
                best = {"mount": mount, "device": device, "type": fstype}
    with contextlib.suppress(OSError):
        usage = shutil.disk_usage(real)
        best["free_bytes"] = usage.free
    return best


def machine_facts(work: Path) -> dict:
    try:
        import numpy

        numpy_version = numpy.__version__
    except ImportError:  # pragma: no cover - numpy is a dependency
        numpy_version = None
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "python": platform.python_version(),
        "numpy": numpy_version,
        "platform": platform.platform(),
        "work_dir": str(work),
        "work_filesystem": filesystem_of(work),
    }


def _load() -> list[float] | None:
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


# --------------------------------------------------------------------------------------------
# output


def _fmt(x) -> str:
    if isinstance(x, bool) or x is None:
        return "" if x is None else str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
            return f"{x:.3g}"
        return f"{x:.4g}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def render_table(entries: list[dict], console) -> None:
    from rich.table import Table

    table = Table(title="mailtape benchmarks", show_lines=False)
    for header, justify in (("benchmark", "left"), ("figure", "left"), ("value", "right"), ("unit", "left"),
                            ("baseline", "right"), ("ratio", "right"), ("target", "left"), ("result", "left")):
        table.add_column(header, justify=justify)
    style = {"PASS": "green", "MISS": "bold red", "ERROR": "bold red", "n/a": "dim"}
    for entry in entries:
        bench = entry["module"].removeprefix("bench_")
        if entry["status"] == "error":
            table.add_row(bench, entry["error"], "", "", "", "", "", "[bold red]ERROR[/]")
            continue
        if not entry["rows"]:
            table.add_row(bench, "(no figures: skipped on this machine)", "", "", "", "", "", "[dim]n/a[/]")
        for row in entry["rows"]:
            v = row["verdict"]
            table.add_row(bench, str(row.get("name", "?")), _fmt(row.get("value")), str(row.get("unit", "")),
                          _fmt(row.get("baseline")), _fmt(row.get("ratio")), row["criterion"],
                          f"[{style.get(v, '')}]{v}[/]")
    console.print(table)


def summary(entries: list[dict]) -> dict:
    counts = {"PASS": 0, "MISS": 0, "n/a": 0, "ERROR": 0}
    for entry in entries:
        if entry["status"] == "error":
            counts["ERROR"] += 1
        for row in entry["rows"]:
            counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return counts


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if hasattr(x, "item"):  # numpy scalars
        return _jsonable(x.item())
    return str(x)


def run_all(quick: bool, only: tuple[str, ...] = (), console=None, *, isolate: bool = True,
            timeout: float | None = None) -> dict:
    """Run the selected benchmarks inside a scratch temp dir; returns the bench.json document.

    ``isolate``: each module in its own process, killed after ``timeout`` seconds."""
    names = selected(discover(), only)
    started = dt.datetime.now(dt.timezone.utc)
    load_start = _load()
    entries = []
    with scratch_tempdir() as work:
        facts = machine_facts(work)
        for name in names:
            if console is not None:
                console.print(f"[dim]running {name}{' (quick)' if quick else ''}…[/]")
            if isolate:
                entries.append(run_isolated(name, quick, timeout, env=dict(os.environ)))
            else:
                entries.append(run_module(name, quick))
            if console is not None and entries[-1]["status"] == "error":
                console.print(f"[red]{name}: {entries[-1]['error']}[/]")
    facts["load_average_start"] = load_start
    facts["load_average_end"] = _load()
    return {
        "format": "mailtape-bench/1",
        "started": started.isoformat(timespec="seconds"),
        "ended": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks", *sys.argv[1:]]),
        "quick": quick,
        "machine": facts,
        "benchmarks": entries,
        "summary": summary(entries),
    }


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True, help="Small sizes and few repetitions (a smoke run, figures are rough).")
@click.option("--only", multiple=True, metavar="NAME",
              help="Run only this benchmark (tape, bench_tape; repeat or comma-separate for several).")
@click.option("--json", "json_path", default="bench.json", show_default=True, type=click.Path(dir_okay=False),
              help="Where to write figures, ratios and machine facts ('-' for none).")
@click.option("--list", "list_only", is_flag=True, help="List the benchmarks and exit.")
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="Kill a benchmark after this long (ERROR row). Default: 900, 300 with --quick.")
@click.option("--in-process", is_flag=True, help="Run the modules in this process (no timeout; for debugging).")
@click.option("--child", hidden=True, default=None)
def main(quick: bool, only: tuple[str, ...], json_path: str, list_only: bool, timeout: float | None,
         in_process: bool, child: str | None) -> None:
    """Run mailtape's benchmarks (ratios against baselines measured in the same run).

    Each benchmark module runs in its own process. Exit status 1 when a module failed or timed
    out (ERROR); a MISS is reported, not fatal.
    """
    if child is not None:  # one module, for run_isolated: the entry as the last stdout line
        entry = run_module(child, quick)
        sys.stdout.flush()
        print(RESULT_MARK + json.dumps(_jsonable(entry)), flush=True)
        return
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 160)
    if list_only:
        for name in discover():
            click.echo(name.removeprefix("bench_"))
        return
    if timeout is None:
        timeout = 300.0 if quick else 900.0
    document = run_all(quick, only, console, isolate=not in_process, timeout=timeout)
    render_table(document["benchmarks"], console)
    counts = document["summary"]
    machine = document["machine"]
    console.print(f"{counts['PASS']} pass, {counts['MISS']} miss, {counts['ERROR']} error — "
                  f"{machine['cpu_model']}, {machine['cores']} cores, load {machine['load_average_start']} → "
                  f"{machine['load_average_end']}")
    if json_path != "-":
        Path(json_path).write_text(json.dumps(_jsonable(document), indent=1) + "\n", encoding="utf-8")
        console.print(f"figures written to {json_path}")
    if counts["ERROR"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
