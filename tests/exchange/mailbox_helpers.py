"""Test helpers for the mailbox-store tests: a real emulated server (ESE engine) and its mailbox view."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest

from emulators.clock import VirtualClock
from emulators.exchange.mailbox_store import ServerMailboxStore
from emulators.exchange.server import ExchangeServer

SERVER = "EXCHANGE01"
SG_A, SG_B = "First Storage Group", "Second Storage Group"
DB_A, DB_B = f"Mailbox Store ({SERVER})", f"Mailbox Store 2 ({SERVER})"
SMALL_LOGS = 64 * 1024
"""Small log files keep each test server a few hundred KiB on disk."""


@contextmanager
def server_store(root, storage_groups: int = 2, databases: int = 1, clock=None, profile: str = "2003",
                 seed: int = 1) -> Iterator[ServerMailboxStore]:
    """A new emulated server at ``root`` and its ServerMailboxStore; shut down on exit."""
    server = ExchangeServer.create(root, profile=profile, storage_groups=storage_groups, databases=databases,
                                   server_name=SERVER, clock=clock or VirtualClock(), seed=seed,
                                   log_file_size=SMALL_LOGS)
    try:
        store = ServerMailboxStore.for_server(server)
        store.server = server
        yield store
    finally:
        if server.running:
            server.shutdown()


@pytest.fixture
def two_group_store(tmp_path) -> Iterator[ServerMailboxStore]:
    """Two storage groups with one mailbox database each."""
    with server_store(tmp_path / "server") as store:
        yield store


@pytest.fixture
def one_database_store(tmp_path) -> Iterator[ServerMailboxStore]:
    with server_store(tmp_path / "server", storage_groups=1) as store:
        yield store
