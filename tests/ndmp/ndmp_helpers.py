"""Shared helpers for the NDMP tests (imported by conftest.py, the tests and ndmjob_three_way.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from reference.ndmp.auth import Credentials
from reference.ndmp.data import DataService
from reference.ndmp.server import NdmpServer, ServerConfig
from reference.ndmp.tar_butype import tar_butype

USER, PASSWORD = "ndmp", "s3cret-pw"
REPO = Path(__file__).resolve().parents[2]
NDMJOB_DEFAULT = REPO / ".ci/ndmjob/usr/lib/amanda/ndmjob"


def make_server(**config) -> NdmpServer:
    cfg = ServerConfig(credentials=Credentials({USER: PASSWORD}), **config)
    server = NdmpServer(cfg)
    server.add_service(DataService([tar_butype()]))
    return server


class EmulatedDrives:
    """``open_device(name, write)`` for the Tape service: device names are files under ``root``;
    each becomes an emulated LTO drive holding a SIMH cartridge ``<name>.tap`` (created blank on
    first use). Unknown names answer ENOENT, as a missing /dev node would."""

    def __init__(self, root: Path, capacity_bytes: int | None = None, early_warning_bytes: int | None = None):
        self.root = Path(root)
        self.capacity_bytes = capacity_bytes
        self.early_warning_bytes = early_warning_bytes
        self.drives: dict[str, object] = {}

    def path(self, name: str) -> Path:
        return self.root / name

    def __call__(self, name: str, write: bool):
        import errno

        from emulators.tape.cartridge import Cartridge
        from emulators.tape.drive import EmulatedDrive

        path = Path(name)
        if path.parent != self.root or not path.name.startswith("drive"):
            raise OSError(errno.ENOENT, f"no such tape device: {name}")
        if name not in self.drives:
            drive = EmulatedDrive("LTO-9")
            tap = path.with_suffix(".tap")
            if tap.exists():
                cartridge = Cartridge.open(tap)
            else:
                kw = {}
                if self.capacity_bytes:
                    kw = {"capacity_bytes": self.capacity_bytes, "early_warning_bytes": self.early_warning_bytes}
                cartridge = Cartridge.create(tap, barcode=f"{len(self.drives) + 1:06d}L9", **kw)
            drive.load(cartridge)
            self.drives[name] = drive
        return self.drives[name].open(write=write)


def make_full_server(drives: EmulatedDrives, **config) -> NdmpServer:
    """Data service (tar) and Tape service (emulated drives) on one server."""
    from reference.ndmp.tape import TapeService

    server = make_server(**config)
    server.add_service(TapeService(drives, [str(drives.path("drive0"))]))
    return server


def ndmjob_path() -> Path | None:
    env = os.environ.get("MAILTAPE_NDMJOB")
    if env:
        return Path(env)
    if NDMJOB_DEFAULT.exists():
        return NDMJOB_DEFAULT
    found = shutil.which("ndmjob") or ("/usr/lib/amanda/ndmjob" if Path("/usr/lib/amanda/ndmjob").exists() else None)
    return Path(found) if found else None


def ndmjob_or_skip() -> Path:
    """The ndmjob binary, or skip the test saying how to get it (body of the ``ndmjob`` fixtures)."""
    import pytest  # here, not at the top: ndmjob_three_way.py imports this module outside pytest

    binary = ndmjob_path()
    if binary is None or not binary.exists():
        pytest.skip("ndmjob not found: run `bash .ci/debian-deps` as root (unpacks Debian's amanda-common "
                    "into .ci/ndmjob) or set MAILTAPE_NDMJOB")
    return binary


def ndmjob_env(binary: Path) -> dict[str, str]:
    env = dict(os.environ)
    libdir = binary.parents[2] / "lib/x86_64-linux-gnu/amanda"  # .../usr/lib/amanda/ndmjob -> .../usr
    if libdir.is_dir():
        env["LD_LIBRARY_PATH"] = str(libdir) + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env
