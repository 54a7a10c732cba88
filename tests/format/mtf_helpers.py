"""Shared helpers for the MTF tests: building object trees, writing .bkf images and tape families."""

from __future__ import annotations

import datetime as dt
import io
import random
from dataclasses import dataclass
from pathlib import Path

from reference.format.media import MediaIdentity, MediaWriter
from reference.format.reader import MtfReader
from reference.format.sources import Medium, open_medium

SHARED_MTF = Path(__file__).resolve().parents[2] / ".." / "shared" / "samples" / "mtf"
FIXED_DATE = dt.datetime(2026, 1, 2, 3, 4, 5)


@dataclass
class Obj:
    volume: str
    path: tuple[str, ...]
    name: str
    data: bytes


def make_tree(rng: random.Random, n_objects: int, sizes=(0, 1, 3, 1000, 5000, 70000)) -> list[Obj]:
    objs = []
    for i in range(n_objects):
        vol = "Microsoft Information Store" if i % 3 else "Mailboxes"
        path = ("SG1", f"DB{rng.randrange(3)}")
        objs.append(Obj(vol, path, f"obj{i:03d}.dat", rng.randbytes(rng.choice(sizes))))
    return objs


def write_objects(mw: MediaWriter, objs: list[Obj], *, name: str = "job", chunk: int | None = None):
    """One data set holding ``objs`` grouped by volume and directory; returns (writer, records)."""
    w = mw.begin_set(name=name, user="DOMAIN\\backup", write_date=FIXED_DATE)
    current_vol = current_dir = None
    for o in sorted(objs, key=lambda o: (o.volume, o.path)):
        if o.volume != current_vol:
            w.begin_volume(o.volume, "First Storage Group", "EXCH01", metadata={"kind": o.volume})
            current_vol, current_dir = o.volume, None
        if o.path != current_dir:
            w.begin_directory(list(o.path))
            current_dir = o.path
        if chunk:
            w.add_file(o.name, len(o.data), (o.data[i:i + chunk] for i in range(0, len(o.data), chunk)))
        else:
            w.add_file(o.name, len(o.data), io.BytesIO(o.data))
    placement = mw.end_set(w.end())
    return w, placement


def write_bkf(path: Path, objs: list[Obj], *, block_size: int = 1024, flb: int = 1024, sets: int = 1):
    mw = MediaWriter.create_bkf(path, block_size=block_size, flb=flb,
                                identity=MediaIdentity(0x1234ABCD, "media", "", FIXED_DATE),
                                now=lambda: FIXED_DATE)
    records = []
    for s in range(sets):
        w, _ = write_objects(mw, objs, name=f"job{s}")
        records.append(w.files)
    mw.close()
    return records


def read_media(paths) -> tuple[MtfReader, list[Medium]]:
    media = [open_medium(p) for p in paths]
    reader = MtfReader(media, keep_blocks=True)
    reader.read()
    return reader, media


def recovered(reader: MtfReader) -> dict[str, bytes]:
    """name -> data for every object that verifies cleanly."""
    out = {}
    for e in reader.catalog.objects():
        buf = bytearray()
        if not reader.verify_object(e, buf.extend):
            out[e.name] = bytes(buf)
    return out


class TapeFamily:
    """Tiny emulated cartridges in one emulated drive; ``next_medium`` swaps them in order."""

    def __init__(self, folder: Path, capacity: int, early_warning: int, count: int = 40):
        from emulators.tape.cartridge import Cartridge
        from emulators.tape.drive import EmulatedDrive

        self.folder = folder
        self.count = count
        self._create = lambda i: Cartridge.create(folder / f"c{i:03d}.tap", barcode=f"MT{i:04d}L6",
                                                  capacity_bytes=capacity, early_warning_bytes=early_warning)
        self.carts = [self._create(1)]
        self.drive = EmulatedDrive("LTO-6")
        self.drive.load(self.carts[0])
        self.device = self.drive.open()
        self.used = 1

    def next_medium(self, sequence: int):
        self.device.close()
        self.drive.unload()
        if sequence > self.count:
            return None
        while len(self.carts) < sequence:
            self.carts.append(self._create(len(self.carts) + 1))
        self.drive.load(self.carts[sequence - 1])
        self.device = self.drive.open()
        self.used = sequence
        return self.device

    def finish(self) -> list[Path]:
        self.device.close()
        self.drive.unload()
        return [self.folder / f"c{i:03d}.tap" for i in range(1, self.used + 1)]
