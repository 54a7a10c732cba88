"""Store factories for the brick-level suite (used by conftest.py's ``env`` and by single tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
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


def _dovecot_env(request) -> StoreEnv:
    from reference.drivers.imap import ImapAccounts, ImapMailboxStore
    server = request.getfixturevalue("dovecot")
    logins = [server.fresh_account() for _ in range(2)]
    store = ImapAccounts([ImapMailboxStore(server.url(u), p, timeout=10) for u, p in logins])
    me = logins[0][0]

    def renumber(folder: tuple) -> None:
        validity = next(f for f in store.list_folders(me) if f.path == folder).uid_validity
        server.doveadm("mailbox", "update", "-u", me, "--uid-validity", str(validity + 7777), "/".join(folder))
    return StoreEnv("dovecot", store, me, logins[1][0], renumber, [store.close])


def _emulator_env(request) -> StoreEnv:
    """An emulated Exchange 2003 server (ESE engine) and its mailbox view, as tests/exchange builds it."""
    from emulators.clock import VirtualClock
    from emulators.exchange.mailbox_store import ServerMailboxStore
    from emulators.exchange.server import ExchangeServer
    root = request.getfixturevalue("tmp_path") / "exchange"
    server = ExchangeServer.create(root, profile="2003", storage_groups=1, databases=1, server_name="EXCHANGE01",
                                   clock=VirtualClock(), seed=1, log_file_size=64 * 1024)
    store = ServerMailboxStore.for_server(server)
    store.create_mailbox("jsmith")
    store.create_mailbox("recover")

    def stop() -> None:
        if server.running:
            server.shutdown()
    return StoreEnv("emulator", store, "jsmith", "recover", None, [stop])


FACTORIES = {"dovecot": _dovecot_env, "emulator": _emulator_env}


