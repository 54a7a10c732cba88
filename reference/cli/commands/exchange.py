"""``mailtape exchange``: create, exercise and inspect an emulated Exchange server.

    mailtape exchange init ROOT [--profile 2003|2007] [--storage-groups N] [--databases N]
                                [--mailboxes N] [--size-mb N] [--seed N] [--server NAME] [--edge-cases]
    mailtape exchange activity ROOT [--messages N] [--seed N] [--rate N] [--edge-cases]
    mailtape exchange status ROOT
    mailtape exchange mailboxes ROOT [--json]

Every command opens the server from its files (soft recovery at mount, as the Information Store
service does at start), works on a virtual clock, and shuts the server down cleanly.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from emulators.clock import VirtualClock
from emulators.exchange.mailbox_store import META, ServerMailboxStore
from emulators.exchange.server import ExchangeServer
from emulators.exchange.workload import MIB, Workload, WorkloadProfile, populate
from reference.errors import MailtapeError, UsageError



def _stdout() -> Console:
    """A console for tables; when piped, wide enough that names are not wrapped mid-cell."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _stderr() -> Console:
    return Console(stderr=True)


def _progress(unit_bytes: bool) -> Progress:
    counter = DownloadColumn(binary_units=True) if unit_bytes else MofNCompleteColumn()
    return Progress(TextColumn("{task.description}"), BarColumn(), counter, TimeRemainingColumn(),
                    console=_stderr(), transient=True)


def _profile(edge_cases: bool) -> WorkloadProfile:
    return WorkloadProfile().with_edge_cases() if edge_cases else WorkloadProfile()


CLOCK_FILE = "virtual-clock.json"


def _saved_time(root: str | Path) -> float | None:
    path = Path(root) / CLOCK_FILE
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["now"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as error:
        raise MailtapeError(f"{path}: unreadable virtual clock ({error})") from None


def save_clock(server: ExchangeServer) -> None:
    """Keep the server's virtual time beside it, so the next command continues from it."""
    path = Path(server.root) / CLOCK_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"now": server.clock.now()}) + "\n", encoding="utf-8")
    os.replace(temporary, path)


@contextmanager
def opened_server(root: str) -> Iterator[tuple[ExchangeServer, ServerMailboxStore]]:
    """Start the emulated server at ROOT on its saved virtual clock; shut it down afterwards."""
    saved = _saved_time(root)
    server = ExchangeServer.open(root, clock=VirtualClock() if saved is None else VirtualClock(start=saved))
    try:
        yield server, ServerMailboxStore.for_server(server)
    finally:
        if server.running:
            server.shutdown()


def _check_server_name(ctx, param, value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,14}", value):
        raise click.BadParameter(f"{value!r} is not a NetBIOS computer name (1-15 letters, digits or '-')")
    return value


@click.group("exchange")
def command() -> None:
    """The emulated Exchange server: create one, give it mail traffic, look at it."""


@command.command("init")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--profile", type=click.Choice(["2003", "2007"]), default="2003", show_default=True,
              help="Exchange version to emulate (2003: .edb+.stm, 5 MiB logs; 2007: .edb only, 1 MiB logs).")
@click.option("--storage-groups", type=click.IntRange(1, 4), default=1, show_default=True)
@click.option("--databases", type=click.IntRange(1, 5), default=1, show_default=True,
              help="Mailbox databases per storage group.")
@click.option("--mailboxes", type=click.IntRange(0, 100_000), default=10, show_default=True)
@click.option("--size-mb", type=click.FloatRange(0), default=32.0, show_default=True,
              help="Mail to populate, in MiB, spread over the mailboxes.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--server", "server_name", default="EXCH01", show_default=True, callback=_check_server_name,
              help="Server (NetBIOS) name: 1-15 letters, digits or '-'.")
@click.option("--edge-cases", is_flag=True,
              help="Also mail without Message-ID, malformed mail and odd folder names ('a/b', '..', '*', non-ASCII).")
def init(root: Path, profile: str, storage_groups: int, databases: int, mailboxes: int, size_mb: float, seed: int,
         server_name: str, edge_cases: bool) -> None:
    """Create a server at ROOT with mailboxes and SIZE-MB of mail (refuses an existing ROOT)."""
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise MailtapeError(f"{root}: already exists and is not an empty folder; choose a new server root")
    if size_mb > 0 and mailboxes == 0:
        raise UsageError("--size-mb needs at least one mailbox (--mailboxes)")
    clock = VirtualClock()
    server = ExchangeServer.create(root, profile=profile, storage_groups=storage_groups, databases=databases,
                                   server_name=server_name, clock=clock, seed=seed)
    try:
        store = ServerMailboxStore.for_server(server)
        target = int(size_mb * MIB)
        with _progress(unit_bytes=True) as bar:
            task = bar.add_task("populating", total=max(1, target))
            report = populate(store, target, seed=seed, mailboxes=mailboxes, clock=clock, profile=_profile(edge_cases),
                              progress=lambda done, total: bar.update(task, completed=done))
        save_clock(server)
    finally:
        server.shutdown()
    click.echo(f"created {server_name} ({profile}) at {root}: {storage_groups} storage group(s) x {databases} "
               f"database(s), {report.mailboxes} mailboxes, {report.items} items, {report.bytes / MIB:.1f} MiB")


@command.command("activity")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--messages", type=click.IntRange(0), default=100, show_default=True,
              help="Deliveries to make; reads, moves, deletes and new folders happen around them.")
@click.option("--seed", type=click.IntRange(0), default=None,
              help="Seed of this run (default: derived from the server's state, so runs differ).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=WorkloadProfile.deliveries_per_hour,
              show_default=True, help="Deliveries per hour of virtual time, server-wide.")
