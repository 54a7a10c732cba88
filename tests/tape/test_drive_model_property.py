"""Property test: random operation sequences on the emulated drive agree with a plain list model.

The model is the tape as a Python list (bytes = data block, None = filemark) plus a position,
moved with straightforward loops (no index, no st state machine) and st's one rule that changes
the contents: REW/BSF/SEEK right after a write first add a filemark (BSF's count then grows by one).
After every operation: MTIOCPOS equals the model position, data read equals the model's block,
and whenever st claims to know file/block (>= 0) they equal the filemarks before the position and
the blocks since the last filemark.
"""

from __future__ import annotations

import errno

from hypothesis import given, strategies as st

from emulators.tape.cartridge import Cartridge
from emulators.tape.drive import EmulatedDrive
from reference.protocols.tape import MtOp


class TapeModel:
    def __init__(self):
        self.objects: list[bytes | None] = []
        self.pos = 0
        self.writing = False

    def _truncate(self):
        del self.objects[self.pos:]

    def _mark_if_writing(self) -> bool:
        if self.writing:
            self.weof(1)
            return True
        return False

    def write(self, data):
        self._truncate()
        self.objects.append(data)
        self.pos += 1
        self.writing = True

    def weof(self, count):
        self._truncate()
        self.objects.extend([None] * count)
        self.pos += count
        self.writing = False

    def rewind(self) -> bool:
        self._mark_if_writing()
        self.pos = 0
        return True

    def eom(self) -> bool:
        self.writing = False
        self.pos = len(self.objects)
        return True

    def seek(self, target) -> bool:
        self._mark_if_writing()
        self.writing = False
        self.pos = min(target, len(self.objects))
        return target <= len(self.objects)

    def fsf(self, count) -> bool:
        self.writing = False
        while count:
            if self.pos == len(self.objects):
                return False
            if self.objects[self.pos] is None:
                count -= 1
            self.pos += 1
        return True

    def bsf(self, count) -> bool:
        if self._mark_if_writing():
            count += 1
        self.writing = False
        while count:
            if self.pos == 0:
                return False
            self.pos -= 1
            if self.objects[self.pos] is None:
                count -= 1
        return True

    def fsr(self, count) -> bool:
        self.writing = False
        for _ in range(count):
            if self.pos == len(self.objects):
                return False
            self.pos += 1
            if self.objects[self.pos - 1] is None:
                return False
        return True

    def bsr(self, count) -> bool:
        self.writing = False
        for _ in range(count):
            if self.pos == 0:
                return False
            self.pos -= 1
            if self.objects[self.pos] is None:  # crossed, stopping on its BOP side
                return False
        return True

    def read(self):
        """The next object: bytes, None (filemark, crossed) or "EOD"."""
        self.writing = False
        if self.pos == len(self.objects):
            return "EOD"
        item = self.objects[self.pos]
        self.pos += 1
        return item

    def file_and_block(self) -> tuple[int, int]:
        before = self.objects[: self.pos]
        last_mark = max((i for i, x in enumerate(before) if x is None), default=-1)
        return before.count(None), self.pos - last_mark - 1


MOTION = {"fsf": MtOp.MTFSF, "bsf": MtOp.MTBSF, "fsr": MtOp.MTFSR, "bsr": MtOp.MTBSR,
          "seek": MtOp.MTSEEK, "rewind": MtOp.MTREW, "eom": MtOp.MTEOM}
ABSOLUTE = {"rewind", "eom", "seek", "fsf", "bsf", "weof"}
counts = st.integers(min_value=1, max_value=4)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(min_value=1, max_value=300)),
        st.tuples(st.just("weof"), counts),
        st.tuples(st.sampled_from(["fsf", "bsf", "fsr", "bsr"]), counts),
        st.tuples(st.sampled_from(["rewind", "eom"]), st.just(1)),
        st.tuples(st.just("seek"), st.integers(min_value=0, max_value=30)),
        st.tuples(st.just("read"), st.sampled_from([64, 4096])),
    ),
    max_size=40,
)


def check_read(tape, model, size):
    expected = model.read()
    try:
        got, failed = tape.read(size), None
    except OSError as error:
        got, failed = None, error.errno
    if expected == "EOD":
        assert failed == errno.EIO or got == b""
    elif expected is None:
        assert got == b""
    elif len(expected) > size:
        assert failed == errno.ENOMEM
    else:
        assert got == expected


@given(operations)
def test_random_operations_match_the_list_model(tmp_path_factory, ops):
    root = tmp_path_factory.mktemp("model")
    drive = EmulatedDrive("LTO-9")
    drive.load(Cartridge.create(root / "R00001L9.tap", barcode="R00001L9", capacity_bytes=1 << 24))
    model = TapeModel()
    tape = drive.open()
    block_known, skewed = True, False
    for serial, (name, arg) in enumerate(ops):
        if name == "write":
            data = (serial.to_bytes(4, "little") * (arg // 4 + 1))[:arg]
            assert tape.write(data) == arg
            model.write(data)
        elif name == "weof":
            tape.mtop(MtOp.MTWEOF, arg)
            model.weof(arg)
        elif name == "read":
            check_read(tape, model, arg)
        else:
            expect_ok = getattr(model, name)(arg) if name not in ("rewind", "eom") \
                else getattr(model, name)()
            try:
                tape.mtop(MOTION[name], arg)
                assert expect_ok, f"{name} {arg} should have failed"
            except OSError as error:
                assert error.errno == errno.EIO and not expect_ok, f"{name} {arg}: {error}"
        assert tape.tell() == model.pos, (name, arg)
        status = tape.status()
        files, blocks = model.file_and_block()
        if status.fileno >= 0:
            assert status.fileno == files, (name, arg, status)
            # st quirk kept on purpose: BSR reaching BOT while the block number was unknown
            # computes it from -1 (st_int_ioctl: drv_block = blkno + undone), and the skew stays
            # until an operation sets the block number outright.
            if name == "bsr" and not block_known:
                skewed = True
            elif name in ABSOLUTE or status.blkno <= 0:
                skewed = False
            if status.blkno >= 0 and not skewed:
                assert status.blkno == blocks, (name, arg, status)
        block_known = status.blkno >= 0
    tape.close()
