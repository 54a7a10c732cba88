"""Properties: whatever the object sizes, cartridge capacity and block size, a data set written by
the server reads back bit-exact and the catalog rebuilt from the media equals the original.
Also: the TAPE-label parser never raises on arbitrary bytes, the job engine records exit status."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings, strategies as st

from reference.server.catalog import Catalog
from reference.server.media import MediaManager, parse_label
from reference.server.readback import MediaReader, rebuild_catalog
from reference.server.server import JobEngine
from server_helpers import MB, agent_backup, make_site, payload


@settings(max_examples=12)
@given(sizes=st.lists(st.integers(0, 3 * MB), min_size=1, max_size=4),
       capacity=st.sampled_from([4 * MB, 5 * MB, 7 * MB]),
       block=st.sampled_from([32 * 1024, 64 * 1024]),
       sets=st.integers(1, 2))
def test_any_layout_reads_back_and_rebuilds(sizes, capacity, block, sets):
    with tempfile.TemporaryDirectory() as tmp:
        site = make_site(Path(tmp), cartridges=8, capacity=capacity, block_size=block)
        written = []

        async def run():
            for n in range(sets):
                files = {f"DB/f{i}.edb": payload(100 * n + i, size) for i, size in enumerate(sizes)}
                receipt = await agent_backup(site.server, "SG1", files, chunk=100_003)
                written.append((receipt.data_set_id, files))

        site.run(run())
        reader = MediaReader(site.catalog, site.media)
        try:
            for set_id, files in written:
                back = {o.path: b"".join(bytes(c) for c in chunks) for o, chunks in reader.read_objects(set_id)}
                for path, data in files.items():
                    assert back[path] == data, (set_id, path)
        finally:
            reader.close()
        rebuilt = Catalog(Path(tmp) / "rebuilt.sqlite")
        result = rebuild_catalog(rebuilt, MediaManager(rebuilt, site.library, site.media.drives))
        assert result.problems == []
        assert rebuilt.dump() == site.catalog.dump()
        rebuilt.close()
        site.catalog.close()


@given(st.binary(max_size=300))
def test_label_parser_never_raises(data):
    label = parse_label(b"TAPE" + data) if data[:1] != b"!" else parse_label(data)
    assert label is None or label.block_size == len(data) + 4 or label.block_size == len(data)


def test_job_engine_records_status_and_exit_status(tmp_path):
    site = make_site(tmp_path, cartridges=1)
    engine = JobEngine(site.catalog, site.runtime)

    async def good(job_id):
        return {"bytes": 5, "objects": 1}

    async def warned(job_id):
        return {"warnings": ["converted to full"], "level": "full"}

    async def bad(job_id):
        raise RuntimeError("drive on fire")

    async def run():
        return [await engine.run("restore", "SG1", work) for work in (good, warned, bad)]

    jobs = site.run(run())
    assert [(j["status"], j["exit_status"]) for j in jobs] == [("ok", 0), ("warning", 1), ("failed", 2)]
    assert jobs[2]["message"] == "drive on fire" and jobs[1]["level"] == "full"
    assert [j["id"] for j in engine.history()] == [3, 2, 1]
