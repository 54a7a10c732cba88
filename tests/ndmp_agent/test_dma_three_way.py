"""Our DMA driving a third-party NDMP tape server (ndmjob's tape daemon): three-way from our side.
The agent's Data service streams to ndmjob's Mover; ``-o tape-limit`` makes each simulated tape tiny,
so the Mover pauses with EOM and our DMA continues on the next tape file; the file history goes into
the catalog (a data set on remote media), and only then MAILTAPE_DATA_COMMIT truncates the logs."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from agent_helpers import SIMU_GAP_MAGIC, make_site

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "ndmp"))

from ndmp_helpers import ndmjob_or_skip  # noqa: E402
from test_interop_ndmjob import _clean_ndmjob_side_effects, _netns_available  # noqa: E402,F401

pytestmark = pytest.mark.ndmp
TAPE_LIMIT = 2_000_000  # bytes per simulated tape: the ~4.4 MB image needs three


def _records(tape: Path) -> bytes:
    """The DATA records of one ndmjob simulated tape, in order (format: agent_helpers)."""
    data = tape.read_bytes()
    out, pos = bytearray(), 0
    while pos + 32 <= len(data):
        magic, rectype, _prev, size = struct.unpack_from("<4Q", data, pos)
        assert magic == SIMU_GAP_MAGIC, f"{tape}: no simulator gap at {pos}"
        pos += 32
        if rectype.to_bytes(4, "little") == b"DATA":
            out += data[pos:pos + size]
            pos += size
    return bytes(out)


def test_our_dma_three_way_to_ndmjob_tape_spans_on_eom_catalogs_then_commits(exchange_root, tmp_path):
    ndmjob = ndmjob_or_skip()
    reason = _netns_available()
    if reason:
        pytest.skip(f"needs a private network namespace for ndmjob's INADDR_ANY daemon: {reason}")
    from reference.format.reader import MtfReader
    from reference.format.sources import Medium

    work = tmp_path / "work"
    work.mkdir()
    make_site(tmp_path / "site")
    script = f'ip link set lo up && exec "{sys.executable}" "{HERE / "ndmjob_tape_three_way.py"}" "$@"'
    p = subprocess.run(["unshare", "-n", "sh", "-c", script, "sh", str(ndmjob), str(work), str(exchange_root),
                        str(tmp_path / "site"), str(TAPE_LIMIT)], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(p.stdout.strip().splitlines()[-1])
    result = report["result"]
    assert result["status"] == "ok", result["error"]
    # end of medium twice: NOTIFY_MOVER_PAUSED(EOM), the DMA continued on the next tape file
    assert [p.split(" on ")[0] for p in result["pauses"]] == ["EOM", "EOM"]
    assert len(result["devices_used"]) == 3
    # recorded in the catalog (remote media), then committed: the agent truncated its logs
    catalog = report["catalog"]
    assert catalog["status"] == "ok" and catalog["media"] == "remote-ndmp" and len(catalog["cartridges"]) == 3
    assert result["truncated"] and report["agent_results"] == [{"status": "ok", "truncated": True, "error": None}]
    assert set(report["logs_after"]).isdisjoint(report["logs_before"])
    # the tapes, in order, hold the complete MTF image: every object matches the catalog's SHA-256
    image = b"".join(_records(Path(t)) for t in result["devices_used"])
    assert len(image) == result["bytes_moved"]
    reader = MtfReader([Medium("ndmjob tapes", image[:result["mtf_bytes"]])])
    mtf = reader.read()
    assert not mtf.problems, mtf.problems
    digests = {"/".join([*o.path, o.name]): hashlib.sha256(b"".join(bytes(v) for v in reader.iter_object(o)))
               .hexdigest() for o in mtf.objects()}
    assert {path: sha for path, _size, _fla, sha in catalog["objects"]} == digests
