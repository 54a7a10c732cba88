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

Also here: :func:`ndmp_backup_mailboxes` (the agent's brick-level ``mailbox`` butype, same two-way
sequence) and :func:`ndmp_backup_three_way` (the stream goes to a third-party NDMP tape server's
Mover; end of medium continues on the next tape device; docs/ndmp.md).
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

    def start_backup(self, env: dict[str, str], butype: str = BUTYPE) -> None:
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
            butype, [m.Pval(k, v) for k, v in env.items()]))

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


def _check_history(dma: _Dma, trailer: DataSetTrailer, storage_group: str, name_of=None) -> None:
    """The file history must name exactly the trailer's objects (path, size, FLA): the catalog
    records what the agent announced, and the two views must agree before anything is committed.
    ``name_of(object)``: the history name the butype gives an object (default ``/SG/PATH``)."""
    announced = {}
    for f in dma.files:
        name = f.names[0][1] if f.names else ""
        announced[name] = (f.stats[0].size if f.stats else None, f.fh_info)
    name_of = name_of or (lambda o: f"/{storage_group}/{o.path}")
    expected = {name_of(o): (o.size, o.fla) for o in trailer.objects}
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

        received, agent_env = await _receive_until_halted(loop, dma, deliver, f"the backup of {storage_group!r}")
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



async def _receive_until_halted(loop, dma, deliver, what: str) -> tuple[int, dict]:
    """Pump the data connection into ``deliver`` until the agent halts; returns (bytes received,
    the agent's environment, which carries the trailer). A failed pump closes the data connection
    so the agent sees it and halts too."""
    pumped = loop.run_in_executor(None, dma.pump, deliver)
    halted = loop.run_in_executor(None, dma.wait_halted)
    try:
        received = await pumped
    except BaseException:
        dma.close_data()
        await asyncio.gather(halted, return_exceptions=True)
        raise
    reason = await halted
    if reason != c.DataHaltReason.SUCCESSFUL:
        why = "; ".join(dma.logs[-3:])
        raise NdmpJobError(f"agent halted {what}: {c.DataHaltReason(reason).name}" + (f" ({why})" if why else ""))
    agent_env = await loop.run_in_executor(None, dma.env)
    if ENV_TRAILER not in agent_env:
        raise NdmpJobError(f"agent sent no {ENV_TRAILER} for {what}")
    return received, agent_env

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


