"""Backup-server throughput against the bare media writer on the same emulated drive (target >= 0.8).

(1) write: one data set of ``SIZE`` bytes produced by a DataSetWriter, packed into the session's
transfer buffers as the product's agent does (``PackingSink``) and sent through a LocalSession
to the BackupServer (drive selection, label check, FILE-placement recording, catalog commit) vs
the same bytes fed straight into a MediaWriter on an EmulatedDrive in the same process;
(2) read: ``MediaReader.read_objects`` (changer load, label check, TapeView over MTSEEK/read,
MTF reader, SHA-256) vs the MTF reader over the cartridge image file (``TapMedium``) hashing the
same object. Best of N runs. ``python benchmarks/bench_server.py [--quick]`` or ``run()``.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "server"))


def _baseline_write(tmp: Path, data: bytes) -> float:
    """The same data set produced by a DataSetWriter straight into a MediaWriter (no server)."""
    from emulators.tape.cartridge import Cartridge
    from emulators.tape.drive import EmulatedDrive
    from reference.format.media import MediaWriter

    drive = EmulatedDrive("LTO-9")
    drive.load(Cartridge.create(tmp / "base.tap", barcode="000099L9", overwrite=True))
    start = time.perf_counter()
    device = drive.open(write=True)
    writer = MediaWriter.for_tape(device)
    writer.write_media_header()
    sets = writer.begin_set(name="SG1")
    sets.begin_volume("Microsoft Information Store", volume="SG1")
    sets.begin_directory(["DB"])
    sets.add_file("db.edb", len(data), data)
    writer.end_set(sets.end())
    device.close()
    elapsed = time.perf_counter() - start
    drive.unload().close()
    return elapsed


def _server_write(tmp: Path, data: bytes):
    from server_helpers import agent_backup, make_site

    site = make_site(tmp, cartridges=2, capacity=4 * len(data) + (64 << 20))
    start = time.perf_counter()
    receipt = site.run(agent_backup(site.server, "SG1", {"DB/db.edb": data}, packed=True))
    elapsed = time.perf_counter() - start
    return elapsed, site, receipt


def _reads(site, receipt) -> tuple[float, float]:
    from reference.format.reader import MtfReader
    from reference.format.sources import TapMedium
    from reference.server.readback import MediaReader

    start = time.perf_counter()
    reader = MediaReader(site.catalog, site.media)
    for _obj, chunks in reader.read_objects(receipt.data_set_id, ["DB/db.edb"]):
        digest = hashlib.sha256()
        for view in chunks:
            digest.update(view)
    reader.close()
    server = time.perf_counter() - start
    site.media.unload(0)
    start = time.perf_counter()
    medium = TapMedium(site.library.cartridge_path(receipt.barcodes[0]))
    mtf = MtfReader([medium])
    found = mtf.read()
    entry = next(o for o in found.objects() if o.name == "db.edb")
    digest = hashlib.sha256()
    for view in mtf.iter_object(entry):
        digest.update(view)
    del view, mtf, found, entry
    medium.close()
    return server, time.perf_counter() - start


def run(quick: bool = False) -> list[dict]:
    size = (16 if quick else 64) << 20
    runs = 2 if quick else 4
    from server_helpers import payload

    data = payload(1, size)
    best = {"base_w": float("inf"), "srv_w": float("inf"), "srv_r": float("inf"), "base_r": float("inf")}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            best["base_w"] = min(best["base_w"], _baseline_write(Path(tmp), data))
            elapsed, site, receipt = _server_write(Path(tmp) / "site", data)
            best["srv_w"] = min(best["srv_w"], elapsed)
            srv_r, base_r = _reads(site, receipt)
            best["srv_r"] = min(best["srv_r"], srv_r)
            best["base_r"] = min(best["base_r"], base_r)
            site.catalog.close()
    mb = size / 1e6
    return [
        {"name": "server write (agent session → tape → catalog)", "value": round(mb / best["srv_w"], 1),
         "unit": "MB/s", "baseline": round(mb / best["base_w"], 1), "ratio": round(best["base_w"] / best["srv_w"], 2),
         "target": 0.8},
        {"name": "server read-back (changer → drive → MTF reader → SHA-256)", "value": round(mb / best["srv_r"], 1),
         "unit": "MB/s", "baseline": round(mb / best["base_r"], 1), "ratio": round(best["base_r"] / best["srv_r"], 2),
         "target": 0.8},
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
