"""The backup server as NDMP DMA: drive a remote agent's ``exchange`` butype, two-way.

Two-way here means our server is the DMA *and* the receiving end of the data connection: it
listens, the agent's Data service connects (DATA_CONNECT) and streams one MTF data set, which goes
into the same media path the in-process server uses (``BackupServer.open_session`` → MediaWriter,
spanning cartridges on early warning, ESET and filemark, catalog). The sequence per storage group:

1. connect, CONNECT_OPEN(4), MD5 auth; CONFIG_GET_EXT_LIST → CONFIG_SET_EXT_LIST(mailtape v1)
   (an agent without the extension is refused: we could never tell it to truncate);
2. ``open_session`` on the backup server (drive, cartridge, set number);
3. DATA_CONNECT to our listener, DATA_START_BACKUP(exchange, STORAGE_GROUP, LEVEL, DATABASES,
   MTF_SET_NUMBER); the stream is fed to the session while file history (FH_ADD_FILE) is
   collected on the control connection;
4. NOTIFY_DATA_HALTED(SUCCESSFUL) → DATA_GET_ENV: the trailer (env MAILTAPE_TRAILER) is checked
   against the file history, then ``session.finish(trailer)``: ESET, filemark, catalog commit;
5. MAILTAPE_DATA_COMMIT(BACKUP_ID, BARCODES, BYTES_ON_MEDIA): the agent truncates logs and ends
   the Exchange instance; NO_ERR means done; DATA_STOP, CONNECT_CLOSE.

Any failure before step 5 aborts the session (nothing is committed) and never sends the commit, so
the agent keeps its logs. Blocking NDMP I/O runs in worker threads; the site's loop only awaits.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass, field

from reference.agent.database_backup import DatabaseOutcome, GroupBackupResult
from reference.agent.ndmp_butypes import ENV_TRAILER, decode_trailer
from reference.errors import MailtapeError
from reference.ndmp import constants as c
from reference.ndmp import messages as m
from reference.ndmp.client import NdmpClient
from reference.ndmp.errors import NdmpError, NdmpProtocolError
from reference.transfer import DataSetTrailer

log = logging.getLogger("mailtape.server.ndmp")

RECV_CHUNK = 256 * 1024
ACCEPT_TIMEOUT = 60.0
HALT_TIMEOUT = 3600.0  # a storage group can stream for a long time; halt comes after the last byte
BUTYPE = "exchange"


class NdmpJobError(MailtapeError):
    """The remote agent or the NDMP conversation failed."""


def parse_address(address: str) -> tuple[str, int]:
    """``ndmp://host:port``, ``host:port`` or ``host`` (port 10000)."""
    text = address.strip()
    if text.lower().startswith("ndmp://"):
        text = text[7:]
    text = text.rstrip("/")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":") or "10000"
    else:
        host, _, port = text.partition(":")
        port = port or "10000"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MailtapeError(f"{address!r} is not an NDMP agent address (ndmp://host:port)")
    return host, int(port)


