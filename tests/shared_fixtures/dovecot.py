"""The session-wide private Dovecot fixture, for every conftest that needs a real IMAP server.

A conftest registers it by assigning it a module-level name (``dovecot = shared_dovecot.dovecot``). The server process is
the one of tests/imap/dovecot_server.py, shared through :func:`acquire`/:func:`release`. Without
Dovecot the tests skip, except under ``CI=1`` where they fail (`make test` installs it).
"""

from __future__ import annotations

import os

import pytest

from shared_fixtures.loading import load_test_module

dovecot_server = load_test_module("mailtape_tests_dovecot_server", "imap/dovecot_server.py")


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
