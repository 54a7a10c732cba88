"""The Tape service and the Mover over an emulated LTO drive (spec §2 "Typical three-way backup",
"Recovery"; TAPE/MOVER message semantics as NDMJOB's test-tape/test-mover check them)."""

from __future__ import annotations

import io
import tarfile

import pytest

from ndmp_helpers import PASSWORD, USER, EmulatedDrives, make_full_server
from reference.ndmp import constants as c
from reference.ndmp import messages as m
from reference.ndmp.client import NdmpClient
from reference.ndmp.errors import NdmpError
from reference.ndmp.runner import ServerThread

M = c.Message
INF = 2**64 - 1
RECORD = 10240


@pytest.fixture
def drives(tmp_path):
    return EmulatedDrives(tmp_path)


@pytest.fixture
def full_server(drives):
    with ServerThread(lambda: make_full_server(drives)) as st:
        yield st


def _login(st) -> NdmpClient:
    return NdmpClient(*st.address, timeout=20).login(USER, PASSWORD)


def _err(exc_info) -> int:
    return exc_info.value.error


def test_tape_open_errors_and_read_write_semantics(full_server, drives):
    t = _login(full_server)
    dev = str(drives.path("drive0"))
    with pytest.raises(NdmpError) as e:
        t.call(M.TAPE_OPEN, m.TapeOpenRequest("/dev/bogus", c.TapeOpenMode.READ))
    assert _err(e) == c.Error.NO_DEVICE_ERR
    with pytest.raises(NdmpError) as e:
        t.call(M.TAPE_OPEN, m.TapeOpenRequest(dev, 123))
    assert _err(e) == c.Error.ILLEGAL_ARGS_ERR
    with pytest.raises(NdmpError) as e:
        t.call(M.TAPE_READ, m.TapeReadRequest(10))
    assert _err(e) == c.Error.DEV_NOT_OPEN_ERR
    t.call(M.TAPE_OPEN, m.TapeOpenRequest(dev, c.TapeOpenMode.READ))
    with pytest.raises(NdmpError) as e:
        t.call(M.TAPE_OPEN, m.TapeOpenRequest(dev, c.TapeOpenMode.READ))
    assert _err(e) == c.Error.DEVICE_OPENED_ERR
    with pytest.raises(NdmpError) as e:
        t.call(M.TAPE_WRITE, m.TapeWriteRequest(b"x" * 512))
    assert _err(e) == c.Error.PERMISSION_ERR
    t.call(M.TAPE_CLOSE)

    t.call(M.TAPE_OPEN, m.TapeOpenRequest(dev, c.TapeOpenMode.RDWR))
    assert t.call(M.TAPE_WRITE, m.TapeWriteRequest(b"A" * 1024)).count == 1024
    assert t.call(M.TAPE_WRITE, m.TapeWriteRequest(b"")).count == 0  # v4: no-op
    state = t.call(M.TAPE_GET_STATE)
    assert (state.file_num, state.blockno) == (0, 1)
    t.call(M.TAPE_MTIO, m.TapeMtioRequest(c.TapeMtioOp.EOF, 1))
    assert t.call(M.TAPE_GET_STATE).file_num == 1
    t.call(M.TAPE_MTIO, m.TapeMtioRequest(c.TapeMtioOp.REW, 1))
    assert t.call(M.TAPE_READ, m.TapeReadRequest(512)).data_in == b"A" * 512  # the rest of the record dropped
    with pytest.raises(NdmpError) as e:
        t.call(M.TAPE_READ, m.TapeReadRequest(1024))
    assert _err(e) == c.Error.EOF_ERR  # the filemark
    with pytest.raises(NdmpError) as e:
        t.call(M.TAPE_READ, m.TapeReadRequest(1024))
    assert _err(e) == c.Error.EOM_ERR  # end of data
    # positioning beyond BOT stops short: NO_ERR and the residue (NDMJOB test-tape T-BWR)
    t.call(M.TAPE_MTIO, m.TapeMtioRequest(c.TapeMtioOp.REW, 1))
    assert t.call(M.TAPE_MTIO, m.TapeMtioRequest(c.TapeMtioOp.BSR, 100)).resid_count == 100
    assert t.call(M.TAPE_MTIO, m.TapeMtioRequest(c.TapeMtioOp.FSF, 100)).resid_count == 99
    with pytest.raises(NdmpError) as e:
        t.call(M.TAPE_READ, m.TapeReadRequest(0x80000000))
    assert _err(e) == c.Error.ILLEGAL_ARGS_ERR
    t.call(M.TAPE_CLOSE)
    t.close()


