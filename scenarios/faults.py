"""Fault-injection *wrappers* for the simulated site: nothing inside a component changes.

* :class:`FaultyDrives` wraps the server's drive set; every device it opens counts its block
  writes and, when a fault is armed, fails the k-th one: ``EIO`` (a write error), the drive
  going offline (``EIO`` "not ready", and every later call fails too) or an injected crash of the
  server process (:class:`InjectedCrash`).
* :class:`GuardedApi` wraps the Exchange backup API the agent uses: it counts the agent's API
  calls (its pipeline steps) to crash the agent or stop the Information Store at step k, and it
  guards ``truncate_logs`` — the invariant "no log is truncated before its data is in the
  catalog" is checked at the moment it could be broken.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from reference.errors import MailtapeError


class InjectedCrash(MailtapeError):
    """A process of the pipeline died at a chosen step (simulated: the exception stands for it)."""


class InvariantViolation(AssertionError):
    """The simulation caught the system breaking one of its promises (see docs/scenarios.md)."""


@dataclass
class Armed:
    """One fault waiting for its step: ``kind`` fires at the ``at_step``-th counted call."""

    kind: str
    at_step: int
    count: int = 0
    fired: bool = False


@dataclass
class FaultBoard:
    """The faults armed for the next job, and what fired (so nothing goes unnoticed)."""

    tape: Armed | None = None
    agent: Armed | None = None
    fired: list[str] = field(default_factory=list)

    def disarm(self) -> None:
        self.tape = None
        self.agent = None


# -- tape side ------------------------------------------------------------------------------------


class FaultyDevice:
    """A TapeDevice that fails its k-th write as the armed fault says; everything else passes."""

    read_blocks = write_blocks = None
    """The emulated drive's multi-block extensions are not offered: every block goes through
    :meth:`write` / :meth:`readinto` below, so the armed fault sees every one."""

    def __init__(self, device, board: FaultBoard, drive: int):
        self._device = device
        self._board = board
        self._drive = drive
        self._offline = False

    def __getattr__(self, name):
        return getattr(self._device, name)

    def _check(self) -> None:
        if self._offline:
            raise OSError(errno.EIO, f"drive {self._drive}: not ready (went offline)")

    def write(self, block) -> int:
        self._check()
        armed = self._board.tape
        if armed is not None and not armed.fired:
            armed.count += 1
            if armed.count >= armed.at_step:
                armed.fired = True
                self._board.fired.append(f"{armed.kind} at block write {armed.count}")
                if armed.kind == "tape-write-error":
                    raise OSError(errno.EIO, f"drive {self._drive}: write error (MEDIUM ERROR 3/0C/00)")
                if armed.kind == "drive-offline":
                    self._offline = True
                    self._check()
                if armed.kind == "crash-server":
                    raise InjectedCrash(f"backup server crashed while writing block {armed.count}")
        return self._device.write(block)

    def mtop(self, op, count: int = 1) -> None:
        self._check()
        return self._device.mtop(op, count)

    def read(self, size: int) -> bytes:
        self._check()
        return self._device.read(size)

    def readinto(self, buffer) -> int:
        self._check()
        return self._device.readinto(buffer)

    def close(self) -> None:
        return self._device.close()


class FaultyDrives:
    """The server's DriveSet, with every opened device wrapped in a :class:`FaultyDevice`."""

    def __init__(self, drives, board: FaultBoard):
        self._drives = drives
        self._board = board
        self.numbers = drives.numbers

    def __getattr__(self, name):
        return getattr(self._drives, name)

    def open(self, number: int, write: bool):
        return FaultyDevice(self._drives.open(number, write), self._board, number)

    def describe(self, number: int) -> str:
        return self._drives.describe(number)

    def timeline(self, number: int):
        return self._drives.timeline(number)


# -- Exchange / agent side --------------------------------------------------------------------------


