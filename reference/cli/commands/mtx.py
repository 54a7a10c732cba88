"""``mailtape mtx``: the ``mtx`` media-changer command, for emulated and real libraries.

``-f`` names either an emulated library folder (``mailtape library init`` makes one) or a real
changer's SCSI generic device (``/dev/sgN``, driven through the system's ``mtx``). Output and
refusals are mtx's (spec tape-drive.md §6): ``status`` prints mtx's exact text, ``load`` refuses a
full drive with "Drive 0 Full (Storage Element 2 loaded)", a move from an empty element fails with
"Source Element Address 1025 is Empty" (the SCSI element address, as mtx prints it), and every
failure is one line on stderr with the SCSI sense and exit status 1.
"""

from __future__ import annotations

from pathlib import Path

import click

from reference.errors import MailtapeError, NotFoundError
from reference.protocols.changer import ChangerError, MediaChanger


class ChangerCommandFailed(MailtapeError):
    """A changer refused or failed a command (message and sense as mtx/the library report them)."""


def open_changer(device: str) -> MediaChanger:
    """An emulated library for a folder holding ``library.json``; the real mtx driver for /dev/..."""
    path = Path(device)
    if (path / "library.json").exists():
        from emulators.tape.library import EmulatedLibrary

        return EmulatedLibrary(path, device_name=device)
    if device.startswith("/dev/"):
        from reference.drivers.mtx import MtxChanger

        return MtxChanger(device)
    if path.is_dir():
        raise NotFoundError(f"{device}: not a tape library (no library.json; see 'mailtape library init')")
    raise NotFoundError(f"{device}: no such changer (give a library folder or /dev/sgN)")


def _run(action) -> None:
    try:
        action()
    except ChangerError as failure:
        raise ChangerCommandFailed(str(failure)) from None


@click.group(name="mtx")
@click.option("-f", "device", envvar="CHANGER", required=True, metavar="LIBRARY|/dev/sgN",
              help="Library folder or changer device (default: $CHANGER).")
@click.pass_context
def command(ctx: click.Context, device: str) -> None:
    """Control a tape library's robot the way mtx does (status, load, unload, transfer...)."""
    ctx.obj = {"device": device}


def _changer(ctx: click.Context) -> MediaChanger:
    return open_changer(ctx.obj["device"])


@command.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Print the element status exactly as ``mtx status`` does."""
    device = ctx.obj["device"]
    changer = _changer(ctx)

    def show() -> None:
        if hasattr(changer, "status_text"):
            click.echo(changer.status_text(), nl=False)
        else:
            click.echo(changer.render_mtx_status(device), nl=False)

    _run(show)


@command.command()
@click.argument("slot", type=int)
@click.argument("drive", type=int, default=0)
@click.pass_context
def load(ctx: click.Context, slot: int, drive: int) -> None:
    """Move the cartridge in storage element SLOT into DRIVE (default 0)."""
    changer = _changer(ctx)
    _run(lambda: changer.load(slot, drive))
    click.echo(f"Loading media from Storage Element {slot} into drive {drive}...done")


@command.command()
@click.argument("slot", type=int, required=False)
@click.argument("drive", type=int, default=0)
@click.pass_context
def unload(ctx: click.Context, slot: int | None, drive: int) -> None:
    """Move DRIVE's cartridge to SLOT (default: the slot it came from)."""
    changer = _changer(ctx)
    if slot is None:
        try:
            source = changer.status().drive(drive).source
        except KeyError:
            source = None
        shown = source if source is not None else 0
    else:
        shown = slot
    _run(lambda: changer.unload(slot, drive))
    click.echo(f"Unloading drive {drive} into Storage Element {shown}...done")


@command.command()
@click.argument("source", type=int)
@click.argument("destination", type=int)
@click.pass_context
def transfer(ctx: click.Context, source: int, destination: int) -> None:
    """Move a cartridge from storage element SOURCE to DESTINATION."""
    changer = _changer(ctx)
    _run(lambda: changer.transfer(source, destination))


@command.command()
@click.argument("first", type=int)
@click.argument("second", type=int)
@click.pass_context
def exchange(ctx: click.Context, first: int, second: int) -> None:
    """Swap the cartridges of two storage elements."""
    changer = _changer(ctx)
    if not hasattr(changer, "exchange"):
        raise ChangerCommandFailed(f"{changer.name}: exchange is not supported")
    _run(lambda: changer.exchange(first, second))


@command.command()
@click.pass_context
def inventory(ctx: click.Context) -> None:
    """Make the library re-scan its elements and barcodes."""
    changer = _changer(ctx)
    _run(changer.inventory)
