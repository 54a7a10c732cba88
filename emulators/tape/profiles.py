"""LTO media and drive profiles: capacities, density codes, speed steps, timings, compatibility.

Numbers come from spec ``tape-drive.md`` §1.10 (media identity) and §5 (rates, speed matching,
mechanical timings). Values the spec marks *unknown* or *unverified* are chosen here, flagged
``UNVERIFIED`` in the comment beside them and listed in docs/tape.md; every one of them is a field,
so a test or a site can override it with :func:`dataclasses.replace`.

Media are named ``"LTO-5"`` .. ``"LTO-10"``, plus ``"LTO-M8"`` (LTO-7 Type M, 9 TB) and
``"LTO-10P"`` (LTO-10 Premium, 40 TB). Drives are named by generation ``"LTO-5"`` .. ``"LTO-10"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reference.errors import NotFoundError

MB = 1_000_000
GB = 1_000_000_000
TB = 1_000_000_000_000
MiB = 1 << 20
GiB = 1 << 30


def _steps(high: float, low: float, count: int) -> tuple[float, ...]:
    """Evenly spaced speed steps (MB/s) from ``high`` down to ``low``: for generations whose
    intermediate steps are not published (only the ends are)."""
    span = (high - low) / (count - 1)
    return tuple(round(high - i * span, 2) for i in range(count))


@dataclass(frozen=True)
class MediaProfile:
    """One LTO media type (what the cartridge is), spec §1.10 and §5."""

    name: str
    native_capacity: int
    """Bytes (SI), from mhvtl ``media_native_capacity``."""
    density_code: int
    media_type_data: int
    media_type_worm: int | None
    barcode_suffix: str
    worm_suffix: str | None
    native_rate: float
    """Bytes per second, full-height drive, uncompressed."""
    speed_steps_mbs: tuple[float, ...]
    """Speed-matching steps in MB/s, highest first; the last is the minimum streaming rate."""
    mam_bytes: int

    @property
    def speed_steps(self) -> tuple[float, ...]:
        """Speed steps in bytes per second, highest first."""
        return tuple(step * MB for step in self.speed_steps_mbs)


@dataclass(frozen=True)
class DriveProfile:
    """One LTO drive generation: what it reads and writes, its buffer and mechanical timings."""

    name: str
    read_write: frozenset[str]
    read_only: frozenset[str]
    buffer_bytes: int
    """Drive data buffer. UNVERIFIED per model (spec §5): a parameter."""
    load_seconds: float
    unload_seconds: float
    rewind_avg_seconds: float
    """Average rewind (from mid-tape); rewinding from the physical end takes twice this."""
    locate_avg_seconds: float
    """Average space/locate from BOT (to mid-tape); the full length takes twice this."""
    min_block: int = 1
    max_block: int = 8 * MiB
    """READ BLOCK LIMITS maximum. UNVERIFIED: IBM/HP LTO report 8 MiB (mhvtl uses 2 MiB)."""
    backhitch_seconds: float = 2.0
    """Cost of one stop-reverse-restart. UNVERIFIED (spec §5: no primary figure; estimate)."""
    restart_fill: float = 0.5
    """Fraction of the buffer that must be full before a stopped tape starts streaming again.
    UNVERIFIED: drives do not publish it."""
    erase_seconds_full: float = 0.0
    """Long ERASE of a whole tape (0: charged as a full-length wind)."""
    rate_window_seconds: float = 2.0
    """Speed matching follows the host's data rate averaged over this much time. UNVERIFIED:
    drives adapt over the time their buffer covers (1 GiB at ~400 MB/s ≈ 2.7 s), not per block,
    so a burst of blocks after a pause does not look like an infinitely fast host."""
    speed_margin: float = 0.95
    """Speed matching picks the fastest step at or below this fraction of the host's rate.
    UNVERIFIED: drives do not publish their matching rule."""
    extra: dict = field(default_factory=dict, compare=False)

    def can_load(self, media: str) -> bool:
        return media in self.read_write or media in self.read_only

    def can_write(self, media: str) -> bool:
        return media in self.read_write


MEDIA: dict[str, MediaProfile] = {
    p.name: p
    for p in [
        # LTO-5/6 speed steps: UNVERIFIED (spec §5 "unknown"); 12 even steps down to 1/3 native.
        MediaProfile("LTO-5", 1_500 * GB, 0x58, 0x58, 0x5C, "L5", "LV", 140 * MB,
                     _steps(140, 47, 12), 8 * 1024),
        MediaProfile("LTO-6", 2_500 * GB, 0x5A, 0x68, 0x6C, "L6", "LW", 160 * MB,
                     _steps(160, 54, 12), 8 * 1024),
        # LX / LY / LZ WORM suffixes: UNVERIFIED (spec §1.10).
        MediaProfile("LTO-7", 6 * TB, 0x5C, 0x78, 0x7C, "L7", "LX", 300 * MB,
                     (306.0, 287.52, 268.56, 250.66, 231.86, 213.06, 194.26, 175.46, 157.67,
                      138.52, 120.11, 101.46), 8 * 1024),
        MediaProfile("LTO-M8", 9 * TB, 0x5D, 0x78, None, "M8", None, 300 * MB,
                     (306.0, 287.52, 268.56, 250.66, 231.86, 213.06, 194.26, 175.46, 157.67,
                      138.52, 120.11, 101.46), 8 * 1024),
        MediaProfile("LTO-8", 12 * TB, 0x5E, 0x88, 0x8C, "L8", "LY", 360 * MB,
                     (365.0, 341.0, 318.0, 306.4, 273.0, 249.5, 226.0, 203.0, 180.0, 157.5,
                      135.0, 112.0), 8 * 1024),
        MediaProfile("LTO-9", 18 * TB, 0x60, 0x98, 0x9C, "L9", "LZ", 400 * MB,
                     (408, 385, 366, 347, 325, 305, 284, 263, 244, 223, 203, 177), 16 * 1024),
        # LTO-10: only the end steps are published (407 .. 157 / 162, 14 steps); the ones between
        # are interpolated (UNVERIFIED). WORM barcode suffix unknown: None (kind="worm" explicit).
        MediaProfile("LTO-10", 30 * TB, 0x62, 0xA8, 0xAC, "LA", None, 400 * MB,
                     _steps(407, 157, 14), 16 * 1024),
        MediaProfile("LTO-10P", 40 * TB, 0x63, 0xA9, 0xAC, "PA", None, 400 * MB,
                     _steps(407, 162, 14), 16 * 1024),
    ]
}

_GEN = frozenset
DRIVES: dict[str, DriveProfile] = {
    p.name: p
    for p in [
        # Oracle SL150: LTO-7 and earlier write one generation back, read two back (LTO-3/4 media
        # are not modelled). Rewind/locate for LTO-5..8 are UNVERIFIED (spec §5 gives LTO-9/10).
        # Buffer sizes UNVERIFIED: 256 MiB for LTO-5, 1 GiB from LTO-6 (Bareos: "1 GiB and more").
        DriveProfile("LTO-5", _GEN({"LTO-5"}), _GEN(), 256 * MiB, 12, 17, 50, 50),
        DriveProfile("LTO-6", _GEN({"LTO-6", "LTO-5"}), _GEN(), 1 * GiB, 12, 17, 50, 50),
        DriveProfile("LTO-7", _GEN({"LTO-7", "LTO-6"}), _GEN({"LTO-5"}), 1 * GiB, 15, 20, 50, 50),
        # LTO-8 and later read/write one generation back only; M8 media only in LTO-8 drives.
        DriveProfile("LTO-8", _GEN({"LTO-8", "LTO-M8", "LTO-7"}), _GEN(), 1 * GiB, 15, 24, 50, 50),
        DriveProfile("LTO-9", _GEN({"LTO-9", "LTO-8"}), _GEN(), 1 * GiB, 17, 30, 55, 45),
        # LTO-10 takes LTO-10 media only (mhvtl PR #193).
        DriveProfile("LTO-10", _GEN({"LTO-10", "LTO-10P"}), _GEN(), 1 * GiB, 12, 27, 62, 65),
    ]
}

CLEANING_PREFIX = "CLN"


def _normalise(name: str | int) -> str:
    if isinstance(name, int):
        return f"LTO-{name}"
    text = str(name).strip().upper().replace("_", "-")
    if text.isdigit():
        return f"LTO-{text}"
    if text.startswith("LTO") and not text.startswith("LTO-"):
        text = "LTO-" + text[3:]
    return text


def media_profile(name: str | int) -> MediaProfile:
    """The media profile for ``"LTO-9"``, ``"lto9"``, ``9``..."""
    key = _normalise(name)
    try:
        return MEDIA[key]
    except KeyError:
        raise NotFoundError(f"unknown LTO media {name!r} (known: {', '.join(MEDIA)})") from None


def drive_profile(name: str | int) -> DriveProfile:
    """The drive profile for generation ``"LTO-9"`` / ``9``."""
    key = _normalise(name)
    try:
        return DRIVES[key]
    except KeyError:
        raise NotFoundError(f"unknown LTO drive {name!r} (known: {', '.join(DRIVES)})") from None


def density_name(code: int) -> str | None:
    """The media name for a density code (what mt-st prints beside ``Density code``)."""
    for profile in MEDIA.values():
        if profile.density_code == code:
            return profile.name
    return None


def classify_barcode(barcode: str) -> tuple[str | None, str]:
    """(media name or None, kind) from an LTO barcode: ``000001L9`` -> ("LTO-9", "data"),
    ``000001LZ`` -> ("LTO-9", "worm"), ``CLN001L1`` -> (None, "cleaning").

    Follows mhvtl ``make_vtl_media``: prefix ``CLN`` = cleaning, the last two characters select the
    generation and WORM. Raises NotFoundError for an unknown suffix.
    """
    code = barcode.strip().upper()
    if code.startswith(CLEANING_PREFIX):
        return None, "cleaning"
    suffix = code[-2:]
    for profile in MEDIA.values():
        if suffix == profile.barcode_suffix:
            return profile.name, "data"
        if profile.worm_suffix and suffix == profile.worm_suffix:
            return profile.name, "worm"
    raise NotFoundError(f"barcode {barcode!r}: unknown LTO media suffix {suffix!r}")
