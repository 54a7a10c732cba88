"""pytest plugin: run your own backup code against mailtape's emulators in CI.

Installed with mailtape (entry point ``pytest11``). Fixtures:

* ``mailtape_seed`` — the seed every emulator draws from (``--mailtape-seed N``, default 0);
  printed in the report header of a failing run so it can be replayed.
* ``mailtape_clock`` — a fresh :class:`~emulators.clock.VirtualClock` per test.
* ``exchange_server`` — an emulated Exchange 2003 server (one storage group, one store, a few
  mailboxes of mail) in the test's temp folder; ``.backup_api()`` is the streaming API.
* ``tape_library`` — an emulated library (two LTO-9 drives, eight slots, four small cartridges).

Example (tests/test_my_agent.py in another project)::

    def test_my_agent_backs_up_and_truncates(exchange_server):
        api = exchange_server.backup_api()
        context = api.backup_prepare("Microsoft Information Store")
        group = context.instances[0]
        context.setup(group.instance_id, BackupType.FULL)
        ...  # read streams and logs with open_file/read_file/close_file
        context.truncate_logs()
        context.instance_end(InstanceEnd.SUCCESS)
"""

from __future__ import annotations

import pytest

from emulators.clock import VirtualClock

SMALL_LOG = 64 * 1024


def pytest_addoption(parser):
    group = parser.getgroup("mailtape")
    group.addoption("--mailtape-seed", type=int, default=0, help="seed for mailtape's emulators (default 0)")


def pytest_report_header(config):
    return f"mailtape emulators: seed {config.getoption('--mailtape-seed')} (replay with --mailtape-seed)"


@pytest.fixture
def mailtape_seed(request) -> int:
    return request.config.getoption("--mailtape-seed")


@pytest.fixture
def mailtape_clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def exchange_server(tmp_path, mailtape_clock, mailtape_seed):
    """An Exchange 2003 server with 4 mailboxes and about 1 MiB of mail; shut down after the test."""
    from emulators.exchange import ExchangeServer
    from emulators.exchange.mailbox_store import ServerMailboxStore
    from emulators.exchange.workload import populate

    server = ExchangeServer.create(tmp_path / "exchange", clock=mailtape_clock, seed=mailtape_seed,
                                   log_file_size=SMALL_LOG)
    populate(ServerMailboxStore.for_server(server), 1 << 20, seed=mailtape_seed, mailboxes=4, clock=mailtape_clock)
    yield server
    server.shutdown()


@pytest.fixture
def tape_library(tmp_path, mailtape_clock):
    """A library with two LTO-9 drives, eight slots and four 16 MiB cartridges (000001L9...)."""
    from emulators.tape.library import EmulatedLibrary, create_library

    root = tmp_path / "library"
    create_library(root, drives=2, slots=8, import_export=0, media="LTO-9", cartridges=4, capacity_bytes=16 << 20)
    return EmulatedLibrary(root, clock=mailtape_clock)