async def ndmp_backup_mailboxes(site, address: str, user: str, password: str, level: str = "full", *,
                                mailboxes: list[str] | None = None, folders: list[str] | None = None):
    """Brick-level backup of the remote agent's mailboxes (butype ``mailbox``) as one data set.

    Same two-way sequence as :func:`ndmp_backup`; the catalog records the set as kind ``mailbox``
    with each object's mailbox, so :func:`reference.brick_jobs.restore_mailboxes` restores from it.
    The agent keeps the incremental base and saves it on MAILTAPE_DATA_COMMIT. Returns a
    :class:`reference.brick_jobs.MailboxBackupResult` (status ``failed`` and ``error`` on failure)."""
    from reference.agent.ndmp_butypes import mailbox_history_name
    from reference.brick_jobs import DEFAULT_STORAGE_GROUP, KIND, LEVELS, MailboxBackupResult

    if level not in LEVELS:
        raise MailtapeError(f"backup level must be one of {', '.join(LEVELS)}, not {level!r}")
    host, port = parse_address(address)
    loop = asyncio.get_running_loop()
    clock = site.runtime.clock
    dma = _Dma(host, port, user, password)
    storage_group = DEFAULT_STORAGE_GROUP
    result = MailboxBackupResult("", storage_group, level, level)
    session = None
    finished = False
    try:
        result.server = server_name = await loop.run_in_executor(None, dma.open)
        newest = [s for s in site.catalog.data_sets(server_name, storage_group)
                  if s.kind == KIND and s.status == "ok" and s.backup_type != "copy"]
        session = await site.server.open_session({"kind": KIND, "server": server_name,
                                                  "storage_group": storage_group, "backup_type": level,
                                                  "started": clock.now()})
        env = {"LEVEL": level, "MTF_SET_NUMBER": str(session.set_number), "MTF_IMAGE": "set",
               "MAILBOXES": ",".join(mailboxes or ["*"]), "FOLDERS": ",".join(folders or ["*"]),
               "LAST_SET_ID": str(max(s.id for s in newest)) if newest else ""}
        await loop.run_in_executor(None, dma.start_backup, env, "mailbox")

        def deliver(chunk: bytes) -> None:
            asyncio.run_coroutine_threadsafe(session.send(chunk), loop).result()

        received, agent_env = await _receive_until_halted(loop, dma, deliver, "the mailbox backup")
        if agent_env.get("STORAGE_GROUP") != storage_group:
            raise NdmpJobError(f"agent backed up {agent_env.get('STORAGE_GROUP')!r}, not {storage_group!r}")
        trailer = decode_trailer(agent_env[ENV_TRAILER])
        if int(agent_env.get("MTF_BYTES", -1)) != received:
            raise NdmpJobError(f"received {received} bytes of the mailbox backup, the agent sent "
                               f"{agent_env.get('MTF_BYTES')}")
        _check_history(dma, trailer, storage_group, lambda o: mailbox_history_name(storage_group, o))
        result.level = trailer.backup_type
        result.warnings = list(trailer.metadata.get("warnings", []))
        result.mailbox_names = list(trailer.metadata.get("mailboxes", []))
        result.items = int(agent_env.get("ITEMS") or 0)
        result.objects = len(trailer.objects)
        finished = True
        receipt = await session.finish(trailer)
        result.receipt = receipt
        result.bytes_on_media = receipt.bytes_on_media
        commit_env = {"BACKUP_ID": str(receipt.data_set_id), "BARCODES": ",".join(receipt.barcodes),
                      "BYTES_ON_MEDIA": str(receipt.bytes_on_media), "CATALOG_TXN": f"set-{receipt.data_set_id}"}
        try:
            await loop.run_in_executor(None, dma.commit, commit_env)
        except (NdmpError, NdmpProtocolError) as error:
            result.warnings.append(f"data set {receipt.data_set_id} is committed, but the agent could not "
                                   f"save its incremental base ({error}): the next incremental is a full")
        result.status = "warning" if result.warnings else "ok"
        await loop.run_in_executor(None, dma.stop)
        return result
    except (MailtapeError, NdmpError, NdmpProtocolError, OSError, TimeoutError) as error:
        if session is not None and not finished:
            await session.abort(str(error))
        await loop.run_in_executor(None, dma.stop)
        result.status, result.error = "failed", str(error)
        log.error("ndmp mailbox backup failed: %s", error)
        return result
    finally:
        await loop.run_in_executor(None, dma.close)
        await site.server.drain()


# -- three-way: our DMA, the agent's Data service, a third-party NDMP Tape/Mover ----------------


@dataclass
class RemoteTape:
    """A third-party NDMP tape server (its Mover writes the stream): address, login, the tape
    devices to use in order (a new one at each end of medium), record size."""

    address: str
    user: str
    password: str
    devices: list[str]
    auth: str = "text"
    record_size: int = 10240


@dataclass
class ThreeWayResult:
    storage_group: str
    level: str
    status: str = "running"
    data_set_id: int | None = None
    devices_used: list[str] = field(default_factory=list)
    bytes_moved: int = 0
    mtf_bytes: int = 0
    objects: int = 0
    pauses: list[str] = field(default_factory=list)
    truncated: bool = False
    error: str | None = None


WINDOW_ALL = (1 << 64) - 1


def _next_post(clients: list[NdmpClient], timeout: float) -> tuple[NdmpClient, object]:
    """The next post on any of ``clients`` (queued ones first), waiting with select()."""
    import select
    import time

    deadline = time.monotonic() + timeout
    while True:
        for cl in clients:
            if cl.posts:
                return cl, cl.posts.popleft()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no NDMP notification from the agent or the tape server in time")
        ready, _, _ = select.select([cl.sock for cl in clients], [], [], min(remaining, 1.0))
        for cl in clients:
            if cl.sock in ready:
                msg = cl._receive()
                if msg.is_reply:
                    raise NdmpProtocolError(f"unsolicited reply {msg.name} from {cl.host}:{cl.port}")
                cl.posts.append(msg)


