"""The demo: one site's whole life — backups, a disaster, restores — verified against ground truth.

In a fresh work folder: an emulated Exchange 2003 server (two storage groups, three stores, a few
hundred mailboxes, about 0.5 GiB of mail), a tape library (two LTO-9 drives, ten slots, cartridges
small enough that the backups span tapes), then

    full → mail activity → incremental → activity → differential → disaster (database files
    deleted) → roll-forward restore → verify every database page and every mailbox item equals the
    state just before the disaster → more activity → point-in-time restore of the chain ending at the
    incremental into the Recovery Storage Group → verify it equals the state at that backup.

"Equal" means every record, every mailbox item and every data page of every database file (the
two header pages aside: a restore rightly rewrites backup information and state there), compared
with the emulator's ground truth (emulators/exchange/ground_truth.py).

Everything runs on one virtual clock, so the tape timing model (buffer, speed matching,
backhitches) is simulated while the data really flows through files. The site stays in the work
folder for exploring with the CLI (``mailtape catalog ls DIR``, ``mailtape mtx -f DIR/library
status``, ``mailtape exchange status DIR/exchange``...).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from emulators.clock import VirtualClock
from emulators.exchange import ground_truth
from reference.errors import MailtapeError

MIB = 1 << 20


@dataclass
class DemoSettings:
    size_mb: float = 512
    mailboxes: int = 300
    activity_messages: int = 400
    cartridges: int = 10
    cartridge_mb: int = 192
    seed: int = 1
    log_file_size: int | None = None  # None: Exchange 2003's real 5 MiB
    exchange_read_rate: float = 250e6
    """Bytes/s the emulated server's disks deliver to the backup API (virtual time)."""


@dataclass
class StepRecord:
    step: str
    detail: str
    wall_seconds: float
    virtual_seconds: float
    ok: bool = True
    extra: dict = field(default_factory=dict)


