"""Fixtures: an emulated Exchange server with rolled logs, a site, the agent serving NDMP on loopback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_helpers import agent_server, make_exchange, make_site  # noqa: E402


@pytest.fixture
def exchange_root(tmp_path):
    return make_exchange(tmp_path / "exchange")


@pytest.fixture
def agent(exchange_root):
    """(address, ExchangeButypes, ExchangeServer) of a running agent."""
    with agent_server(exchange_root) as running:
        yield running


@pytest.fixture
def site(tmp_path):
    from emulators.clock import VirtualClock
    from reference.server.site import open_site

    make_site(tmp_path / "site")
    handle = open_site(tmp_path / "site", clock=VirtualClock())
    yield handle
    handle.close()
