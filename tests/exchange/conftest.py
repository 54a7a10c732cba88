"""Fixtures for the Exchange emulator tests: small servers on real temp folders (small logs)."""

from __future__ import annotations

import os

import pytest

from emulators.clock import VirtualClock
from emulators.exchange import ExchangeServer

from exchange_test_helpers import LOG_SIZE


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
