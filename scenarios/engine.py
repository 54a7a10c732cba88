"""Run scenarios (YAML or generated) step by step on a simulated site, checking invariants.

Each step is one entry of the schema's vocabulary (scenarios/schema.py). After every step the
invariants of docs/scenarios.md are checked; a broken one is an :class:`InvariantViolation`:

1. every restore equals the ground truth of the point it claims (roll-forward: the state just
   before the disaster or the restore; point-in-time or recovery storage group: the state at
   that backup; mailbox level: the mailbox at the pass);
2. no log is truncated before its data is in the catalog (checked inside ``truncate_logs``);
3. the catalog agrees with the media (every committed set re-read and compared at the end and at
   ``verify`` steps) and no failed job left a committed set behind;
4. every fault that fired is survived (the job still protected the data, with a warning where
   one is due) or reported (the job failed or warned) — a job that says ``ok`` right after a
   fault hit it is a silent loss.

The scenario's outcome is ``verified`` (no fault, every job ok), ``survived`` (faults or warnings,
every job still completed) or ``reported`` (some job failed, or warned that data was left out).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from emulators.exchange import faults as exchange_faults
from emulators.tape.cartridge import Cartridge
from reference.errors import MailtapeError
from reference.jobs import backup_storage_groups, restore_storage_group
from reference.protocols.exchange import ExchangeError
from scenarios.faults import Armed, InvariantViolation, log_files_on_disk
from scenarios.schema import Scenario, Step
from scenarios.site import SimulatedSite

log = logging.getLogger("mailtape.scenarios")

TAPE_FAULTS = ("tape-write-error", "drive-offline", "crash-server")
AGENT_FAULTS = ("crash-agent", "stop-service")
UNREPORTABLE_SILENTLY = ("corrupt-page", "dismount-database")
"""Exchange faults a database backup must report (a warning naming the store) the next time."""
RANK = {"ok": 0, "warning": 1, "failed": 2}


@dataclass
class StepOutcome:
    index: int
    kind: str
    line: int
    status: str  # ok | warning | failed
    message: str = ""
    expected: str | None = None

    @property
    def met(self) -> bool:
        return self.expected is None or self.expected == self.status


@dataclass
class ScenarioResult:
    name: str
    expected: str
    outcome: str
    steps: list[StepOutcome] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    virtual_seconds: float = 0.0
    wall_seconds: float = 0.0
    bytes: int = 0
    cartridges: int = 0
    backhitches: int = 0
    backups: int = 0
    restores: int = 0

    @property
    def unmet(self) -> list[StepOutcome]:
        return [s for s in self.steps if not s.met]

    @property
    def ok(self) -> bool:
        return self.outcome == self.expected and not self.violations and not self.unmet

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def _worst(statuses) -> str:
    statuses = list(statuses) or ["ok"]
    return max(statuses, key=RANK.__getitem__)


def _describe_difference(expected: dict, actual: dict) -> str:
    parts = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table, {}), actual.get(table, {})
        missing = len(set(want) - set(got))
        extra = len(set(got) - set(want))
        changed = sum(1 for k in set(want) & set(got) if want[k] != got[k])
        if missing or extra or changed:
            parts.append(f"table {table}: {missing} missing, {extra} unexpected, {changed} changed records")
    return "; ".join(parts) or "identical"


class Runner:
    """Executes steps against one :class:`SimulatedSite` and keeps what the outcome needs."""

    def __init__(self, sim: SimulatedSite):
        self.sim = sim
        self.steps: list[StepOutcome] = []
        self.faults: list[str] = []
        self.pending_exchange: list[tuple[str, str]] = []
        """(fault kind, storage group) injected on Exchange and not yet seen by a backup."""
        self.disasters: dict[str, dict] = {}
        """storage group → database truth just before its disaster."""
        self.media_tampered = False
        self.warned = False

    # -- dispatch --------------------------------------------------------------------------------

    def execute(self, step: Step, index: int | None = None) -> StepOutcome:
        index = len(self.steps) if index is None else index
        handler = getattr(self, "_" + step.kind.replace("-", "_"))
        expected = step.args.get("expect") if isinstance(step.args.get("expect"), str) else None
        try:
            status, message = handler(**{k: v for k, v in step.args.items() if k != "expect"})
        except (MailtapeError, ExchangeError, OSError) as error:
            status, message = "failed", f"{type(error).__name__}: {error}"
        outcome = StepOutcome(index, step.kind, step.line, status, message, expected)
        self.steps.append(outcome)
        if status == "warning":
            self.warned = True
        self.check_catalog()
        return outcome

    # -- steps -----------------------------------------------------------------------------------

    def _group(self, name: str | None) -> str:
        groups = self.sim.storage_groups
        if name is None:
            return groups[0]
        for group in groups:
            if group.lower() == name.lower():
                return group
        raise MailtapeError(f"no storage group {name!r} on the simulated server (it has {groups})")

    def _activity(self, messages: int):
        self.sim.activity(messages)
        # New records may land in a damaged page that is still partly free: the flush rewrites
        # it whole from memory, which repairs it, so the next backup may rightly see no damage.
        self.pending_exchange = [(k, g) for k, g in self.pending_exchange if k != "corrupt-page"]
        return "ok", f"{messages} messages of activity"

    def _backup(self, level: str, storage_groups=None, databases=None):
        sim = self.sim
        catalog = sim.site.catalog
        jobs_before = max((j["id"] for j in catalog.jobs(1)), default=0)
        try:
            results = sim.run(backup_storage_groups(sim.site, sim.api, storage_groups, level, databases=databases))
        finally:
            fired = self._collect_faults()
        statuses, messages = [], []
        for result in results:
            status = result.status
            if any(d.status == "failed" for d in result.databases):
                status = "warning" if status == "ok" else status
            if result.receipt is not None:
                if result.level in ("full", "copy"):
                    good = [d.name for d in result.databases if d.status == "ok"]
                else:  # logs only: the chain restores the stores of the full it builds on
                    fulls = [p for p in sim.history if p.storage_group == result.storage_group
                             and p.level == "full"]
                    good = list(fulls[-1].databases) if fulls else []
                sim.record_backup(result.receipt.data_set_id, result.storage_group, result.level, good)
                sim.stats.bytes += result.bytes
                sim.stats.backups += 1
            statuses.append(status)
            text = f"{result.storage_group}: {result.status} {result.level}"
            if result.error:
                text += f" ({result.error})"
            elif result.warnings:
                text += f" ({'; '.join(result.warnings)})"
            messages.append(text)
        # The server's own report: a job warning (a write-protected cartridge skipped...) counts.
        for job in catalog.jobs(50):
            if job["id"] > jobs_before and job["kind"] == "backup" and job["status"] in ("warning", "failed"):
                statuses.append(job["status"])
                if job.get("warnings"):
                    messages.append(f"server: {job['warnings']}")
        status = _worst(statuses)
        if fired and status == "ok":
            raise InvariantViolation(f"silent fault: {', '.join(fired)} hit the backup, yet it reports ok")
        # A store that cannot be read must be reported by the next backup that reads stores
        # (full or copy); a logs-only backup does not touch it, so the fault stays pending.
        read_stores = {r.storage_group for r in results if r.level in ("full", "copy") and r.databases}
        touched = {r.storage_group for r in results if r.level in ("full", "copy")}
        still = []
        for kind, group in self.pending_exchange:
            if group in touched and kind in UNREPORTABLE_SILENTLY:
                mine = [r for r in results if r.storage_group == group]
                if group in read_stores and all(
                        r.status == "ok" and not any(d.status == "failed" for d in r.databases) for r in mine):
                    raise InvariantViolation(f"silent fault: {kind} on {group} and the backup reports ok")
            elif group not in touched:
                still.append((kind, group))
        self.pending_exchange = still
        return status, "; ".join(messages)

    def _collect_faults(self, agent_too: bool = True) -> list[str]:
        """What fired during the job just run; armed faults that did not fire are disarmed."""
        board = self.sim.board
        fired = list(board.fired)
        armed = [a for a in (board.tape, board.agent if agent_too else None) if a is not None and not a.fired]
        board.fired.clear()
        board.tape = None
        if agent_too:
            board.agent = None
        self.faults += fired
        for dormant in armed:
            self.faults.append(f"{dormant.kind} armed at step {dormant.at_step} did not fire "
                               f"(the job has {dormant.count} steps)")
        return fired

    def _mailbox_backup(self, mailboxes: str, folders: str, level: str):
        from scenarios.brick import mailbox_backup

        try:
            set_id, done, warnings = self.sim.run(mailbox_backup(self.sim, mailboxes, folders, level))
        finally:
            # A brick pass uses the tape but not the backup API: agent faults stay armed.
            fired = self._collect_faults(agent_too=False)
        self.sim.stats.backups += 1
        status = "warning" if warnings else "ok"
        if fired and status == "ok":
            raise InvariantViolation(f"silent fault: {', '.join(fired)} hit the mailbox backup, yet it reports ok")
        return status, f"mailbox {done} pass of {mailboxes}/{folders} as data set {set_id}" + (
            f" ({'; '.join(warnings)})" if warnings else "")

    def _fault(self, kind: str, database=None, storage_group=None, at_step=None):
        sim = self.sim
        group = self._group(storage_group)
        db = database or sim.databases(group)[0]
        self.faults.append(kind)
        if kind in TAPE_FAULTS:
            sim.board.tape = Armed(kind, at_step or 1)
        elif kind in AGENT_FAULTS:
            sim.board.agent = Armed(kind, at_step or 1)
        elif kind == "corrupt-page":
            # Each injection flips another byte: flipping the same one twice would repair the page.
            hits = self.faults.count("corrupt-page")
            exchange_faults.corrupt_page(sim.exchange, group, db, pgno=1, byte_offset=100 + hits)
            self.pending_exchange.append((kind, group))
        elif kind in ("corrupt-log", "delete-log"):
            generation = self._newest_archived_log(group)
            if kind == "corrupt-log":
                exchange_faults.corrupt_log(sim.exchange, group, generation)
            else:
                exchange_faults.delete_log(sim.exchange, group, generation)
            self.pending_exchange.append((kind, group))
        elif kind == "dismount-database":
            sim.exchange.dismount(group, db)
            self.pending_exchange.append((kind, group))
        elif kind == "circular-logging":
            sim.exchange.set_circular_logging(group, True)
        elif kind == "write-protect":
            self._write_protect()
        elif kind == "wrong-cartridge":
            self._swap_cartridges()
        elif kind == "early-end-of-medium":
            self._shrink_cartridges()
        return "ok", f"injected {kind}"

    def _newest_archived_log(self, group: str) -> int:
        for _ in range(20):
            names = log_files_on_disk(self.sim.exchange, group)
            if names:
                return max(int(n[3:-4], 16) for n in names)
            self.sim.activity(10)
        raise MailtapeError(f"{group}: no archived log generation to damage")

    def _unload_all(self) -> None:
        media = self.sim.site.media
        for number in media.drives.numbers:
            media.unload(number)

    def _rows(self, status: str) -> list[dict]:
        here = set(self.sim.site.media.library_barcodes())
        for barcode in here:
            self.sim.site.media.ensure_known(barcode)
        return [r for r in self.sim.site.catalog.media() if r["barcode"] in here and r["status"] == status]

    def _edit_cartridge(self, barcode: str, change) -> None:
        cartridge = Cartridge.open(self.sim.cartridge_path(barcode))
        try:
            change(cartridge)
            cartridge.save()
        finally:
            cartridge.close()

    def _write_protect(self) -> None:
        """Flip the switch on the cartridge the next backup would pick (an appendable one, else a blank)."""
        self._unload_all()
        rows = self._rows("append") or self._rows("blank")
        if not rows:
            raise MailtapeError("no cartridge to write-protect")
        self._edit_cartridge(rows[0]["barcode"], lambda c: c.set_write_protect(True))

    def _swap_cartridges(self) -> None:
        """Two cartridges' tapes swapped behind the catalog's back (mislabelled barcodes)."""
        self._unload_all()
        holding, blank = self._rows("append"), self._rows("blank")
        if not holding or not blank:
            raise MailtapeError("wrong-cartridge needs a cartridge with data and a blank one")
        first, second = self.sim.cartridge_path(holding[0]["barcode"]), self.sim.cartridge_path(blank[0]["barcode"])
        spare = first.with_suffix(".swap")
        os.replace(first, spare)
        os.replace(second, first)
        os.replace(spare, second)
        self.media_tampered = True

    def _shrink_cartridges(self) -> None:
        """Early end of medium: every cartridge with data reaches early warning within 1 MiB."""
        self._unload_all()
        for row in self._rows("append"):
            def shrink(cartridge):
                cartridge.meta["early_warning_bytes"] = 256 << 10
                cartridge.meta["capacity_bytes"] = cartridge.used_bytes + (1 << 20)
            self._edit_cartridge(row["barcode"], shrink)

    def _disaster(self, storage_group=None):
        group = self._group(storage_group)
        self.disasters[group] = self.sim.database_truth(group)
        self.sim.lose_databases(group)
        self._forget_store_faults(group)
        return "ok", f"the database files of {group} are lost"

    def _forget_store_faults(self, group: str) -> None:
        """The stores were replaced (restore) or lost (disaster): their damage or dismount is gone."""
        self.pending_exchange = [(k, g) for k, g in self.pending_exchange
                                 if not (g == group and k in UNREPORTABLE_SILENTLY)]

    def _restore(self, mode: str, storage_group=None, backup=None, target: str = "original"):
        sim = self.sim
        group = self._group(storage_group)
        points = [p for p in sim.history if p.storage_group == group]
        point = None
        if backup is not None:
            point = next((p for p in sim.history if p.number == backup), None)
            if point is None or point.storage_group != group:
                raise MailtapeError(f"backup {backup} is not a backup of {group} in this scenario")
        elif points:
            point = points[-1]
        if target == "recovery-storage-group":
            return self._restore_to_rsg(group, mode, point)
        if mode == "roll-forward":  # replays the current logs after the chain, whichever set it ends at
            expected = self.disasters.get(group) or sim.database_truth(group)
            claim = "the state just before the " + ("disaster" if group in self.disasters else "restore")
        else:
            if point is None:
                raise MailtapeError(f"no backup of {group} to restore")
            expected = point.databases
            claim = f"the state at backup {point.number}"
        sim.prepare_overwrite(group)
        result, chain = sim.run(restore_storage_group(sim.site, sim.api, group, mode=mode,
                                                      set_id=point.set_id if backup is not None else None))
        sim.stats.restores += 1
        self.disasters.pop(group, None)
        self._forget_store_faults(group)
        actual = sim.database_truth(group)
        for name in result.databases:
            if name not in expected:
                continue
            if actual.get(name) != expected[name]:
                raise InvariantViolation(
                    f"{mode} restore of {group}/{name} (sets {[s.id for s in chain]}) differs from {claim}: "
                    + _describe_difference(expected[name], actual.get(name, {})))
        return "ok", f"{mode} restore of {group} from sets {[s.id for s in chain]} equals {claim}"

    def _restore_to_rsg(self, group: str, mode: str, point):
        sim = self.sim
        exchange = sim.exchange
        if point is None:
            raise MailtapeError(f"no backup of {group} to restore")
        rsg = exchange.recovery_storage_group
        if rsg is not None:
            exchange.remove_recovery_storage_group()
        databases = [name for name in sim.databases(group) if name in point.databases]
        exchange.create_recovery_storage_group([(group, name) for name in databases])
        rsg = exchange.recovery_storage_group
        live = sim.database_truth(group)
        result, chain = sim.run(restore_storage_group(sim.site, sim.api, group, mode=mode, set_id=point.set_id))
        sim.stats.restores += 1
        if not result.redirected_to_rsg:
            raise InvariantViolation(f"restore of {group} with a Recovery Storage Group was not redirected to it")
        if sim.database_truth(group) != live:
            raise InvariantViolation(f"restore into the Recovery Storage Group changed the live stores of {group}")
        for name in result.databases:
            if not exchange.is_mounted(rsg.name, name):
                exchange.mount(rsg.name, name)
            actual = exchange.database(rsg.name, name).snapshot()
            if actual != point.databases.get(name):
                raise InvariantViolation(f"{name} restored into the Recovery Storage Group differs from backup "
                                         f"{point.number}: " + _describe_difference(point.databases[name], actual))
        return "ok", f"restored {group} into the Recovery Storage Group from sets {[s.id for s in chain]}"

    def _mailbox_restore(self, mailbox: str, folder=None, to=None, conflict: str = "skip"):
        from scenarios.brick import mailbox_restore

        fresh = to is not None and to not in self.sim.store().list_mailboxes()
        result, truth = mailbox_restore(self.sim, mailbox, folder, to, conflict)
        self.sim.stats.restores += 1
        if not result.ok:
            return "failed", "; ".join(f"{a.folder}: {reason}" for a, reason in result.failed[:3])
        self._check_mailbox(truth, mailbox, folder, to or mailbox, exact=fresh)
        return "ok", f"mailbox {mailbox} restored to {to or mailbox}: {len(result.done)} actions"

    def _check_mailbox(self, truth: dict, mailbox: str, folder, target: str, exact: bool) -> None:
        from collections import Counter

        from reference.agent.brick.model import display_path

        now = self.sim.mailbox_truth([target])[target]
        for path, facts in truth.get(mailbox, {}).items():
            if folder and not display_path(path).startswith(folder.rstrip("*").rstrip("/")):
                continue
            # In place with "skip", an item already there keeps its current flags (documented
            # policy); identity is Message-ID + body. A fresh mailbox must match flags too.
            key = (lambda i: (i[1], i[2], i[4], i[7])) if exact else (lambda i: (i[1], i[4], i[7]))
            want = Counter(key(i) for i in facts["items"])
            there = now.get(path)
            if there is None:
                raise InvariantViolation(f"mailbox restore: folder {display_path(path)!r} of {mailbox} "
                                         f"is missing from {target}")
            got = Counter(key(i) for i in there["items"])
            short = want - got
            if short or (exact and got != want):
                raise InvariantViolation(
                    f"mailbox restore: {target}/{display_path(path)} holds {sum(got.values())} items, the backup "
                    f"had {sum(want.values())} ({sum(short.values())} missing)")

    def _verify(self):
        report = self.verify_media()
        if report.ok:
            return "ok", f"{report.sets} data sets, {report.objects} objects verified against the catalog"
        return "failed", f"{len(report.problems)} problems: {report.problems[0]}"

    # -- invariants ------------------------------------------------------------------------------

    def verify_media(self):
        reader = self.sim.site.reader()
        try:
            report = reader.verify()
        finally:
            reader.close()
        if not report.ok and not self.media_tampered:
            raise InvariantViolation(f"the catalog disagrees with the media: {report.problems[0]}")
        return report

    def check_catalog(self) -> None:
        catalog = self.sim.site.catalog
        committed = catalog.data_sets()
        ids = {d.id for d in committed}
        for data_set in committed:
            job = catalog.job(data_set.job_id) if data_set.job_id else None
            if job is not None and job["status"] == "failed":
                raise InvariantViolation(f"data set {data_set.id} is committed but its job {job['id']} failed")
        for point in self.sim.history:
            if point.set_id not in ids:
                raise InvariantViolation(f"backup {point.number} (data set {point.set_id}) is not in the catalog")

    def outcome(self) -> str:
        if any(s.status == "failed" for s in self.steps):
            return "reported"
        reported = any("not backed up" in s.message for s in self.steps)
        if reported:
            return "reported"
        if self.faults or self.warned:
            return "survived"
        return "verified"


def run_scenario(scenario: Scenario, workdir: str | Path | None = None, *, keep: bool = False) -> ScenarioResult:
    """Build a fresh simulated site, run every step, check the invariants, report the outcome."""
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix=f"scenario-{scenario.name}-", dir=workdir))
    sim = None
    result = ScenarioResult(scenario.name, scenario.expect["outcome"], "error")
    try:
        sim = SimulatedSite.create(root, scenario.site, scenario.seed)
        runner = Runner(sim)
        try:
            for index, step in enumerate(scenario.steps):
                runner.execute(step, index)
            runner.verify_media()
            result.outcome = runner.outcome()
        except InvariantViolation as violation:
            result.violations.append(str(violation))
            result.outcome = "violated"
        result.steps = runner.steps
        result.faults = runner.faults
        result.virtual_seconds = sim.clock.elapsed()
        result.bytes = sim.stats.bytes
        result.cartridges = sim.cartridges_used()
        result.backhitches = sim.backhitches()
        result.backups = sim.stats.backups
        result.restores = sim.stats.restores
    finally:
        if sim is not None:
            try:
                sim.close()
            except Exception as error:  # noqa: BLE001 - closing a site broken by a fault must not hide the result
                log.debug("closing the simulated site: %s", error)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        result.wall_seconds = time.perf_counter() - started
    return result


__all__ = ["Runner", "ScenarioResult", "StepOutcome", "run_scenario"]
