"""The agent's ``exchange`` butype over NDMP on loopback: our DMA (commit → truncation), a DMA that
never commits (logs kept), a DMA that vanishes mid-stream, restore from the NDMP stream."""

from __future__ import annotations

import os
import time

import pytest

from agent_helpers import PASSWORD, SG, USER, log_generations
from raw_dma import M, backup, login, recover, start_backup
from reference.agent.ndmp_butypes import ENV_TRAILER, decode_trailer
from reference.format.reader import MtfReader
from reference.format.sources import Medium
from reference.ndmp import constants as c
from reference.ndmp import messages as m
from reference.ndmp.errors import NdmpError
from reference.server.ndmp_dma import ndmp_backup, parse_address


def _wait_for_result(agent, count: int, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while len(agent.results) < count:
        assert time.monotonic() < deadline, "the agent's backup did not end"
        time.sleep(0.05)
    return agent.results[count - 1]


def _mtf_objects(stream: bytes) -> dict[str, bytes]:
    reader = MtfReader([Medium("ndmp-stream", stream)])
    catalog = reader.read()
    assert not catalog.problems, catalog.problems
    return {"/".join([*o.path, o.name]): b"".join(bytes(v) for v in reader.iter_object(o))
            for o in catalog.objects()}


def _mail(exchange) -> dict:
    from emulators.exchange.mailbox_store import ServerMailboxStore, snapshot

    store = ServerMailboxStore.for_server(exchange)
    return snapshot(store, [name for name, (sg, _db) in store.directory().items() if sg == SG])


def test_our_dma_backs_up_commits_and_only_then_the_agent_truncates(agent, site, exchange_root):
    """The truncation-after-commit rule over the network: data set on tape and in the catalog, then
    MAILTAPE_DATA_COMMIT, then (and only then) the agent truncates logs and ends the instance."""
    address, butypes, _exchange = agent
    before = log_generations(exchange_root)
    assert before, "the fixture's Exchange server should have rolled logs"
    [result] = site.runtime.run(ndmp_backup(site, f"ndmp://{address[0]}:{address[1]}", USER, PASSWORD,
                                            [SG.upper()], "full"))
    assert result.status == "ok", result.error
    assert result.storage_group == SG and result.server == "EXCH01" and result.level == "full"
    assert result.truncated and result.receipt.barcodes
    record = site.catalog.data_set(result.receipt.data_set_id)
    assert record.status == "ok" and record.storage_group == SG and len(record.objects) == result.objects
    assert _wait_for_result(butypes, 1).truncated
    assert set(log_generations(exchange_root)).isdisjoint(before)  # the backed-up generations are gone
    reader = site.reader()
    try:
        report = reader.verify([record.id])  # bit-exact off the emulated library
    finally:
        reader.close()
    assert report.ok and report.objects == result.objects, report


def test_dma_without_commit_leaves_logs_and_the_stream_is_a_valid_mtf_set(agent, exchange_root):
    """A stock DMA (no extension): backup halts SUCCESSFUL, DATA_STOP, no truncation; the instance
    is ended with ERROR (docs/ndmp.md); the stream is one MTF data set whose objects match the FH."""
    address, butypes, _exchange = agent
    before = log_generations(exchange_root)
    cl = login(address)
    stream, reason, env, files = backup(cl, {"STORAGE_GROUP": SG, "MTF_SET_NUMBER": "7"})
    assert reason == c.DataHaltReason.SUCCESSFUL
    with pytest.raises(NdmpError) as exc:  # the extension was not negotiated
        cl.call(M.MAILTAPE_DATA_COMMIT, m.MailtapeDataCommitRequest([]))
    assert exc.value.error == c.Error.NOT_SUPPORTED_ERR
    cl.call(M.DATA_STOP)
    result = _wait_for_result(butypes, 1)
    assert result.status == "failed" and not result.truncated and "MAILTAPE_DATA_COMMIT" in result.error
    assert set(before) <= set(log_generations(exchange_root))  # every generation kept (a backup rolls one more)
    trailer = decode_trailer(env[ENV_TRAILER])
    assert trailer.eset.set_number == 7 and env["MTF_BYTES"] == str(len(stream))
    objects = _mtf_objects(stream)
    assert sorted(objects) == sorted(o.path for o in trailer.objects)
    history = {f.names[0][1]: (f.stats[0].size, f.fh_info) for f in files}
    assert history == {f"/{SG}/{o.path}": (o.size, o.fla) for o in trailer.objects}
    # the next (committed) backup still works on the same agent
    cl.close()


def test_dma_vanishing_mid_stream_commits_nothing_and_the_agent_keeps_serving(agent, site, exchange_root):
    address, butypes, _exchange = agent
    before = log_generations(exchange_root)
    cl = login(address)
    data = start_backup(cl, {"STORAGE_GROUP": SG})
    assert len(data.recv(65536)) > 0
    data.close()
    cl._drop()  # no CONNECT_CLOSE: the peer is simply gone
    result = _wait_for_result(butypes, 1)
    assert result.status == "failed" and not result.truncated and result.receipt is None
    assert set(before) <= set(log_generations(exchange_root))  # every generation kept (a backup rolls one more)
    [again] = site.runtime.run(ndmp_backup(site, f"{address[0]}:{address[1]}", USER, PASSWORD, None, "full"))
    assert again.status == "ok" and again.truncated
    assert len(site.catalog.data_sets()) == 1


def test_our_dma_refuses_a_wrong_password_and_an_unknown_storage_group(agent, site):
    address, _butypes, _exchange = agent
    from reference.errors import MailtapeError

    with pytest.raises(MailtapeError, match="NDMP agent"):
        site.runtime.run(ndmp_backup(site, f"ndmp://{address[0]}:{address[1]}", USER, "wrong", None, "full"))
    with pytest.raises(MailtapeError, match="not found"):
        site.runtime.run(ndmp_backup(site, f"ndmp://{address[0]}:{address[1]}", USER, PASSWORD, ["Nope"], "full"))
    assert site.catalog.data_sets() == []


def test_butype_refuses_bad_env_with_an_error_log(agent):
    address, _butypes, _exchange = agent
    cl = login(address)
    data = start_backup(cl, {"STORAGE_GROUP": "No Such Group"})
    halted = cl.wait_for_post(M.NOTIFY_DATA_HALTED)
    data.close()
    assert halted.body.reason == c.DataHaltReason.INTERNAL_ERROR
    texts = [p.body.entry for p in cl.take_posts(M.LOG_MESSAGE)]
    assert any("No Such Group" in t for t in texts), texts
    cl.call(M.DATA_STOP)
    cl.close()


def test_restore_from_the_ndmp_stream_into_lost_databases(agent, exchange_root):
    """Recover: the stream of a backup, fed back, restores the lost database (name list selects it)."""
    address, butypes, exchange = agent
    cl = login(address)
    stream, reason, _env, _files = backup(cl, {"STORAGE_GROUP": SG, "LEVEL": "copy"})
    assert reason == c.DataHaltReason.SUCCESSFUL
    cl.call(M.DATA_STOP)
    assert _wait_for_result(butypes, 1).status == "ok"  # copy: ends without truncation, no commit needed
    db = exchange.storage_group(SG).databases[0]
    mail_before = _mail(exchange)
    exchange.dismount(SG, db.name)
    for rel in db.files:
        os.remove(exchange.abspath(rel))
    exchange.set_allow_restore_overwrite(SG, db.name, True)
    names = [m.Name(original_path=f"/{SG}/{db.name}", destination_path=f"/{SG}")]
    reason, logs, env_after = recover(cl, stream, {"RESTORE_MODE": "roll-forward"}, names)
    assert reason == c.DataHaltReason.SUCCESSFUL
    assert [(x.name, x.recovery_status) for x in logs] == [(f"/{SG}/{db.name}", c.RecoveryStatus.SUCCESSFUL)]
    assert env_after["RESTORED_DATABASES"] == db.name and env_after["RESTORED_TO"] == SG
    assert mail_before and _mail(exchange) == mail_before  # every item back, mounted, readable
    cl.close()


def test_parse_address():
    assert parse_address("ndmp://host:10001") == ("host", 10001)
    assert parse_address("127.0.0.1") == ("127.0.0.1", 10000)
    from reference.errors import MailtapeError

    with pytest.raises(MailtapeError):
        parse_address("ndmp://host:99999")


def test_our_dma_spans_cartridges_at_end_of_medium(agent, tmp_path, exchange_root):
    """Two-way: the MediaWriter under the DMA meets early warning and continues on the next
    cartridge the media manager loads; the set is still one catalog entry, committed, truncated."""
    from emulators.clock import VirtualClock
    from agent_helpers import make_site
    from reference.server.site import open_site

    address, _butypes, _exchange = agent
    make_site(tmp_path / "small", cartridges=4, capacity_bytes=2 << 20)
    small = open_site(tmp_path / "small", clock=VirtualClock())
    try:
        [result] = small.runtime.run(ndmp_backup(small, f"ndmp://{address[0]}:{address[1]}", USER, PASSWORD,
                                                 None, "full"))
        assert result.status == "ok" and result.truncated
        assert len(result.receipt.barcodes) >= 2, "a 3 MiB store on 2 MiB cartridges must span"
        record = small.catalog.data_set(result.receipt.data_set_id)
        reader = small.reader()
        try:
            report = reader.verify([record.id])
        finally:
            reader.close()
        assert report.ok and report.objects == len(record.objects), report
    finally:
        small.close()


def _failing_agent(mode: str):
    """An NDMP agent whose ``exchange`` butype sends part of a data set, then fails (``error``) or
    drops its control connection as a crashed agent would (``vanish``)."""
    from reference.ndmp.auth import Credentials
    from reference.ndmp.data import Butype, DataService
    from reference.ndmp.server import NdmpServer, ServerConfig

    def backup(job):
        from reference.format.writer import DataSetWriter

        pending: list = []
        writer = DataSetWriter(pending.append, set_number=int(job.env["MTF_SET_NUMBER"]), name="partial")
        writer.begin_volume("Microsoft Information Store", volume=SG, machine="EXCH01")
        writer.begin_directory(["Mailbox Database"])
        stream = writer.open_file("Mailbox Database.edb", 1 << 20)
        stream.write(bytes(256 * 1024))  # a quarter of the declared size, then the agent fails
        yield from (bytes(p) for p in pending)
        if mode == "vanish":
            job.session.loop.call_soon_threadsafe(job.session.writer.transport.abort)
            while not job.aborted:
                time.sleep(0.01)
            job.check_abort()
        raise OSError("the Exchange volume went away")

    server = NdmpServer(ServerConfig(credentials=Credentials({USER: PASSWORD}), hostname="EXCH01"))
    server.add_service(DataService([Butype("exchange", backup)],
                                   fs_info=lambda: [m.FsInfo(fs_logical_device=SG, fs_env=[])]))
    return server


@pytest.mark.parametrize("mode", ["error", "vanish"])
def test_agent_failing_mid_stream_commits_nothing_and_the_server_keeps_serving(agent, site, mode):
    """The DMA side of the rule: an agent that fails or disappears mid-stream gets no commit; the
    session is aborted (nothing in the catalog, job failed, drive released) and the next backup works."""
    from reference.ndmp.runner import ServerThread

    with ServerThread(lambda: _failing_agent(mode)) as broken:
        [result] = site.runtime.run(ndmp_backup(site, f"{broken.address[0]}:{broken.address[1]}", USER,
                                                PASSWORD, None, "full"))
    assert result.status == "failed" and result.receipt is None and not result.truncated
    assert ("INTERNAL_ERROR" in result.error) if mode == "error" else result.error
    assert site.catalog.data_sets() == []
    assert [j["status"] for j in site.catalog.jobs()] == ["failed"]
    address, _butypes, _exchange = agent
    [again] = site.runtime.run(ndmp_backup(site, f"{address[0]}:{address[1]}", USER, PASSWORD, None, "full"))
    assert again.status == "ok" and again.truncated and len(site.catalog.data_sets()) == 1
