"""``mailtape restore``: database-level restore of a storage group from tape."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

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
@click.option("--storage-group", "-g", required=True, help="Storage group to restore (its name at backup time).")
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
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(site: Path, storage_group: str, databases: tuple[str, ...], point_in_time: bool, set_id: int | None,
            at: float | None, dismount: bool, to_rsg: bool, no_mount: bool, as_json: bool) -> None:
    """Restore a storage group of SITE's Exchange server from tape.

    The catalog picks the full backup and every later incremental, or the full and the last
    differential; Exchange then replays the logs (and, unless --point-in-time, the current ones).
    """
    from reference.jobs import resolve_storage_groups, restore_storage_group

    mode = "point-in-time" if point_in_time else "roll-forward"
    with site_with_exchange(site) as (site_handle, server, _store):
        api = server.backup_api()
        [name] = resolve_storage_groups(api, [storage_group])
        if dismount or to_rsg:
            _prepare_targets(server, name, list(databases) or None, dismount, to_rsg)
        result, chain = site_handle.runtime.run(restore_storage_group(
            site_handle, api, name, mode=mode, set_id=set_id, at=at, databases=list(databases) or None,
            mount=not no_mount))
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
