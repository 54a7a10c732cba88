"""Cross-check with independent readers when they are available (spec mtf.md §2 item 2, §8).

mtftar cannot be committed or fetched by CI (project rule); point MAILTAPE_MTFTAR at a binary
built outside the repository (``sjmurdoch/mtftar``: ``make``) or put ``mtftar`` on PATH.
"""

import hashlib
import os
import random
import shutil
import subprocess
import tarfile

import pytest

from mtf_helpers import Obj, make_tree, write_bkf

MTFTAR = os.environ.get("MAILTAPE_MTFTAR") or shutil.which("mtftar")


@pytest.mark.skipif(not MTFTAR, reason="mtftar not available (set MAILTAPE_MTFTAR)")
def test_2_2_mtftar_lists_and_converts_our_bkf_bit_exact(tmp_path):
    objs = make_tree(random.Random(5), 10, sizes=(0, 1, 3, 1000, 70000, 300000))
    objs.append(Obj("Mailboxes", ("alice", "Ünïcødé folder"), "Ünï.eml", b"x" * 777))
    path = tmp_path / "set.bkf"
    write_bkf(path, objs, sets=2)
    listing = subprocess.run([MTFTAR, "-l", "-f", str(path)], capture_output=True, text=True, check=True)
    assert "out of order" not in listing.stderr
    want = {f"{o.volume}/{'/'.join(o.path)}/{o.name}": o.data for o in objs}
    assert sorted(set(listing.stdout.splitlines())) == sorted(want)
    out = tmp_path / "x.tar"
    subprocess.run([MTFTAR, "-f", str(path), "-o", str(out)], check=True, capture_output=True)
    got = {}
    with tarfile.open(out) as tar:
        for member in tar.getmembers():
            if member.isfile():
                got[member.name] = hashlib.sha1(tar.extractfile(member).read()).hexdigest()
    assert got == {k: hashlib.sha1(v).hexdigest() for k, v in want.items()}
