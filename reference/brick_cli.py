"""Option handling and output of the brick-level ``mailtape backup --mailboxes`` / ``restore --mailbox``.

The lead's ``backup`` and ``restore`` commands call :func:`add_mailbox_backup` and
:func:`run_mailbox_restore` when the brick-level options are given. A *store spec* names where
the mail is:

* ``None``, ``()`` or ``"exchange"`` — the site's emulated Exchange server (``SITE/exchange``,
  opened on its own virtual clock, which the site shares);
* one or more IMAP URLs ``imap://user@host:port`` / ``imaps://...`` (one login per mailbox; the
  password from ``$MAILTAPE_IMAP_PASSWORD`` or a prompt).

Progress (items, bytes, current mailbox/folder) goes to stderr; the summary table or, with
``--json``, one JSON document to stdout. Failures are :class:`MailtapeError` (one line, exit 1).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reference.agent.brick import RestoreOptions, Selection
from reference.agent.brick.model import FOLDER, ITEM, MAILBOX, BrickObject, display_path
from reference.errors import MailtapeError, NotFoundError, UsageError

EXCHANGE = "exchange"


# -- parsing -------------------------------------------------------------------------------------


def parse_time(value, what: str) -> float | None:
    """Unix seconds, or an ISO date/time (UTC unless it names a zone): ``2004-11-09``,
    ``2004-11-09T12:00:00``, ``2004-11-09 12:00+02:00``."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what} {text!r}: not a date/time (use 2004-11-09 or 2004-11-09T12:00:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _patterns(values) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    out = []
    for value in values:
        out += [v.strip() for v in str(value).split(",") if v.strip()]
    return tuple(out)


def _folder_path(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    parts = tuple(p for p in text.split("/") if p)
    if not parts:
        raise UsageError(f"folder {text!r}: empty folder path")
    return parts


def _urls(store_spec) -> list[str]:
    if store_spec is None:
        return []
    specs = [store_spec] if isinstance(store_spec, str) else list(store_spec)
    specs = [s for s in specs if s]
    if not specs or specs == [EXCHANGE]:
        return []
    if EXCHANGE in specs:
        raise UsageError("--exchange and IMAP URLs cannot be combined in one job")
    return specs


# -- opening the site and the store --------------------------------------------------------------


@dataclass
class Opened:
    site: object
    store: object
    server_name: str
    storage_group: str


@contextmanager
def open_store(site_path, store_spec, *, level: str | None = None, kind: str = "backup") -> Iterator[Opened]:
    """The site and the mail store named by ``store_spec`` (see the module docstring).

    A store that cannot be opened (unreachable, login refused) is recorded as a failed job."""
    from reference.brick_jobs import (
        DEFAULT_STORAGE_GROUP,
        imap_identity,
        record_failed_job,
    )

    urls = _urls(store_spec)
    if not urls:
        from reference.cli.site_session import site_with_exchange

        with site_with_exchange(site_path) as (site, server, store):
            yield Opened(site, store, server.server_name, DEFAULT_STORAGE_GROUP)
        return
    from reference.drivers.imap import ImapAccounts, ImapMailboxStore
    from reference.drivers.imap_url import parse_imap_url
    from reference.server.site import open_site

    parsed = [parse_imap_url(u) for u in urls]
    if len({p.user for p in parsed}) != len(parsed):
        raise UsageError("each IMAP URL must log in as another user (one login per mailbox)")
    server_name, storage_group = imap_identity(parsed)
    site = open_site(Path(site_path))
    stores = []
    try:
        try:
            for url in parsed:
                stores.append(ImapMailboxStore(url))
        except MailtapeError as error:
            record_failed_job(site, f"{server_name}/{storage_group}", level or "-", error, kind)
            raise
        store = stores[0] if len(stores) == 1 else ImapAccounts(stores)
        yield Opened(site, store, server_name, storage_group)
    finally:
        for store in stores:
            store.close()
        site.close()


# -- backup --------------------------------------------------------------------------------------


class _BackupProgress:
    """A rich progress line on stderr: items, bytes, current mailbox/folder."""

    def __init__(self, console: Console, enabled: bool):
        self.items = 0
        self.bytes = 0
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            TextColumn("{task.fields[items]} items, {task.fields[size]}"), TimeElapsedColumn(),
                            TextColumn("{task.fields[current]}"), console=console, transient=True,
                            disable=not enabled)
        self.task = None

    def __enter__(self):
        self.bar.__enter__()
        self.task = self.bar.add_task("mailbox backup", total=None, items=0, size="0 B", current="")
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def __call__(self, obj: BrickObject) -> None:
        if obj.kind == MAILBOX:
            self.bar.update(self.task, current=obj.mailbox)
        elif obj.kind == FOLDER:
            self.bar.update(self.task, current=f"{obj.mailbox}: {display_path(obj.folder)}")
        elif obj.kind == ITEM:
            self.items += 1
            self.bytes += int(obj.meta.get("size", 0))
            self.bar.update(self.task, items=self.items, size=_size(self.bytes))


