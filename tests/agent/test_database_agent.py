"""The database-level agent end to end: Exchange emulator → agent → backup server → emulated library.

Issue 6's tests: every backup type and both restore modes; conversions and per-database failures;
a failure injected at every step of a backup never truncates logs before the catalog commit.
"""

from __future__ import annotations

import glob
import os

import pytest

from emulators.clock import VirtualClock
from emulators.exchange import ExchangeServer, faults
from emulators.exchange.mailbox_store import ServerMailboxStore, snapshot
from emulators.exchange.workload import Workload, populate
from reference.agent.database_backup import StorageGroupBackup
from reference.errors import NotFoundError
from reference.jobs import backup_storage_groups, restore_storage_group
from reference.server.site import create_site, open_site

SG1 = "First Storage Group"
LOG_SIZE = 64 * 1024


class Site:
    """A small site: library with tiny cartridges, Exchange 2003 with two stores in SG1."""

    def __init__(self, root, cartridge_mb: int = 4, mail_mb: float = 2.0):
        self.clock = VirtualClock()
        create_site(root, drives=2, slots=8, cartridges=8, capacity_bytes=cartridge_mb << 20, settings={"seed": 3})
        self.exchange = ExchangeServer.create(root / "exchange", storage_groups=2, databases=1, clock=self.clock,
                                              seed=3, log_file_size=LOG_SIZE)
        self.exchange.add_database(SG1)
        self.store = ServerMailboxStore.for_server(self.exchange)
        populate(self.store, int(mail_mb * (1 << 20)), seed=3, mailboxes=6, clock=self.clock)
        self.site = open_site(root, clock=self.clock)
        self.api = self.exchange.backup_api()

    def backup(self, level: str, groups=(SG1,), **kw):
        return self.site.runtime.run(backup_storage_groups(self.site, self.api, list(groups), level, **kw))

    def restore(self, group: str = SG1, **kw):
        return self.site.runtime.run(restore_storage_group(self.site, self.api, group, **kw))

    def activity(self, n: int = 30, seed: int = 1):
        Workload(self.store, self.clock, seed=seed).run(n)

    def logs(self, group: str = SG1) -> set[str]:
        folder = os.path.dirname(faults.log_path(self.exchange, group, 1))
        return {os.path.basename(p) for p in glob.glob(os.path.join(folder, "E0*.log"))}

    def mail(self, group: str = SG1) -> dict:
        """The mailbox view of one storage group's stores (what restoring that group brings back)."""
        store = ServerMailboxStore.for_server(self.exchange)
        names = [m for m, (sg, _db) in store.directory().items() if sg == group]
        return snapshot(store, names)

    def lose_databases(self, group: str = SG1) -> None:
        for db in self.exchange.storage_group(group).databases:
            self.exchange.dismount(group, db.name)
            for rel in db.files:
                os.remove(self.exchange.abspath(rel))
            self.exchange.set_allow_restore_overwrite(group, db.name, True)

    def close(self):
        self.site.close()
        if self.exchange.running:
            self.exchange.shutdown()


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path / "site")
    yield s
    s.close()


def test_full_backup_spans_cartridges_and_truncates_after_commit(tmp_path):
    s = Site(tmp_path / "site", cartridge_mb=2, mail_mb=3)
    try:
        s.activity(60)
        before = s.logs()
        [result] = s.backup("full")
        assert result.status == "ok" and result.truncated
        assert len(result.receipt.barcodes) >= 2, "a 3 MiB store on 2 MiB cartridges must span"
        assert s.logs() < before | s.logs(), "truncation removed old generations"
        record = s.site.catalog.data_set(result.receipt.data_set_id)
        assert record.backup_type == "full" and record.log_gen_low == result.log_gen_low
        assert {o.kind for o in record.objects} == {"metadata", "stream", "log"}
    finally:
        s.close()


def test_incremental_without_a_full_in_the_catalog_is_converted_with_a_warning(site):
    """ARCserve W8644: no full backup of the group in the catalog → full + warning (even when
    Exchange itself would accept LOGS_ONLY, e.g. with every store dismounted)."""
    [result] = site.backup("incremental")
    assert result.level == "full" and result.status == "warning"
    assert "no full backup" in result.warnings[0]


