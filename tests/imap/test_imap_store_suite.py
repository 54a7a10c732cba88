"""The shared MailboxStore behaviour suite (tests/exchange/mailbox_suite.py) run against Dovecot."""

from __future__ import annotations

import pytest
from shared_fixtures.loading import load_test_module

from reference.drivers.imap import ImapMailboxStore

suite = load_test_module("mailbox_suite", "exchange/mailbox_suite.py")  # the name its own tests use


@pytest.mark.imap
class TestDovecotStoreSuite(suite.MailboxStoreSuite):
    @pytest.fixture
    def subject(self, dovecot, account):
        user, password = account
        store = ImapMailboxStore(dovecot.url(user), password, timeout=10)
        yield suite.StoreUnderTest(store, user)
        store.close()

    @pytest.mark.skip(reason="IMAP cannot hold a name containing its hierarchy delimiter ('a/b'), and "
                             "Dovecot refuses '..'; the driver refuses such names with FolderNameError "
                             "(tests/imap/test_imap_driver.py) - see docs/brick-level.md")
    def test_odd_folder_names_are_plain_names(self, subject, base):
        pass
