"""The real media-changer driver over the ``mtx`` command, and the ``mtx status`` text both ways.

:class:`MtxChanger` implements :class:`MediaChanger` by running ``mtx -f /dev/sgN ...`` and parsing
what it prints; failures become :class:`ChangerError` with mtx's message and the sense the library
returned (or, for the checks mtx makes before sending any SCSI, the sense the library would have
returned). :func:`render_mtx_status` / :func:`parse_mtx_status` are the text format.

Byte-exact with mtx 1.3.x ``Status()`` (spec tape-drive.md §6; fixtures in
``samples/mtx/mtx-status-*.txt``), because backup products parse it with fixed field positions
(Bacula/Bareos ``mtx-changer`` uses awk ``$5``, ``$7``...):

* header ``"  Storage Changer %s:%d Drives, %d Slots ( %d Import/Export )"`` — 2 leading spaces,
  the slot count *includes* the import/export elements;
* ``Data Transfer Element %d:`` then ``Empty`` or ``Full (Storage Element %d Loaded)`` /
  ``Full (Unknown Storage Element Loaded)`` and ``:VolumeTag = %s`` (spaces around ``=``);
* ``      Storage Element %d%s:%s`` with ``" IMPORT/EXPORT"`` and ``"Full "`` (trailing space) or
  ``"Empty"``, then ``:VolumeTag=%s`` (no spaces);
* volume tags are the 32-byte SCSI field: right-padded with spaces, printable ASCII only.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Callable, Sequence

from reference.errors import CorruptDataError, MailtapeError
from reference.protocols.changer import ChangerError, ChangerStatus, Element, ElementType, Sense

TAG_WIDTH = 32

_HEADER = re.compile(
    r"  Storage Changer (?P<device>.*):(?P<drives>\d+) Drives, (?P<slots>\d+) Slots "
    r"\( (?P<ie>\d+) Import/Export \)"
)
_DRIVE = re.compile(
    r"Data Transfer Element (?P<number>\d+):(?:(?P<empty>Empty)|Full \((?:Storage Element "
    r"(?P<source>\d+)|Unknown Storage Element) Loaded\)(?::VolumeTag = (?P<tag>[ -~]*?))?"
    r"(?::AlternateVolumeTag = (?P<alt>[ -~]*))?)"
)
_SLOT = re.compile(
    r"      Storage Element (?P<number>\d+)(?P<ie> IMPORT/EXPORT)?:(?P<state>Full |Empty)"
    r"(?::VolumeTag=(?P<tag>[ -~]*?))?(?::AlternateVolumeTag=(?P<alt>[ -~]*))?"
)


def volume_tag_field(tag: str) -> str:
    """The tag as the SCSI volume-tag field holds it: printable ASCII, 32 chars, space padded."""
    if any(not " " <= ch <= "~" for ch in tag):
        raise ValueError(f"volume tag {tag!r} has non-printable characters")
    return tag[:TAG_WIDTH].ljust(TAG_WIDTH)


def render_mtx_status(status: ChangerStatus, device: str) -> str:
    """``mtx -f DEVICE status`` output for ``status`` (every line ends in LF)."""
    import_export = sum(1 for e in status.slots if e.type == ElementType.IMPORT_EXPORT)
    lines = [
        f"  Storage Changer {device}:{len(status.drives)} Drives, {len(status.slots)} Slots "
        f"( {import_export} Import/Export )"
    ]
    for drive in status.drives:
        line = f"Data Transfer Element {drive.number}:"
        if not drive.full:
            line += "Empty"
        else:
            if drive.source is not None:
                line += f"Full (Storage Element {drive.source} Loaded)"
            else:
                line += "Full (Unknown Storage Element Loaded)"
            if drive.barcode:
                line += f":VolumeTag = {volume_tag_field(drive.barcode)}"
        lines.append(line)
    for slot in status.slots:
        flag = " IMPORT/EXPORT" if slot.type == ElementType.IMPORT_EXPORT else ""
        line = f"      Storage Element {slot.number}{flag}:{'Full ' if slot.full else 'Empty'}"
        if slot.full and slot.barcode:
            line += f":VolumeTag={volume_tag_field(slot.barcode)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def parse_mtx_status(text: str, where: str = "mtx status output") -> tuple[str, ChangerStatus]:
    """Parse ``mtx status`` text into (device, status); tags come back without their padding.

    Anything that is not exactly mtx's format raises :class:`CorruptDataError` naming the line.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise CorruptDataError("empty output (no 'Storage Changer' header)", where)
    header = _HEADER.fullmatch(lines[0])
    if not header:
        raise CorruptDataError(f"line 1 is not an mtx status header: {lines[0]!r}", where)
    drive_count, slot_count = int(header["drives"]), int(header["slots"])
    import_export_count = int(header["ie"])
    drives: list[Element] = []
    slots: list[Element] = []
    for line_number, line in enumerate(lines[1:], start=2):
        if (match := _DRIVE.fullmatch(line)) is not None:
            if slots:
                raise CorruptDataError(f"line {line_number}: drive listed after the slots", where)
            drives.append(_drive_element(match))
        elif (match := _SLOT.fullmatch(line)) is not None:
            slots.append(_slot_element(match))
        else:
            raise CorruptDataError(f"line {line_number} is not an mtx element line: {line!r}", where)
    found_ie = sum(1 for e in slots if e.type == ElementType.IMPORT_EXPORT)
    if (len(drives), len(slots), found_ie) != (drive_count, slot_count, import_export_count):
        raise CorruptDataError(
            f"header announces {drive_count} drives, {slot_count} slots ({import_export_count} "
            f"import/export) but the output lists {len(drives)}, {len(slots)} ({found_ie})",
            where,
        )
    for expected, element in enumerate(drives):
        if element.number != expected:
            raise CorruptDataError(f"drive {element.number} out of order", where)
    for expected, element in enumerate(slots, start=1):
        if element.number != expected:
            raise CorruptDataError(f"storage element {element.number} out of order", where)
    return header["device"], ChangerStatus(drives=tuple(drives), slots=tuple(slots))