def test_incremental_after_a_new_store_is_converted_on_exchanges_answer(site):
    """ese-backup-api.md §6 behaviour 3 seen from the agent: a store added after the last full has
    no full of its own → -560 at setup → full + warning."""
    site.backup("full")
    site.exchange.add_database(SG1)
    [result] = site.backup("incremental")
    assert result.level == "full" and result.status == "warning"
    assert "no previous full backup exists for every database" in result.warnings[0]


def test_circular_logging_converts_differential_to_full(site):
    """Behaviour 2 seen from the agent: -526 at setup → full + warning (ARCserve W8644)."""
    site.backup("full")
    faults.set_circular_logging(site.exchange, SG1, True)
    [result] = site.backup("differential")
    assert result.level == "full" and "circular logging" in result.warnings[0]


def test_unmounted_database_is_reported_and_the_group_still_backs_up(site):
    """Behaviour 11: -1203 for one store; the other store and the logs are on tape."""
    second = site.exchange.storage_group(SG1).databases[1].name
    faults.dismount(site.exchange, SG1, second)
    [result] = site.backup("full")
    assert result.status == "warning"
    outcome = {d.name: d.status for d in result.databases}
    assert outcome[second] == "failed" and list(outcome.values()).count("ok") == 1
    assert result.receipt is not None and result.log_files


def test_corrupt_page_fails_only_that_database(site):
    """Behaviour 12: -1018 while reading one store; zero-filled, marked corrupt (CFIL), group goes on."""
    first = site.exchange.storage_group(SG1).databases[0].name
    site.exchange.flush()
    faults.corrupt_page(site.exchange, SG1, first, pgno=3)
    [result] = site.backup("full")
    outcome = {d.name: d for d in result.databases}
    assert outcome[first].status == "failed" and "-1018" in outcome[first].error
    assert result.status == "warning" and result.receipt is not None


def test_corrupt_log_fails_the_group_and_truncates_nothing(site):
    """Behaviour 13: -612 in the log phase aborts the instance; nothing committed, no truncation."""
    site.backup("full")
    site.activity(40)
    generations = sorted(int(name[3:8], 16) for name in site.logs() if len(name) == len("E0000001.log"))
    faults.corrupt_log(site.exchange, SG1, generations[0])
    before = site.logs()
    [result] = site.backup("incremental")
    assert result.status == "failed" and "-612" in result.error
    assert site.logs() >= before, "no log may be deleted (the forced log roll adds one)"
    assert len(site.site.catalog.data_sets(storage_group=SG1)) == 1


def test_unknown_storage_group_changes_nothing(site):
    with pytest.raises(NotFoundError, match="storage group 'Nope' not found"):
        site.backup("full", groups=("Nope",))
    assert site.site.catalog.data_sets() == [] and site.site.catalog.jobs() == []


def test_full_incremental_roll_forward_restore_equals_state_before_disaster(site):
    site.backup("full")
    site.activity(40, seed=2)
    site.backup("incremental")
    site.activity(40, seed=3)  # only in the current logs: roll-forward must bring these back too
    site.exchange.flush()
    truth = site.mail()
    site.lose_databases()
    result, chain = site.restore(mode="roll-forward")
    assert [s.backup_type for s in chain] == ["full", "incremental"]
    assert site.mail() == truth


def test_full_differential_point_in_time_restore_equals_state_at_backup(site):
    site.backup("full")
    site.activity(40, seed=2)
    site.backup("differential")
    site.activity(20, seed=3)
    [diff] = site.backup("differential")
    truth = site.mail()
    site.activity(40, seed=4)  # after the backup: a point-in-time restore must not show it
    site.lose_databases()
    result, chain = site.restore(mode="point-in-time", set_id=diff.receipt.data_set_id)
    assert [s.backup_type for s in chain] == ["full", "differential"]
    assert site.mail() == truth


def test_copy_backup_leaves_the_incremental_chain_alone(site):
    """Behaviour 10 end to end: full, copy, incremental; the incremental restores on top of the full."""
    site.backup("full")
    site.activity(20, seed=2)
    [copy] = site.backup("copy")
    assert copy.level == "copy" and not copy.truncated
    site.activity(20, seed=3)
    [inc] = site.backup("incremental")
    assert inc.level == "incremental" and inc.status == "ok"
    truth = site.mail()
    site.lose_databases()
    _, chain = site.restore(mode="point-in-time", set_id=inc.receipt.data_set_id)
    assert [s.backup_type for s in chain] == ["full", "incremental"]
    assert site.mail() == truth


