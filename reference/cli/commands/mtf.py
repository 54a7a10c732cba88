"""``mailtape mtf``: list, verify, extract, dump and convert MTF media (.bkf images, .tap cartridges).

Several files given together are one media family in any order (sorted by family ID and sequence).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from reference.errors import CorruptDataError
from reference.format.tools import convert as convert_family
from reference.format.tools import extract as extract_family
from reference.format.tools import opened, verification_report

_media = click.argument("media", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))


@click.group("mtf")
def command() -> None:
    """Microsoft Tape Format media: .bkf disk images and SIMH .tap cartridges."""


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@command.command("ls")
@_media
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ls(media, as_json: bool) -> None:
    """List media, data sets, volumes and objects with their sizes."""
    with opened(media) as reader:
        cat = reader.catalog
        if as_json:
            doc = {
                "media": [dict(name=x.name, family_id=x.family_id, sequence=x.sequence, flb=x.flb,
                               label=x.label, software=x.software, vendor_id=x.vendor_id,
                               continuation=x.continuation) for x in cat.media],
                "sets": [dict(number=s.number, name=s.name, description=s.description, user=s.user,
                              attributes=s.attr, date=s.write_date.isoformat() if s.write_date else None,
                              ended=s.ended,
                              volumes=[dict(device=v.device, volume=v.volume, machine=v.machine)
                                       for v in s.volumes],
                              objects=[dict(path=e.display_path, size=e.size, file_id=e.file_id,
                                            medium=e.medium, offset=e.offset,
                                            media=sorted({reader.media[p.medium].name for p in e.pieces}))
                                       for e in s.objects]) for s in cat.sets],
                "unknown_blocks": [dict(medium=b.medium, offset=b.offset, type=b.kind) for b in cat.unknown_blocks],
                "problems": [str(p) for p in cat.problems],
            }
            click.echo(json.dumps(doc, indent=2))
            return
        for x in cat.media:
            if x.family_id is None:
                click.echo(f"medium {x.name}: no MTF media header (blank or damaged)")
                continue
            click.echo(f"medium {x.name}: family 0x{(x.family_id or 0):08X} sequence {x.sequence} "
                       f"FLB {x.flb} software {x.software!r}{' (continuation)' if x.continuation else ''}")
        for s in cat.sets:
            date = s.write_date.isoformat(sep=" ") if s.write_date else "-"
            click.echo(f"set {s.number} {s.name!r} {date}{'' if s.ended else ' (no ESET)'}")
            for v in s.volumes:
                click.echo(f"  volume {v.device!r} {v.volume!r} machine {v.machine!r}")
            for e in s.objects:
                spans = len({p.medium for p in e.pieces})
                extra = f"  [{spans} media]" if spans > 1 else ""
                click.echo(f"    {e.size:>14}  {e.display_path}{extra}")
        if cat.unknown_blocks:
            kinds = sorted({b.kind for b in cat.unknown_blocks})
            click.echo(f"{len(cat.unknown_blocks)} unknown DBLK(s) skipped: {', '.join(kinds)}")
        for p in cat.problems:
            click.echo(f"problem: {p}", err=True)
        if not any(x.family_id is not None for x in cat.media):
            raise CorruptDataError("no MTF media header (TAPE) on any of the given media")


@command.command("verify")
@_media
@click.option("-q", "--quiet", is_flag=True, help="Only the problems and the summary.")
def verify(media, quiet: bool) -> None:
    """Check every header and stream checksum, CSUM, SHA-256 and completeness."""
    with opened(media) as reader:
        cat = reader.catalog
        bad, count, total = verification_report(reader)
        if not quiet:
            failed = {line.split(" (file-id:")[0] for line in bad}
            for e in cat.objects():
                if f"{e.medium} at {e.offset}: object {e.display_path}" not in failed:
                    click.echo(f"ok  {e.display_path}")
        for line in bad:
            click.echo(f"BAD {line}", err=True)
        summary = (f"{len(cat.media)} medium(s), {len(cat.sets)} set(s), {count} object(s), "
                   f"{_size(total)}: {len(bad)} problem(s)")
        if bad:
            raise CorruptDataError(summary)
        click.echo(summary)


@command.command("extract")
@_media
@click.option("-C", "--target", "target", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the objects under (volume/path/name).")
@click.option("--set", "set_number", type=int, default=None, help="Only this data set.")
@click.option("--match", default=None, help="Only objects whose path contains this text.")
def extract(media, target: Path, set_number, match) -> None:
    """Write objects under a folder, verified; refuses paths that would escape it."""
    def select(entry) -> bool:
        return ((set_number is None or entry.set_number == set_number)
                and (match is None or match in entry.display_path))

    with opened(media) as reader:
        written, failures = extract_family(reader, target, select)
        for line in failures:
            click.echo(f"BAD {line}", err=True)
        for p in reader.catalog.problems:
            click.echo(f"problem: {p}", err=True)
        click.echo(f"{written} object(s) written under {target}")
        if failures:
            raise CorruptDataError(f"{len(failures)} object(s) not extracted")


def _hex(data: bytes, base: int) -> list[str]:
    lines = []
    for i in range(0, len(data), 16):
        row = data[i:i + 16]
        text = "".join(chr(c) if 32 <= c < 127 else "." for c in row)
        lines.append(f"      {base + i:08x}  {row.hex(' '):<47}  {text}")
    return lines


@command.command("dump")
@_media
@click.option("--hex", "hex_bytes", type=int, default=0, help="Show the first N bytes of each DBLK in hex.")
def dump(media, hex_bytes: int) -> None:
    """Show every DBLK and stream (offset, type, FLA, CBID, attributes, checksums)."""
    with opened(media, keep_blocks=True) as reader:
        by_name = {x.name: x for x in reader.media}
        for b in reader.catalog.blocks:
            click.echo(f"{b.medium} @{b.offset:<10} {b.kind:<4} len {b.length:<9} FLA {b.fla:<7} "
                       f"CBID {b.cbid:<6} attr 0x{b.attr:08X}{'  ' + b.note if b.note else ''}")
            if hex_bytes:
                raw = bytes(by_name[b.medium].read(b.offset, hex_bytes))
                for line in _hex(raw, b.offset):
                    click.echo(line)
            for off, sid, length, media_attr, ok in b.streams:
                click.echo(f"    +{off:<9} {sid:<4} {length:>12}  media 0x{media_attr:04X}"
                           f"{'' if ok else '  BAD CHECKSUM'}")
        for p in reader.catalog.problems:
            click.echo(f"problem: {p}", err=True)


@command.command("convert")
@_media
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The .bkf image to create.")
def convert(media, output: Path) -> None:
    """Turn a cartridge family (.tap files, any order) into one .bkf image."""
    count = convert_family(list(media), output)
    click.echo(f"{count} object(s) written to {output}")
