"""Fixtures for the brick-level job tests: a site with tiny cartridges, and a mail store that is
either the Exchange emulator or a real Dovecot (the process-wide instance of tests/imap).

Helper modules here have unique basenames (``bjobs_support``): pytest imports test-dir modules by
basename, and tests/brick has its own ``brick_*`` helpers.
"""

from __future__ import annotations

import pytest
from bjobs_support import make_env, make_site
from shared_fixtures import dovecot as shared_dovecot

dovecot = shared_dovecot.dovecot  # the session-wide Dovecot fixture, registered for this directory


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
