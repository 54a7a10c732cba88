"""Scenario files: validated schema, errors that name file, line and field."""

from __future__ import annotations

import pytest

from scenarios.schema import ScenarioError, parse_scenario

GOOD = """\
name: full-then-incremental
description: A full, some mail, an incremental, a disaster and a roll-forward restore.
seed: 3
site: {storage_groups: 1, databases: 2, mailboxes: 4}
steps:
  - backup: {level: full}
  - activity: {messages: 10}
  - backup: {level: incremental}
  - disaster:
  - restore: {mode: roll-forward}
  - verify: {}
expect: {outcome: verified}
"""


def test_a_good_scenario_parses_with_defaults():
    scenario = parse_scenario(GOOD, "good.yaml")
    assert scenario.name == "full-then-incremental" and scenario.seed == 3
    assert scenario.site["databases"] == 2 and scenario.site["profile"] == "2003"
    assert [s.kind for s in scenario.steps] == ["backup", "activity", "backup", "disaster", "restore", "verify"]
    assert scenario.steps[1].args == {"messages": 10}
    assert scenario.steps[0].line == 6


@pytest.mark.parametrize(
    "mutation, message",
    [
        (("  - activity: {messages: 10}", "  - activty: {messages: 10}"), r"bad.yaml:7: steps\[1\]: unknown step 'activty'"),
        (("{level: incremental}", "{level: incremantal}"), r"bad.yaml:8: steps\[2\].backup.level: 'incremantal' is not one of"),
        (("{messages: 10}", "{messages: ten}"), r"bad.yaml:7: steps\[1\].activity.messages: expected int"),
        (("databases: 2", "databeses: 2"), r"bad.yaml:4: site: unknown field 'databeses'"),
        (("expect: {outcome: verified}", "expect: {outcome: fine}"), r"bad.yaml:12: expect.outcome: 'fine' is not one of"),
        (("seed: 3", "seed: -3"), r"bad.yaml:3: seed: must be a non-negative integer"),
        (("name: full-then-incremental", "name: full then incremental"), r"bad.yaml:1: name:"),
        (("  - disaster:\n", "  - fault: {database: x}\n"), r"bad.yaml:9: steps\[3\].fault: missing required field 'kind'"),
    ],
)
def test_errors_name_file_line_and_field(mutation, message):
    old, new = mutation
    assert old in GOOD
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(GOOD.replace(old, new), "bad.yaml")


def test_invalid_yaml_names_the_line():
    with pytest.raises(ScenarioError, match=r"bad.yaml:\d+: not valid YAML"):
        parse_scenario("name: [unclosed\n", "bad.yaml")


def test_missing_required_top_level_field():
    with pytest.raises(ScenarioError, match="missing required field 'expect'"):
        parse_scenario(GOOD.replace("expect: {outcome: verified}\n", ""), "bad.yaml")


def test_empty_file():
    with pytest.raises(ScenarioError, match="empty scenario file"):
        parse_scenario("", "empty.yaml")
