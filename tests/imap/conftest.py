"""Real-IMAP fixtures: a session-wide private Dovecot (tests marked ``imap``) and fresh accounts.

The server logic lives in ``dovecot_server.py`` so tests/brick can share the same instance.
Without Dovecot the tests skip, except under ``CI=1`` where they fail: `make test` installs it
through .ci/deps.d/dovecot.sh.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest


def load_dovecot_server():
    """Load tests/imap/dovecot_server.py once per process under one name (shared singleton)."""
    name = "mailtape_tests_dovecot_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("dovecot_server.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


dovecot_server = load_dovecot_server()


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


@pytest.fixture
def account(dovecot):
    """A fresh, empty IMAP account: (user, password)."""
    return dovecot.fresh_account()


@pytest.fixture
def imap_store(dovecot, account):
    """An ImapMailboxStore logged in to a fresh account; closed afterwards."""
    from reference.drivers.imap import ImapMailboxStore
    user, password = account
    store = ImapMailboxStore(dovecot.url(user), password, timeout=10)
    try:
        yield store
    finally:
        store.close()
