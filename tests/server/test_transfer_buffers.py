"""The agent → server transfer buffers (reference/transfer.py): a LocalSession's fixed pool lent to
the agent and handed to the server without a copy, the PackingSink that fills it, and the server's
RecordingDevice noting FILE headers of multi-block writes exactly as of single blocks."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings, strategies as st

from reference.transfer import LocalSession, PackingSink, TransferAborted

KiB, MiB = 1 << 10, 1 << 20


def run(coro):
    return asyncio.run(coro)


def test_a_lent_buffer_crosses_without_a_copy_and_returns_at_the_next_receive():
    async def scenario():
        session = LocalSession(1, max_buffered=1 * MiB, buffer_size=256 * KiB)
        assert session.pool_buffers == 4 + 2
        buffer = await session.acquire_buffer()
        buffer[:5] = b"hello"
        await session.send(buffer[:5])
        got = await session.receive()
        assert bytes(got) == b"hello" and got.readonly
        assert got.obj is buffer.obj  # the same memory: no copy
        free_before = len(session._free)
        await session.send(b"copied")  # anything not lent is copied, as before
        assert bytes(await session.receive()) == b"copied"
        assert len(session._free) == free_before + 1  # the lent buffer came back
        session.commit(None)

    run(scenario())


def test_the_pool_is_bounded_and_used_most_recent_first():
    """However long the set, the agent never holds more than the pool: acquire_buffer waits for
    the server; buffers come back in LIFO order (the last one written is still in cache)."""
    async def scenario():
        session = LocalSession(1, max_buffered=128 * KiB, buffer_size=64 * KiB)
        pool = session.pool_buffers
        seen = set()
        held = [await session.acquire_buffer() for _ in range(pool)]
        seen |= {id(b.obj) for b in held}
        waiter = asyncio.ensure_future(session.acquire_buffer())
        await asyncio.sleep(0)
        assert not waiter.done()  # pool exhausted: waits
        await session.send(held[0][:10])
        await session.receive()
        await session.send(held[1][:10])
        await session.receive()  # the first comes back now
        got = await waiter
        assert got.obj is held[0].obj and len(seen) == pool
        session.commit(None)

    run(scenario())


def test_acquire_and_send_fail_once_the_server_failed():
    async def scenario():
        session = LocalSession(1, max_buffered=64 * KiB, buffer_size=64 * KiB)
        held = [await session.acquire_buffer() for _ in range(session.pool_buffers)]
        waiter = asyncio.ensure_future(session.acquire_buffer())
        await asyncio.sleep(0)
        await session.fail(OSError(5, "Input/output error"))
        with pytest.raises(TransferAborted, match="Input/output error"):
            await waiter
        with pytest.raises(TransferAborted):
            await session.send(held[0][:1])

    run(scenario())


class Recorder:
    """A session without lent buffers (like the NDMP data connection): send copies."""

    def __init__(self):
        self.chunks: list[bytes] = []

    async def send(self, chunk):
        self.chunks.append(bytes(chunk))


async def _drain(session, out: bytearray, sizes: list[int]):
    while (chunk := await session.receive()) is not None:
        out += chunk
        sizes.append(len(chunk))
    session.commit(None)


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.one_of(st.tuples(st.just("write"), st.integers(0, 300_000)),
                              st.tuples(st.just("read"), st.integers(1, 300_000)),
                              st.tuples(st.just("flush"), st.just(False))), max_size=25),
       lend=st.booleans())
def test_packing_sink_delivers_every_byte_in_order_in_whole_buffers(ops, lend):
    """Writer pieces (copied), data read into the buffer (committed) and flushes in any order: the
    server gets exactly the bytes in order, every chunk but the last a full buffer."""
    rng = random.Random(len(ops))

    async def scenario():
        session = LocalSession(1, max_buffered=256 * KiB, buffer_size=64 * KiB) if lend else Recorder()
        received, sizes = bytearray(), []
        server = asyncio.ensure_future(_drain(session, received, sizes)) if lend else None
        sink = PackingSink(session)
        expected = bytearray()
        for op, arg in ops:
            if op == "write":
                piece = rng.randbytes(arg)
                sink.write(piece if arg % 2 else memoryview(bytearray(piece)))  # bytes or a reused buffer
                expected += piece
            elif op == "read":
                await sink.flush()
                room = sink.room()
                piece = rng.randbytes(min(arg, len(room)))
                room[:len(piece)] = piece
                sink.commit(room[:len(piece)])
                expected += piece
            else:
                await sink.flush()
        await sink.flush(final=True)
        if lend:
            await asyncio.wait_for(session.finish(None), 10)
            await server
        else:
            received += b"".join(session.chunks)
            sizes += [len(c) for c in session.chunks]
        assert received == expected and sink.sent == len(expected)
        size = 64 * KiB if lend else 1 * MiB
        assert all(s == size for s in sizes[:-1]) and all(0 < s <= size for s in sizes)

    run(scenario())


def test_packing_sink_refuses_room_and_commit_out_of_order():
    async def scenario():
        sink = PackingSink(Recorder())
        with pytest.raises(RuntimeError):
            sink.room()
        await sink.flush()
        sink.write(b"x" * (2 * MiB))  # does not fit: waits for the next flush
        with pytest.raises(RuntimeError):
            sink.commit(b"y")

    run(scenario())


def test_recording_device_notes_files_of_a_run_as_of_single_blocks(tmp_path):
    """Multi-block writes (RecordingDevice.write_blocks) record the same (FLA, file id, tape
    file, block) for every FILE header as one write() per block; a header that does not fit in
    the rest of its block is not a header."""
    from emulators.tape.cartridge import Cartridge
    from emulators.tape.drive import EmulatedDrive
    from reference.format.writer import DataSetWriter
    from reference.server.media import RecordingDevice

    out = bytearray()
    w = DataSetWriter(out.extend, set_number=1)
    w.begin_volume("Microsoft Information Store")
    w.begin_directory(["SG1"])
    rng = random.Random(4)
    for i in range(40):
        size = rng.choice([0, 10, 700, 5000])
        w.add_file(f"f{i}", size, rng.randbytes(size))
    P = 4096
    out += bytes(-len(out) % P)
    seen = []
    for batched in (False, True):
        cartridge = Cartridge.create(tmp_path / f"R{batched:d}0001L9.tap", barcode=f"R{batched:d}0001L9")
        drive = EmulatedDrive("LTO-9")
        drive.load(cartridge)
        device = RecordingDevice(drive.open(), "R0001L9", 3, 1024)
        device.write(out[:P])
        i = P
        while i < len(out):
            count = device.write_blocks(memoryview(out)[i:], P) if batched else 0
            if count:
                i += count * P
            else:
                device.write(out[i:i + P])
                i += P
        seen.append((device.files_seen, device.pos, device.bytes))
        device.close()
        drive.unload()
    assert seen[0] == seen[1] and len(seen[0][0]) == 40