@dataclass
class _Dma:
    """One NDMP control connection to the agent and its data connection (blocking; worker threads)."""

    host: str
    port: int
    user: str
    password: str
    client: NdmpClient | None = None
    data: socket.socket | None = None
    files: list = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def open(self) -> str:
        cl = NdmpClient(self.host, self.port, timeout=60)
        try:
            cl.login(self.user, self.password, "md5")
            classes = cl.call(c.Message.CONFIG_GET_EXT_LIST).class_list
            if not any(x.class_id == c.MAILTAPE_EXT_CLASS and c.MAILTAPE_EXT_VERSION in x.class_version
                       for x in classes):
                raise NdmpJobError(f"NDMP agent {self.host}:{self.port} does not offer the mailtape commit "
                                   "extension: it could never be told to truncate logs")
            cl.call(c.Message.CONFIG_SET_EXT_LIST, m.ConfigSetExtListRequest(
                0, [m.ClassList(c.MAILTAPE_EXT_CLASS, [c.MAILTAPE_EXT_VERSION])]))
            hostname = cl.call(c.Message.CONFIG_GET_HOST_INFO).hostname
        except BaseException:
            cl._drop()
            raise
        self.client = cl
        return hostname

    def storage_groups(self) -> list[str]:
        assert self.client is not None
        return [fs.fs_logical_device for fs in self.client.call(c.Message.CONFIG_GET_FS_INFO).fs_info]

    def start_backup(self, env: dict[str, str]) -> None:
        cl = self.client
        assert cl is not None and cl.sock is not None
        local = cl.sock.getsockname()[0]
        if ipaddress.ip_address(local).version != 4:
            local = "127.0.0.1"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind((local, 0))
            listener.listen(1)
            listener.settimeout(ACCEPT_TIMEOUT)
            port = listener.getsockname()[1]
            addr = (c.AddrType.TCP, [m.TcpAddr(int(ipaddress.IPv4Address(local)), port, [])])
            cl.call(c.Message.DATA_CONNECT, m.DataConnectRequest(addr))
            self.data, _peer = listener.accept()
        self.data.settimeout(None)
        cl.call(c.Message.DATA_START_BACKUP, m.DataStartBackupRequest(
            BUTYPE, [m.Pval(k, v) for k, v in env.items()]))

    def pump(self, deliver) -> int:
        """Read the data connection to its end, handing each chunk to ``deliver``; bytes read."""
        assert self.data is not None
        total = 0
        buffer = bytearray(RECV_CHUNK)
        view = memoryview(buffer)
        try:
            while True:
                n = self.data.recv_into(buffer)
                if n == 0:
                    return total
                deliver(bytes(view[:n]))
                total += n
        finally:
            self.close_data()

    def close_data(self) -> None:
        if self.data is not None:
            try:
                self.data.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.data.close()
            self.data = None

    def wait_halted(self) -> int:
        """Collect file history and log messages until NOTIFY_DATA_HALTED; returns the reason."""
        cl = self.client
        assert cl is not None
        while True:
            msg = cl.wait_for_post((c.Message.NOTIFY_DATA_HALTED, c.Message.FH_ADD_FILE, c.Message.LOG_MESSAGE),
                                   timeout=HALT_TIMEOUT)
            if msg.code == c.Message.FH_ADD_FILE:
                self.files.extend(msg.body.files)
            elif msg.code == c.Message.LOG_MESSAGE:
                self.logs.append(msg.body.entry)
            else:
                return msg.body.reason

    def env(self) -> dict[str, str]:
        assert self.client is not None
        return {p.name: p.value for p in self.client.call(c.Message.DATA_GET_ENV).env}

    def commit(self, env: dict[str, str]) -> None:
        assert self.client is not None
        self.client.call(c.Message.MAILTAPE_DATA_COMMIT, m.MailtapeDataCommitRequest(
            [m.Pval(k, v) for k, v in env.items()]))
        for msg in self.client.take_posts(c.Message.LOG_MESSAGE):
            self.logs.append(msg.body.entry)

    def stop(self) -> None:
        cl = self.client
        if cl is None:
            return
        try:
            state = cl.call(c.Message.DATA_GET_STATE).state
            if state in (c.DataState.ACTIVE, c.DataState.LISTEN, c.DataState.CONNECTED):
                cl.call(c.Message.DATA_ABORT, check=False)
                cl.wait_for_post(c.Message.NOTIFY_DATA_HALTED, timeout=30)
            cl.call(c.Message.DATA_STOP, check=False)
        except (NdmpError, NdmpProtocolError, TimeoutError, OSError) as error:
            log.debug("ndmp dma: stopping the data service: %s", error)

    def close(self) -> None:
        self.close_data()
        if self.client is not None:
            self.client.close()
            self.client = None


def _check_history(dma: _Dma, trailer: DataSetTrailer, storage_group: str) -> None:
    """The file history must name exactly the trailer's objects (path, size, FLA): the catalog
    records what the agent announced, and the two views must agree before anything is committed."""
    announced = {}
    for f in dma.files:
        name = f.names[0][1] if f.names else ""
        announced[name] = (f.stats[0].size if f.stats else None, f.fh_info)
    expected = {f"/{storage_group}/{o.path}": (o.size, o.fla) for o in trailer.objects}
    if announced != expected:
        missing = sorted(set(expected) - set(announced))[:3]
        extra = sorted(set(announced) - set(expected))[:3]
        raise NdmpJobError(f"file history of {storage_group!r} does not match the data set trailer "
                           f"(missing {missing}, unexpected {extra})")


def _result(server_name: str, storage_group: str, level: str, trailer: DataSetTrailer | None) -> GroupBackupResult:
    result = GroupBackupResult(server_name, storage_group, level, level)
    if trailer is not None:
        meta = trailer.metadata
        result.level = trailer.backup_type
        result.warnings = list(meta.get("warnings", []))
        result.log_files = list(meta.get("log_files", []))
        result.log_gen_low, result.log_gen_high = trailer.log_gen_low, trailer.log_gen_high
        result.objects = len(trailer.objects)
        result.bytes = sum(o.size for o in trailer.objects if o.kind in ("stream", "log"))
        for d in meta.get("databases", []):
            outcome = DatabaseOutcome(d["name"], d["guid"], list(d["streams"]), d.get("status", "ok"), d.get("error"))
            outcome.bytes = sum(o.size for o in trailer.objects if o.database == d["name"] and o.kind == "stream")
            result.databases.append(outcome)
    return result