def _tag(raw: str | None) -> str | None:
    if raw is None:
        return None
    return raw.rstrip(" ") or None


def _drive_element(match: re.Match[str]) -> Element:
    full = match["empty"] is None
    return Element(
        type=ElementType.DRIVE,
        number=int(match["number"]),
        full=full,
        barcode=_tag(match["tag"]) if full else None,
        source=int(match["source"]) if match["source"] is not None else None,
    )


def _slot_element(match: re.Match[str]) -> Element:
    full = match["state"] == "Full "
    return Element(
        type=ElementType.IMPORT_EXPORT if match["ie"] else ElementType.STORAGE,
        number=int(match["number"]),
        full=full,
        barcode=_tag(match["tag"]) if full else None,
    )


# --- mtx's messages and the sense behind them ---------------------------------------------------

SOURCE_EMPTY = Sense(0x5, 0x3B, 0x0E)
DESTINATION_FULL = Sense(0x5, 0x3B, 0x0D)
BAD_ELEMENT_ADDRESS = Sense(0x5, 0x21, 0x01)
DRIVE_NEEDS_OFFLINE = Sense(0x2, 0x3A, 0x00)
"""mtx maps ASC/ASCQ 3A/00 to "Drive needs offline before move"; the key is not printed (choice: 2)."""
CLEANING_CARTRIDGE = Sense(0x2, 0x30, 0x03)

_MESSAGE_SENSE: tuple[tuple[re.Pattern[str], Sense], ...] = tuple(
    (re.compile(pattern), sense)
    for pattern, sense in (
        (r"Source Element Address \d+ is Empty", SOURCE_EMPTY),
        (r"Destination Element Address \d+ is Already Full", DESTINATION_FULL),
        (r"Drive \d+ Full \((?:Storage Element \d+|Unknown Storage Element) loaded\)", DESTINATION_FULL),
        (r"Storage Element \d+ is Already Full", DESTINATION_FULL),
        (r"Data Transfer Element \d+ is Empty", SOURCE_EMPTY),
        (r"Invalid <storage-element-number>|illegal <|Invalid source|Invalid destination", BAD_ELEMENT_ADDRESS),
        (r"Drive needs offline before move", DRIVE_NEEDS_OFFLINE),
        (r"Cleaning Cartridge Installed and Ejected", CLEANING_CARTRIDGE),
    )
)
_SENSE_IN_TEXT = re.compile(r"\(sense (?P<key>[0-9A-F])/(?P<asc>[0-9A-F]{2})/(?P<ascq>[0-9A-F]{2})\)")
_SENSE_KEYS = {
    "No Sense": 0x0, "Recovered Error": 0x1, "Not Ready": 0x2, "Medium Error": 0x3,
    "Hardware Error": 0x4, "Illegal Request": 0x5, "Unit Attention": 0x6, "Data Protect": 0x7,
    "Blank Check": 0x8, "Aborted Command": 0xB, "Volume Overflow": 0xD,
}
_REQUEST_SENSE_KEY = re.compile(r"Sense Key=(?P<name>[A-Za-z ]+)")
_REQUEST_SENSE_ASC = re.compile(r"Additional Sense Code = (?P<hex>[0-9A-Fa-f]{2})")
_REQUEST_SENSE_ASCQ = re.compile(r"Additional Sense Qualifier = (?P<hex>[0-9A-Fa-f]{2})")


