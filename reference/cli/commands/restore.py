"""``mailtape restore``: database-level restore of a storage group from tape."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from reference.cli.commands.backup import progress_bar
from reference.cli.site_session import site_with_exchange
from reference.errors import MailtapeError


def _prepare_targets(server, storage_group: str, databases: list[str] | None, dismount: bool, to_rsg: bool) -> None:
    """Administrator steps a restore needs on Exchange 2003, done on the emulated server when asked.

    Real Exchange: the administrator dismounts the stores and ticks "This database can be
    overwritten by a restore" in System Manager, or creates the Recovery Storage Group.
    """
    group = server.storage_group(storage_group)
    names = [d.name for d in group.databases if not databases or d.name.lower() in {n.lower() for n in databases}]
    if to_rsg:
        if server.recovery_storage_group is None:
            server.create_recovery_storage_group([(group.name, name) for name in names])
        else:
            for name in names:
                server.add_database_to_rsg(group.name, name)
        return
    if dismount:
        for name in names:
            if server.is_mounted(group.name, name):
                server.dismount(group.name, name)
            server.set_allow_restore_overwrite(group.name, name, True)


@click.command("restore")
@click.argument("site", type=click.Path(file_okay=False, path_type=Path))
@click.option("--storage-group", "-g", help="Storage group to restore (its name at backup time).")
@click.option("--database", "-d", "databases", multiple=True, help="Only these stores (repeat; default: all in the backup).")
@click.option("--point-in-time", is_flag=True,
              help="Stop after the restored logs (no roll-forward into the current logs).")
@click.option("--backup", "set_id", type=int, help="Restore the chain ending at this data set (see 'mailtape catalog ls').")
@click.option("--at", "at", type=float, help="Restore the newest chain completed at or before this time (Unix seconds).")
@click.option("--dismount", is_flag=True,
              help="Dismount the target stores and allow them to be overwritten first (emulated server).")
@click.option("--recovery-storage-group", "to_rsg", is_flag=True,
              help="Restore into the Recovery Storage Group (created if missing; emulated server).")
@click.option("--no-mount", is_flag=True, help="Leave the databases dismounted after recovery.")
@click.option("--mailbox", "-m", help="Mailbox-level restore of this mailbox (pattern) instead of a storage group.")
@click.option("--folder", help="With --mailbox: only this folder (pattern, e.g. 'Inbox/Projects').")
@click.option("--to", "to", help="With --mailbox: restore into another mailbox (MAILBOX or MAILBOX/FOLDER).")
@click.option("--to-folder", help="With --mailbox: restore under this folder of the target mailbox.")
@click.option("--conflict", type=click.Choice(["skip", "overwrite", "copy"]), default="skip", show_default=True,
              help="With --mailbox: what to do when an item already exists.")
@click.option("--dry-run", is_flag=True, help="With --mailbox: list what would be restored, change nothing.")
@click.option("--mark-unread", is_flag=True, help="With --mailbox: restored items are marked unread.")
@click.option("--imap", "imap_urls", multiple=True,
              help="With --mailbox: restore into an IMAP server (imap[s]://user@host:port) instead of the site's Exchange.")
@click.option("--at-time", "at_time", help="With --mailbox: point in time (ISO date or Unix seconds).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(site: Path, storage_group: str | None, databases: tuple[str, ...], point_in_time: bool,
            set_id: int | None, at: float | None, dismount: bool, to_rsg: bool, no_mount: bool, mailbox: str | None,
            folder: str | None, to: str | None, to_folder: str | None, conflict: str, dry_run: bool,
            mark_unread: bool, imap_urls: tuple[str, ...], at_time: str | None, as_json: bool) -> None:
    """Restore from tape: a storage group of SITE's Exchange server (database level) or, with
    --mailbox, mailboxes, folders and items (brick level).

    The catalog picks the full backup and every later incremental, or the full and the last
    differential; Exchange then replays the logs (and, unless --point-in-time, the current ones).
    """
    from reference.jobs import resolve_storage_groups, restore_storage_group

    if mailbox:
        if storage_group or databases or point_in_time or dismount or to_rsg or no_mount:
            raise click.UsageError("--mailbox restores items; --storage-group/--database/--point-in-time/--dismount/"
                                   "--recovery-storage-group/--no-mount are for database restores")
        from reference.brick_cli import run_mailbox_restore

        if to and "/" in to and not to_folder:
            to, to_folder = to.split("/", 1)

        run_mailbox_restore(site, list(imap_urls) or None, mailbox, folder, to, conflict, dry_run,
                            at_time if at_time is not None else at, set_id, as_json, to_folder=to_folder,
                            mark_unread=mark_unread)
        return
    if not storage_group:
        raise click.UsageError("give --storage-group (database restore) or --mailbox (mailbox restore)")
    if folder or to or to_folder or dry_run or mark_unread or imap_urls or at_time:
        raise click.UsageError("--folder, --to, --to-folder, --dry-run, --mark-unread, --imap and --at-time go with --mailbox")

    mode = "point-in-time" if point_in_time else "roll-forward"
    with site_with_exchange(site) as (site_handle, server, _store):
        api = server.backup_api()
        [name] = resolve_storage_groups(api, [storage_group])
        if dismount or to_rsg:
            _prepare_targets(server, name, list(databases) or None, dismount, to_rsg)
        with progress_bar(Console(stderr=True)) as bar:
            task = bar.add_task(f"{mode} restore", total=None, current="")
            result, chain = site_handle.runtime.run(restore_storage_group(
                site_handle, api, name, mode=mode, set_id=set_id, at=at, databases=list(databases) or None,
                mount=not no_mount, progress=lambda path, n: bar.update(task, advance=n, current=path)))
    row = {
        "storage_group": result.storage_group, "mode": result.mode, "status": result.status,
        "data_sets": [{"id": s.id, "type": s.backup_type, "completed": s.completed} for s in chain],
        "databases": result.databases, "destinations": result.destinations, "logs": result.logs,
        "bytes": result.bytes, "recovery_hresult": f"0x{(result.recovery_hr or 0) & 0xFFFFFFFF:08X}",
        "redirected_to_recovery_storage_group": result.redirected_to_rsg,
    }
    if as_json:
        click.echo(json.dumps(row, indent=1))
        return
    table = Table(title=f"Restore of {result.storage_group} ({mode})")
    table.add_column("data set", justify="right")
    table.add_column("type")
    for s in chain:
        table.add_row(str(s.id), s.backup_type)
    out = Console()
    out.print(table)
    where = "the Recovery Storage Group" if result.redirected_to_rsg else "its original location"
    out.print(f"restored {', '.join(result.databases)} to {where}: {result.bytes / 2**20:.1f} MiB, "
              f"{result.logs} logs; recovery {row['recovery_hresult']}")
    if result.status != "ok":
        raise MailtapeError(f"restore of {result.storage_group!r} failed: {result.error}")