def test_mover_state_rules(full_server, drives):
    t = _login(full_server)
    for code in (M.MOVER_CONTINUE, M.MOVER_ABORT, M.MOVER_STOP, M.MOVER_CLOSE):
        with pytest.raises(NdmpError) as e:
            t.call(code)
        assert _err(e) == c.Error.ILLEGAL_STATE_ERR
    with pytest.raises(NdmpError) as e:
        t.call(M.MOVER_LISTEN, m.MoverListenRequest(c.MoverMode.READ, 123))
    assert _err(e) == c.Error.ILLEGAL_ARGS_ERR
    with pytest.raises(NdmpError) as e:
        t.call(M.MOVER_LISTEN, m.MoverListenRequest(c.MoverMode.READ, c.AddrType.TCP))
    assert _err(e) == c.Error.DEV_NOT_OPEN_ERR
    t.call(M.TAPE_OPEN, m.TapeOpenRequest(str(drives.path("drive0")), c.TapeOpenMode.READ))
    with pytest.raises(NdmpError) as e:
        t.call(M.MOVER_LISTEN, m.MoverListenRequest(c.MoverMode.READ, c.AddrType.TCP))
    assert _err(e) == c.Error.PERMISSION_ERR  # backup onto a read-only tape
    t.call(M.MOVER_LISTEN, m.MoverListenRequest(c.MoverMode.WRITE, c.AddrType.TCP))
    state = t.call(M.MOVER_GET_STATE)
    assert state.state == c.MoverState.LISTEN and state.data_connection_addr[0] == c.AddrType.TCP
    for code, body in [(M.MOVER_SET_WINDOW, m.OffsetLength(0, INF)),
                       (M.MOVER_SET_RECORD_SIZE, m.MoverSetRecordSizeRequest(RECORD))]:
        with pytest.raises(NdmpError) as e:
            t.call(code, body)
        assert _err(e) == c.Error.ILLEGAL_STATE_ERR
    t.call(M.MOVER_ABORT)
    assert t.wait_for_post(M.NOTIFY_MOVER_HALTED).body.reason == c.MoverHaltReason.ABORTED
    state = t.call(M.MOVER_GET_STATE)
    assert (state.state, state.halt_reason, state.pause_reason) == (
        c.MoverState.HALTED, c.MoverHaltReason.ABORTED, c.MoverPauseReason.NA)
    t.call(M.MOVER_STOP)
    assert t.call(M.MOVER_GET_STATE).state == c.MoverState.IDLE
    with pytest.raises(NdmpError) as e:
        t.call(M.MOVER_SET_RECORD_SIZE, m.MoverSetRecordSizeRequest(0))
    assert _err(e) == c.Error.ILLEGAL_ARGS_ERR
    with pytest.raises(NdmpError) as e:
        t.call(M.MOVER_SET_WINDOW, m.OffsetLength(100, INF))
    assert _err(e) == c.Error.ILLEGAL_ARGS_ERR  # not a multiple of the record size
    t.close()


def _tape_records(t: NdmpClient, device: str) -> list[bytes]:
    t.call(M.TAPE_OPEN, m.TapeOpenRequest(device, c.TapeOpenMode.READ))
    t.call(M.TAPE_MTIO, m.TapeMtioRequest(c.TapeMtioOp.REW, 1))  # a no-rewind device: stays where it was
    records = []
    while True:
        try:
            records.append(t.call(M.TAPE_READ, m.TapeReadRequest(1 << 20)).data_in)
        except NdmpError as exc:
            assert exc.error == c.Error.EOF_ERR
            break
    t.call(M.TAPE_CLOSE)
    return records


