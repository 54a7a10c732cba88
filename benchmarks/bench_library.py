"""Emulated tape library speed: robot moves and ``mtx status`` on a large library.

Baselines are measured in the same run: one atomic rewrite of ``library.json`` (the least any
move must do) and a plain ``str.join`` of the same number of lines (the least rendering can do).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from emulators.tape.library import EmulatedLibrary, create_library
from emulators.tape.library_state import LibraryStore
from reference.drivers.mtx import parse_mtx_status, render_mtx_status


def _per_call(action, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        action()
    return (time.perf_counter() - start) / repeat


def run(quick: bool = False) -> list[dict]:
    cycles = 5 if quick else 30
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lib"
        create_library(root, drives=2, slots=20, import_export=4, media="LTO-9", cartridges=8,
                       capacity_bytes=1 << 20)
        library = EmulatedLibrary(root)
        store = LibraryStore(root)
        state = store.load()
        save = _per_call(lambda: store.save(state), cycles * 2)

        def cycle() -> None:
            library.load(1, 0)
            library.unload()

        move = _per_call(cycle, cycles) / 2
        results.append(dict(name="library move (slot<->persisted drive)", value=move * 1e3, unit="ms",
                            baseline=save * 1e3, ratio=move / save, target="ratio <= 25"))

        big = Path(tmp) / "big"
        create_library(big, drives=8, slots=1000, import_export=20, media="LTO-9", cartridges=0)
        status = EmulatedLibrary(big).status()
        lines = 1 + 8 + 1020
        render = _per_call(lambda: parse_mtx_status(render_mtx_status(status, "/dev/sg0")), 3 if quick else 20)
        plain = _per_call(lambda: "\n".join(f"      Storage Element {n}:Empty" for n in range(lines)),
                          3 if quick else 20)
        results.append(dict(name="mtx status render+parse, 1028 elements", value=render * 1e3, unit="ms",
                            baseline=plain * 1e3, ratio=render / plain, target="ratio <= 40"))
    return results


if __name__ == "__main__":
    for row in run(quick=False):
        print(row)
