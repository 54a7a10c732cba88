"""Property-based scenarios: a hypothesis state machine over the scenario vocabulary.

Every rule is one scenario step (mail activity, a backup of any level, a mailbox pass, a tape,
Exchange or crash fault armed for a chosen step, a disaster, a restore of any kind, a verify) run
by the same :class:`~scenarios.engine.Runner` as the YAML library, so every invariant of the
engine is checked after every step. A failure (after shrinking) names one command that replays
it exactly: ``mailtape scenarios replay BLOB`` — the blob holds seed, site and steps.
"""

from __future__ import annotations

import logging
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from scenarios.engine import Runner
from scenarios.faults import InvariantViolation
from scenarios.library import encode_blob
from scenarios.schema import LEVELS, SITE_FIELDS, STEP_FIELDS, Step
from scenarios.site import SimulatedSite

log = logging.getLogger("mailtape.scenarios")

FUZZ_SITE = {"size_mb": 1, "mailboxes": 4, "capacity_mb": 16, "cartridges": 6, "log_file_kb": 64}
TAPE_FAULTS = ("tape-write-error", "drive-offline", "crash-server", "write-protect", "early-end-of-medium")
AGENT_FAULTS = ("crash-agent", "stop-service")
EXCHANGE_FAULTS = ("corrupt-page", "corrupt-log", "delete-log", "dismount-database", "circular-logging")


def scratch_dir() -> str:
    """Where simulated sites live: RAM when the machine has it (catalog and state files fsync)."""
    import os

    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def replay_command(seed: int, site: dict, steps: list[dict]) -> str:
    return f"mailtape scenarios replay {encode_blob(seed, site, steps)}"


class SiteMachine(RuleBasedStateMachine):
    """One simulated site per example; see the module docstring."""

    def __init__(self):
        super().__init__()
        self.sim: SimulatedSite | None = None
        self.runner: Runner | None = None
        self.root: str | None = None
        self.seed = 0
        self.site: dict = {}
        self.steps: list[dict] = []

    @initialize(seed=st.integers(0, 1 << 16), databases=st.integers(1, 2), groups=st.integers(1, 2))
    def create_site(self, seed: int, databases: int, groups: int) -> None:
        self.seed = seed
        self.site = {**FUZZ_SITE, "databases": databases, "storage_groups": groups, "drives": groups}
        self.root = tempfile.mkdtemp(prefix="fuzz-site-", dir=scratch_dir())
        self.sim = SimulatedSite.create(self.root, self.site, seed)
        self.runner = Runner(self.sim)

    # -- running one step --------------------------------------------------------------------------

    def _step(self, step_kind: str, **args) -> None:
        kind = step_kind
        given = {k: v for k, v in args.items() if v is not None}
        self.steps.append({kind: given})
        full = {name: rule.default for name, rule in STEP_FIELDS[kind].items()} | given
        try:
            self.runner.execute(Step(kind, full, len(self.steps)))
        except InvariantViolation as violation:
            raise InvariantViolation(
                f"{violation}\n  after {len(self.steps)} steps; replay with:\n  "
                f"{replay_command(self.seed, self.site, self.steps)}") from None

    # -- rules -----------------------------------------------------------------------------------

    @precondition(lambda self: not self.runner.disasters)
    @rule(messages=st.integers(1, 40))
    def activity(self, messages: int) -> None:
        self._step("activity", messages=messages)

    @rule(level=st.sampled_from(LEVELS))
    def backup(self, level: str) -> None:
        self._step("backup", level=level)

    @precondition(lambda self: not self.runner.disasters)
    @rule(level=st.sampled_from(("full", "incremental", "differential")))
    def mailbox_backup(self, level: str) -> None:
        self._step("mailbox-backup", level=level)

    @rule(kind=st.sampled_from(TAPE_FAULTS), at_step=st.integers(1, 40))
    def tape_fault(self, kind: str, at_step: int) -> None:
        self._step("fault", kind=kind, at_step=at_step if kind in ("tape-write-error", "drive-offline",
                                                                    "crash-server") else None)

    @rule(kind=st.sampled_from(AGENT_FAULTS), at_step=st.integers(1, 40))
    def agent_fault(self, kind: str, at_step: int) -> None:
        self._step("fault", kind=kind, at_step=at_step)

    @precondition(lambda self: not self.runner.disasters)
    @rule(kind=st.sampled_from(EXCHANGE_FAULTS))
    def exchange_fault(self, kind: str) -> None:
        self._step("fault", kind=kind)

    def _group(self, pick: int) -> str | None:
        groups = self.sim.storage_groups
        return None if len(groups) == 1 else groups[pick % len(groups)]

    @precondition(lambda self: bool(self.sim.history))
    @rule(group=st.integers(0, 1))
    def disaster(self, group: int) -> None:
        self._step("disaster", storage_group=self._group(group))

    @precondition(lambda self: bool(self.sim.history))
    @rule(mode=st.sampled_from(("roll-forward", "point-in-time")), pick=st.integers(0, 1000),
          latest=st.booleans(), rsg=st.booleans())
    def restore(self, mode: str, pick: int, latest: bool, rsg: bool) -> None:
        point = self.sim.history[pick % len(self.sim.history)]
        group = point.storage_group if len(self.sim.storage_groups) > 1 else None
        number = None if latest else point.number
        self._step("restore", mode=mode, backup=number, storage_group=group,
                   target="recovery-storage-group" if rsg else None)

    @precondition(lambda self: bool(self.sim.brick_sets) and not self.runner.disasters)
    @rule(alternate=st.booleans(), pick=st.integers(0, 100))
    def mailbox_restore(self, alternate: bool, pick: int) -> None:
        truth = self.sim.brick_sets[-1][2]
        mailboxes = sorted(truth)
        if not mailboxes:
            return
        mailbox = mailboxes[pick % len(mailboxes)]
        self._step("mailbox-restore", mailbox=mailbox, to=f"{mailbox}-restored-{len(self.steps)}" if alternate else None)

    @rule()
    def verify(self) -> None:
        self._step("verify")

    @invariant()
    def catalog_consistent(self) -> None:
        if self.runner is not None:
            self.runner.check_catalog()

    def teardown(self) -> None:
        try:
            if self.runner is not None:
                try:
                    self.runner.verify_media()
                except InvariantViolation as violation:
                    raise InvariantViolation(f"{violation}\n  replay with:\n  "
                                             f"{replay_command(self.seed, self.site, self.steps)}") from None
        finally:
            if self.sim is not None:
                try:
                    self.sim.close()
                except Exception as error:  # noqa: BLE001 - a broken site must not hide the real failure
                    log.debug("closing the simulated site: %s", error)
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)


def fuzz_settings(examples: int, steps: int = 10) -> settings:
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


def run_fuzz(seed: int, examples: int, steps: int = 10) -> None:
    """Run the state machine outside pytest (``mailtape scenarios fuzz``); raises on a failure."""
    from hypothesis import seed as use_seed
    from hypothesis.stateful import get_state_machine_test

    test = get_state_machine_test(SiteMachine, settings=fuzz_settings(examples, steps))
    use_seed(seed)(test)()


__all__ = ["SITE_FIELDS", "SiteMachine", "fuzz_settings", "replay_command", "run_fuzz", "scratch_dir"]
