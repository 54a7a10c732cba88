"""Real-IMAP fixtures: a session-wide private Dovecot (tests marked ``imap``) and fresh accounts.

The server logic lives in ``dovecot_server.py`` and the ``dovecot`` fixture in
tests/shared_fixtures/dovecot.py, so tests/brick and tests/brick_jobs share the same instance.
Without Dovecot the tests skip, except under ``CI=1`` where they fail: `make test` installs it
through .ci/deps.d/dovecot.sh.
"""

from __future__ import annotations

import pytest
from shared_fixtures import dovecot as shared_dovecot

dovecot = shared_dovecot.dovecot  # the session-wide Dovecot fixture, registered for this directory


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
