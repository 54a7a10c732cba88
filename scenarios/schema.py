"""Load and validate scenario YAML files, with errors that name the file, the line and the field.

A scenario is a site description, a list of steps and the outcome it expects::

    name: full-incremental-chain
    description: Full, then two incrementals, then a roll-forward restore.
    seed: 7
    site: {storage_groups: 1, databases: 2, mailboxes: 12, size_mb: 4}
    steps:
      - backup: {level: full}
      - activity: {messages: 40}
      - backup: {level: incremental}
      - disaster: {}
      - restore: {mode: roll-forward}
    expect: {outcome: verified}

The vocabulary (site fields, step kinds and their fields) is declared once in :data:`SITE_FIELDS`
and :data:`STEP_FIELDS`; the engine executes exactly these. Unknown fields are errors, not ignored:
a typo in a fault name must not silently turn a fault scenario into a happy-path one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reference.errors import MailtapeError


class ScenarioError(MailtapeError):
    """A scenario file is malformed; the message names file, line and field."""


@dataclass(frozen=True)
class Field:
    kind: type | tuple[type, ...]
    required: bool = False
    choices: tuple = ()
    default: Any = None
    minimum: float | None = None


LEVELS = ("full", "incremental", "differential", "copy")

SITE_FIELDS: dict[str, Field] = {
    "profile": Field(str, choices=("2003", "2007"), default="2003"),
    "storage_groups": Field(int, default=1, minimum=1),
    "databases": Field(int, default=1, minimum=1),
    "mailboxes": Field(int, default=6, minimum=0),
    "size_mb": Field((int, float), default=2, minimum=0),
    "log_file_kb": Field(int, default=128, minimum=16),
    "circular_logging": Field(bool, default=False),
    "drives": Field(int, default=1, minimum=1),
    "slots": Field(int, default=8, minimum=1),
    "cartridges": Field(int, default=4, minimum=1),
    "media": Field(str, choices=("LTO5", "LTO6", "LTO7", "LTO8", "LTO9", "LTO10"), default="LTO9"),
    "capacity_mb": Field((int, float), default=16, minimum=1),
}

FAULTS = (
    "corrupt-page", "corrupt-log", "delete-log", "dismount-database", "circular-logging",
    "tape-write-error", "early-end-of-medium", "write-protect", "wrong-cartridge", "drive-offline",
    "crash-agent", "crash-server", "stop-service",
)

STEP_FIELDS: dict[str, dict[str, Field]] = {
    "activity": {"messages": Field(int, default=20, minimum=0)},
    "backup": {
        "level": Field(str, choices=LEVELS, default="full"),
        "storage_groups": Field(list),
        "databases": Field(list),
        "expect": Field(str, choices=("ok", "warning", "failed"), default=None),
    },
    "mailbox-backup": {
        "mailboxes": Field(str, default="*"),
        "folders": Field(str, default="*"),
        "level": Field(str, choices=("full", "incremental", "differential", "copy"), default="full"),
        "expect": Field(str, choices=("ok", "warning", "failed"), default=None),
    },
    "fault": {
        "kind": Field(str, required=True, choices=FAULTS),
        "database": Field(str),
        "storage_group": Field(str),
        "at_step": Field(int, minimum=0),
    },
    "disaster": {"storage_group": Field(str)},
    "restore": {
        "mode": Field(str, choices=("roll-forward", "point-in-time"), default="roll-forward"),
        "storage_group": Field(str),
        "backup": Field(int, minimum=1),
        "target": Field(str, choices=("original", "recovery-storage-group"), default="original"),
        "expect": Field(str, choices=("ok", "failed"), default=None),
    },
    "mailbox-restore": {
        "mailbox": Field(str, required=True),
        "folder": Field(str),
        "to": Field(str),
        "conflict": Field(str, choices=("overwrite", "skip", "copy"), default="skip"),
        "expect": Field(str, choices=("ok", "failed"), default=None),
    },
    "verify": {},
}

OUTCOMES = ("verified", "survived", "reported")


@dataclass
class Step:
    kind: str
    args: dict[str, Any]
    line: int


@dataclass
class Scenario:
    name: str
    description: str
    seed: int
    site: dict[str, Any]
    steps: list[Step]
    expect: dict[str, Any]
    path: Path | None = None
    tags: list[str] = field(default_factory=list)


def _where(path: str, node: yaml.Node | None) -> str:
    line = node.start_mark.line + 1 if node is not None else 1
    return f"{path}:{line}"


def _mapping(node: yaml.Node, path: str, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise ScenarioError(f"{_where(path, node)}: {what} must be a mapping")
    result = {}
    for key_node, value_node in node.value:
        key = key_node.value
        if key in result:
            raise ScenarioError(f"{_where(path, key_node)}: {what}: field {key!r} given twice")
        result[key] = (key_node, value_node)
    return result


def _value(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _check_fields(spec: dict[str, Field], given: dict, path: str, what: str, parent: yaml.Node) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, (key_node, value_node) in given.items():
        rule = spec.get(key)
        if rule is None:
            known = ", ".join(sorted(spec)) or "none"
            raise ScenarioError(f"{_where(path, key_node)}: {what}: unknown field {key!r} (known: {known})")
        value = _value(value_node)
        kinds = rule.kind if isinstance(rule.kind, tuple) else (rule.kind,)
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        else:
            ok = isinstance(value, kinds)
        if not ok:
            names = " or ".join(k.__name__ for k in kinds)
            raise ScenarioError(f"{_where(path, value_node)}: {what}.{key}: expected {names}, got {value!r}")
        if rule.choices and value not in rule.choices:
            raise ScenarioError(
                f"{_where(path, value_node)}: {what}.{key}: {value!r} is not one of {', '.join(map(str, rule.choices))}"
            )
        if rule.minimum is not None and value < rule.minimum:
            raise ScenarioError(f"{_where(path, value_node)}: {what}.{key}: must be at least {rule.minimum}")
        values[key] = value
    for key, rule in spec.items():
        if key not in values:
            if rule.required:
                raise ScenarioError(f"{_where(path, parent)}: {what}: missing required field {key!r}")
            values[key] = rule.default
    return values


def parse_scenario(text: str, path: str = "<string>") -> Scenario:
    """Parse and validate one scenario document."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ScenarioError(f"{path}{line}: not valid YAML: {problem}") from None
    if root is None:
        raise ScenarioError(f"{path}:1: empty scenario file")
    top = _mapping(root, path, "scenario")
    allowed = {"name", "description", "seed", "site", "steps", "expect", "tags"}
    for key, (key_node, _) in top.items():
        if key not in allowed:
            raise ScenarioError(f"{_where(path, key_node)}: unknown top-level field {key!r} (known: {', '.join(sorted(allowed))})")
    for required in ("name", "description", "steps", "expect"):
        if required not in top:
            raise ScenarioError(f"{_where(path, root)}: missing required field {required!r}")

    name = _value(top["name"][1])
    if not isinstance(name, str) or not name.replace("-", "").isalnum():
        raise ScenarioError(f"{_where(path, top['name'][1])}: name: use letters, digits and '-' only, got {name!r}")
    description = _value(top["description"][1])
    if not isinstance(description, str) or not description.strip():
        raise ScenarioError(f"{_where(path, top['description'][1])}: description: must be a non-empty string")
    seed = _value(top["seed"][1]) if "seed" in top else 0
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ScenarioError(f"{_where(path, top['seed'][1])}: seed: must be a non-negative integer")

    site_node = top["site"][1] if "site" in top else None
    site_given = _mapping(site_node, path, "site") if site_node is not None else {}
    site = _check_fields(SITE_FIELDS, site_given, path, "site", site_node or root)

    steps_node = top["steps"][1]
    if not isinstance(steps_node, yaml.SequenceNode) or not steps_node.value:
        raise ScenarioError(f"{_where(path, steps_node)}: steps: must be a non-empty list")
    steps = []
    for index, step_node in enumerate(steps_node.value):
        entry = _mapping(step_node, path, f"steps[{index}]")
        if len(entry) != 1:
            raise ScenarioError(f"{_where(path, step_node)}: steps[{index}]: one step kind per list entry")
        (kind, (kind_node, args_node)), = entry.items()
        if kind not in STEP_FIELDS:
            raise ScenarioError(
                f"{_where(path, kind_node)}: steps[{index}]: unknown step {kind!r} (known: {', '.join(sorted(STEP_FIELDS))})"
            )
        if isinstance(args_node, yaml.ScalarNode) and args_node.value in ("", "~", "null"):
            given = {}
        else:
            given = _mapping(args_node, path, f"steps[{index}].{kind}")
        args = _check_fields(STEP_FIELDS[kind], given, path, f"steps[{index}].{kind}", args_node)
        steps.append(Step(kind, args, kind_node.start_mark.line + 1))

    expect_given = _mapping(top["expect"][1], path, "expect")
    expect = _check_fields(
        {"outcome": Field(str, required=True, choices=OUTCOMES), "reported": Field(list), "notes": Field(str)},
        expect_given, path, "expect", top["expect"][1],
    )
    tags = _value(top["tags"][1]) if "tags" in top else []
    return Scenario(name, description.strip(), seed, site, steps, expect, Path(path) if path != "<string>" else None, tags)


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read scenario: {error.strerror}") from None
    return parse_scenario(text, str(path))
