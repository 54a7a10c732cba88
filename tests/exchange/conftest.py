"""Fixtures for the Exchange emulator tests: small servers on real temp folders (small logs)."""

from __future__ import annotations

import os

import pytest

from emulators.clock import VirtualClock
from emulators.exchange import ExchangeServer

SG1 = "First Storage Group"
SG2 = "Second Storage Group"
LOG_SIZE = 16384


def db_name(server, n: int = 1) -> str:
    return server.storage_group(SG1).databases[n - 1].name


def fill(db, n: int, start: int = 0, size: int = 700, table: str = "items", stream: bool = True) -> None:
    """Write ``n`` records (and as many to a ``stream.*`` table) in single-put transactions."""
    for i in range(start, start + n):
        with db.transaction() as tx:
            tx.put(table, b"k%06d" % i, bytes([i % 251]) * size)
            if stream:
                tx.put("stream.body", b"b%06d" % i, bytes([(i * 7) % 251]) * (size * 2))


@pytest.fixture
def make_server(tmp_path):
    made = []

    def make(name: str = "srv", profile: str = "2003", **kw) -> ExchangeServer:
        kw.setdefault("log_file_size", LOG_SIZE)
        kw.setdefault("clock", VirtualClock())
        s = ExchangeServer.create(os.path.join(tmp_path, name), profile=profile, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        if s.running:
            try:
                s.shutdown()
            except Exception:
                pass


@pytest.fixture
def server(make_server) -> ExchangeServer:
    return make_server()


@pytest.fixture
def server07(make_server) -> ExchangeServer:
    return make_server("srv07", profile="2007")
