"""Store factories for the brick-level suite (used by conftest.py's ``env``, by single tests and by
tests/brick_jobs/bjobs_support.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class StoreEnv:
    """A store under test with two empty mailboxes (``mailbox`` and ``other``)."""

    kind: str
    store: object
    mailbox: str
    other: str
    renumber: Callable[[tuple], None] | None = None
    """Force a UIDVALIDITY change on a folder of ``mailbox`` keeping its items (server tool)."""
    closers: list = field(default_factory=list)


EMULATOR_SERVER = "EXCHANGE01"
EMULATOR_MAILBOXES = ("jsmith", "recover")


def dovecot_pair(server):
    """Two fresh accounts on the fixture's Dovecot behind one store: (ImapAccounts, [(user, password)] * 2)."""
    from reference.drivers.imap import ImapAccounts, ImapMailboxStore
    logins = [server.fresh_account() for _ in range(2)]
    return ImapAccounts([ImapMailboxStore(server.url(u), p, timeout=10) for u, p in logins]), logins


def emulated_exchange(root: Path, clock):
    """An emulated Exchange 2003 server (ESE engine) with the empty mailboxes EMULATOR_MAILBOXES, as
    tests/exchange builds it: (server, its mailbox store, a closer that shuts the server down)."""
    from emulators.exchange.mailbox_store import ServerMailboxStore
    from emulators.exchange.server import ExchangeServer
    server = ExchangeServer.create(root, profile="2003", storage_groups=1, databases=1, server_name=EMULATOR_SERVER,
                                   clock=clock, seed=1, log_file_size=64 * 1024)
    store = ServerMailboxStore.for_server(server)
    for mailbox in EMULATOR_MAILBOXES:
        store.create_mailbox(mailbox)

    def stop() -> None:
        if server.running:
            server.shutdown()
    return server, store, stop


def _dovecot_env(request) -> StoreEnv:
    server = request.getfixturevalue("dovecot")
    store, logins = dovecot_pair(server)
    me = logins[0][0]

    def renumber(folder: tuple) -> None:
        validity = next(f for f in store.list_folders(me) if f.path == folder).uid_validity
        server.doveadm("mailbox", "update", "-u", me, "--uid-validity", str(validity + 7777), "/".join(folder))
    return StoreEnv("dovecot", store, me, logins[1][0], renumber, [store.close])


def _emulator_env(request) -> StoreEnv:
    from emulators.clock import VirtualClock
    _server, store, stop = emulated_exchange(request.getfixturevalue("tmp_path") / "exchange", VirtualClock())
    return StoreEnv("emulator", store, *EMULATOR_MAILBOXES, None, [stop])


FACTORIES = {"dovecot": _dovecot_env, "emulator": _emulator_env}