async def _backup_group(site, dma: _Dma, server_name: str, storage_group: str, level: str,
                        databases: list[str] | None) -> GroupBackupResult:
    loop = asyncio.get_running_loop()
    clock = site.runtime.clock
    result = _result(server_name, storage_group, level, None)
    session = await site.server.open_session({"kind": "database", "server": server_name,
                                              "storage_group": storage_group, "backup_type": level,
                                              "started": clock.now()})
    finished = False
    try:
        env = {"STORAGE_GROUP": storage_group, "LEVEL": level, "MTF_SET_NUMBER": str(session.set_number),
               "MTF_IMAGE": "set",
               "DATABASES": ",".join(databases or [])}
        await loop.run_in_executor(None, dma.start_backup, env)

        def deliver(chunk: bytes) -> None:
            asyncio.run_coroutine_threadsafe(session.send(chunk), loop).result()

        pumped = loop.run_in_executor(None, dma.pump, deliver)
        halted = loop.run_in_executor(None, dma.wait_halted)
        try:
            received = await pumped
        except BaseException:
            dma.close_data()  # the agent sees its data connection fail and halts
            await asyncio.gather(halted, return_exceptions=True)
            raise
        reason = await halted
        if reason != c.DataHaltReason.SUCCESSFUL:
            why = "; ".join(dma.logs[-3:])
            raise NdmpJobError(f"agent halted the backup of {storage_group!r}: {c.DataHaltReason(reason).name}"
                               + (f" ({why})" if why else ""))
        agent_env = await loop.run_in_executor(None, dma.env)
        if ENV_TRAILER not in agent_env:
            raise NdmpJobError(f"agent sent no {ENV_TRAILER} for {storage_group!r}")
        trailer = decode_trailer(agent_env[ENV_TRAILER])
        if int(agent_env.get("MTF_BYTES", -1)) != received:
            raise NdmpJobError(f"received {received} bytes of {storage_group!r}, the agent sent "
                               f"{agent_env.get('MTF_BYTES')}")
        _check_history(dma, trailer, storage_group)
        result = _result(server_name, storage_group, level, trailer)
        finished = True
        receipt = await session.finish(trailer)  # ESET, filemark, catalog commit
        result.receipt = receipt
        commit_env = {"BACKUP_ID": str(receipt.data_set_id), "BARCODES": ",".join(receipt.barcodes),
                      "BYTES_ON_MEDIA": str(receipt.bytes_on_media), "CATALOG_TXN": f"set-{receipt.data_set_id}"}
        try:
            await loop.run_in_executor(None, dma.commit, commit_env)
        except (NdmpError, NdmpProtocolError) as error:
            result.status = "warning"
            result.warnings.append(f"data set {receipt.data_set_id} is committed, but the agent could not "
                                   f"truncate logs: {error}")
        else:
            from reference.agent.levels import LEVELS

            result.truncated = LEVELS[result.level].truncates
            result.status = "warning" if result.warnings else "ok"
        await loop.run_in_executor(None, dma.stop)
        return result
    except BaseException as error:
        if not finished:
            await session.abort(str(error))
        await loop.run_in_executor(None, dma.stop)
        result.status = "failed"
        result.error = str(error)
        raise


async def ndmp_backup(site, address: str, user: str, password: str, storage_groups: list[str] | None,
                      level: str, *, databases: list[str] | None = None) -> list[GroupBackupResult]:
    """Back up storage groups of the NDMP agent at ``address`` onto ``site``'s library.

    Returns one :class:`GroupBackupResult` per group, as ``reference.jobs.backup_storage_groups``
    does (a failed group has status ``failed`` and ``error``; the others carry on). Groups run
    concurrently, one NDMP connection and one drive each (the server queues for a free drive).
    """
    host, port = parse_address(address)
    loop = asyncio.get_running_loop()
    probe = _Dma(host, port, user, password)
    try:
        server_name = await loop.run_in_executor(None, probe.open)
        available = await loop.run_in_executor(None, probe.storage_groups)
    except (NdmpError, NdmpProtocolError, OSError) as error:
        raise NdmpJobError(f"NDMP agent {host}:{port}: {error}") from None
    finally:
        await loop.run_in_executor(None, probe.close)
    by_lower = {n.lower(): n for n in available}
    names = []
    for wanted in storage_groups or available:
        if wanted.lower() not in by_lower:
            raise MailtapeError(f"storage group {wanted!r} not found on {server_name} "
                                f"(it has: {', '.join(repr(n) for n in available)})")
        names.append(by_lower[wanted.lower()])

    async def one(name: str) -> GroupBackupResult:
        dma = _Dma(host, port, user, password)
        try:
            await loop.run_in_executor(None, dma.open)
            return await _backup_group(site, dma, server_name, name, level, databases)
        except (MailtapeError, NdmpError, NdmpProtocolError, OSError, TimeoutError) as error:
            log.error("ndmp backup of %s failed: %s", name, error)
            result = _result(server_name, name, level, None)
            result.status, result.error = "failed", str(error)
            return result
        finally:
            await loop.run_in_executor(None, dma.close)

    results = await asyncio.gather(*(one(n) for n in names))
    await site.server.drain()
    return list(results)
