"""A minimal DMA written against the NDMP messages directly (no mailtape server): what a third-party
DMA such as ndmjob does, so the tests can run the agent without the commit extension."""

from __future__ import annotations

import ipaddress
import socket

from agent_helpers import PASSWORD, USER
from reference.ndmp import constants as c
from reference.ndmp import messages as m
from reference.ndmp.client import NdmpClient

M = c.Message


def login(address) -> NdmpClient:
    return NdmpClient(*address, timeout=30).login(USER, PASSWORD, "md5")


def _listen():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(30)
    port = listener.getsockname()[1]
    return listener, (c.AddrType.TCP, [m.TcpAddr(int(ipaddress.IPv4Address("127.0.0.1")), port, [])])


def start_backup(cl: NdmpClient, env: dict[str, str], butype: str = "exchange") -> socket.socket:
    listener, addr = _listen()
    with listener:
        cl.call(M.DATA_CONNECT, m.DataConnectRequest(addr))
        data, _ = listener.accept()
    cl.call(M.DATA_START_BACKUP, m.DataStartBackupRequest(butype, [m.Pval(k, v) for k, v in env.items()]))
    return data


def backup(cl: NdmpClient, env: dict[str, str], butype: str = "exchange") -> tuple[bytes, int, dict[str, str], list]:
    """Whole stream, halt reason, post-backup env, file-history entries (DATA left HALTED)."""
    data = start_backup(cl, env, butype)
    parts = []
    with data:
        while True:
            chunk = data.recv(1 << 20)
            if not chunk:
                break
            parts.append(chunk)
    halted = cl.wait_for_post(M.NOTIFY_DATA_HALTED)
    files = [f for p in cl.take_posts(M.FH_ADD_FILE) for f in p.body.files]
    env_after = {p.name: p.value for p in cl.call(M.DATA_GET_ENV).env}
    return b"".join(parts), halted.body.reason, env_after, files


def recover(cl: NdmpClient, stream: bytes, env: dict[str, str], names: list[m.Name] | None = None,
            butype: str = "exchange"):
    """Send ``stream`` as the recover image; returns (halt reason, LOG_FILE posts, env after)."""
    listener, addr = _listen()
    with listener:
        cl.call(M.DATA_CONNECT, m.DataConnectRequest(addr))
        data, _ = listener.accept()
    cl.call(M.DATA_START_RECOVER, m.DataStartRecoverRequest([m.Pval(k, v) for k, v in env.items()],
                                                            names or [], butype))
    with data:
        view = memoryview(stream)
        for i in range(0, len(stream), 1 << 18):
            data.sendall(view[i:i + (1 << 18)])
        data.shutdown(socket.SHUT_WR)
        halted = cl.wait_for_post(M.NOTIFY_DATA_HALTED, timeout=120)
    logs = [p.body for p in cl.take_posts(M.LOG_FILE)]
    env_after = {p.name: p.value for p in cl.call(M.DATA_GET_ENV).env}
    cl.call(M.DATA_STOP)
    return halted.body.reason, logs, env_after
