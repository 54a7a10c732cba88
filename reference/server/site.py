"""A "site": one folder holding everything a backup server needs (docs/server.md, "Site layout").

::

    SITE/site.json        optional settings (below); missing = defaults
    SITE/catalog.sqlite   the catalog
    SITE/library/         the emulated tape library (mailtape library init SITE/library)
    SITE/exchange/        the emulated Exchange server root (the agent side; lead's commands)

``site.json`` keys (all optional): ``pool`` ("Default"), ``block_size`` (65536), ``seed`` (None =
OS entropy; an integer makes media family ids reproducible), ``changer`` ("emulated" or a
``/dev/sgN`` for the real ``mtx`` driver), ``drives`` ({"0": "/dev/nst0", ...} with a real
changer), ``max_buffered`` (64 MiB, the agent→server bounded buffer; a backup session's pool of
transfer buffers is this plus two buffers, mapped once and reused: see ``reference/transfer.py``),
``pacing`` ("auto": pace writes for drives that report speed steps, i.e. emulated drives with a
timing model; "off"; or a media generation such as "LTO-9" for real drives, which do not report
their steps: see ``reference/server/pacing.py``).

:func:`open_site` gives the catalog, the changer, the drives (drive number → TapeDevice opener),
the media manager, a runtime and a :class:`BackupServer`; :meth:`Site.close` saves the emulated
drives' state (``SITE/library/drive<N>.json``) so ``mailtape mt`` and the next run see it.
One server process per site at a time.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from emulators.clock import Clock
from reference.errors import CorruptDataError, NotFoundError
from reference.runtime import Runtime
from reference.server.catalog import Catalog
from reference.server.devices import EmulatedDrives, StDrives
from reference.server.media import DEFAULT_BLOCK_SIZE, DEFAULT_POOL, MediaManager
from reference.server.pacing import PACING_MODES, pacing_for_generation
from reference.server.server import BackupServer

SETTINGS_NAME = "site.json"
DEFAULTS = {"pool": DEFAULT_POOL, "block_size": DEFAULT_BLOCK_SIZE, "seed": None, "changer": "emulated",
            "drives": {}, "max_buffered": 64 << 20, "pacing": "auto"}


@dataclass
class Site:
    root: Path
    settings: dict
    catalog: Catalog
    changer: object
    drives: object
    media: MediaManager
    runtime: Runtime
    server: BackupServer
    _live: dict = field(default_factory=dict)

    @property
    def library_path(self) -> Path:
        return self.root / "library"

    @property
    def exchange_path(self) -> Path:
        return self.root / "exchange"

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite"

    def reader(self, drive: int | None = None):
        from reference.server.readback import MediaReader

        return MediaReader(self.catalog, self.media, drive)

    def close(self) -> None:
        from emulators.tape.drive_state import save_drive_state

        try:
            for number, drive in self._live.items():
                if drive._open is not None and not drive._open.closed:
                    drive._open.close()
                save_drive_state(drive, self.library_path / f"drive{number}.json")
                if drive.cartridge is not None:
                    drive.cartridge.close()
        finally:
            self.catalog.close()
            self.runtime.close()

    def __enter__(self) -> "Site":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_settings(root: Path) -> dict:
    settings = dict(DEFAULTS)
    path = root / SETTINGS_NAME
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise CorruptDataError(f"not valid JSON ({error})", where=str(path)) from None
        if not isinstance(loaded, dict):
            raise CorruptDataError("must hold a JSON object", where=str(path))
        unknown = set(loaded) - set(DEFAULTS)
        if unknown:
            raise CorruptDataError(f"unknown settings {sorted(unknown)}", where=str(path))
        settings.update(loaded)
    return settings


def open_site(path, *, clock: Clock | None = None, catalog_path: Path | None = None) -> Site:
    """Open the site folder ``path`` (see the module docstring). ``clock``: a VirtualClock for
    simulation; the emulated drives then charge their time to it."""
    root = Path(path)
    if not root.is_dir():
        raise NotFoundError(f"{root}: no such site folder")
    settings = load_settings(root)
    runtime = Runtime(clock)
    live: dict = {}
    if settings["changer"] == "emulated":
        from emulators.tape.drive_state import open_persisted_drive
        from emulators.tape.library import EmulatedLibrary
        from emulators.tape.library_state import LibraryStore

        library_root = root / "library"
        if not LibraryStore(library_root).exists():
            raise NotFoundError(f"{library_root}: no tape library here (create one with "
                                f"'mailtape library init {library_root}')")
        probe = EmulatedLibrary(library_root)
        for bay in probe.state.drives:
            state_path = library_root / f"drive{bay.number}.json"
            if not state_path.exists():
                from emulators.tape.drive_state import DriveState
                from emulators.tape.library_drives import drive_generation_for

                DriveState.create(state_path, generation=drive_generation_for(probe.state.media),
                                  name=f"nst{bay.number}")
            live[bay.number] = open_persisted_drive(state_path, clock)
            if runtime.simulated and live[bay.number].timing is not None:
                # Jobs await the drive's timeline (Runtime.call), so two drives overlap in virtual time.
                live[bay.number].timing.wait_in_place = False
        changer = EmulatedLibrary(library_root, clock=clock, drives=live)
        drives = EmulatedDrives(live)
    else:
        from reference.drivers.mtx import MtxChanger

        changer = MtxChanger(settings["changer"])
        drives = StDrives({int(k): v for k, v in settings["drives"].items()})
        if not drives.numbers:
            raise CorruptDataError("a real changer needs \"drives\": {\"0\": \"/dev/nst0\", ...}",
                                   where=str(root / SETTINGS_NAME))
    catalog = Catalog(catalog_path or root / "catalog.sqlite")
    media = MediaManager(catalog, changer, drives, block_size=int(settings["block_size"]),
                         rng=random.Random(settings["seed"]), now=runtime.clock.now)
    server = BackupServer(catalog, media, runtime, pool=settings["pool"],
                          max_buffered=int(settings["max_buffered"]), pacing=_pacing_mode(settings, root))
    return Site(root, settings, catalog, changer, drives, media, runtime, server, live)


def _pacing_mode(settings: dict, root: Path) -> str:
    """The ``pacing`` setting, checked before any job can trip over it."""
    mode = settings["pacing"]
    if mode not in PACING_MODES:
        try:
            pacing_for_generation(mode)
        except (ValueError, TypeError) as error:
            raise CorruptDataError(f"pacing: {mode!r} is not one of {', '.join(PACING_MODES)} or a known media "
                                   f"generation ({error})", where=str(root / SETTINGS_NAME)) from None
    return mode


def create_site(path, *, drives: int = 2, slots: int = 20, cartridges: int | None = None,
                media: str = "LTO-9", capacity_bytes: int | None = None, settings: dict | None = None) -> Path:
    """Make a new site folder: an emulated library in SITE/library, SITE/exchange, and site.json."""
    from emulators.tape.library import create_library

    root = Path(path)
    unknown = set(settings or {}) - set(DEFAULTS)
    if unknown:
        raise CorruptDataError(f"unknown settings {sorted(unknown)}", where=str(root / SETTINGS_NAME))
    create_library(root / "library", drives=drives, slots=slots, import_export=0, media=media,
                   cartridges=cartridges, capacity_bytes=capacity_bytes)
    (root / "exchange").mkdir(exist_ok=True)
    (root / SETTINGS_NAME).write_text(json.dumps(settings or {}, indent=1, sort_keys=True) + "\n",
                                      encoding="utf-8")
    return root


def open_site_catalog(path) -> Catalog:
    """Only the catalog of a site (for listing commands that need no devices)."""
    root = Path(path)
    if not root.is_dir():
        raise NotFoundError(f"{root}: no such site folder")
    catalog_path = root / "catalog.sqlite"
    if not catalog_path.exists():
        raise NotFoundError(f"{catalog_path}: no catalog yet (nothing was backed up at this site)")
    return Catalog(catalog_path)
