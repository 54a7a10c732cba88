"""The Data service: butypes, both data-connection directions, history, recover, abort, commit."""

from __future__ import annotations

import io
import ipaddress
import socket
import tarfile
import threading
import time
from pathlib import Path

import pytest

from ndmp_helpers import PASSWORD, USER
from reference.ndmp import constants as c
from reference.ndmp import messages as m
from reference.ndmp.auth import Credentials
from reference.ndmp.client import NdmpClient
from reference.ndmp.data import Butype, DataService
from reference.ndmp.errors import NdmpError
from reference.ndmp.runner import ServerThread
from reference.ndmp.server import NdmpServer, ServerConfig
from reference.ndmp.tar_butype import tar_butype

M = c.Message


class MoverSink:
    """A minimal stand-in for a mover's listening data socket: collects every byte it receives."""

    def __init__(self, delay: float = 0.0):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.data = bytearray()
        self.delay = delay
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        port = self.listener.getsockname()[1]
        return (c.AddrType.TCP, [m.TcpAddr(0x7F000001, port, [])])

    def _run(self):
        conn, _ = self.listener.accept()
        self.connected.set()
        with conn:
            while chunk := conn.recv(65536):
                self.data += chunk
                if self.delay:
                    time.sleep(self.delay)

    def join(self):
        self.thread.join(20)
        self.listener.close()
        return bytes(self.data)


def _addr_of(listen_reply):
    a = listen_reply.connect_addr[1][0]
    return str(ipaddress.IPv4Address(a.ip_addr)), a.port


def _backup(cl, tree, via="connect"):
    if via == "connect":
        sink = MoverSink()
        cl.call(M.DATA_CONNECT, m.DataConnectRequest(sink.addr))
        assert cl.call(M.DATA_GET_STATE).state == c.DataState.CONNECTED
        cl.call(M.DATA_START_BACKUP, m.DataStartBackupRequest("tar", [m.Pval("FILESYSTEM", str(tree))]))
        halted = cl.wait_for_post(M.NOTIFY_DATA_HALTED)
        return halted, sink.join()
    reply = cl.call(M.DATA_LISTEN, m.DataListenRequest(c.AddrType.TCP))
    assert cl.call(M.DATA_GET_STATE).state == c.DataState.LISTEN
    cl.call(M.DATA_START_BACKUP, m.DataStartBackupRequest("tar", [m.Pval("FILESYSTEM", str(tree))]))
    data = bytearray()
    with socket.create_connection(_addr_of(reply)) as s:
        while chunk := s.recv(65536):
            data += chunk
    return cl.wait_for_post(M.NOTIFY_DATA_HALTED), bytes(data)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_butype_info_lists_registered_butypes_with_default_env(connect):
    info = connect().call(M.CONFIG_GET_BUTYPE_INFO).butype_info
    assert [b.butype_name for b in info] == ["tar"]
    assert info[0].default_env == [m.Pval("HIST", "y")]
    assert info[0].attrs & c.ButypeAttr.BACKUP_FH_FILE


@pytest.mark.parametrize("via", ["connect", "listen"])
def test_spec2_backup_streams_the_image_then_posts_data_halted_successful(connect, source_tree, via):
    cl = connect()
    halted, image = _backup(cl, source_tree, via)
    assert halted.body.reason == c.DataHaltReason.SUCCESSFUL
    with tarfile.open(fileobj=io.BytesIO(image)) as tar:
        members = {t.name: tar.extractfile(t).read() for t in tar if t.isfile()}
    assert members == _tree_bytes(source_tree)  # bit-exact
    state = cl.call(M.DATA_GET_STATE)
    assert (state.state, state.operation, state.halt_reason) == (c.DataState.HALTED, c.DataOperation.BACKUP,
                                                                 c.DataHaltReason.SUCCESSFUL)
    assert state.bytes_processed == len(image)
    env = {p.name: p.value for p in cl.call(M.DATA_GET_ENV).env}
    assert env["FILESYSTEM"] == str(source_tree) and env["TAR_BYTES"] == str(len(image))
    cl.call(M.DATA_STOP)
    assert cl.call(M.DATA_GET_STATE).state == c.DataState.IDLE