def test_restore_into_a_mounted_database_is_refused_and_changes_nothing(site):
    site.backup("full")
    files = {rel: os.path.getsize(site.exchange.abspath(rel))
             for db in site.exchange.storage_group(SG1).databases for rel in db.files}
    with pytest.raises(Exception, match="dismounted|in use"):
        site.restore()
    assert {rel: os.path.getsize(site.exchange.abspath(rel)) for rel in files} == files


# -- failure injected at every step -------------------------------------------------------------


class InjectedFailure(Exception):
    pass


class StepCounter:
    """Counts agent-visible steps (API calls and transfer calls) and fails the k-th one."""

    def __init__(self, fail_at: int | None, catalog):
        self.fail_at = fail_at
        self.steps = 0
        self.names: list[str] = []
        self.catalog = catalog
        self.truncated_after_commit: list[bool] = []

    def tick(self, what: str) -> None:
        self.steps += 1
        self.names.append(what)
        if self.fail_at is not None and self.steps == self.fail_at:
            raise InjectedFailure(f"failure injected at step {self.steps} ({what})")


class CountingContext:
    def __init__(self, inner, counter: StepCounter, sets_before: int):
        self._inner, self._counter, self._sets_before = inner, counter, sets_before
        self.instances = inner.instances

    def __getattr__(self, name):
        method = getattr(self._inner, name)

        def call(*args, **kwargs):
            if name == "truncate_logs":
                committed = len(self._counter.catalog.data_sets()) > self._sets_before
                self._counter.truncated_after_commit.append(committed)
            if name not in ("end", "instance_end"):
                self._counter.tick(name)
            return method(*args, **kwargs)

        return call


class CountingApi:
    def __init__(self, inner, counter, sets_before):
        self._inner, self._counter, self._sets_before = inner, counter, sets_before
        self.server_name = inner.server_name

    def backup_prepare(self, annotation="Microsoft Information Store"):
        self._counter.tick("backup_prepare")
        return CountingContext(self._inner.backup_prepare(annotation), self._counter, self._sets_before)


class CountingSession:
    def __init__(self, inner, counter):
        self._inner, self._counter = inner, counter
        self.set_number = inner.set_number

    async def send(self, chunk):
        self._counter.tick("send")
        await self._inner.send(chunk)

    async def finish(self, trailer):
        self._counter.tick("finish")
        return await self._inner.finish(trailer)

    async def abort(self, reason):
        await self._inner.abort(reason)


def _attempt(s: Site, level: str, fail_at: int | None) -> StepCounter:
    counter = StepCounter(fail_at, s.site.catalog)
    api = CountingApi(s.api, counter, len(s.site.catalog.data_sets()))

    async def open_session(info):
        return CountingSession(await s.site.server.open_session(info), counter)

    async def run():
        job = StorageGroupBackup(api, SG1, level, open_session=open_session, runtime=s.site.runtime,
                                 read_size=256 * 1024)
        try:
            return await job.run()
        finally:
            await s.site.server.drain()

    try:
        s.site.runtime.run(run())
    except InjectedFailure:
        pass
    return counter


@pytest.mark.parametrize("level", ["full", "incremental"])
def test_failure_at_every_step_never_truncates_before_the_catalog_commit(tmp_path, level):
    """Issue 6: whatever step fails, logs stay unless the data set was committed first; the next
    backup is still complete."""
    s = Site(tmp_path / "site", cartridge_mb=64, mail_mb=0.5)
    try:
        if level == "incremental":
            s.backup("full")
        s.activity(20)
        clean = _attempt(s, "differential" if level == "incremental" else "copy", None)  # same steps, no truncation
        assert clean.steps > 10
        # Every step that is not a bulk read/send, and the first and last of each run of those.
        bulk = ("read_file", "send")
        chosen = [k for k, name in enumerate(clean.names, 1)
                  if name not in bulk
                  or clean.names[k - 2] not in bulk
                  or k == len(clean.names) or clean.names[k] not in bulk]
        for k in chosen + [clean.steps + 1]:
            s.activity(3, seed=k)
            sets_before = len(s.site.catalog.data_sets())
            logs_before = s.logs()
            counter = _attempt(s, level, k)
            committed = len(s.site.catalog.data_sets()) > sets_before
            assert all(counter.truncated_after_commit), f"step {k}: truncate_logs before the catalog commit"
            if not committed:
                assert s.logs() >= logs_before, f"step {k}: logs deleted although nothing was committed"
        [final] = s.backup(level)
        assert final.status in ("ok", "warning") and final.truncated
    finally:
        s.close()
