"""Tape drive emulator throughput vs ``dd bs=256k`` on the same filesystem (target ratio >= 0.9).

Writes and then reads the same byte count in 256 KiB blocks (1) through an EmulatedDrive into a
cartridge image and (2) with ``dd`` between ``/dev/zero``, a file and ``/dev/null``, in the same
run, alternating so neither side gets a warmer cache; the best of 15 runs of 64 MiB (5 with
``quick``), dd's process start-up subtracted. Run directly
(``python benchmarks/bench_tape.py [--quick]``) or through ``run()``.
"""

from __future__ import annotations

import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BLOCK = 256 * 1024


def _dd_startup() -> float:
    """Seconds dd needs to start and exit with nothing to copy (subtracted from its timings, so
    the baseline is dd's copying speed, not process creation)."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run(["dd", "if=/dev/zero", "of=/dev/null", "bs=256k", "count=0"],
                       check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def _dd_write(path: Path, count: int) -> float:
    start = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=256k", f"count={count}"],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def _dd_read(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=256k"], check=True, capture_output=True)
    return time.perf_counter() - start


def _drive_write(path: Path, count: int) -> float:
    from emulators.tape.cartridge import Cartridge
    from emulators.tape.drive import EmulatedDrive

    for stale in (path, path.with_name(path.name + ".json")):
        stale.unlink(missing_ok=True)
    cartridge = Cartridge.create(path, barcode="BENCH1L9", capacity_bytes=1 << 40)
    drive = EmulatedDrive("LTO-9")
    drive.load(cartridge)
    data = bytes(BLOCK)
    start = time.perf_counter()
    with drive.open() as tape:
        write = tape.write
        for _ in range(count):
            write(data)
    elapsed = time.perf_counter() - start
    drive.unload().close()
    return elapsed


def _drive_read(path: Path, count: int) -> float:
    from emulators.tape.cartridge import Cartridge
    from emulators.tape.drive import EmulatedDrive
    from reference.protocols.tape import MtOp

    drive = EmulatedDrive("LTO-9")
    drive.load(Cartridge.open(path))
    start = time.perf_counter()
    buffer = memoryview(mmap.mmap(-1, BLOCK))  # page-aligned, like dd's buffer
    with drive.open(write=False) as tape:
        readinto = tape.readinto
        for _ in range(count):
            if readinto(buffer) != BLOCK:
                raise RuntimeError("short block")
        tape.mtop(MtOp.MTREW)
    elapsed = time.perf_counter() - start
    drive.unload().close()
    return elapsed


def run(quick: bool = False) -> list[dict]:
    if shutil.which("dd") is None:
        return []
    # 64 MiB per run, best of many: short runs stay clear of page-cache reclaim on a busy host
    count, repetitions = (256, 5) if quick else (256, 15)
    total = count * BLOCK
    startup = _dd_startup()
    work = Path(tempfile.mkdtemp(prefix="bench_tape."))
    try:
        dd_file, tap_file = work / "dd.img", work / "bench.tap"
        timings = {"dd_write": [], "drive_write": [], "dd_read": [], "drive_read": []}
        for _ in range(repetitions):
            # Each writer starts from a clean page cache (no dirty pages of the other's file), so
            # write-back throttling does not favour whoever writes first.
            dd_file.unlink(missing_ok=True)
            os.sync()
            timings["dd_write"].append(_dd_write(dd_file, count))
            tap_file.unlink(missing_ok=True)
            os.sync()
            timings["drive_write"].append(_drive_write(tap_file, count))
            timings["dd_read"].append(_dd_read(dd_file))
            timings["drive_read"].append(_drive_read(tap_file, count))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = []
    for kind in ("write", "read"):
        ours = total / min(timings[f"drive_{kind}"]) / 1e6
        baseline = total / max(1e-6, min(timings[f"dd_{kind}"]) - startup) / 1e6
        results.append({
            "name": f"tape_drive_{kind}_256k",
            "value": round(ours, 1),
            "unit": "MB/s",
            "baseline": round(baseline, 1),
            "ratio": round(ours / baseline, 3),
            "target": 0.9,
        })
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['name']}: {row['value']} {row['unit']} vs dd {row['baseline']} "
              f"-> ratio {row['ratio']} (target >= {row['target']})")
