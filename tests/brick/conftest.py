"""Store factories for the brick-level suite: a real Dovecot account pair and the Exchange emulator.

``env`` is parametrised by store: every brick test runs against both. The Dovecot server is the
same process-wide instance tests/imap uses (tests/shared_fixtures/dovecot.py).
"""

from __future__ import annotations

import pytest
from brick_stores import FACTORIES, StoreEnv
from shared_fixtures import dovecot as shared_dovecot

dovecot = shared_dovecot.dovecot  # the session-wide Dovecot fixture, registered for this directory


@pytest.fixture(params=[pytest.param("dovecot", marks=pytest.mark.imap), "emulator"])
def env(request) -> StoreEnv:
    made = FACTORIES[request.param](request)
    yield made
    for close in made.closers:
        close()
