"""Brick-level jobs through the backup server, on the emulated library (virtual clock, so the tape
timing model costs no wall time): (0) a full brick-level backup job (engine, MTF packaging, the
agent→server session, media writer, catalog commit with one row per item) against the same pass
packaged into a discarding sink (target: ratio >= 0.5); (1) restoring the whole mailbox from tape
into an empty mailbox against restoring it from an in-memory view of the same pass (target: ratio >= 0.5).

Run directly (``python benchmarks/bench_brick_jobs.py [--quick]``) or via ``run()``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def run(quick: bool = False) -> list[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.bench_brick import _brick_pass, _populate
    from reference.agent.brick import (
        BrickBackup,
        BrickCatalog,
        RestoreOptions,
        Selection,
        run_restore,
    )
    from reference.brick_jobs import backup_mailboxes, restore_mailboxes
    from reference.server.site import create_site, open_site

    items, size = (150, 20_000) if quick else (1000, 50_000)
    work = tempfile.mkdtemp(prefix="bench_brick_jobs.")
    try:
        server, store = _populate(os.path.join(work, "srv"), items, size)
        store.create_mailbox("target1")
        store.create_mailbox("target2")
        create_site(os.path.join(work, "site"), drives=1, slots=4, cartridges=2, settings={"seed": 1})
        site = open_site(os.path.join(work, "site"), clock=server.clock)
        selection = Selection(mailboxes=("bench",))
        try:
            best_pack = min(_brick_pass(store)[0] for _ in range(1 if quick else 2))
            start = time.perf_counter()
            result = site.runtime.run(backup_mailboxes(site, store, selection, "full", server_name="BENCH"))
            job_s = time.perf_counter() - start
            nbytes = result.summary.bytes_stored

            objects = list(BrickBackup(store, selection).objects())
            start = time.perf_counter()
            run_restore(BrickCatalog.from_sets([objects]), store,
                        RestoreOptions(selection=selection, target_mailbox="target1"))
            memory_s = time.perf_counter() - start
            start = time.perf_counter()
            site.runtime.run(restore_mailboxes(site, store, RestoreOptions(selection=selection,
                                                                          target_mailbox="target2"),
                                               server_name="BENCH"))
            tape_s = time.perf_counter() - start
        finally:
            site.close()
            server.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    job_mbs, pack_mbs = nbytes / job_s / 1e6, nbytes / best_pack / 1e6
    tape_mbs, memory_mbs = nbytes / tape_s / 1e6, nbytes / memory_s / 1e6
    return [
        {"name": "brick_job_full_backup_to_tape", "value": round(job_mbs, 1), "unit": "MB/s",
         "baseline": round(pack_mbs, 1), "ratio": round(job_mbs / pack_mbs, 3), "target": 0.5},
        {"name": "brick_job_restore_from_tape", "value": round(tape_mbs, 1), "unit": "MB/s",
         "baseline": round(memory_mbs, 1), "ratio": round(tape_mbs / memory_mbs, 3), "target": 0.5},
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['name']}: {row['value']} {row['unit']} (baseline {row['baseline']}, ratio {row['ratio']}, "
              f"target {row['target']})")