def _backup(st, drives, tree, *, swap=False):
    """Our Python DMA: Data + Tape on the same server, as in the draft's Appendix D.1."""
    d, t = _login(st), _login(st)
    dev = str(drives.path("drive0"))
    t.call(M.TAPE_OPEN, m.TapeOpenRequest(dev, c.TapeOpenMode.RDWR))
    t.call(M.MOVER_SET_RECORD_SIZE, m.MoverSetRecordSizeRequest(RECORD))
    t.call(M.MOVER_SET_WINDOW, m.OffsetLength(0, INF))
    if swap:
        addr = d.call(M.DATA_LISTEN, m.DataListenRequest(c.AddrType.TCP)).connect_addr
        t.call(M.MOVER_CONNECT, m.MoverConnectRequest(c.MoverMode.READ, addr))
    else:
        addr = t.call(M.MOVER_LISTEN, m.MoverListenRequest(c.MoverMode.READ, c.AddrType.TCP)).connect_addr
        d.call(M.DATA_CONNECT, m.DataConnectRequest(addr))
    d.call(M.DATA_START_BACKUP, m.DataStartBackupRequest("tar", [m.Pval("FILESYSTEM", str(tree))]))
    assert d.wait_for_post(M.NOTIFY_DATA_HALTED).body.reason == c.DataHaltReason.SUCCESSFUL
    assert t.wait_for_post(M.NOTIFY_MOVER_HALTED).body.reason == c.MoverHaltReason.CONNECT_CLOSED
    image_bytes = int({p.name: p.value for p in d.call(M.DATA_GET_ENV).env}["TAR_BYTES"])
    mover = t.call(M.MOVER_GET_STATE)
    assert mover.bytes_moved == image_bytes
    assert mover.record_num == -(-image_bytes // RECORD)
    d.call(M.DATA_STOP)
    t.call(M.MOVER_STOP)
    t.call(M.TAPE_MTIO, m.TapeMtioRequest(c.TapeMtioOp.EOF, 1))
    t.call(M.TAPE_CLOSE)
    return d, t, image_bytes


def _members(image: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(image)) as tar:
        return {x.name: tar.extractfile(x).read() for x in tar if x.isfile()}


def _tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("swap", [False, True], ids=["mover-listen", "data-listen"])
def test_spec2_three_way_backup_through_our_mover_onto_an_emulated_tape(full_server, drives, source_tree, swap):
    d, t, image_bytes = _backup(full_server, drives, source_tree, swap=swap)
    records = _tape_records(t, str(drives.path("drive0")))
    assert {len(r) for r in records} == {RECORD}  # fixed records, the last one padded with zeros
    image = b"".join(records)
    assert image[image_bytes:] == bytes(len(image) - image_bytes)
    assert _members(image[:image_bytes]) == _tree(source_tree)
    d.close()
    t.close()


def test_spec2_recovery_through_mover_read(full_server, drives, source_tree, tmp_path):
    d, t, _ = _backup(full_server, drives, source_tree)
    t.call(M.TAPE_OPEN, m.TapeOpenRequest(str(drives.path("drive0")), c.TapeOpenMode.READ))
    t.call(M.TAPE_MTIO, m.TapeMtioRequest(c.TapeMtioOp.REW, 1))
    t.call(M.MOVER_SET_WINDOW, m.OffsetLength(0, INF))
    addr = t.call(M.MOVER_LISTEN, m.MoverListenRequest(c.MoverMode.WRITE, c.AddrType.TCP)).connect_addr
    with pytest.raises(NdmpError) as e:
        t.call(M.MOVER_READ, m.OffsetLength(0, 1))
    assert _err(e) == c.Error.ILLEGAL_STATE_ERR  # nothing connected yet
    d.call(M.DATA_CONNECT, m.DataConnectRequest(addr))
    dest = tmp_path / "restored"
    d.call(M.DATA_START_RECOVER, m.DataStartRecoverRequest([m.Pval("PREFIX", str(dest))], [], "tar"))
    read = d.wait_for_post(M.NOTIFY_DATA_READ).body  # the data server asks; the DMA relays
    t.call(M.MOVER_READ, m.OffsetLength(read.offset, read.length))
    # the mover stops at the filemark after the image: EOF pause; the DMA closes the connection
    assert t.wait_for_post(M.NOTIFY_MOVER_PAUSED).body.reason == c.MoverPauseReason.EOF
    t.call(M.MOVER_CLOSE)
    assert d.wait_for_post(M.NOTIFY_DATA_HALTED).body.reason == c.DataHaltReason.SUCCESSFUL
    assert t.wait_for_post(M.NOTIFY_MOVER_HALTED).body.reason == c.MoverHaltReason.CONNECT_CLOSED
    assert _tree(dest) == _tree(source_tree)
    d.close()
    t.close()


def test_end_of_medium_pauses_the_mover_and_continues_on_the_next_cartridge(tmp_path):
    """NOTIFY_MOVER_PAUSED(EOM): the DMA swaps the tape, sets the window, continues; the image
    spans two cartridges and nothing is lost."""
    drives = EmulatedDrives(tmp_path, capacity_bytes=400 * 1024, early_warning_bytes=64 * 1024)
    big = tmp_path / "big"
    big.mkdir()
    (big / "payload.bin").write_bytes(bytes(range(251)) * 4000)  # ~1 MB: needs 3+ cartridges
    with ServerThread(lambda: make_full_server(drives)) as st:
        d, t = _login(st), _login(st)
        t.call(M.TAPE_OPEN, m.TapeOpenRequest(str(drives.path("drive0")), c.TapeOpenMode.RDWR))
        t.call(M.MOVER_SET_RECORD_SIZE, m.MoverSetRecordSizeRequest(RECORD))
        t.call(M.MOVER_SET_WINDOW, m.OffsetLength(0, INF))
        addr = t.call(M.MOVER_LISTEN, m.MoverListenRequest(c.MoverMode.READ, c.AddrType.TCP)).connect_addr
        d.call(M.DATA_CONNECT, m.DataConnectRequest(addr))
        d.call(M.DATA_START_BACKUP, m.DataStartBackupRequest("tar", [m.Pval("FILESYSTEM", str(big))]))
        tapes = ["drive0"]
        while True:
            post = t.wait_for_post((M.NOTIFY_MOVER_PAUSED, M.NOTIFY_MOVER_HALTED))
            if post.code == M.NOTIFY_MOVER_HALTED:
                break
            assert post.body.reason == c.MoverPauseReason.EOM
            assert t.call(M.MOVER_GET_STATE).state == c.MoverState.PAUSED
            t.call(M.TAPE_CLOSE)
            tapes.append(f"drive{len(tapes)}")
            t.call(M.TAPE_OPEN, m.TapeOpenRequest(str(drives.path(tapes[-1])), c.TapeOpenMode.RDWR))
            t.call(M.MOVER_SET_WINDOW, m.OffsetLength(post.body.seek_position, INF))
            t.call(M.MOVER_CONTINUE)
        assert len(tapes) >= 3
        state = t.call(M.MOVER_GET_STATE)
        assert state.halt_reason == c.MoverHaltReason.CONNECT_CLOSED
        t.call(M.MOVER_STOP)
        t.call(M.TAPE_CLOSE)
        image = b"".join(r for name in tapes for r in _tape_records(t, str(drives.path(name))))
        env = {p.name: p.value for p in d.call(M.DATA_GET_ENV).env}
        assert _members(image[:int(env["TAR_BYTES"])]) == _tree(big)
        d.close()
        t.close()