def test_file_history_precedes_data_halted_and_fh_info_is_the_header_offset(connect, source_tree):
    cl = connect()
    halted, image = _backup(cl, source_tree)
    order = [p.code for p in cl.posts]
    assert M.FH_ADD_FILE in order
    files = [f for p in cl.take_posts(M.FH_ADD_FILE) for f in p.body.files]
    by_path = {f.names[0][1]: f for f in files}
    assert set(by_path) == {"/a.txt", "/empty", "/sub", "/sub/blob.bin", "/sub/deeper",
                            "/sub/deeper/caf\u00e9.eml"}
    blob = by_path["/sub/blob.bin"]
    assert blob.stats[0].size == (source_tree / "sub/blob.bin").stat().st_size
    assert blob.stats[0].ftype == c.FileType.REG and by_path["/sub"].stats[0].ftype == c.FileType.DIR
    member = tarfile.open(fileobj=io.BytesIO(image[blob.fh_info:]), mode="r|").next()
    assert member.name == "sub/blob.bin"  # direct access: the stream from fh_info starts at that member


def test_hist_n_suppresses_file_history(connect, source_tree):
    cl = connect()
    sink = MoverSink()
    cl.call(M.DATA_CONNECT, m.DataConnectRequest(sink.addr))
    cl.call(M.DATA_START_BACKUP, m.DataStartBackupRequest(
        "tar", [m.Pval("FILESYSTEM", str(source_tree)), m.Pval("HIST", "n")]))
    cl.wait_for_post(M.NOTIFY_DATA_HALTED)
    sink.join()
    assert not cl.take_posts(M.FH_ADD_FILE)


def _recover(cl, image: bytes, env, nlist=()):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        addr = (c.AddrType.TCP, [m.TcpAddr(0x7F000001, listener.getsockname()[1], [])])
        cl.call(M.DATA_CONNECT, m.DataConnectRequest(addr))
        cl.call(M.DATA_START_RECOVER, m.DataStartRecoverRequest(env, list(nlist), "tar"))
        read = cl.wait_for_post(M.NOTIFY_DATA_READ)  # the data server asks for the image
        assert (read.body.offset, read.body.length) == (0, 2**64 - 1)
        conn, _ = listener.accept()
        with conn:
            conn.sendall(image + bytes(10240))  # plus tape-record padding, as a mover sends
    return cl.wait_for_post(M.NOTIFY_DATA_HALTED)


def test_recover_everything_into_prefix(connect, source_tree, tmp_path):
    cl = connect()
    _, image = _backup(cl, source_tree)
    cl.call(M.DATA_STOP)
    dest = tmp_path / "restored"
    halted = _recover(cl, image, [m.Pval("PREFIX", str(dest))])
    assert halted.body.reason == c.DataHaltReason.SUCCESSFUL
    assert _tree_bytes(dest) == _tree_bytes(source_tree)
    cl.call(M.DATA_STOP)


def test_recover_name_list_to_alternate_location_reports_log_file(connect, source_tree, tmp_path):
    cl = connect()
    _, image = _backup(cl, source_tree)
    cl.call(M.DATA_STOP)
    alt = tmp_path / "alt"
    nlist = [m.Name("/sub/deeper", str(alt / "mail")), m.Name("/a.txt", str(alt / "renamed.txt")),
             m.Name("/missing", str(alt / "nothing"))]
    halted = _recover(cl, image, [], nlist)
    assert halted.body.reason == c.DataHaltReason.SUCCESSFUL
    assert (alt / "renamed.txt").read_bytes() == b"hello ndmp\n"
    assert (alt / "mail" / "caf\u00e9.eml").read_bytes() == (source_tree / "sub/deeper/caf\u00e9.eml").read_bytes()
    assert not (alt / "nothing").exists()
    results = {p.body.name: p.body.recovery_status for p in cl.take_posts(M.LOG_FILE)}
    assert results == {"/sub/deeper": c.RecoveryStatus.SUCCESSFUL, "/a.txt": c.RecoveryStatus.SUCCESSFUL,
                       "/missing": c.RecoveryStatus.FAILED_NOT_FOUND}


