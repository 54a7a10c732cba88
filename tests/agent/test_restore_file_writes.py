"""How the restore side writes a file: overwritten in place, cut to the bytes received, in
simulation and with worker threads alike (reference/agent/database_restore.py ``_write_file``)."""

from __future__ import annotations

import asyncio
import os

import pytest

from emulators.clock import RealClock, VirtualClock
from reference.agent.database_restore import WRITE_BATCH, StorageGroupRestore
from reference.errors import MailtapeError
from reference.runtime import Runtime


class Obj:
    def __init__(self, parts, size=None, fail_after=None):
        self.path, self.kind = "DB/priv1.edb", "stream"
        self.parts = parts
        self.size = sum(len(p) for p in parts) if size is None else size
        self.fail_after = fail_after

    async def chunks(self):
        for index, part in enumerate(self.parts):
            if self.fail_after is not None and index == self.fail_after:
                raise OSError("tape read failed")
            yield part


@pytest.fixture(params=["virtual", "real"])
def restore(request):
    runtime = Runtime(VirtualClock() if request.param == "virtual" else RealClock())
    yield StorageGroupRestore(api=None, storage_group="SG", runtime=runtime)
    runtime.close()


def _parts(total: int, step: int = 64 * 1024) -> list:
    data = os.urandom(total)
    return [data[i:i + step] for i in range(0, total, step)], data


def test_a_larger_old_file_is_replaced_exactly(restore, tmp_path):
    target = tmp_path / "priv1.edb"
    target.write_bytes(b"\xff" * (3 * WRITE_BATCH))
    parts, data = _parts(WRITE_BATCH + 12345)
    parts = [bytearray(p) if i % 2 else p for i, p in enumerate(parts)]  # writable chunks are copied
    asyncio.run(restore._write_file(Obj(parts), str(target)))
    assert target.read_bytes() == data
    assert restore.result.bytes == len(data)


def test_a_failed_object_leaves_exactly_what_was_received(restore, tmp_path):
    target = tmp_path / "priv1.edb"
    target.write_bytes(b"\xff" * (2 * WRITE_BATCH))
    parts, data = _parts(WRITE_BATCH + 4096)
    with pytest.raises(OSError, match="tape read failed"):
        asyncio.run(restore._write_file(Obj(parts, fail_after=10), str(target)))
    assert target.read_bytes() == data[:10 * 64 * 1024]


def test_a_short_object_is_an_error(restore, tmp_path):
    parts, data = _parts(100_000)
    with pytest.raises(MailtapeError, match="restored 100000 bytes, the catalog says 100001"):
        asyncio.run(restore._write_file(Obj(parts, size=100_001), str(tmp_path / "x.edb")))