def _size(n: int) -> str:
    from reference.server.report import size

    return size(n)


def backup_table(row: dict) -> Table:
    table = Table(title=f"Mailbox backup of {row['server']}/{row['storage_group']}", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    level = row["level"] if row["level"] == row["requested_level"] else f"{row['requested_level']}→{row['level']}"
    style = {"ok": "green", "warning": "yellow", "failed": "red"}.get(row["status"], "")
    rows = [
        ("level", level), ("status", f"[{style}]{row['status']}[/]"), ("mailboxes", row["mailboxes"]),
        ("folders", row["folders"]), ("items", row["items"] + row["items_single_instance"]),
        ("items stored", row["items_stored"]), ("single-instance items", row["items_single_instance"]),
        ("bytes stored", f"{row['bytes_stored']:,}"),
        ("single-instance savings", f"{row['single_instance_bytes_saved']:,} bytes"),
        ("flag updates", row["flag_updates"]), ("expunged", row["expunged"]),
        ("UIDVALIDITY resets", len(row["uidvalidity_resets"])), ("bytes on media", f"{row['bytes_on_media']:,}"),
        ("data set", row["data_set"] or "-"), ("cartridges", " ".join(row["cartridges"]) or "-"),
        ("job", row["job"]),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def add_mailbox_backup(site_path, store_spec, mailboxes=(), folders=(), since=None, level: str = "full",
                       as_json: bool = False, *, exclude_folders=(), before=None,
                       progress: bool = True) -> dict:
    """``mailtape backup SITE --mailboxes ...``: one brick-level backup job; prints the summary.

    ``mailboxes``/``folders``/``exclude_folders``: patterns (repeatable or comma-separated; empty =
    all); ``since``/``before``: internal-date window (ISO or Unix seconds). Returns the result dict;
    raises MailtapeError when the job failed (after printing nothing but the error)."""
    from reference.brick_jobs import LEVELS, backup_mailboxes

    if level not in LEVELS:
        raise UsageError(f"mailbox backup level must be one of {', '.join(LEVELS)}, not {level!r}")
    selection = Selection(mailboxes=_patterns(mailboxes) or ("*",), folders=_patterns(folders) or ("*",),
                          exclude_folders=_patterns(exclude_folders),
                          since=parse_time(since, "--since"), before=parse_time(before, "--before"))
    err = Console(stderr=True)
    with open_store(site_path, store_spec, level=level) as opened, \
            _BackupProgress(err, progress and not as_json) as bar:
        group = opened.storage_group
        if not _urls(store_spec):
            group = exchange_storage_group(selection.mailboxes)
        available = opened.store.list_mailboxes()
        if not any(selection.takes_mailbox(name) for name in available):
            shown = ", ".join(sorted(available, key=str.casefold)[:20]) or "none"
            raise NotFoundError(f"no mailbox on {opened.server_name} matches {', '.join(selection.mailboxes)} "
                                f"(it has: {shown}{', ...' if len(available) > 20 else ''})")
        result = opened.site.runtime.run(backup_mailboxes(
            opened.site, opened.store, selection, level, server_name=opened.server_name,
            storage_group=group, progress=bar))
    row = result.to_dict()
    if as_json:
        click.echo(json.dumps(row, indent=1))
    else:
        out = Console() if Console().is_terminal else Console(width=160)
        out.print(backup_table(row))
        for warning in row["warnings"]:
            out.print(f"[yellow]warning:[/] {warning}")
    return row


# -- restore -------------------------------------------------------------------------------------


def find_source(catalog, server: str, storage_group: str, mailbox: str | None) -> tuple[str, str]:
    """Which chain to restore from. With one named mailbox: the newest brick-level backup on the
    same server holding it (whichever job took it: all mailboxes, a pattern, another group of IMAP
    logins, so a restore into another login finds its source); otherwise the store's own chain."""
    from reference.brick_jobs import KIND

    sets = [s for s in catalog.data_sets() if s.kind == KIND and s.status == "ok" and s.server == server]
    if mailbox is not None:
        holding = [s for s in sets if mailbox in s.metadata.get("mailboxes", [])]
        if holding:
            return holding[-1].server, holding[-1].storage_group
    if any(s.storage_group == storage_group for s in sets):
        return server, storage_group
    what = f" holding mailbox {mailbox!r}" if mailbox else f" of {storage_group}"
    raise NotFoundError(f"no brick-level backup on {server}{what} in the catalog (name one with --backup SET)")


def exchange_storage_group(mailbox_patterns: tuple[str, ...]) -> str:
    """Exchange jobs over some mailboxes get a chain (and incremental base) of their own, so a
    backup of 'alice' never becomes the newest full of a backup of everyone."""
    from reference.brick_jobs import DEFAULT_STORAGE_GROUP

    if not mailbox_patterns or mailbox_patterns == ("*",):
        return DEFAULT_STORAGE_GROUP
    return f"{DEFAULT_STORAGE_GROUP} ({', '.join(mailbox_patterns)})"


def plan_table(result, limit: int = 200) -> Table:
    table = Table(title="Restore plan (dry run: nothing was changed)" if result.dry_run else "Restore",
                  title_justify="left")
    for column in ("action", "mailbox", "folder", "uid", "reason / Message-ID"):
        table.add_column(column)
    for action in result.plan.actions[:limit]:
        uid = str(action.item.uid) if action.item else "-"
        detail = action.reason or (action.item.message_id or "" if action.item else "")
        table.add_row(action.op, action.mailbox, display_path(action.folder), uid, detail)
    if len(result.plan.actions) > limit:
        table.add_row("…", "", "", "", f"{len(result.plan.actions) - limit} more")
    return table


def counts_table(counts: dict, failed: int) -> Table:
    table = Table(title="Counts", title_justify="left")
    table.add_column("action")
    table.add_column("count", justify="right")
    for op, n in sorted(counts.items()):
        table.add_row(op, str(n))
    if failed:
        table.add_row("[red]failed[/]", str(failed))
    return table


def restore_dict(outcome) -> dict:
    result = outcome.result
    counts = result.plan.counts()
    return {
        "dry_run": result.dry_run, "ok": result.ok, "job": outcome.job_id,
        "chain": [{"data_set": s.id, "level": s.backup_type, "completed": s.completed} for s in outcome.chain],
        "counts": counts,
        "conflicts": sum(1 for a in result.plan.actions if "same Message-ID" in a.reason),
        "would_duplicate": sum(1 for a in result.plan.actions if a.op == "append" and a.existing),
        "bodies_read": outcome.bodies_read, "bytes_read": outcome.bytes_read,
        "actions": [{"op": a.op, "mailbox": a.mailbox, "folder": list(a.folder),
                     "uid": a.item.uid if a.item else None, "reason": a.reason} for a in result.plan.actions],
        "failed": [{"op": a.op, "mailbox": a.mailbox, "folder": list(a.folder),
                    "uid": a.item.uid if a.item else None, "error": reason} for a, reason in result.failed],
    }


class _RestoreProgress:
    """A rich progress line on stderr while a restore applies its plan: actions done, current folder."""

    def __init__(self, console: Console, enabled: bool):
        self.done = 0
        self.bar = Progress(TextColumn("[bold]mailbox restore"), BarColumn(), TextColumn("{task.fields[done]} actions"),
                            TimeElapsedColumn(), TextColumn("{task.fields[current]}"), console=console,
                            transient=True, disable=not enabled)
        self.task = None

    def __enter__(self):
        self.bar.__enter__()
        self.task = self.bar.add_task("restore", total=None, done=0, current="")
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def __call__(self, action) -> None:
        self.done += 1
        self.bar.update(self.task, done=self.done, current=f"{action.mailbox}: {display_path(action.folder)}")


def run_mailbox_restore(site_path, store_spec, mailbox=None, folder=None, to=None, conflict: str = "skip",
                        dry_run: bool = False, at=None, backup: int | None = None, as_json: bool = False, *,
                        to_folder: str | None = None, mark_unread: bool = False) -> dict:
    """``mailtape restore SITE --mailbox NAME ...``: restore mail from the brick-level chain.

    ``mailbox``: source mailbox name/pattern(s) (None = all); ``folder``: folder pattern(s) (None =
    all); ``to``: another target mailbox (one source mailbox); ``to_folder``: put everything under
    this folder (``Recovered/2024-05-01``); ``conflict``: skip | overwrite | copy; ``at``: point in
    time (ISO or Unix seconds) or ``backup``: the data set to restore up to (its chain is used
    whatever the store spec, so a backup can go into another store). Returns the result dict;
    raises MailtapeError when items failed (after printing the table)."""
    from reference.brick_jobs import restore_mailboxes, set_source

    options = RestoreOptions(
        selection=Selection(mailboxes=_patterns(mailbox) or ("*",), folders=_patterns(folder) or ("*",)),
        target_mailbox=to or None, target_folder=_folder_path(to_folder), conflict=conflict,
        mark_unread=mark_unread)
    when = parse_time(at, "--at")
    if when is not None and backup is not None:
        raise UsageError("--at and --backup choose the point in time two ways: give one")
    with open_store(site_path, store_spec, level=conflict, kind="restore") as opened:
        catalog = opened.site.catalog
        if backup is not None:
            server, group = set_source(catalog, int(backup))
        else:
            single = options.selection.mailboxes[0] if len(options.selection.mailboxes) == 1 \
                and not any(c in options.selection.mailboxes[0] for c in "*?[") else None
            server, group = find_source(catalog, opened.server_name, opened.storage_group, single)
        with _RestoreProgress(Console(stderr=True), not (as_json or dry_run)) as bar:
            outcome = opened.site.runtime.run(restore_mailboxes(
                opened.site, opened.store, options, server_name=server, storage_group=group,
                set_id=backup, at=when, dry_run=dry_run, progress=bar))
    row = restore_dict(outcome)
    if as_json:
        click.echo(json.dumps(row, indent=1))
    else:
        out = Console() if Console().is_terminal else Console(width=160)
        chain = ", ".join(f"{c['data_set']} ({c['level']})" for c in row["chain"])
        out.print(f"restoring from data set(s) {chain}")
        if dry_run:
            out.print(plan_table(outcome.result))
        out.print(counts_table(row["counts"], len(row["failed"])))
        if row["conflicts"]:
            out.print(f"{row['conflicts']} conflict(s): same Message-ID, different content "
                      f"(policy {conflict})")
        if row["would_duplicate"]:
            verb = "would be" if dry_run else "were"
            out.print(f"{row['would_duplicate']} item(s) {verb} appended beside an item with the same "
                      "Message-ID (policy copy)")
        for failure in row["failed"][:50]:
            out.print(f"[red]failed:[/] {failure['mailbox']}:{'/'.join(failure['folder'])} "
                      f"uid {failure['uid']}: {failure['error']}")
    if row["failed"]:
        raise MailtapeError(f"restore: {len(row['failed'])} action(s) failed; first: "
                            f"{row['failed'][0]['mailbox']}:{'/'.join(row['failed'][0]['folder'])}: "
                            f"{row['failed'][0]['error']}")
    return row