def log_files_on_disk(server, storage_group: str) -> set[str]:
    """Names of the archived log generations of a storage group (``E0000001.log``...)."""
    instance = server.instance(storage_group)
    folder = os.path.dirname(instance.log.path_for(1))
    prefix = instance.log.path_for(1)
    prefix = os.path.basename(prefix)[:3]
    found = set()
    for name in os.listdir(folder):
        stem = name[len(prefix):-4]
        if name.lower().endswith(".log") and name.startswith(prefix) and len(stem) >= 5 and all(
                c in "0123456789abcdefABCDEF" for c in stem):
            found.add(name)
    return found


def _generation(name: str) -> int:
    return int(name[3:-4], 16)


class GuardedContext:
    """A BackupContext that counts the agent's calls and checks truncation against the catalog."""

    COUNTED = ("setup", "open_file", "read_file", "close_file", "get_log_and_patch_files", "truncate_logs")

    def __init__(self, context, guard: GuardedApi):
        self._context = context
        self._guard = guard
        self._storage_group: str | None = None
        self._logs: list[str] = []

    def __getattr__(self, name):
        attribute = getattr(self._context, name)
        if name not in self.COUNTED or not callable(attribute):
            return attribute

        def counted(*args, **kwargs):
            self._guard.step(name)
            return attribute(*args, **kwargs)
        return counted

    def setup(self, instance_id, backup_type):
        self._guard.step("setup")
        for instance in self._context.instances:
            if instance.instance_id == instance_id:
                self._storage_group = instance.name
        return self._context.setup(instance_id, backup_type)

    def get_log_and_patch_files(self):
        self._guard.step("get_log_and_patch_files")
        self._logs = list(self._context.get_log_and_patch_files())
        return self._logs

    def truncate_logs(self):
        self._guard.step("truncate_logs")
        sg = self._storage_group
        server, catalog = self._guard.exchange, self._guard.catalog
        committed = set()
        for data_set in catalog.data_sets(self._guard.server_name, sg):
            committed |= {o.path.rsplit("/", 1)[-1].lower() for o in catalog.objects(data_set.id) if o.kind == "log"}
        wanted = {os.path.basename(p).lower() for p in self._logs}
        missing = wanted - committed
        if missing:
            raise InvariantViolation(f"{sg}: the agent truncates logs before {sorted(missing)} are in the catalog")
        before = log_files_on_disk(server, sg)
        result = self._context.truncate_logs()
        gone = {n.lower() for n in before - log_files_on_disk(server, sg)}
        # A generation older than the newest full backup's first log is inside that backup's
        # database copy (it was below the checkpoint when the pages were read): its data is safe.
        fulls = [d for d in catalog.data_sets(self._guard.server_name, sg) if d.backup_type == "full"]
        floor = fulls[-1].log_gen_low if fulls and fulls[-1].log_gen_low is not None else 0
        lost = {n for n in gone - committed if _generation(n) >= floor}
        if lost:
            raise InvariantViolation(f"{sg}: truncation deleted {sorted(lost)}, which no committed data set holds")
        self._guard.truncations.append((sg, sorted(gone)))
        return result


class GuardedApi:
    """The ExchangeBackupApi the agent sees in simulation: see the module docstring."""

    def __init__(self, api, exchange, catalog, board: FaultBoard):
        self._api = api
        self.exchange = exchange
        self.catalog = catalog
        self.board = board
        self.server_name = api.server_name
        self.truncations: list[tuple[str, list[str]]] = []

    def __getattr__(self, name):
        return getattr(self._api, name)

    def step(self, name: str) -> None:
        armed = self.board.agent
        if armed is None or armed.fired:
            return
        armed.count += 1
        if armed.count < armed.at_step:
            return
        if armed.kind == "stop-service":
            from emulators.exchange import faults

            # Stopping backups only hits a backup in progress (none before setup): until one
            # is, the fault stays armed for the next step.
            if faults.stop_service_mid_backup(self.exchange) == 0:
                return
        armed.fired = True
        self.board.fired.append(f"{armed.kind} at agent step {armed.count} ({name})")
        if armed.kind == "crash-agent":
            raise InjectedCrash(f"agent crashed at step {armed.count} ({name})")

    def backup_prepare(self, annotation):
        return GuardedContext(self._api.backup_prepare(annotation), self)