def test_recover_refuses_paths_escaping_the_destination(connect, tmp_path):
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    cl = connect()
    dest = tmp_path / "dest"
    halted = _recover(cl, evil.getvalue(), [m.Pval("PREFIX", str(dest))])
    assert halted.body.reason == c.DataHaltReason.INTERNAL_ERROR
    assert not (tmp_path / "escape.txt").exists()
    assert any("recover failed" in p.body.entry for p in cl.take_posts(M.LOG_MESSAGE))


def test_illegal_states_are_refused(connect, source_tree):
    cl = connect()
    for code, body in [(M.DATA_STOP, None), (M.DATA_ABORT, None), (M.DATA_GET_ENV, None),
                       (M.DATA_START_BACKUP, m.DataStartBackupRequest("tar", []))]:
        with pytest.raises(NdmpError) as exc:
            cl.call(code, body)
        assert exc.value.error == c.Error.ILLEGAL_STATE_ERR, code
    cl.call(M.DATA_LISTEN, m.DataListenRequest(c.AddrType.TCP))
    with pytest.raises(NdmpError) as exc:
        cl.call(M.DATA_LISTEN, m.DataListenRequest(c.AddrType.TCP))
    assert exc.value.error == c.Error.ILLEGAL_STATE_ERR
    with pytest.raises(NdmpError) as exc:
        cl.call(M.DATA_START_BACKUP, m.DataStartBackupRequest("no-such-butype", []))
    assert exc.value.error == c.Error.ILLEGAL_ARGS_ERR
    cl.call(M.DATA_ABORT)  # LISTEN -> HALTED(ABORTED)
    assert cl.wait_for_post(M.NOTIFY_DATA_HALTED).body.reason == c.DataHaltReason.ABORTED
    cl.call(M.DATA_STOP)
    with pytest.raises(NdmpError) as exc:
        cl.call(M.DATA_LISTEN, m.DataListenRequest(c.AddrType.LOCAL))
    assert exc.value.error == c.Error.ILLEGAL_ARGS_ERR


def test_data_connect_to_nothing_is_connect_err(connect):
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    cl = connect()
    with pytest.raises(NdmpError) as exc:
        cl.call(M.DATA_CONNECT, m.DataConnectRequest((c.AddrType.TCP, [m.TcpAddr(0x7F000001, port, [])])))
    assert exc.value.error == c.Error.CONNECT_ERR
    assert cl.call(M.DATA_GET_STATE).state == c.DataState.IDLE


def _endless(job):
    block = bytes(64 * 1024)
    while True:
        yield block


def _failing(job):
    yield b"x" * 100
    raise RuntimeError("store went offline")


def _serve(*butypes, committed=None):
    def make():
        s = NdmpServer(ServerConfig(credentials=Credentials({USER: PASSWORD})))
        s.add_service(DataService(list(butypes)))
        return s
    return ServerThread(make)


def test_abort_stops_an_endless_backup_blocked_on_a_slow_mover():
    with _serve(Butype("endless", _endless)) as st:
        cl = NdmpClient(*st.address).login(USER, PASSWORD)
        sink = MoverSink(delay=0.01)
        cl.call(M.DATA_CONNECT, m.DataConnectRequest(sink.addr))
        cl.call(M.DATA_START_BACKUP, m.DataStartBackupRequest("endless", []))
        sink.connected.wait(10)
        cl.call(M.DATA_ABORT)
        assert cl.wait_for_post(M.NOTIFY_DATA_HALTED).body.reason == c.DataHaltReason.ABORTED
        assert cl.call(M.DATA_GET_STATE).halt_reason == c.DataHaltReason.ABORTED
        sink.join()
        cl.call(M.DATA_STOP)
        cl.close()


