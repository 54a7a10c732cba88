"""``mailtape library``: create and inspect emulated tape libraries, and play the operator.

``library init LIBRARY`` makes a library folder (docs/tape-library.md): drives, storage slots,
import/export (mail) slots and blank cartridges barcoded the LTO way (``000001L9``...).
``library status`` shows what is where, including cartridges on the shelf (outside the library).
``library map open|close|insert|remove`` are what an operator does at the mail slot (mhvtl's
``vtlcmd open map`` / ``load map`` / ``empty map`` / ``close map``).
"""

from __future__ import annotations

import click

from reference.errors import MailtapeError
from reference.protocols.changer import ChangerError


class LibraryCommandFailed(MailtapeError):
    """The library refused an operator action."""


def _open(path: str):
    from emulators.tape.library import EmulatedLibrary

    return EmulatedLibrary(path)


@click.group(name="library")
def command() -> None:
    """Create and inspect emulated tape libraries; operator actions at the mail slot."""


@command.command()
@click.argument("library", type=click.Path(file_okay=False))
@click.option("--drives", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--slots", type=click.IntRange(1, 10_000), default=20, show_default=True,
              help="Storage slots (numbered from 1).")
@click.option("--import-export", "import_export", type=click.IntRange(0, 64), default=4,
              show_default=True, help="Import/export (mail) slots, numbered after the storage slots.")
@click.option("--media", default="LTO-9", show_default=True, help="Media generation (LTO9, LTO-8, ...).")
@click.option("--cartridges", type=click.IntRange(0, 999_999), default=None,
              help="Blank cartridges to put in the first slots [default: fill every storage slot].")
@click.option("--capacity-mb", type=click.IntRange(1), default=None,
              help="Cartridge capacity in MB (10^6 bytes) [default: native capacity of the media].")
@click.option("--drive-generation", default=None,
              help="Drive generation [default: the media's, e.g. LTO-9 drives for LTO-9 media].")
@click.option("--auto-eject/--no-auto-eject", default=True, show_default=True,
              help="Whether the robot unloads a threaded drive itself; with --no-auto-eject the "
                   "host must 'mt offline' first (\"Drive needs offline before move\").")
def init(library: str, drives: int, slots: int, import_export: int, media: str,
         cartridges: int | None, capacity_mb: int | None, drive_generation: str | None,
         auto_eject: bool) -> None:
    """Create a new library folder LIBRARY (refuses to overwrite an existing one)."""
    from emulators.tape.library import create_library
    from emulators.tape.library_state import LibraryProfile

    store = create_library(
        library, drives=drives, slots=slots, import_export=import_export, media=media,
        cartridges=cartridges,
        capacity_bytes=None if capacity_mb is None else capacity_mb * 1_000_000,
        drive_generation=drive_generation,
        profile=LibraryProfile(auto_eject=auto_eject),
    )
    state = store.load()
    filled = sum(1 for slot in state.slots if slot.cartridge)
    click.echo(
        f"created library {library}: {drives} drive(s), {slots} slot(s) + {import_export} "
        f"import/export, {filled} {state.media} cartridge(s)"
    )


@command.command()
@click.argument("library", type=click.Path(file_okay=False))
def status(library: str) -> None:
    """Show drives, slots, mail slots and the shelf of LIBRARY."""
    lib = _open(library)
    state = lib.state
    click.echo(f"library {library}: media {state.media}, mail slot "
               f"{'OPEN' if state.map_open else 'closed'}"
               f"{', removal prevented' if state.prevent_removal else ''}")
    for drive in state.drives:
        threaded = ""
        if drive.cartridge:
            threaded = " (threaded)" if lib.drive_port(drive.number).threaded() else " (ejected)"
        where = f" from slot {drive.source}" if drive.source else ""
        click.echo(f"  drive {drive.number}: {drive.cartridge or 'empty'}{threaded}{where}")
    for slot in state.slots:
        kind = "mail slot" if slot.import_export else "slot"
        click.echo(f"  {kind} {slot.number}: {slot.cartridge or 'empty'}")
    shelf = lib.shelf()
    click.echo(f"  shelf: {', '.join(shelf) if shelf else 'empty'}")


@command.group(name="map")
def map_group() -> None:
    """Operator actions at the import/export (mail) slot."""


def _operator(action) -> None:
    try:
        action()
    except ChangerError as failure:
        raise LibraryCommandFailed(str(failure)) from None


@map_group.command(name="open")
@click.argument("library", type=click.Path(file_okay=False))
def map_open(library: str) -> None:
    """Open the mail slot (refused while the host prevents medium removal)."""
    _operator(_open(library).open_map)


@map_group.command(name="close")
@click.argument("library", type=click.Path(file_okay=False))
def map_close(library: str) -> None:
    """Close the mail slot; the library scans what the operator put in."""
    _operator(_open(library).close_map)


@map_group.command(name="insert")
@click.argument("library", type=click.Path(file_okay=False))
@click.argument("slot", type=int)
@click.argument("cartridge")
def map_insert(library: str, slot: int, cartridge: str) -> None:
    """Put CARTRIDGE (from the shelf) into the open mail slot SLOT."""
    lib = _open(library)
    _operator(lambda: lib.operator_insert(slot, cartridge))


@map_group.command(name="remove")
@click.argument("library", type=click.Path(file_okay=False))
@click.argument("slot", type=int)
def map_remove(library: str, slot: int) -> None:
    """Take the cartridge out of the open mail slot SLOT (it goes to the shelf)."""
    lib = _open(library)
    taken: list[str] = []
    _operator(lambda: taken.append(lib.operator_remove(slot)))
    click.echo(f"removed {taken[0]} from mail slot {slot}")
