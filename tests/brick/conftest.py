"""Store factories for the brick-level suite: a real Dovecot account pair and the Exchange emulator.

``env`` is parametrised by store: every brick test runs against both. The Dovecot server is the
same process-wide instance tests/imap uses (tests/imap/dovecot_server.py, shared by name).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from brick_stores import FACTORIES

TESTS = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


dovecot_server = _load("mailtape_tests_dovecot_server", TESTS / "imap" / "dovecot_server.py")


@pytest.fixture(scope="session")
def dovecot():
    try:
        server = dovecot_server.acquire()
    except dovecot_server.NotInstalled as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    except dovecot_server.StartFailed as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        dovecot_server.release()


@pytest.fixture(params=[pytest.param("dovecot", marks=pytest.mark.imap), "emulator"])
def env(request) -> StoreEnv:
    made = FACTORIES[request.param](request)
    yield made
    for close in made.closers:
        close()