def test_butype_failure_is_internal_error_with_a_log_message():
    with _serve(Butype("failing", _failing)) as st:
        cl = NdmpClient(*st.address).login(USER, PASSWORD)
        sink = MoverSink()
        cl.call(M.DATA_CONNECT, m.DataConnectRequest(sink.addr))
        cl.call(M.DATA_START_BACKUP, m.DataStartBackupRequest("failing", []))
        assert cl.wait_for_post(M.NOTIFY_DATA_HALTED).body.reason == c.DataHaltReason.INTERNAL_ERROR
        logs = cl.take_posts(M.LOG_MESSAGE)
        assert logs[0].body.log_type == c.LogType.ERROR and "store went offline" in logs[0].body.entry
        assert sink.join() == b"x" * 100
        cl.close()


def test_mover_closing_mid_stream_is_connect_error():
    with _serve(Butype("endless", _endless)) as st:
        cl = NdmpClient(*st.address).login(USER, PASSWORD)
        listener = socket.create_server(("127.0.0.1", 0))
        addr = (c.AddrType.TCP, [m.TcpAddr(0x7F000001, listener.getsockname()[1], [])])
        cl.call(M.DATA_CONNECT, m.DataConnectRequest(addr))
        conn, _ = listener.accept()
        cl.call(M.DATA_START_BACKUP, m.DataStartBackupRequest("endless", []))
        conn.recv(1000)
        conn.close()
        listener.close()
        assert cl.wait_for_post(M.NOTIFY_DATA_HALTED).body.reason == c.DataHaltReason.CONNECT_ERROR
        cl.close()


def test_dma_vanishing_mid_backup_aborts_the_job_and_the_server_carries_on():
    with _serve(Butype("endless", _endless)) as st:
        cl = NdmpClient(*st.address).login(USER, PASSWORD)
        sink = MoverSink(delay=0.01)
        cl.call(M.DATA_CONNECT, m.DataConnectRequest(sink.addr))
        cl.call(M.DATA_START_BACKUP, m.DataStartBackupRequest("endless", []))
        sink.connected.wait(10)
        cl._drop()  # no CONNECT_CLOSE, the socket just goes
        sink.join()  # the data connection is closed once the job stops
        other = NdmpClient(*st.address).login(USER, PASSWORD)
        assert other.call(M.DATA_GET_STATE).state == c.DataState.IDLE
        other.close()


def test_commit_extension_runs_the_hook_once_after_a_successful_backup(source_tree):
    committed = []
    butype = tar_butype()
    butype.on_committed = committed.append
    with _serve(butype) as st:
        cl = NdmpClient(*st.address).login(USER, PASSWORD)
        commit = m.MailtapeDataCommitRequest([m.Pval("DATASET_ID", "job-42")])
        with pytest.raises(NdmpError) as exc:
            cl.call(M.MAILTAPE_DATA_COMMIT, commit)
        assert exc.value.error == c.Error.NOT_SUPPORTED_ERR  # extension not selected yet
        cl.call(M.CONFIG_SET_EXT_LIST, m.ConfigSetExtListRequest(0, [m.ClassList(c.MAILTAPE_EXT_CLASS, [1])]))
        with pytest.raises(NdmpError) as exc:
            cl.call(M.MAILTAPE_DATA_COMMIT, commit)
        assert exc.value.error == c.Error.ILLEGAL_STATE_ERR  # nothing backed up yet
        _backup(cl, source_tree)
        cl.call(M.MAILTAPE_DATA_COMMIT, commit)
        with pytest.raises(NdmpError):
            cl.call(M.MAILTAPE_DATA_COMMIT, commit)
        assert len(committed) == 1
        assert committed[0]["DATASET_ID"] == "job-42" and committed[0]["FILESYSTEM"] == str(source_tree)
        cl.call(M.DATA_STOP)
        cl.close()
