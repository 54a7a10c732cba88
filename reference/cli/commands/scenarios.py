"""``mailtape scenarios list|run|fuzz|replay``: whole-site simulations on the virtual clock.

Exit status 1 when any scenario's outcome differs from what it expects (or a step's ``expect``
is not met, or an invariant breaks); docs/scenarios.md explains outcomes and invariants.
"""

from __future__ import annotations

import logging

import click

from reference.errors import MailtapeError


class ScenarioFailed(MailtapeError):
    """A scenario did not end the way it says it should."""


def _quiet() -> None:
    # Faults are the point of a scenario: the components' warnings would drown the table.
    if logging.getLogger().level >= logging.WARNING:
        logging.getLogger("mailtape").setLevel(logging.CRITICAL)


def _row(result) -> list:
    from reference.server.report import size

    return [result.name, result.outcome + ("" if result.ok else f" (expected {result.expected})"),
            f"{result.virtual_seconds:.0f} s", size(result.bytes), result.cartridges, result.backhitches,
            f"{result.wall_seconds:.1f} s"]


def _report(results, as_json: bool, details: bool) -> None:
    from reference.server.report import emit_json, table

    if as_json:
        emit_json([r.to_dict() for r in results])
    else:
        table("Scenarios", ["scenario", "outcome", "virtual time", "bytes", "cartridges", "backhitches", "wall"],
              [_row(r) for r in results])
        for result in results:
            if details or not result.ok:
                for violation in result.violations:
                    click.echo(f"{result.name}: invariant broken: {violation}")
                for step in result.steps:
                    if details or not step.met:
                        mark = "" if step.met else f" (expected {step.expected})"
                        click.echo(f"{result.name}: step {step.index + 1} (line {step.line}) {step.kind}: "
                                   f"{step.status}{mark}: {step.message}")
    failed = [r.name for r in results if not r.ok]
    if failed:
        raise ScenarioFailed(f"{len(failed)} of {len(results)} scenario(s) did not end as expected: "
                             + ", ".join(failed))


@click.group(name="scenarios")
def command() -> None:
    """Deterministic whole-site simulations: named scenarios, property-based fuzzing, replay."""


@command.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable list.")
def list_command(as_json: bool) -> None:
    """The named scenarios of the library and the outcome each expects."""
    from reference.server.report import emit_json, table
    from scenarios.library import load_library

    scenarios = load_library()
    if as_json:
        emit_json([{"name": s.name, "expect": s.expect["outcome"], "steps": len(s.steps),
                    "description": s.description} for s in scenarios])
        return
    table("Scenario library", ["scenario", "expects", "steps", "description"],
          [[s.name, s.expect["outcome"], len(s.steps), s.description] for s in scenarios])


@command.command(name="run")
@click.argument("names", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Every scenario of the library.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable results.")
@click.option("--details", is_flag=True, help="Print every step's outcome.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Where the simulated sites live [default: /dev/shm, else the temp folder].")
@click.option("--keep", is_flag=True, help="Keep each simulated site folder (printed) for inspection.")
def run_command(names: tuple[str, ...], run_all: bool, as_json: bool, details: bool, workdir, keep: bool) -> None:
    """Run named scenarios (or YAML files) and print a result table; exit 1 on any surprise."""
    from scenarios.engine import run_scenario
    from scenarios.library import find, load_library
    from scenarios.statemachine import scratch_dir

    if run_all == bool(names):
        raise click.UsageError("name one or more scenarios, or give --all")
    _quiet()
    scenarios = load_library() if run_all else [find(name) for name in names]
    results = [run_scenario(s, workdir or scratch_dir(), keep=keep) for s in scenarios]
    _report(results, as_json, details)


@command.command(name="fuzz")
@click.option("--seed", type=int, default=0, show_default=True, help="Hypothesis seed.")
@click.option("--examples", type=click.IntRange(1), default=20, show_default=True, help="Sites to simulate.")
@click.option("--steps", type=click.IntRange(1), default=10, show_default=True, help="Most steps per site.")
def fuzz_command(seed: int, examples: int, steps: int) -> None:
    """Random step sequences (hypothesis state machine) with every invariant checked; a failure is
    shrunk and printed with the one command that replays it."""
    from scenarios.faults import InvariantViolation
    from scenarios.statemachine import run_fuzz

    _quiet()
    try:
        run_fuzz(seed, examples, steps)
    except InvariantViolation as violation:
        raise ScenarioFailed(f"fuzz (seed {seed}): invariant broken: {violation}") from None
    except BaseExceptionGroup as group:  # several distinct failures: hypothesis reports them together
        raise ScenarioFailed(f"fuzz (seed {seed}): {len(group.exceptions)} distinct failures: "
                             + " | ".join(str(e) for e in group.exceptions)) from None
    click.echo(f"fuzz: {examples} simulated sites (seed {seed}, up to {steps} steps each): every invariant held")


@command.command(name="replay")
@click.argument("blob")
@click.option("--expect", type=click.Choice(["verified", "survived", "reported"]), default=None,
              help="Fail unless the outcome is this (default: fail only on a broken invariant).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@click.option("--yaml", "as_yaml", is_flag=True, help="Print the scenario as YAML (for the library) and stop.")
def replay_command(blob: str, expect: str | None, as_json: bool, as_yaml: bool) -> None:
    """Re-run a scenario from the blob a fuzz failure printed (seed, site and steps), or a YAML file;
    every step's outcome is printed."""
    from pathlib import Path

    import yaml

    from scenarios.engine import run_scenario
    from scenarios.library import decode_blob, find
    from scenarios.statemachine import scratch_dir

    from_file = Path(blob).suffix in (".yaml", ".yml")
    scenario = find(blob) if from_file else decode_blob(blob, expect)
    if expect is not None:
        scenario.expect["outcome"] = expect
    if as_yaml:
        steps = [{s.kind: s.args} for s in scenario.steps]
        click.echo(yaml.safe_dump({"name": "replayed", "description": "Found by mailtape scenarios fuzz.",
                                   "seed": scenario.seed, "site": scenario.site, "steps": steps,
                                   "expect": {"outcome": expect or "verified"}}, sort_keys=False))
        return
    _quiet()
    result = run_scenario(scenario, scratch_dir())
    if expect is None and not from_file and not result.violations:  # a blob states no outcome
        result.expected = result.outcome
    _report([result], as_json, details=True)
