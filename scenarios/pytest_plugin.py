"""pytest plugin: run your own backup code against mailtape's emulators in CI.

Installed with mailtape (entry point ``pytest11``). Fixtures:

* ``mailtape_seed`` — the seed every emulator draws from (``--mailtape-seed N``, default 0);
  printed in the report header of a failing run so it can be replayed.
* ``mailtape_clock`` — a fresh :class:`~emulators.clock.VirtualClock` per test.
* ``exchange_server`` — an emulated Exchange 2003 server (one storage group, one store, a few
  mailboxes of mail) in the test's temp folder; ``.backup_api()`` is the streaming API.
* ``tape_library`` — an emulated library (two LTO-9 drives, eight slots, four small cartridges).
* ``backup_site`` — a whole simulated site on the virtual clock (Exchange with a few MiB of mail,
  mailtape's agent and backup server, a library of 16 MiB cartridges), with ground truth and the
  scenario engine's invariants: ``backup_site.step("backup", level="full")``,
  ``backup_site.step("restore", mode="point-in-time", backup=1)``, ``backup_site.sim`` for the parts.

The marker ``scenarios`` (long simulation campaigns, ``make scenarios``) is registered here.

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


def pytest_configure(config):
    config.addinivalue_line("markers", "scenarios: long property-based site simulations (make scenarios)")


def pytest_collection_modifyitems(config, items):
    """Long campaigns run only when asked for (``-m scenarios``), not in every ``make test``."""
    if "scenarios" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="long simulation campaign: run with -m scenarios (make scenarios)")
    for item in items:
        if "scenarios" in item.keywords and item.get_closest_marker("scenarios") is not None:
            item.add_marker(skip)


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


class BackupSite:
    """A simulated site plus the scenario engine's step runner (see docs/scenarios.md)."""

    def __init__(self, sim):
        from scenarios.engine import Runner

        self.sim = sim
        self.runner = Runner(sim)

    def step(self, step_kind: str, **given):
        """Run one scenario step (the YAML vocabulary); returns its StepOutcome; a broken
        invariant raises ``scenarios.faults.InvariantViolation``."""
        from scenarios.schema import STEP_FIELDS, Step

        args = {name: rule.default for name, rule in STEP_FIELDS[step_kind].items()} | given
        return self.runner.execute(Step(step_kind, args, len(self.runner.steps) + 1))

    def verify(self):
        """Re-read every committed data set and compare it with the catalog."""
        return self.runner.verify_media()


@pytest.fixture
def backup_site(tmp_path, mailtape_seed):
    """A small simulated site (1 storage group, 1 store, ~1 MiB of mail, 16 MiB cartridges)."""
    from scenarios.site import SimulatedSite

    sim = SimulatedSite.create(tmp_path / "site", {"size_mb": 1, "mailboxes": 4}, seed=mailtape_seed)
    site = BackupSite(sim)
    yield site
    sim.close()