def _run_three_way(site, dma: _Dma, tape: RemoteTape, storage_group: str, level: str,
                   result: ThreeWayResult) -> None:
    """Blocking: the whole three-way conversation (worker thread)."""
    from reference.server.catalog import DataSetRecord, ObjectRecord

    clock = site.runtime.clock
    started = clock.now()
    server_name = dma.open()
    host, port = parse_address(tape.address)
    mover = NdmpClient(host, port, timeout=60).login(tape.user, tape.password, tape.auth)
    devices = list(tape.devices)
    if not devices:
        raise NdmpJobError("no tape device for the remote NDMP tape server")
    try:
        device = devices.pop(0)
        mover.call(c.Message.TAPE_OPEN, m.TapeOpenRequest(device, c.TapeOpenMode.RDWR))
        result.devices_used.append(device)
        mover.call(c.Message.MOVER_SET_RECORD_SIZE, m.MoverSetRecordSizeRequest(tape.record_size))
        mover.call(c.Message.MOVER_SET_WINDOW, m.OffsetLength(0, WINDOW_ALL))
        listen = mover.call(c.Message.MOVER_LISTEN, m.MoverListenRequest(c.MoverMode.READ, c.AddrType.TCP))
        assert dma.client is not None
        dma.client.call(c.Message.DATA_CONNECT, m.DataConnectRequest(listen.connect_addr))
        env = {"STORAGE_GROUP": storage_group, "LEVEL": level, "MTF_SET_NUMBER": "1", "MTF_IMAGE": "medium"}
        dma.client.call(c.Message.DATA_START_BACKUP, m.DataStartBackupRequest(
            BUTYPE, [m.Pval(k, v) for k, v in env.items()]))
        data_halt = mover_halt = None
        while data_halt is None or mover_halt is None:
            cl, msg = _next_post([dma.client, mover], HALT_TIMEOUT)
            if msg.code == c.Message.FH_ADD_FILE:
                dma.files.extend(msg.body.files)
            elif msg.code == c.Message.LOG_MESSAGE:
                dma.logs.append(msg.body.entry)
            elif msg.code == c.Message.NOTIFY_DATA_HALTED:
                data_halt = msg.body.reason
            elif msg.code == c.Message.NOTIFY_MOVER_HALTED:
                mover_halt = msg.body.reason
            elif msg.code == c.Message.NOTIFY_MOVER_PAUSED:
                reason = c.MoverPauseReason(msg.body.reason)
                result.pauses.append(f"{reason.name} on {device} at {msg.body.seek_position}")
                if reason != c.MoverPauseReason.EOM or not devices:
                    mover.call(c.Message.MOVER_ABORT, check=False)
                    raise NdmpJobError(f"tape server paused the mover ({reason.name} on {device}) and "
                                       "there is no further tape device to continue on")
                # end of medium: a filemark ends this tape's part, the next device continues the set
                mover.call(c.Message.TAPE_MTIO, m.TapeMtioRequest(c.TapeMtioOp.EOF, 1), check=False)
                mover.call(c.Message.TAPE_CLOSE)
                device = devices.pop(0)
                mover.call(c.Message.TAPE_OPEN, m.TapeOpenRequest(device, c.TapeOpenMode.RDWR))
                result.devices_used.append(device)
                mover.call(c.Message.MOVER_SET_WINDOW, m.OffsetLength(msg.body.seek_position, WINDOW_ALL))
                mover.call(c.Message.MOVER_CONTINUE)
        if data_halt != c.DataHaltReason.SUCCESSFUL:
            why = "; ".join(dma.logs[-3:])
            raise NdmpJobError(f"agent halted the backup of {storage_group!r}: {c.DataHaltReason(data_halt).name}"
                               + (f" ({why})" if why else ""))
        if mover_halt != c.MoverHaltReason.CONNECT_CLOSED:
            raise NdmpJobError(f"tape server halted its mover: {c.MoverHaltReason(mover_halt).name}")
        state = mover.call(c.Message.MOVER_GET_STATE)
        result.bytes_moved = state.bytes_moved
        agent_env = dma.env()
        if ENV_TRAILER not in agent_env:
            raise NdmpJobError(f"agent sent no {ENV_TRAILER} for {storage_group!r}")
        trailer = decode_trailer(agent_env[ENV_TRAILER])
        result.mtf_bytes = int(agent_env.get("MTF_BYTES", -1))
        padded = -(-result.mtf_bytes // tape.record_size) * tape.record_size  # the last record is padded
        if result.bytes_moved != padded:
            raise NdmpJobError(f"the tape server moved {result.bytes_moved} bytes of {storage_group!r}, the "
                               f"agent sent {result.mtf_bytes} ({padded} in {tape.record_size}-byte records)")
        _check_history(dma, trailer, storage_group)
        mover.call(c.Message.MOVER_STOP)
        mover.call(c.Message.TAPE_MTIO, m.TapeMtioRequest(c.TapeMtioOp.EOF, 1))
        mover.call(c.Message.TAPE_CLOSE)
        # the image is on the remote tapes: record it (media outside our library), then commit
        labels = [f"ndmp://{host}:{port}/{d}" for d in result.devices_used]
        objects = [ObjectRecord(f"{o.path}", o.kind, o.size, o.sha256, labels[0], 0, 0, o.fla, o.database,
                                xxh3=o.xxh3)
                   for o in trailer.objects]
        metadata = dict(trailer.metadata, media="remote-ndmp", tape_server=f"{host}:{port}",
                        devices=result.devices_used, record_size=tape.record_size, mtf_image="medium")
        record = DataSetRecord(1, 0, "database", server_name, storage_group, trailer.backup_type, started,
                               clock.now(), labels[0], 0, result.mtf_bytes, objects, trailer.log_gen_low,
                               trailer.log_gen_high, metadata, cartridges=labels)
        result.data_set_id = site.catalog.commit_data_set(record)
        result.level, result.objects = trailer.backup_type, len(objects)
        dma.commit({"BACKUP_ID": str(result.data_set_id), "BARCODES": ",".join(labels),
                    "BYTES_ON_MEDIA": str(result.bytes_moved), "CATALOG_TXN": f"set-{result.data_set_id}"})
        from reference.agent.levels import LEVELS

        result.truncated = LEVELS[result.level].truncates
        dma.stop()
    finally:
        mover.close()


async def ndmp_backup_three_way(site, address: str, user: str, password: str, tape: RemoteTape,
                                storage_group: str, level: str = "full") -> ThreeWayResult:
    """Back up one storage group of the agent at ``address`` onto a third-party NDMP tape server:
    the agent's Data service connects to the remote Mover (MOVER_LISTEN → DATA_CONNECT), the image
    is a complete MTF medium (``MTF_IMAGE=medium``); NOTIFY_MOVER_PAUSED(EOM) continues on the next
    device of ``tape.devices``; the file history goes into the catalog as a data set on remote media
    (``metadata.media = "remote-ndmp"``, barcodes ``ndmp://host:port/DEVICE``); only then
    MAILTAPE_DATA_COMMIT. Any failure before the catalog record never commits."""
    loop = asyncio.get_running_loop()
    result = ThreeWayResult(storage_group, level)
    host, port = parse_address(address)
    dma = _Dma(host, port, user, password)
    try:
        await loop.run_in_executor(None, _run_three_way, site, dma, tape, storage_group, level, result)
        result.status = "ok"
    except (MailtapeError, NdmpError, NdmpProtocolError, OSError, TimeoutError) as error:
        log.error("three-way ndmp backup of %s failed: %s", storage_group, error)
        await loop.run_in_executor(None, dma.stop)
        result.status, result.error = "failed", str(error)
    finally:
        await loop.run_in_executor(None, dma.close)
    return result
