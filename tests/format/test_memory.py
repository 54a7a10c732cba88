"""Constant memory whatever the object size; bounded allocation on hostile input."""

import os
import subprocess
import sys
import textwrap
import tracemalloc

from reference.format.media import MediaWriter
from reference.format.writer import DataSetWriter

MiB = 1 << 20


def _chunks(total, size=MiB):
    block = bytes(size)
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield memoryview(block)[:n]
        sent += n


def test_writer_memory_does_not_grow_with_object_size():
    sunk = [0]

    def sink(chunk):
        sunk[0] += len(chunk)

    tracemalloc.start()
    try:
        w = DataSetWriter(sink)
        w.begin_volume("Microsoft Information Store")
        w.begin_directory("SG1")
        w.add_file("priv1.edb", 64 * MiB, _chunks(64 * MiB))
        w.end()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sunk[0] > 64 * MiB
    assert peak < 4 * MiB, peak


def test_media_writer_memory_does_not_grow_with_object_size(tmp_path):
    tracemalloc.start()
    try:
        mw = MediaWriter.create_bkf(tmp_path / "big.bkf", block_size=32768)
        w = mw.begin_set()
        w.begin_volume("Microsoft Information Store")
        w.begin_directory("SG1")
        w.add_file("priv1.edb", 48 * MiB, _chunks(48 * MiB))
        mw.end_set(w.end())
        mw.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB, peak
    assert (tmp_path / "big.bkf").stat().st_size > 48 * MiB


def test_reader_on_hostile_input_stays_within_a_memory_limit(tmp_path):
    """Random and mutated images under RLIMIT_AS: a MemoryError would fail the child."""
    script = textwrap.dedent("""
        import random, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        sys.path.insert(0, sys.argv[1])
        from mtf_helpers import make_tree, write_bkf
        from pathlib import Path
        from reference.format.reader import MtfReader
        from reference.format.sources import Medium
        from reference.format.tools import verification_report
        path = Path(sys.argv[2]) / "f.bkf"
        write_bkf(path, make_tree(random.Random(1), 6))
        image = path.read_bytes()
        for seed in range(150):
            rng = random.Random(seed)
            blob = bytearray(image)
            for _ in range(rng.randrange(1, 40)):
                at = rng.randrange(len(blob))
                blob[at:at + 8] = rng.randbytes(8)
            reader = MtfReader([Medium("m", bytes(blob))])
            reader.read()
            verification_report(reader)
        print("ok")
    """)
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), here]))
    done = subprocess.run([sys.executable, "-c", script, here, str(tmp_path)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
