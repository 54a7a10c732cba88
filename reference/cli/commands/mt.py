"""``mailtape mt -f DRIVE OPERATION [COUNT]``: mt-st for emulated (and real) tape drives.

DRIVE is one of:

* a cartridge image ``X.tap``: a standalone drive with that cartridge loaded (its state is kept in
  ``X.tap.drive.json``, created on first use);
* a library drive: ``LIBRARY/drive<N>.json`` (or ``LIBRARY/drive<N>``), the state file the library
  keeps for drive N;
* a real st device node (``/dev/nst0``), driven through the Linux st ioctls.

Output and semantics follow mt-st: ``status`` prints what ``mt status`` prints, ``tell`` prints
``At block N.``; a failing operation reports the device and the errno text. The position survives
between invocations, as ``/dev/nst0`` keeps it between opens.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import Iterator

import click

from emulators.tape.drive_state import ensure_standalone_drive, persisted_drive
from emulators.tape.profiles import density_name
from reference.errors import MailtapeError, UsageError
from reference.protocols.tape import Gstat, MtGet, MtOp, TapeDevice

# op name -> (mt_op, needs write access, default count, opens with O_NONBLOCK)
OPERATIONS: dict[str, tuple[MtOp | None, bool, int, bool]] = {
    "status": (None, False, 0, True),
    "tell": (None, False, 0, False),
    "rewind": (MtOp.MTREW, False, 1, False),
    "fsf": (MtOp.MTFSF, False, 1, False),
    "bsf": (MtOp.MTBSF, False, 1, False),
    "fsfm": (MtOp.MTFSFM, False, 1, False),
    "bsfm": (MtOp.MTBSFM, False, 1, False),
    "fsr": (MtOp.MTFSR, False, 1, False),
    "bsr": (MtOp.MTBSR, False, 1, False),
    "weof": (MtOp.MTWEOF, True, 1, False),
    "eof": (MtOp.MTWEOF, True, 1, False),
    "weofi": (MtOp.MTWEOFI, True, 1, False),
    "eod": (MtOp.MTEOM, False, 1, False),
    "seod": (MtOp.MTEOM, False, 1, False),
    "seek": (MtOp.MTSEEK, False, -1, False),
    "setblk": (MtOp.MTSETBLK, False, -1, False),
    "setdensity": (MtOp.MTSETDENSITY, False, -1, False),
    "compression": (MtOp.MTCOMPRESSION, False, 1, False),
    "offline": (MtOp.MTOFFL, False, 1, True),
    "rewoffl": (MtOp.MTOFFL, False, 1, True),
    "eject": (MtOp.MTOFFL, False, 1, True),
    "load": (MtOp.MTLOAD, False, 1, True),
    "lock": (MtOp.MTLOCK, False, 1, True),
    "unlock": (MtOp.MTUNLOCK, False, 1, True),
    "retension": (MtOp.MTRETEN, False, 1, False),
    "erase": (MtOp.MTERASE, True, 1, False),
}

# mt-st's density table (mt.c density_tbl) for the codes an LTO library meets.
MT_ST_DENSITIES = {0x00: "default", 0x40: "LTO-1", 0x42: "LTO-2", 0x44: "LTO-3", 0x46: "LTO-4",
                   0x58: "LTO-5", 0x5A: "LTO-6", 0x5C: "LTO-7", 0x5D: "LTO-7M8", 0x5E: "LTO-8",
                   0x60: "LTO-9", 0x62: "LTO-10", 0x63: "LTO-10"}

GSTAT_ORDER = [("EOF", Gstat.EOF), ("BOT", Gstat.BOT), ("EOT", Gstat.EOT), ("SM", Gstat.SM),
               ("EOD", Gstat.EOD), ("WR_PROT", Gstat.WR_PROT), ("ONLINE", Gstat.ONLINE),
               ("D_6250", Gstat.D_6250), ("D_1600", Gstat.D_1600), ("D_800", Gstat.D_800),
               ("DR_OPEN", Gstat.DR_OPEN), ("IM_REP_EN", Gstat.IM_REP_EN), ("CLN", Gstat.CLN)]


def format_status(status: MtGet) -> str:
    """The text ``mt status`` (mt-st ``do_status``) prints for a SCSI-2 drive."""
    density = MT_ST_DENSITIES.get(status.density) or density_name(status.density) or "no translation"
    bits = "".join(f" {name}" for name, bit in GSTAT_ORDER if status.gstat & bit)
    return (
        "SCSI 2 tape drive:\n"
        f"File number={status.fileno}, block number={status.blkno}, partition={status.resid & 0xFF}.\n"
        f"Tape block size {status.blksize} bytes. Density code 0x{status.density:x} ({density}).\n"
        f"Soft error count since last status={status.erreg & 0xFFFF}\n"
        f"General status bits on ({int(status.gstat) & 0xFFFFFFFF:x}):\n"
        f"{bits}\n"
    )


def _is_device_node(path: Path) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def resolve_drive(spec: str) -> tuple[str, Path]:
    """("real", node) | ("persisted", state file) for what ``-f`` names."""
    path = Path(spec)
    if _is_device_node(path):
        return "real", path
    if path.suffix == ".tap":
        return "persisted", ensure_standalone_drive(path)
    if path.suffix == ".json" and path.is_file():
        return "persisted", path
    with_json = path.with_name(path.name + ".json")
    if with_json.is_file():
        return "persisted", with_json
    raise MailtapeError(f"{spec}: not a tape drive (expected X.tap, LIBRARY/drive<N>[.json] "
                        "or a /dev/nst device)")


@contextlib.contextmanager
def open_device(spec: str, write: bool, nonblock: bool) -> Iterator[TapeDevice]:
    kind, path = resolve_drive(spec)
    if kind == "real":
        from reference.drivers.st import LinuxStDrive

        device = LinuxStDrive(str(path), write=write, nonblock=nonblock)
        try:
            yield device
        finally:
            device.close()
        return
    with persisted_drive(path) as drive:
        device = drive.open(write=write, rewind_on_close=False, nonblock=nonblock)
        try:
            yield device
        finally:
            device.close()


def run_operation(spec: str, operation: str, count: int | None) -> str:
    """Perform one mt operation; returns what mt prints on stdout."""
    if operation not in OPERATIONS:
        raise UsageError(f"mt: unknown operation {operation!r} "
                         f"(known: {', '.join(sorted(OPERATIONS))})")
    op, write, default, nonblock = OPERATIONS[operation]
    if count is None:
        if default < 0:
            raise UsageError(f"mt {operation}: needs a count")
        count = default
    try:
        with open_device(spec, write, nonblock) as device:
            if operation == "status":
                return format_status(device.status())
            if operation == "tell":
                return f"At block {device.tell()}.\n"
            device.mtop(op, count)
            return ""
    except OSError as failure:
        text = os.strerror(failure.errno) if failure.errno else str(failure)
        if failure.errno == errno.EIO and getattr(failure, "where", None):
            text = str(failure)
        raise MailtapeError(f"{spec}: {text}") from None


@click.command("mt", context_settings={"ignore_unknown_options": True})
@click.option("-f", "--file", "drive", required=True, metavar="DRIVE",
              help="X.tap (standalone drive), LIBRARY/drive<N>.json, or /dev/nstN.")
@click.argument("operation")
@click.argument("count", required=False, type=int)
def command(drive: str, operation: str, count: int | None) -> None:
    """Control a tape drive like mt-st: status, rewind, fsf, bsf, fsr, bsr, weof, eod, tell,
    seek N, setblk N, offline, load, erase [N] (and fsfm, bsfm, weofi, retension, lock, unlock,
    compression, setdensity)."""
    output = run_operation(drive, operation.lower(), count)
    if output:
        click.echo(output, nl=False)
