"""``mailtape catalog ls|show|rebuild SITE``: what is on which cartridge; rebuild it from media."""

from __future__ import annotations

import click

from reference.errors import MailtapeError


@click.group(name="catalog")
def command() -> None:
    """Inspect the backup catalog of a site, or rebuild it from the cartridges alone."""


@command.command(name="ls")
@click.argument("site", type=click.Path(file_okay=False))
@click.option("--server", default=None, help="Only data sets of this mail server.")
@click.option("--storage-group", default=None, help="Only data sets of this storage group.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ls(site: str, server: str | None, storage_group: str | None, as_json: bool) -> None:
    """List the data sets in the catalog, oldest first."""
    from reference.server.report import emit_json, size, table, when
    from reference.server.site import open_site_catalog

    catalog = open_site_catalog(site)
    try:
        sets = catalog.data_sets(server, storage_group)
        counts = {s.id: len(catalog.objects(s.id)) for s in sets}
        cartridges = {s.id: catalog.cartridges_of(s.id) for s in sets}
    finally:
        catalog.close()
    if as_json:
        emit_json([{"id": s.id, "set_number": s.set_number, "family_id": s.family_id, "kind": s.kind,
                    "server": s.server, "storage_group": s.storage_group, "backup_type": s.backup_type,
                    "started": s.started, "completed": s.completed, "first_barcode": s.first_barcode,
                    "first_file": s.first_file, "cartridges": cartridges[s.id], "bytes": s.bytes,
                    "objects": counts[s.id], "log_gen_low": s.log_gen_low, "log_gen_high": s.log_gen_high,
                    "job_id": s.job_id, "status": s.status} for s in sets])
        return
    table(f"data sets in {site}", ["id", "set", "server", "storage group", "type", "completed", "cartridges",
                                   "file", "bytes", "objects", "logs", "status"],
          [[s.id, s.set_number, s.server, s.storage_group, s.backup_type, when(s.completed),
            ", ".join(cartridges[s.id]), s.first_file, size(s.bytes), counts[s.id],
            "-" if s.log_gen_low is None else f"{s.log_gen_low:X}-{s.log_gen_high:X}", s.status] for s in sets])


@command.command(name="show")
@click.argument("site", type=click.Path(file_okay=False))
@click.argument("set_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show(site: str, set_id: int, as_json: bool) -> None:
    """Show one data set and where each of its objects is (cartridge, tape file, block, FLA)."""
    from dataclasses import asdict

    from reference.server.report import emit_json, size, table, when
    from reference.server.site import open_site_catalog

    catalog = open_site_catalog(site)
    try:
        record = catalog.data_set(set_id)
    finally:
        catalog.close()
    if as_json:
        emit_json(asdict(record))
        return
    click.echo(f"data set {record.id}: set {record.set_number} of media family {record.family_id:08X}, "
               f"{record.backup_type} backup of {record.storage_group!r} on {record.server}, "
               f"completed {when(record.completed)}, starts on {record.first_barcode} file {record.first_file}, "
               f"status {record.status}")
    table("objects", ["path", "kind", "database", "size", "sha256", "cartridge", "file", "block", "fla",
                      "extents"],
          [[o.path, o.kind, o.database, size(o.size), o.sha256[:16] + "…", o.barcode, o.tape_file, o.block,
            o.fla, ", ".join(o.extents)] for o in record.objects])


@command.command(name="rebuild")
@click.argument("site", type=click.Path(file_okay=False))
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Write the rebuilt catalog here [default: SITE/catalog.sqlite].")
@click.option("--force", is_flag=True, help="Replace an existing catalog (kept as catalog.sqlite.old).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
def rebuild(site: str, output: str | None, force: bool, as_json: bool) -> None:
    """Recreate the catalog by reading every cartridge in the library (like Bacula's bscan)."""
    import os
    import tempfile
    from pathlib import Path

    from reference.server.catalog import Catalog
    from reference.server.readback import rebuild_catalog
    from reference.server.report import emit_json
    from reference.server.site import open_site

    root = Path(site)
    target_path = Path(output) if output else root / "catalog.sqlite"
    if target_path.exists() and not force:
        raise MailtapeError(f"{target_path}: a catalog already exists (use --force to replace it, or --output)")
    work = Path(tempfile.mkdtemp(prefix=".rebuild-", dir=target_path.parent if target_path.parent.exists()
                                 else None))
    scratch = work / "scratch.sqlite"
    built = work / "rebuilt.sqlite"
    opened = open_site(site, catalog_path=scratch)
    try:
        target = Catalog(built)
        try:
            result = rebuild_catalog(target, opened.media)
        finally:
            target.close()
    finally:
        opened.close()
    if target_path.exists():
        for suffix in ("-wal", "-shm"):
            Path(str(target_path) + suffix).unlink(missing_ok=True)
        os.replace(target_path, str(target_path) + ".old")
    os.replace(built, target_path)
    for leftover in work.iterdir():
        leftover.unlink()
    work.rmdir()
    summary = {"catalog": str(target_path), "media": result.media, "data_sets": result.data_sets,
               "objects": result.objects, "problems": result.problems}
    if as_json:
        emit_json(summary)
        return
    click.echo(f"rebuilt {target_path}: {result.media} cartridge(s) read, {result.data_sets} data set(s), "
               f"{result.objects} object(s)")
    for problem in result.problems:
        click.echo(f"  problem: {problem}")
