"""The named scenarios shipped with mailtape (scenarios/library/*.yaml), and replay blobs.

A replay blob is a whole scenario (seed, site, steps) as compressed JSON in URL-safe base64, so a
failure found by the fuzzer is one copy-pasteable command: ``mailtape scenarios replay BLOB``.
"""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import yaml

from scenarios.schema import Scenario, ScenarioError, load_scenario, parse_scenario

LIBRARY = Path(__file__).resolve().parent / "library"


def library_paths() -> list[Path]:
    return sorted(LIBRARY.glob("*.yaml"))


def load_library() -> list[Scenario]:
    return [load_scenario(path) for path in library_paths()]


def find(name: str) -> Scenario:
    """A library scenario by name, or a YAML file by path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return load_scenario(path)
    for scenario in load_library():
        if scenario.name == name:
            return scenario
    known = ", ".join(s.name for s in load_library())
    raise ScenarioError(f"no scenario named {name!r} (the library has: {known})")


def to_document(seed: int, site: dict, steps: list[dict], name: str = "replay",
                outcome: str | None = None) -> dict:
    """A scenario document (the YAML shape) from plain data."""
    return {"name": name, "description": "A scenario replayed from a blob.", "seed": seed, "site": site,
            "steps": steps, "expect": {"outcome": outcome or "verified"}}


def encode_blob(seed: int, site: dict, steps: list[dict]) -> str:
    raw = json.dumps({"seed": seed, "site": site, "steps": steps}, sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(zlib.compress(raw.encode(), 9)).decode().rstrip("=")


def decode_blob(blob: str, outcome: str | None = None) -> Scenario:
    """The scenario a blob holds; its expected outcome is ``outcome`` or, if None, computed later."""
    try:
        padded = blob + "=" * (-len(blob) % 4)
        data = json.loads(zlib.decompress(base64.urlsafe_b64decode(padded.encode())))
        seed, site, steps = data["seed"], data["site"], data["steps"]
    except (ValueError, KeyError, TypeError, zlib.error) as error:
        raise ScenarioError(f"replay blob: not a scenario blob ({error})") from None
    document = to_document(seed, site, steps, outcome=outcome)
    return parse_scenario(yaml.safe_dump(document, sort_keys=False), "<replay blob>")
