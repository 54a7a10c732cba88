"""MTF writer and reader throughput vs a plain in-memory copy of the same bytes (target >= 0.5).

1 MiB objects, SHA-256 on. Each figure is the best of several runs, alternating with its baseline
in the same process:

* ``mtf_writer``: DataSetWriter (SSET/VOLB/DIRB/FILE + STAN/CSUM/XSHA/XCRC/SPAD) into a sink that
  copies every chunk into a buffer, vs the same objects copied into that sink directly;
* ``mtf_media_writer``: the same through the MediaWriter (FLB parsing, 32 KiB blocks) into an
  in-memory ``.bkf``;
* ``mtf_reader``: MtfReader walk + verify (CSUM, SHA-256) copying every object's bytes out, vs a
  plain copy of the image's bytes.

The ``*_vs_copy_sha`` rows use "copy + SHA-256 of the same bytes" as the baseline: SHA-256 alone
runs at a fraction of memcpy speed, so that row shows what the format itself costs.
Run directly (``python benchmarks/bench_mtf.py [--quick]``) or through ``run()``.
"""

from __future__ import annotations

import hashlib
import io
import sys
import time

MiB = 1 << 20


class _CopySink:
    """Copies each chunk into a reusable buffer (what a socket or file write would cost)."""

    def __init__(self) -> None:
        self.buf = bytearray(4 * MiB)
        self.view = memoryview(self.buf)
        self.total = 0

    def __call__(self, chunk) -> None:
        n = len(chunk)
        pos = 0
        while pos < n:
            take = min(n - pos, len(self.buf))
            self.view[:take] = chunk[pos:pos + take]
            pos += take
        self.total += n


def _objects(count: int) -> list[bytes]:
    import random

    rng = random.Random(1)
    return [rng.randbytes(MiB) for _ in range(count)]


def _best(fn, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(quick: bool = False) -> list[dict]:
    from reference.format.media import BkfTarget, MediaIdentity, MediaWriter
    from reference.format.reader import MtfReader
    from reference.format.sources import Medium
    from reference.format.writer import DataSetWriter

    count = 16 if quick else 64
    runs = 3 if quick else 9
    objs = _objects(count)
    total = count * MiB

    def copy_plain():
        sink = _CopySink()
        for o in objs:
            sink(memoryview(o))

    def copy_sha():
        sink = _CopySink()
        for o in objs:
            sink(memoryview(o))
            hashlib.sha256(o).digest()

    def write_set(sink):
        w = DataSetWriter(sink)
        w.begin_volume("Microsoft Information Store", "SG1", "EXCH01")
        w.begin_directory("SG1/DB1")
        for i, o in enumerate(objs):
            w.add_file(f"E{i:07X}.log", len(o), o)
        return w.end()

    def writer():
        write_set(_CopySink())

    class _CopyFile(_CopySink):
        """A file-like sink for the media writer (write copies; tell counts)."""

        def write(self, block):
            self(block)
            return len(block)

        def tell(self):
            return self.total

    def media_writer(out=None):
        out = out if out is not None else _CopyFile()
        mw = MediaWriter(BkfTarget(out, 32768), identity=MediaIdentity(1))
        mw.write_media_header()
        w = mw.begin_set()
        w.begin_volume("Microsoft Information Store", "SG1", "EXCH01")
        w.begin_directory("SG1/DB1")
        for i, o in enumerate(objs):
            w.add_file(f"E{i:07X}.log", len(o), o)
        mw.end_set(w.end())
        return out

    image = media_writer(io.BytesIO()).getvalue()

    def copy_image():
        sink = _CopySink()
        view = memoryview(image)
        for i in range(0, len(image), MiB):
            sink(view[i:i + MiB])

    def copy_image_sha():
        sink = _CopySink()
        view = memoryview(image)
        for i in range(0, len(image), MiB):
            sink(view[i:i + MiB])
            hashlib.sha256(view[i:i + MiB]).digest()

    def reader():
        sink = _CopySink()
        r = MtfReader([Medium("bench.bkf", image)])
        cat = r.read()
        for entry in cat.objects():
            if r.verify_object(entry, sink):
                raise RuntimeError(f"bench image does not verify: {entry.display_path}")
        assert sink.total == total

    # Alternate subject and baselines in every round so load from other processes hits both.
    best = {}
    for _ in range(runs):
        for name, fn in (("copy", copy_plain), ("copy_sha", copy_sha), ("writer", writer),
                         ("media", media_writer), ("img", copy_image), ("img_sha", copy_image_sha),
                         ("reader", reader)):
            best[name] = min(best.get(name, float("inf")), _best(fn, 1))
    t_copy, t_copy_sha, t_writer, t_media = best["copy"], best["copy_sha"], best["writer"], best["media"]
    t_img, t_img_sha, t_reader = best["img"], best["img_sha"], best["reader"]

    def row(name, t, baseline_t, note):
        value = total / t / MiB
        base = total / baseline_t / MiB
        return dict(name=name, value=round(value, 1), unit="MiB/s", baseline=round(base, 1),
                    ratio=round(value / base, 3), target="ratio >= 0.5", note=note)

    return [
        row("mtf_writer", t_writer, t_copy, "DataSetWriter vs plain copy into the same sink"),
        row("mtf_writer_vs_copy_sha", t_writer, t_copy_sha, "DataSetWriter vs copy + SHA-256"),
        row("mtf_media_writer", t_media, t_copy, "DataSetWriter+MediaWriter (32 KiB blocks) vs plain copy"),
        row("mtf_media_writer_vs_copy_sha", t_media, t_copy_sha, "DataSetWriter+MediaWriter vs copy + SHA-256"),
        row("mtf_reader", t_reader, t_img, "walk + CSUM + SHA-256 + copy out vs plain copy of the image"),
        row("mtf_reader_vs_copy_sha", t_reader, t_img_sha, "reader vs copy + SHA-256 of the image"),
    ]


if __name__ == "__main__":
    for result in run(quick="--quick" in sys.argv):
        print(result)