def changer_error_from_mtx(stderr: str, fallback: str) -> ChangerError:
    """Turn what a failed ``mtx`` printed on stderr into a ChangerError with the best sense we can tell.

    Order: an explicit ``(sense K/AA/QQ)`` (our emulator's CLI prints one), then mtx's Request Sense
    report, then the sense implied by mtx's fixed message text.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    message = next(
        (line for line in reversed(lines) if "Request Sense:" not in line), fallback
    )
    message = re.sub(r"^(?:mtx|mailtape): (?:error: )?", "", message)
    sense = None
    if (explicit := _SENSE_IN_TEXT.search(message)) is not None:
        sense = Sense(int(explicit["key"], 16), int(explicit["asc"], 16), int(explicit["ascq"], 16))
        message = message[: explicit.start()].rstrip()
    if sense is None:
        key, asc, ascq = (_REQUEST_SENSE_KEY.search(stderr), _REQUEST_SENSE_ASC.search(stderr),
                          _REQUEST_SENSE_ASCQ.search(stderr))
        if key and asc and ascq and key["name"].strip() in _SENSE_KEYS:
            sense = Sense(_SENSE_KEYS[key["name"].strip()], int(asc["hex"], 16), int(ascq["hex"], 16))
    if sense is None:
        sense = next((s for pattern, s in _MESSAGE_SENSE if pattern.search(message)), None)
    return ChangerError(message, sense)


# --- the driver ---------------------------------------------------------------------------------

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=900, check=False)


class MtxChanger:
    """A real SCSI media changer driven through ``mtx -f DEVICE`` (Debian package ``mtx``).

    ``mtx`` may be a longer command (for example ``["mailtape", "mtx"]`` to drive an emulated
    library through the same code path); ``runner`` replaces ``subprocess.run`` in tests.
    """

    name: str = "mtx"

    def __init__(self, device: str, mtx: str | Sequence[str] = "mtx", runner: Runner | None = None):
        self.device = device
        self.name = f"mtx:{device}"
        self._command = [mtx] if isinstance(mtx, str) else list(mtx)
        self._runner = runner or _run

    def _mtx(self, *args: str | int) -> str:
        argv = [*self._command, "-f", self.device, *map(str, args)]
        if self._runner is _run and shutil.which(argv[0]) is None:
            raise MailtapeError(f"{argv[0]}: command not found (install the 'mtx' package)")
        done = self._runner(argv)
        if done.returncode != 0:
            raise changer_error_from_mtx(
                done.stderr or "", f"{' '.join(argv)} failed with exit status {done.returncode}"
            )
        return done.stdout

    def status(self) -> ChangerStatus:
        return parse_mtx_status(self._mtx("status"), where=f"mtx -f {self.device} status")[1]

    def status_text(self) -> str:
        """The unmodified ``mtx status`` text (for byte-exact comparisons)."""
        return self._mtx("status")

    def load(self, slot: int, drive: int = 0) -> None:
        self._mtx("load", slot, drive)

    def unload(self, slot: int | None = None, drive: int = 0) -> None:
        if slot is None and drive != 0:
            # mtx's arguments are positional (slot first), so name the source slot explicitly.
            source = self.status().drive(drive).source
            if source is None:
                raise ChangerError(f"No Source for tape in drive {drive}!")
            slot = source
        if slot is None:
            self._mtx("unload")
        else:
            self._mtx("unload", slot, drive)

    def transfer(self, source: int, destination: int) -> None:
        self._mtx("transfer", source, destination)

    def exchange(self, first: int, second: int) -> None:
        self._mtx("exchange", first, second)

    def inventory(self) -> None:
        self._mtx("inventory")
