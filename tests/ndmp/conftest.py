"""Fixtures for the NDMP tests: an in-process NDMP Data server with the ``tar`` butype, clients,
and the path of Amanda's ``ndmjob`` (skips with the reason when it is absent)."""

from __future__ import annotations

import pytest

from ndmp_helpers import PASSWORD, USER, make_server, ndmjob_or_skip
from reference.ndmp.client import NdmpClient
from reference.ndmp.runner import ServerThread


@pytest.fixture
def server():
    with ServerThread(make_server) as st:
        yield st


@pytest.fixture
def connect(server):
    """``connect(login=True)`` -> an NdmpClient on the fixture server (closed at teardown)."""
    clients = []

    def _connect(login: bool = True, method: str = "md5", **kw) -> NdmpClient:
        cl = NdmpClient(*server.address, timeout=20, **kw)
        clients.append(cl)
        if login:
            cl.login(USER, PASSWORD, method)
        else:
            cl.connect()
        return cl

    yield _connect
    for cl in clients:
        cl._drop()


@pytest.fixture
def source_tree(tmp_path):
    """A small folder with text, binary, an empty file, a subfolder and a non-ASCII name."""
    root = tmp_path / "src"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello ndmp\n")
    (root / "empty").write_bytes(b"")
    (root / "sub" / "blob.bin").write_bytes(bytes(range(256)) * 700 + b"tail")
    (root / "sub" / "deeper" / "caf\u00e9.eml").write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    return root


@pytest.fixture(scope="session")
def ndmjob():
    return ndmjob_or_skip()
