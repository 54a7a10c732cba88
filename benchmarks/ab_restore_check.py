"""A/B of the restore's in-line check: the catalog's XXH3-128 against the SHA-256 fallback.

The fallback is what a set cataloged without XXH3-128 gets (``catalog rebuild``, older
catalogs); here the catalog's XXH3-128 is blanked as it is read, so both sides run the same
restore of the same store in the same process, alternating, and differ only in the check.
Each round also times ``dd bs=1M`` of the cartridge (the issue-10 baseline). Not part of
``make bench`` (the restore row there is the product's default); run it when the check changes::

    .venv/bin/python -m benchmarks.ab_restore_check [ROUNDS] [MIB]
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks import bench_backup


def run(rounds: int = 4, mib: int = 1024) -> dict[str, list[float]]:
    from reference.server.catalog import Catalog

    original = Catalog.objects
    blank = {"on": False}

    def objects(self, set_id):
        found = original(self, set_id)
        return [dataclasses.replace(o, xxh3="") for o in found] if blank["on"] else found

    work = Path(tempfile.mkdtemp(prefix="ab_restore_check."))
    figures: dict[str, list[float]] = {"sha256": [], "xxh3": [], "dd": []}
    Catalog.objects = objects
    try:
        exchange = bench_backup.make_exchange(work / "exchange", mib)
        copy = work / "dd.copy"
        dd_start = bench_backup._startup(["dd", "if=/dev/null", "of=/dev/null", "bs=1M"])
        for _ in range(rounds):
            for check in ("sha256", "xxh3"):
                blank["on"] = check == "sha256"
                seconds, restored, cartridge = bench_backup.restore_once(exchange, work / "site")
                figures[check].append(restored / seconds / 1e6)
            seconds = max(1e-6, bench_backup.dd_copy([cartridge], copy) - dd_start)
            figures["dd"].append(cartridge.stat().st_size / seconds / 1e6)
            print({k: round(v[-1]) for k, v in figures.items()}, "MB/s", flush=True)
        exchange.shutdown()
    finally:
        Catalog.objects = original
        shutil.rmtree(work, ignore_errors=True)
    return figures


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    result = run(*args)
    best = {k: max(v) for k, v in result.items()}
    print("best MB/s:", {k: round(v) for k, v in best.items()},
          "ratio to dd: SHA-256", round(best["sha256"] / best["dd"], 2),
          "XXH3-128", round(best["xxh3"] / best["dd"], 2))
