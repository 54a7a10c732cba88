"""A small site for server tests: a library of tiny cartridges, live emulated drives, a catalog,
and a stand-in agent that produces real data sets with DataSetWriter and sends them through a
LocalSession exactly as reference/agent/database_backup.py does."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from dataclasses import dataclass

import numpy as np

from emulators.clock import VirtualClock
from emulators.tape.drive import EmulatedDrive
from emulators.tape.library import EmulatedLibrary, create_library
from reference.format.writer import DataSetWriter
from reference.runtime import Runtime
from reference.server.catalog import Catalog
from reference.server.devices import EmulatedDrives
from reference.server.media import MediaManager
from reference.server.server import BackupServer
from reference.transfer import DataSetTrailer, ObjectEntry, PackingSink

MB = 1_000_000


@dataclass
class TestSite:
    root: object
    library: EmulatedLibrary
    drives: dict
    catalog: Catalog
    media: MediaManager
    runtime: Runtime
    server: BackupServer

    def run(self, coro):
        return self.runtime.run(coro)


def make_site(tmp_path, *, cartridges=6, capacity=6 * MB, drives=2, seed=1, block_size=64 * 1024) -> TestSite:
    root = tmp_path / "library"
    create_library(root, drives=drives, slots=max(cartridges, 4), import_export=0, media="LTO-9",
                   cartridges=cartridges, capacity_bytes=capacity)
    clock = VirtualClock()
    live = {n: EmulatedDrive("LTO-9", name=f"nst{n}") for n in range(drives)}
    library = EmulatedLibrary(root, drives=live)
    catalog = Catalog(tmp_path / "catalog.sqlite")
    media = MediaManager(catalog, library, EmulatedDrives(live), block_size=block_size,
                         rng=random.Random(seed), now=clock.now)
    runtime = Runtime(clock)
    return TestSite(root, library, live, catalog, media, runtime, BackupServer(catalog, media, runtime))


def payload(seed: int, size: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


async def agent_backup(server: BackupServer, storage_group: str, files: dict[str, bytes], *,
                       backup_type="full", server_name="EXCH01", chunk=256 * 1024, abort_after=None,
                       packed=False):
    """Back up ``files`` ({"DB/name": bytes, "Log Files/E0000001.log": bytes}) as one data set.

    ``packed``: send the way the product's agent does (``PackingSink``: whole transfer buffers
    lent by the session, no per-chunk copy) instead of ``chunk``-sized ``send`` calls."""
    session = await server.open_session({"kind": "database", "server": server_name,
                                         "storage_group": storage_group, "backup_type": backup_type,
                                         "started": server.runtime.clock.now()})
    pending: list[bytes] = []
    when = dt.datetime.fromtimestamp(server.runtime.clock.now(), tz=dt.timezone.utc).replace(tzinfo=None)
    # No copy here: every chunk is either fresh writer output or a view of the immutable test data
    # (the real agent's read buffer is reused, so it flushes after every read; LocalSession copies).
    sink = PackingSink(session) if packed else pending.append
    writer = DataSetWriter(sink, set_number=session.set_number,
                           name=f"{storage_group} ({backup_type})", write_date=when)
    writer.begin_volume("Microsoft Information Store", volume=storage_group, machine=server_name)
    objects: list[ObjectEntry] = []
    sent = 0

    async def flush(final=False):
        nonlocal sent
        if packed:
            await sink.flush(final)
            return False
        while pending:
            data = memoryview(pending.pop(0))
            for i in range(0, len(data), chunk):
                await session.send(data[i:i + chunk])  # LocalSession takes its own copy
                sent += len(data[i:i + chunk])
                if abort_after is not None and sent >= abort_after:
                    await session.abort("agent gave up")
                    return True
        return False

    current = None
    gens = []
    for path, data in files.items():
        folder, name = path.rsplit("/", 1)
        if folder != current:
            writer.begin_directory([folder])
            current = folder
        record = writer.add_file(name, len(data), data)
        kind = "log" if folder == "Log Files" else "stream"
        if kind == "log":
            gens.append(int(name[3:].split(".")[0], 16))
        objects.append(ObjectEntry.written(record, path, kind, None if kind == "log" else folder))
        if await flush():
            await server.drain()  # the writer task records the failure before the loop ends
            return None
    metadata = {"format": "mailtape-exchange-backup/1", "server": server_name, "storage_group": storage_group,
                "backup_type": backup_type, "log_gen_low": min(gens) if gens else None,
                "log_gen_high": max(gens) if gens else None, "databases": [], "warnings": []}
    raw = json.dumps(metadata, indent=1, sort_keys=True).encode()
    writer.begin_directory([])
    record = writer.add_file("BackupMetadata.json", len(raw), raw)
    objects.append(ObjectEntry.written(record, "BackupMetadata.json", "metadata"))
    eset = writer.end()
    await flush(final=True)
    trailer = DataSetTrailer(eset, objects, backup_type, metadata["log_gen_low"], metadata["log_gen_high"],
                             metadata)
    return await session.finish(trailer)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
