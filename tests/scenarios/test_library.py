"""Every named scenario of the library ends with the outcome it states (the CI profile)."""

from __future__ import annotations

import pytest

from scenarios.engine import run_scenario
from scenarios.library import library_paths, load_library
from scenarios.schema import FAULTS
from scenarios.statemachine import scratch_dir

LIBRARY = load_library()


def test_the_library_has_at_least_fifteen_named_scenarios_with_unique_names():
    names = [s.name for s in LIBRARY]
    assert len(names) >= 15 and len(set(names)) == len(names)
    assert [p.stem for p in library_paths()] == names  # file name = scenario name


def test_every_fault_and_every_outcome_appears_in_the_library():
    used = {s.args["kind"] for scenario in LIBRARY for s in scenario.steps if s.kind == "fault"}
    assert set(FAULTS) <= used, set(FAULTS) - used
    assert {s.expect["outcome"] for s in LIBRARY} == {"verified", "survived", "reported"}


@pytest.mark.parametrize("scenario", LIBRARY, ids=[s.name for s in LIBRARY])
def test_named_scenario_ends_as_it_expects(scenario):
    result = run_scenario(scenario, scratch_dir())
    unmet = [f"step {s.index + 1} {s.kind}: {s.status} (expected {s.expected}): {s.message}" for s in result.unmet]
    assert not result.violations, result.violations
    assert not unmet, unmet
    assert result.outcome == scenario.expect["outcome"], [(s.kind, s.status, s.message) for s in result.steps]
    assert result.virtual_seconds > 0
