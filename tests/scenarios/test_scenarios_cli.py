"""``mailtape scenarios``: list, run (table, --json, exit status), replay."""

from __future__ import annotations

import json

from click.testing import CliRunner

from reference.cli.main import cli
from scenarios.library import encode_blob


def invoke(*args):
    return CliRunner().invoke(cli, ["scenarios", *args])


def test_list_names_every_scenario_and_its_expected_outcome():
    result = invoke("list", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert len(rows) >= 15 and {"name", "expect", "steps", "description"} <= set(rows[0])


def test_run_prints_the_table_and_json(tmp_path):
    result = invoke("run", "wrong-cartridge", "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["outcome"] == "reported" and row["ok"] and row["cartridges"] >= 1
    table = invoke("run", "wrong-cartridge")
    assert table.exit_code == 0 and "backhitches" in table.output


def test_run_exits_1_when_an_outcome_differs(tmp_path):
    path = tmp_path / "wrong-expectation.yaml"
    path.write_text("name: wrong-expectation\ndescription: claims verified but a tape fault fails it.\n"
                    "site: {size_mb: 1, mailboxes: 2}\nsteps:\n"
                    "  - fault: {kind: tape-write-error, at_step: 2}\n  - backup: {level: full}\n"
                    "expect: {outcome: verified}\n")
    result = invoke("run", str(path))
    assert result.exit_code == 1
    assert "did not end as expected: wrong-expectation" in str(result.exception)


def test_unknown_scenario_is_one_clear_line():
    result = invoke("run", "no-such-scenario")
    assert result.exit_code == 1 and "no scenario named 'no-such-scenario'" in str(result.exception)


def test_replay_runs_a_blob_and_prints_it_as_yaml():
    blob = encode_blob(2, {"size_mb": 1, "mailboxes": 2}, [{"backup": {"level": "full"}}, {"verify": {}}])
    result = invoke("replay", blob, "--expect", "verified")
    assert result.exit_code == 0, result.output
    as_yaml = invoke("replay", blob, "--yaml")
    assert as_yaml.exit_code == 0 and "backup:" in as_yaml.output
    assert invoke("replay", "not-a-blob").exit_code == 1


def test_replay_of_a_yaml_file_keeps_its_expected_outcome(tmp_path):
    from scenarios.library import LIBRARY

    text = (LIBRARY / "wrong-cartridge.yaml").read_text().replace("outcome: reported", "outcome: verified")
    path = tmp_path / "claims-verified.yaml"
    path.write_text(text)
    assert invoke("replay", str(LIBRARY / "wrong-cartridge.yaml")).exit_code == 0
    assert invoke("replay", str(path)).exit_code == 1
