"""``mailtape backup``: online database-level backup of storage groups to tape."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn
from rich.table import Table

from reference.agent.levels import LEVELS
from reference.cli.site_session import site_with_exchange
from reference.errors import MailtapeError


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeElapsedColumn(), TextColumn("{task.fields[current]}"), console=console, transient=True,
    )


def result_dict(result) -> dict:
    return {
        "server": result.server,
        "storage_group": result.storage_group,
        "requested_level": result.requested_level,
        "level": result.level,
        "status": result.status,
        "error": result.error,
        "warnings": result.warnings,
        "databases": [{"name": d.name, "status": d.status, "error": d.error, "bytes": d.bytes} for d in result.databases],
        "log_gen_low": result.log_gen_low,
        "log_gen_high": result.log_gen_high,
        "logs": len(result.log_files),
        "bytes": result.bytes,
        "objects": result.objects,
        "data_set": result.receipt.data_set_id if result.receipt else None,
        "cartridges": list(result.receipt.barcodes) if result.receipt else [],
        "truncated_logs": result.truncated,
    }


def summary_table(rows: list[dict]) -> Table:
    table = Table(title="Backup")
    for column in ("storage group", "level", "status", "databases", "log gens", "MiB", "set", "cartridges"):
        table.add_column(column, justify="right" if column in ("MiB", "set") else "left")
    for row in rows:
        level = row["level"] if row["level"] == row["requested_level"] else f"{row['requested_level']}→{row['level']}"
        ok = sum(d["status"] == "ok" for d in row["databases"])
        dbs = f"{ok}/{len(row['databases'])} ok" if row["databases"] else "-"
        logs = f"{row['log_gen_low']:X}-{row['log_gen_high']:X}" if row["logs"] else "-"
        style = {"ok": "green", "warning": "yellow", "failed": "red"}.get(row["status"], "")
        table.add_row(row["storage_group"], level, f"[{style}]{row['status']}[/]", dbs, logs, f"{row['bytes'] / 2**20:,.1f}",
                      str(row["data_set"] or "-"), " ".join(row["cartridges"]) or "-")
    return table


@click.command("backup")
@click.argument("site", type=click.Path(file_okay=False, path_type=Path))
@click.option("--level", "-l", type=click.Choice(sorted(LEVELS)), default="full", show_default=True,
              help="full and incremental truncate logs afterwards; copy and differential do not.")
@click.option("--storage-group", "-g", "storage_groups", multiple=True,
              help="Storage group to back up (repeat; default: all).")
@click.option("--database", "-d", "databases", multiple=True,
              help="Only these stores of the group (full/copy; default: all).")
@click.option("--mailboxes", "-m", "mailboxes", multiple=True,
              help="Mailbox-level backup of mailboxes matching this pattern (repeat or comma-separate).")
@click.option("--folders", "folders", multiple=True, help="With --mailboxes: only folders matching (e.g. 'Inbox/*').")
@click.option("--exclude-folder", "exclude_folders", multiple=True, help="With --mailboxes: skip these folders.")
@click.option("--since", help="With --mailboxes: only items received since (ISO date or Unix seconds).")
@click.option("--before", help="With --mailboxes: only items received before.")
@click.option("--imap", "imap_urls", multiple=True,
              help="With --mailboxes: back up an IMAP server (imap[s]://user@host:port; password from "
                   "$MAILTAPE_IMAP_PASSWORD) instead of the site's Exchange server.")
@click.option("--agent", "agent_url",
              help="Drive a remote agent over NDMP (ndmp://host:port; credentials from $MAILTAPE_NDMP_USER and "
                   "$MAILTAPE_NDMP_PASSWORD) instead of the site's local Exchange server.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def command(site: Path, level: str, storage_groups: tuple[str, ...], databases: tuple[str, ...],
            mailboxes: tuple[str, ...], folders: tuple[str, ...], exclude_folders: tuple[str, ...],
            since: str | None, before: str | None, imap_urls: tuple[str, ...], agent_url: str | None,
            as_json: bool) -> None:
    """Back up SITE's Exchange server to tape: storage groups online (database level) or, with
    --mailboxes, individual mailboxes and folders (brick level).

    Each storage group becomes one MTF data set on its own drive; logs are truncated only after
    the set is on tape and in the catalog.
    """
    from reference.jobs import backup_storage_groups

    if mailboxes or imap_urls:
        if storage_groups or databases:
            raise click.UsageError("--mailboxes and --storage-group/--database are different backups; run them separately")
        from reference.brick_cli import add_mailbox_backup

        add_mailbox_backup(site, list(imap_urls) or None, mailboxes or ("*",), folders, since, level, as_json,
                           exclude_folders=exclude_folders, before=before)
        return
    if folders or exclude_folders or since or before:
        raise click.UsageError("--folders, --exclude-folder, --since and --before go with --mailboxes")

    if agent_url:
        results = _remote_backup(site, agent_url, list(storage_groups) or None, level, list(databases) or None)
        _print_results([result_dict(r) for r in results], as_json)
        return
    console = Console(stderr=True)
    with site_with_exchange(site) as (site_handle, server, _store):
        api = server.backup_api()
        with progress_bar(console) as bar:
            task = bar.add_task(f"{level} backup", total=None, current="")

            def progress(name: str, count: int) -> None:
                bar.update(task, advance=count, current=name)

            results = site_handle.runtime.run(
                backup_storage_groups(site_handle, api, list(storage_groups) or None, level,
                                      databases=list(databases) or None, progress=progress))
    _print_results([result_dict(r) for r in results], as_json)


def _remote_backup(site: Path, agent_url: str, storage_groups, level: str, databases):
    """The backup server as NDMP DMA: the agent streams, this site writes to tape and commits."""
    import os

    from reference.server.ndmp_dma import ndmp_backup
    from reference.server.site import open_site

    user, password = os.environ.get("MAILTAPE_NDMP_USER"), os.environ.get("MAILTAPE_NDMP_PASSWORD")
    if not user or not password:
        raise click.UsageError("--agent needs $MAILTAPE_NDMP_USER and $MAILTAPE_NDMP_PASSWORD")
    with open_site(site) as site_handle:
        return site_handle.runtime.run(
            ndmp_backup(site_handle, agent_url, user, password, storage_groups, level, databases=databases))


def _print_results(rows: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        out = Console()
        out.print(summary_table(rows))
        for row in rows:
            for warning in row["warnings"]:
                out.print(f"[yellow]warning:[/] {warning}")
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        raise MailtapeError("; ".join(f"backup of {r['storage_group']!r} failed: {r['error']}" for r in failed))
