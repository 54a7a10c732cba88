"""``mailtape media ls|label SITE``: cartridges of the site's library and what the catalog knows."""

from __future__ import annotations

import click


@click.group(name="media")
def command() -> None:
    """List and label the cartridges of a site."""


@command.command(name="ls")
@click.argument("site", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ls(site: str, as_json: bool) -> None:
    """Every cartridge in the library (slot or drive) and every cartridge the catalog knows."""
    from reference.server.report import emit_json, size, table, when
    from reference.server.site import open_site

    opened = open_site(site)
    try:
        status = opened.changer.status()
        where = {e.barcode: f"slot {e.number}" for e in status.slots if e.full and e.barcode}
        where.update({e.barcode: f"drive {e.number}" for e in status.drives if e.full and e.barcode})
        rows = {r["barcode"]: r for r in opened.catalog.media()}
    finally:
        opened.close()
    barcodes = sorted(set(where) | set(rows))
    listing = []
    for barcode in barcodes:
        row = rows.get(barcode, {})
        listing.append({"barcode": barcode, "location": where.get(barcode, "outside the library"),
                        "pool": row.get("pool", "Scratch"), "status": row.get("status", "unknown"),
                        "family_id": row.get("family_id"), "sequence": row.get("sequence"),
                        "data_sets": row.get("data_sets", 0), "bytes_written": row.get("bytes_written", 0),
                        "next_file": row.get("next_file"), "labeled_at": row.get("labeled_at")})
    if as_json:
        emit_json(listing)
        return
    table(f"media of {site}", ["barcode", "location", "pool", "status", "family", "seq", "sets", "written",
                               "labeled"],
          [[m["barcode"], m["location"], m["pool"], m["status"],
            None if m["family_id"] is None else f"{m['family_id']:08X}", m["sequence"], m["data_sets"],
            size(m["bytes_written"]), when(m["labeled_at"])] for m in listing])


@command.command(name="label")
@click.argument("site", type=click.Path(file_okay=False))
@click.argument("barcode")
@click.option("--pool", default=None, help="Pool to put the cartridge in [default: the site's pool].")
@click.option("--drive", type=int, default=None, help="Drive to use [default: the first].")
@click.option("--force", is_flag=True, help="Overwrite a cartridge that holds data (its data sets expire).")
def label(site: str, barcode: str, pool: str | None, drive: int | None, force: bool) -> None:
    """Write a new media label (MTF TAPE header, new media family) on cartridge BARCODE."""
    from reference.server.site import open_site

    opened = open_site(site)
    try:
        number = opened.drives.numbers[0] if drive is None else drive
        if number not in opened.drives.numbers:
            from reference.errors import UsageError

            raise UsageError(f"no drive {number} at {site} (drives: {opened.drives.numbers})")
        chosen_pool = pool or opened.settings["pool"]
        family = opened.media.label(barcode.upper(), chosen_pool, number, force=force)
        opened.media.unload(number)
    finally:
        opened.close()
    click.echo(f"labelled {barcode.upper()}: pool {chosen_pool}, media family {family:08X} sequence 1")
