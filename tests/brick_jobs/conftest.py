"""Fixtures for the brick-level job tests: a site with tiny cartridges, and a mail store that is
either the Exchange emulator or a real Dovecot (the process-wide instance of tests/imap).

Helper modules here have unique basenames (``bjobs_support``): pytest imports test-dir modules by
basename, and tests/brick has its own ``brick_*`` helpers.
"""

from __future__ import annotations

import os

import pytest
from bjobs_support import TESTS, load, make_env, make_site

dovecot_server = load("mailtape_tests_dovecot_server", TESTS / "imap" / "dovecot_server.py")


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
def env(request, tmp_path):
    """A store with two empty mailboxes (``env.mailbox``, ``env.other``) and its clock."""
    made = make_env(request.param, request, tmp_path)
    yield made
    for close in reversed(made.closers):
        close()


@pytest.fixture
def emulator_env(request, tmp_path):
    made = make_env("emulator", request, tmp_path)
    yield made
    for close in reversed(made.closers):
        close()


@pytest.fixture
def site(env, tmp_path):
    """An open site (2 drives, 1 MiB cartridges) on the store's clock."""
    handle = make_site(tmp_path / "site", env.clock)
    yield handle
    handle.close()
