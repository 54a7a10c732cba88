"""A whole simulated site on the virtual clock: Exchange + agent + backup server + tape library.

Single-threaded and deterministic from one seed: the Exchange emulator, the library and the
server's drives all charge their time to one :class:`~emulators.clock.VirtualClock`, and every
job runs on one virtual-time event loop, so an hour of tape motion costs no wall time.

The site keeps the **ground truth**: the records of every database (``RecordDatabase.snapshot``)
and the mailbox view (``mailbox_store.snapshot``) at each backup and just before each disaster or
restore, so a restore can be compared with the point in time it claims.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from emulators.clock import VirtualClock, new_event_loop
from emulators.exchange import ExchangeServer
from emulators.exchange.mailbox_store import ServerMailboxStore, snapshot
from emulators.exchange.workload import Workload, populate
from reference.server.site import create_site, open_site
from scenarios.faults import FaultBoard, FaultyDrives, GuardedApi

SMALL_SITE = {
    "profile": "2003", "storage_groups": 1, "databases": 1, "mailboxes": 6, "size_mb": 2,
    "log_file_kb": 128, "circular_logging": False, "drives": 1, "slots": 8, "cartridges": 4,
    "media": "LTO9", "capacity_mb": 16,
}
"""Defaults (the schema's): a few MiB of mail, 128 KiB logs, 16 MiB cartridges."""


@dataclass
class BackupPoint:
    """What a committed data set holds, by the ground truth taken when it was written."""

    number: int
    """1-based position among this scenario's database backups."""
    set_id: int
    storage_group: str
    level: str
    completed: float
    databases: dict[str, dict]
    """database name → RecordDatabase.snapshot() at the backup."""


@dataclass
class SiteStats:
    backups: int = 0
    restores: int = 0
    bytes: int = 0


@dataclass
class SimulatedSite:
    """See the module docstring; build one with :meth:`create`."""

    root: Path
    config: dict
    seed: int
    clock: VirtualClock
    exchange: ExchangeServer
    site: object
    board: FaultBoard
    api: GuardedApi
    history: list[BackupPoint] = field(default_factory=list)
    stats: SiteStats = field(default_factory=SiteStats)
    brick_state: object = None
    """The brick engine's state after the last mailbox pass (the next incremental's base)."""
    brick_sets: list = field(default_factory=list)
    """(data set id, level, mailbox truth at the pass, selection) of every mailbox pass."""
    _loop: object = None
    _workload: object = None

    @classmethod
    def create(cls, root, config: dict | None = None, seed: int = 0) -> SimulatedSite:
        config = {**SMALL_SITE, **(config or {})}
        root = Path(root)
        clock = VirtualClock()
        media = config["media"].replace("LTO", "LTO-")
        create_site(root, drives=config["drives"], slots=config["slots"], cartridges=config["cartridges"],
                    media=media, capacity_bytes=int(config["capacity_mb"] * (1 << 20)), settings={"seed": seed})
        exchange = ExchangeServer.create(root / "exchange", profile=config["profile"],
                                         storage_groups=config["storage_groups"], databases=config["databases"],
                                         clock=clock, seed=seed, log_file_size=config["log_file_kb"] * 1024,
                                         circular_logging=config["circular_logging"])
        if config["size_mb"] > 0 or config["mailboxes"] > 0:
            populate(ServerMailboxStore.for_server(exchange), int(config["size_mb"] * (1 << 20)), seed=seed,
                     mailboxes=config["mailboxes"], clock=clock)
        site = open_site(root, clock=clock)
        board = FaultBoard()
        site.drives = site.media.drives = FaultyDrives(site.drives, board)
        api = GuardedApi(exchange.backup_api(), exchange, site.catalog, board)
        return cls(root, config, seed, clock, exchange, site, board, api, _loop=new_event_loop(clock))

    # -- running jobs -------------------------------------------------------------------------

    def run(self, coro):
        """Run a coroutine on the site's one virtual-time loop."""
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        try:
            self._loop.close()
            self.site.close()
        finally:
            self.exchange.shutdown()

    # -- the Exchange side ----------------------------------------------------------------------

    @property
    def storage_groups(self) -> list[str]:
        return [g.name for g in self.exchange.storage_groups if not g.recovery]

    def databases(self, storage_group: str) -> list[str]:
        return [d.name for d in self.exchange.storage_group(storage_group).databases]

    def store(self) -> ServerMailboxStore:
        """A fresh mailbox view (database objects change across dismount and restore)."""
        return ServerMailboxStore.for_server(self.exchange)

    def activity(self, messages: int) -> None:
        """Day-to-day mail on the virtual clock: one seeded Workload for the site's whole life (its
        content pools are costly to build), pointed at a fresh mailbox view each time because a
        restore replaces the databases under it (its item caches are dropped for the same reason)."""
        store = self.store()
        if self._workload is None:
            self._workload = Workload(store, clock=self.clock, seed=self.seed)
        else:
            self._workload.store = store
            self._workload._items.clear()
            self._workload._folders.clear()
        self._workload.run(messages)

    def database_truth(self, storage_group: str, names=None) -> dict[str, dict]:
        """Every record of every mounted (and readable) database of ``storage_group`` now.

        A store with a damaged page cannot be read whole; it has no truth (and is left out)."""
        from reference.protocols.exchange import ExchangeError

        truth = {}
        for name in self.databases(storage_group) if names is None else names:
            if not self.exchange.is_mounted(storage_group, name):
                continue
            try:
                truth[name] = self.exchange.database(storage_group, name).snapshot()
            except ExchangeError:
                continue
        return truth

    def mailbox_truth(self, mailboxes=None) -> dict:
        return snapshot(self.store(), mailboxes)

    def record_backup(self, set_id: int, storage_group: str, level: str, databases: list[str]) -> BackupPoint:
        truth = self.database_truth(storage_group, databases)
        point = BackupPoint(len(self.history) + 1, set_id, storage_group, level, self.clock.now(),
                            {name: truth[name] for name in databases if name in truth})
        self.history.append(point)
        return point

    def lose_databases(self, storage_group: str) -> None:
        """A disaster: the database files of the group are gone (the log disk survives)."""
        for name in self.databases(storage_group):
            if self.exchange.is_mounted(storage_group, name):
                self.exchange.dismount(storage_group, name)
            self.exchange.set_allow_restore_overwrite(storage_group, name, True)
            for relative in self.exchange.database_config(storage_group, name).files:
                path = self.exchange.abspath(relative)
                if os.path.exists(path):
                    os.remove(path)

    def prepare_overwrite(self, storage_group: str) -> None:
        """What an admin does before restoring over live stores: dismount, allow overwrite."""
        for name in self.databases(storage_group):
            if self.exchange.is_mounted(storage_group, name):
                self.exchange.dismount(storage_group, name)
            self.exchange.set_allow_restore_overwrite(storage_group, name, True)

    # -- the tape side --------------------------------------------------------------------------

    def cartridge_path(self, barcode: str) -> Path:
        return self.root / "library" / "cartridges" / f"{barcode}.tap"

    def cartridges_used(self) -> int:
        return sum(1 for row in self.site.catalog.media() if row["family_id"] is not None)

    def backhitches(self) -> int:
        total = 0
        for drive in self.site._live.values():
            timing = getattr(drive, "timing", None)
            if timing is not None:
                total += timing.counters.backhitches
        return total