@click.option("--edge-cases", is_flag=True, help="Also mail without Message-ID, malformed mail, odd folder names.")
def activity(root: str, messages: int, seed: int | None, rate: float, edge_cases: bool) -> None:
    """Run day-to-day mail activity on the server's virtual clock."""
    with opened_server(root) as (server, store):
        if seed is None:
            seed = _state_seed(store)
        with _progress(unit_bytes=False) as bar:
            task = bar.add_task("activity", total=max(1, messages))
            profile = replace(_profile(edge_cases), deliveries_per_hour=rate)
            report = Workload(store, store.clock, seed=seed, profile=profile).run(
                messages, progress=lambda done, total: bar.update(task, completed=done))
        save_clock(server)
    done = ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in sorted(report.operations.items()))
    click.echo(f"{done or 'nothing to do (no mailboxes)'}; {report.bytes_delivered / MIB:.1f} MiB delivered "
               f"over {report.virtual_seconds / 60:.1f} virtual minutes (seed {seed})")


def _state_seed(store: ServerMailboxStore) -> int:
    """A seed that depends only on the server's contents, so two runs in a row produce different mail."""
    total = 0
    for database in store.stores.values():
        raw = database.db.get(META, b"next_body")
        total = total * 1_000_003 + (int(raw) if raw else 0)
    return total % (1 << 32)


@command.command("status")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(root: str, as_json: bool) -> None:
    """Storage groups, databases (mounted, sizes), log generations, checkpoint, circular logging."""
    with opened_server(root) as (server, store):
        groups = []
        for group in server.storage_groups:
            instance = server.instance(group.name)
            generations = instance.log.generations_on_disk()
            databases = []
            for config in group.databases:
                files = {os.path.basename(p): _size(server.abspath(p)) for p in config.files}
                entry = {"name": config.name, "mounted": server.is_mounted(group.name, config.name),
                         "files": files, "mailboxes": None}
                if (group.name, config.name) in store.stores:
                    entry["mailboxes"] = len(store.stores[(group.name, config.name)].list_mailboxes())
                databases.append(entry)
            groups.append({
                "name": group.name, "prefix": group.prefix, "folder": group.folder,
                "recovery": group.recovery, "circular_logging": group.circular_logging,
                "log_generations": [min(generations), max(generations)] if generations else None,
                "current_generation": instance.log.gen,
                "checkpoint_generation": instance.checkpoint_generation,
                "databases": databases,
            })
        info = {"server": server.server_name, "profile": server.profile.name, "root": server.root,
                "log_file_size": server.profile.log_file_size, "virtual_time": store.clock.now(),
                "storage_groups": groups}
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    console = _stdout()
    console.print(f"[bold]{info['server']}[/] Exchange {info['profile']} at {info['root']} "
                  f"(log files {info['log_file_size'] // 1024} KiB)")
    for group in groups:
        low_high = group["log_generations"]
        span = f"{low_high[0]:#x}..{low_high[1]:#x}" if low_high else "none"
        console.print(f"\n[bold]{group['name']}[/] ({group['prefix']}, {group['folder']})"
                      f"{' [recovery]' if group['recovery'] else ''}: logs {span}, current "
                      f"{group['current_generation']:#x}, checkpoint {group['checkpoint_generation']:#x}, "
                      f"circular logging {'on' if group['circular_logging'] else 'off'}")
        table = Table("database", "mounted", "files", "mailboxes")
        for db in group["databases"]:
            files = ", ".join(f"{name} {size / MIB:.1f} MiB" if size is not None else f"{name} (missing)"
                              for name, size in db["files"].items())
            table.add_row(db["name"], "yes" if db["mounted"] else "no", files,
                          "-" if db["mailboxes"] is None else str(db["mailboxes"]))
        console.print(table)


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


@command.command("mailboxes")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def mailboxes(root: str, as_json: bool) -> None:
    """Mailboxes on the server with their storage group, database, folder and item counts and sizes."""
    with opened_server(root) as (server, store):
        rows = []
        for name, (group, database) in sorted(store.directory().items(), key=lambda kv: kv[0].casefold()):
            info = store.mailbox_info(name)
            summary = store.mailbox_summary(name)
            rows.append({"mailbox": name, "display_name": info.display_name, "legacy_dn": info.legacy_dn,
                         "storage_group": group, "database": database, **summary})
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table("mailbox", "display name", "storage group", "database", "folders", "items", "MiB")
    for row in rows:
        table.add_row(row["mailbox"], row["display_name"], row["storage_group"], row["database"],
                      str(row["folders"]), str(row["items"]), f"{row['bytes'] / MIB:.2f}")
    _stdout().print(table)
    click.echo(f"{len(rows)} mailboxes, {sum(r['items'] for r in rows)} items, "
               f"{sum(r['bytes'] for r in rows) / MIB:.1f} MiB")


@command.command("snapshot")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.argument("name")
def snapshot_command(root: str, name: str) -> None:
    """Record the server's ground truth as NAME (digests of every database's records, of every
    data page of its files and of every mailbox), to check a later restore with
    `mailtape verify SITE --against NAME`."""
    from emulators.exchange import ground_truth

    with opened_server(root) as (server, _store):
        truth = ground_truth.capture(server)
        path = ground_truth.save(root, name, truth)
        save_clock(server)
    pages = sum(f["pgno_last"] for files in truth["pages"].values() for f in files)
    click.echo(f"snapshot {name!r}: {len(truth['databases'])} database(s), {pages:,} data pages, "
               f"{len(truth['mailboxes'])} mailbox(es) -> {path}")
