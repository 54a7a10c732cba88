"""The in-memory test store passes the shared MailboxStore suite, so properties proven on it mean something."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from memory_store import MemoryMailboxStore


def _suite():
    if "mailbox_suite" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "exchange" / "mailbox_suite.py"
        spec = importlib.util.spec_from_file_location("mailbox_suite", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["mailbox_suite"] = module
        spec.loader.exec_module(module)
    return sys.modules["mailbox_suite"]


suite = _suite()


class TestMemoryStoreSuite(suite.MailboxStoreSuite):
    @pytest.fixture
    def subject(self):
        return suite.StoreUnderTest(MemoryMailboxStore("alice", "bob"), "alice")