class Demo:
    def __init__(self, workdir: Path, settings: DemoSettings, console: Console):
        self.workdir = Path(workdir)
        self.settings = settings
        self.console = console
        self.clock = VirtualClock()
        self.steps: list[StepRecord] = []
        self.backups: list[dict] = []
        self.restores: list[dict] = []
        self.checks: list[dict] = []

    # -- driver -------------------------------------------------------------------------------

    def run(self) -> dict:
        from emulators.exchange import ExchangeServer
        from emulators.exchange.mailbox_store import ServerMailboxStore
        from reference.server.site import create_site, open_site

        s = self.settings
        if self.workdir.exists() and any(self.workdir.iterdir()):
            raise MailtapeError(f"{self.workdir}: work folder is not empty; choose a new one (or delete it)")
        started = time.monotonic()
        with self._step("create site", "library: 2 × LTO-9 drives, 10 slots, "
                        f"{s.cartridges} cartridges of {s.cartridge_mb} MiB"):
            create_site(self.workdir, drives=2, slots=10, cartridges=s.cartridges, media="LTO-9",
                        capacity_bytes=s.cartridge_mb * MIB, settings={"seed": s.seed})
        with self._step("create Exchange 2003 server", "2 storage groups, 3 stores"):
            self.server = ExchangeServer.create(self.workdir / "exchange", profile="2003", storage_groups=2,
                                                databases=1, server_name="EXCH01", clock=self.clock, seed=s.seed,
                                                log_file_size=s.log_file_size)
            self.server.add_database("First Storage Group")
            self.store = ServerMailboxStore.for_server(self.server)
        self._populate()
        self.site = open_site(self.workdir, clock=self.clock)
        try:
            from emulators.exchange.latency import with_read_latency

            self.api = with_read_latency(self.server.backup_api(), s.exchange_read_rate)
            full = self._backup("full")
            self._activity()
            incremental = self._backup("incremental")
            truth_at_incremental = ground_truth.server_truth(self.server, ["First Storage Group"])
            self._activity()
            self._backup("differential")
            self._disaster_and_roll_forward()
            self._activity()
            self._point_in_time_into_rsg(incremental, truth_at_incremental)
            report = self._report(time.monotonic() - started, full)
        finally:
            self._close()
        return report

    def _close(self) -> None:
        from reference.cli.commands.exchange import save_clock

        site = getattr(self, "site", None)
        if site is not None:
            site.close()
        server = getattr(self, "server", None)
        if server is not None and server.running:
            save_clock(server)
            server.shutdown()

    # -- steps --------------------------------------------------------------------------------

    def _populate(self) -> None:
        from emulators.exchange.workload import populate
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        s = self.settings
        with self._step("populate", f"{s.mailboxes} mailboxes, {s.size_mb:.0f} MiB of mail") as record:
            with Progress(TextColumn("  populating"), BarColumn(), DownloadColumn(), console=self.console,
                          transient=True) as bar:
                task = bar.add_task("populate", total=int(s.size_mb * MIB))
                report = populate(self.store, int(s.size_mb * MIB), seed=s.seed, mailboxes=s.mailboxes,
                                  clock=self.clock, progress=lambda done, total: bar.update(task, completed=done))
            record.detail = (f"{report.mailboxes} mailboxes, {report.items:,} items, "
                             f"{report.bytes / MIB:,.0f} MiB")
            self.server.flush()

    def _activity(self) -> None:
        from emulators.exchange.workload import Workload

        n = self.settings.activity_messages
        with self._step("mail activity", f"{n} deliveries with reads, moves, deletes") as record:
            report = Workload(self.store, self.clock, seed=self.settings.seed + len(self.steps)).run(n)
            record.detail = f"{report.operations['deliver']} deliveries, {report.bytes_delivered / MIB:.1f} MiB"

    def _backup(self, level: str) -> dict:
        from reference.cli.commands.backup import progress_bar, result_dict
        from reference.jobs import backup_storage_groups

        with self._step(f"{level} backup", "both storage groups, concurrently") as record:
            with progress_bar(self.console) as bar:
                task = bar.add_task(f"  {level} backup", total=None, current="")
                results = self.site.runtime.run(backup_storage_groups(
                    self.site, self.api, None, level,
                    progress=lambda name, n: bar.update(task, advance=n, current=name)))
            rows = [result_dict(r) for r in results]
            failed = [r for r in rows if r["status"] == "failed"]
            if failed:
                raise MailtapeError(f"{level} backup failed: {failed[0]['error']}")
            record.detail = "; ".join(
                f"{r['storage_group']}: set {r['data_set']}, {r['bytes'] / MIB:.0f} MiB on {', '.join(r['cartridges'])}"
                for r in rows)
            record.extra = {"results": rows}
        self.backups.append({"level": level, "results": rows, "virtual_time": self.clock.now()})
        return {r["storage_group"]: r["data_set"] for r in rows}

    def _disaster_and_roll_forward(self) -> None:
        from emulators.exchange.mailbox_store import ServerMailboxStore, snapshot
        from reference.jobs import restore_storage_group

        with self._step("ground truth", "record and page digests, mailbox view before the disaster") as record:
            self.server.flush()
            truth = ground_truth.server_truth(self.server)
            truth_mail = snapshot(self.store)
            pages = sum(f["pgno_last"] for files in truth["pages"].values() for f in files)
            record.detail = (f"{len(truth['databases'])} stores, {pages:,} data pages, "
                             f"{sum(len(f) for f in truth_mail.values())} mailbox folders")
        with self._step("disaster", "every database file deleted") as record:
            deleted = []
            for group in self.server.storage_groups:
                for db in group.databases:
                    self.server.dismount(group.name, db.name)
                    for rel in db.files:
                        path = self.server.abspath(rel)
                        os.remove(path)
                        deleted.append(os.path.basename(path))
            record.detail = f"deleted {', '.join(deleted)}"
        for group in [g for g in self.server.storage_groups if not g.recovery]:
            with self._step("restore (roll-forward)", group.name) as record:
                for db in group.databases:
                    self.server.set_allow_restore_overwrite(group.name, db.name, True)
                result, chain = self.site.runtime.run(restore_storage_group(self.site, self.api, group.name))
                record.detail = (f"{group.name}: sets {'+'.join(f'{s.id}({s.backup_type})' for s in chain)}, "
                                 f"{result.bytes / MIB:.0f} MiB, {result.logs} logs")
                self.restores.append({"storage_group": group.name, "mode": "roll-forward",
                                      "sets": [s.id for s in chain], "bytes": result.bytes})
        with self._step("verify roll-forward", "records, pages and mailbox items vs the state before the disaster") as record:
            checks = ground_truth.compare_truths(truth, ground_truth.server_truth(self.server))
            self.store = ServerMailboxStore.for_server(self.server)  # the restored stores are new databases
            mail_equal = snapshot(self.store) == truth_mail
            record.ok = all(c.ok for c in checks) and mail_equal
            items = sum(len(folder["items"]) for mailbox in truth_mail.values() for folder in mailbox.values())
            record.detail = (f"{_databases_detail(checks)}; "
                             f"{items:,} mailbox items {'equal' if mail_equal else 'DIFFER'}")
            self.checks.append({"check": "roll-forward restore equals state before disaster (records, pages, items)",
                                "stores": len(checks), "items": items, **_pages_fields(checks), "ok": record.ok})

    def _point_in_time_into_rsg(self, incremental: dict, truth: dict) -> None:
        from reference.jobs import restore_storage_group

        group = "First Storage Group"
        with self._step("restore (point-in-time)", f"{group} at its incremental, into the Recovery Storage Group") as record:
            databases = [db.name for db in self.server.storage_group(group).databases]
            self.server.create_recovery_storage_group([(group, name) for name in databases])
            result, chain = self.site.runtime.run(restore_storage_group(
                self.site, self.api, group, mode="point-in-time", set_id=incremental[group]))
            record.detail = (f"sets {'+'.join(f'{s.id}({s.backup_type})' for s in chain)} → "
                             f"{'Recovery Storage Group' if result.redirected_to_rsg else 'original location'}")
            self.restores.append({"storage_group": group, "mode": "point-in-time", "sets": [s.id for s in chain],
                                  "bytes": result.bytes, "recovery_storage_group": result.redirected_to_rsg})
        with self._step("verify point-in-time", "Recovery Storage Group vs the state at the incremental") as record:
            restored = ground_truth.as_originals(ground_truth.server_truth(self.server, recovery=True),
                                                 truth["databases"])
            checks = ground_truth.compare_truths(truth, restored)
            record.ok = all(c.ok for c in checks) and result.redirected_to_rsg
            record.detail = _databases_detail(checks)
            self.checks.append({"check": "point-in-time restore into RSG equals state at the incremental (records, pages)",
                                "stores": len(checks), **_pages_fields(checks), "ok": record.ok})

    # -- reporting ----------------------------------------------------------------------------

    class _StepContext:
        def __init__(self, demo: "Demo", record: StepRecord):
            self.demo, self.record = demo, record

        def __enter__(self) -> StepRecord:
            self.wall = time.monotonic()
            self.virtual = self.demo.clock.now()
            self.demo.console.print(f"[bold cyan]▶[/] {self.record.step}: {self.record.detail}")
            return self.record

        def __exit__(self, exc_type, exc, tb) -> bool:
            self.record.wall_seconds = time.monotonic() - self.wall
            self.record.virtual_seconds = self.demo.clock.now() - self.virtual
            if exc_type is not None:
                self.record.ok = False
            mark = "[green]✓[/]" if self.record.ok else "[red]✗[/]"
            self.demo.console.print(f"  {mark} {self.record.detail} "
                                    f"[dim]({self.record.wall_seconds:.1f} s, {self.record.virtual_seconds:,.0f} s virtual)[/]")
            self.demo.steps.append(self.record)
            return False

    def _step(self, step: str, detail: str) -> "_StepContext":
        return self._StepContext(self, StepRecord(step, detail, 0.0, 0.0))

    def _drive_stats(self) -> dict:
        stats = {}
        for number, drive in sorted(self.site._live.items()):
            timing = getattr(drive, "timing", None)
            if timing is None:
                continue
            c = timing.counters
            stats[f"drive{number}"] = {
                "bytes_written": c.bytes_written, "bytes_read": c.bytes_read, "backhitches": c.backhitches,
                "seconds_at_step": {str(k): v for k, v in sorted(c.seconds_at_step.items())},
                "host_wait_seconds": c.host_wait_seconds, "motion_seconds": c.motion_seconds,
                "buffer_series": c.buffer_series,
            }
        return stats

    def _report(self, wall: float, full: dict) -> dict:
        catalog = self.site.catalog
        sets = catalog.data_sets()
        objects = sum(len(catalog.objects(s.id)) for s in sets)
        written = sum(s.bytes for s in sets)
        cartridges = sorted({b for s in sets for b in catalog.cartridges_of(s.id)})
        drives = self._drive_stats()
        backhitches = sum(d["backhitches"] for d in drives.values())
        backup_virtual = sum(st.virtual_seconds for st in self.steps if st.step.endswith("backup"))
        backup_bytes = sum(r["bytes"] for b in self.backups for r in b["results"])
        streaming_seconds = sum(sum(d["seconds_at_step"].values()) for d in drives.values())
        streamed = sum(d["bytes_written"] for d in drives.values())
        verified = all(c["ok"] for c in self.checks) and len(self.checks) == 2
        plot = self._plot(drives)
        report = {
            "verified": verified,
            "seed": self.settings.seed,
            "workdir": str(self.workdir),
            "wall_seconds": round(wall, 2),
            "virtual_seconds": round(self.clock.elapsed(), 2),
            "data_sets": len(sets),
            "objects": objects,
            "bytes_on_media": written,
            "backup_bytes": backup_bytes,
            "backup_window_virtual_seconds": round(backup_virtual, 1),
            "tape_streaming_mb_per_s": round(streamed / 1e6 / streaming_seconds, 1) if streaming_seconds else None,
            "cartridges_used": cartridges,
            "backhitches": backhitches,
            "checks": self.checks,
            "backups": self.backups,
            "restores": self.restores,
            "steps": [{"step": st.step, "detail": st.detail, "ok": st.ok, "wall_seconds": round(st.wall_seconds, 2),
                       "virtual_seconds": round(st.virtual_seconds, 2)} for st in self.steps],
            "drives": {k: {kk: vv for kk, vv in v.items() if kk != "buffer_series"} for k, v in drives.items()},
            "plot": plot,
        }
        (self.workdir / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        table = Table(title="mailtape demo")
        table.add_column("")
        table.add_column("", justify="right")
        for label, value in (
            ("data sets", str(len(sets))),
            ("objects", f"{objects:,}"),
            ("bytes on media", f"{written / MIB:,.0f} MiB"),
            ("backup window (virtual, incl. robot, loads, labels)", f"{backup_virtual / 60:,.1f} min"),
            ("LTO-9 streaming rate while writing", f"{report['tape_streaming_mb_per_s']} MB/s"),
            ("cartridges used", f"{len(cartridges)} ({', '.join(cartridges)})"),
            ("backhitches", str(backhitches)),
            ("virtual time", f"{self.clock.elapsed() / 60:,.1f} min"),
            ("wall time", f"{wall:,.1f} s"),
            ("verified", "[green]yes[/]" if verified else "[red]NO[/]"),
        ):
            table.add_row(label, value)
        self.console.print(table)
        self.console.print(f"report: {self.workdir / 'report.json'}" + (f"; plot: {plot}" if plot else ""))
        self.console.print(f"explore: mailtape catalog ls {self.workdir} · mailtape mtx -f {self.workdir / 'library'} "
                           f"status · mailtape exchange status {self.workdir / 'exchange'}")
        return report

    def _plot(self, drives: dict) -> str | None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not drives:
            return None
        figure, (fill_axis, speed_axis) = plt.subplots(2, 1, figsize=(10, 7))
        for name, stats in drives.items():
            series = stats["buffer_series"]
            if series:
                fill_axis.step([t / 60 for t, _ in series], [f / MIB for _, f in series], where="post",
                               label=name, linewidth=0.8)
        fill_axis.set_xlabel("virtual time since the drive was opened (min)")
        fill_axis.set_ylabel("drive buffer fill (MiB)")
        fill_axis.set_title("Drive buffer fill over time")
        fill_axis.legend()
        width = 0.8 / max(1, len(drives))
        for index, (name, stats) in enumerate(drives.items()):
            steps = sorted((float(k), v) for k, v in stats["seconds_at_step"].items())
            speed_axis.bar([i + index * width for i in range(len(steps))], [v for _, v in steps], width=width,
                           label=name)
            speed_axis.set_xticks([i + width / 2 for i in range(len(steps))], [f"{k:g}" for k, _ in steps])
        speed_axis.set_xlabel("speed-matching step (MB/s)")
        speed_axis.set_ylabel("seconds of tape motion")
        speed_axis.set_title("Time at each speed step while writing")
        speed_axis.legend()
        figure.tight_layout()
        path = self.workdir / "drives.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return str(path)


def _databases_detail(checks) -> str:
    """"3 stores: records equal; 134,612 data pages equal", or the counts and the first difference."""
    pages = sum(c.pages for c in checks)
    if all(c.ok for c in checks):
        return f"{len(checks)} stores: records equal; {pages:,} data pages equal"
    records = "equal" if all(c.records_equal for c in checks) else "DIFFER"
    first = next(p for c in checks for p in c.problems)
    return (f"{len(checks)} stores: records {records}; {sum(c.pages_equal for c in checks):,} of {pages:,} "
            f"data pages equal; first difference: {first}")


def _pages_fields(checks) -> dict:
    fields = {"pages": sum(c.pages for c in checks), "pages_equal": sum(c.pages_equal for c in checks)}
    first = next((f"{c.database}: {c.first_difference}" for c in checks if c.first_difference), None)
    if first:
        fields["first_page_difference"] = first
    problems = [p for c in checks for p in c.problems]
    if problems:
        fields["problems"] = problems
    return fields


def run_demo(workdir: Path, settings: DemoSettings | None = None, console: Console | None = None) -> dict:
    return Demo(workdir, settings or DemoSettings(), console or Console()).run()
