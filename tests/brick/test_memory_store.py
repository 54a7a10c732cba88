"""The in-memory test store passes the shared MailboxStore suite, so properties proven on it mean something."""

from __future__ import annotations

import pytest
from memory_store import MemoryMailboxStore
from shared_fixtures.loading import load_test_module

suite = load_test_module("mailbox_suite", "exchange/mailbox_suite.py")  # the name its own tests use


class TestMemoryStoreSuite(suite.MailboxStoreSuite):
    @pytest.fixture
    def subject(self):
        return suite.StoreUnderTest(MemoryMailboxStore("alice", "bob"), "alice")
