"""Helpers for tests/brick_jobs: store environments, a site with tiny cartridges, job runners."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared_fixtures.loading import load_test_module

from emulators.clock import VirtualClock
from reference.agent.brick import RestoreOptions, Selection
from reference.brick_jobs import backup_mailboxes, restore_mailboxes
from reference.drivers.imap_errors import ImapConnectionError
from reference.server.site import create_site, open_site

CARTRIDGE_BYTES = 1 << 20

helpers = load_test_module("mailtape_tests_brick_helpers", "brick/brick_helpers.py")
stores = load_test_module("mailtape_tests_brick_stores", "brick/brick_stores.py")
msg, put, snapshot, uid_snapshot = helpers.msg, helpers.put, helpers.snapshot, helpers.uid_snapshot


@dataclass
class JobEnv:
    kind: str
    store: object
    mailbox: str
    other: str
    server_name: str
    clock: VirtualClock
    closers: list = field(default_factory=list)
    url: Callable[[str], str] | None = None
    password: dict = field(default_factory=dict)
    server: object = None


def make_env(kind: str, request, tmp_path: Path) -> JobEnv:
    clock = VirtualClock()
    if kind == "dovecot":
        dovecot = request.getfixturevalue("dovecot")
        store, logins = stores.dovecot_pair(dovecot)
        return JobEnv("dovecot", store, logins[0][0], logins[1][0], f"imap://{dovecot.host}:{dovecot.port}",
                      clock, [store.close], dovecot.url, dict(logins), dovecot)
    server, store, stop = stores.emulated_exchange(tmp_path / "exchange", clock)
    return JobEnv("emulator", store, *stores.EMULATOR_MAILBOXES, stores.EMULATOR_SERVER, clock, [stop], server=server)


def make_site(root: Path, clock, cartridges: int = 8):
    create_site(root, drives=2, slots=10, cartridges=cartridges, capacity_bytes=CARTRIDGE_BYTES,
                settings={"seed": 7})
    return open_site(root, clock=clock)


def run_backup(site, env: JobEnv, level: str = "full", store=None, selection: Selection | None = None):
    selection = selection or Selection(mailboxes=(env.mailbox,))
    return site.runtime.run(backup_mailboxes(site, store or env.store, selection, level,
                                             server_name=env.server_name))


def run_restore(site, env: JobEnv, *, store=None, dry_run: bool = False, set_id: int | None = None,
                at: float | None = None, **options):
    options.setdefault("selection", Selection(mailboxes=(env.mailbox,)))
    return site.runtime.run(restore_mailboxes(site, store or env.store, RestoreOptions(**options),
                                              server_name=env.server_name, set_id=set_id, at=at,
                                              dry_run=dry_run))


def fill(env: JobEnv, count: int = 12, size: int = 2000, folder=("Projects",)) -> None:
    """``count`` messages in INBOX and ``folder`` (one body duplicated, some flagged)."""
    env.store.create_folder(env.mailbox, folder)
    for n in range(count):
        body = (f"line {n} ".encode() * (size // 8))[:size] + b"\r\n"
        put(env.store, env.mailbox, ("INBOX",), msg(n, body=body), flags={"\\Seen"} if n % 2 else set(),
            date=helpers.BASE_DATE + n * 60)
        if n % 3 == 0:
            put(env.store, env.mailbox, folder, msg(100 + n, body=body), flags={"\\Flagged"},
                date=helpers.BASE_DATE + n * 60)
    put(env.store, env.mailbox, folder, msg(0, body=(b"line 0 " * (size // 8))[:size] + b"\r\n"),
        date=helpers.BASE_DATE)                                          # same octets as INBOX #0


def wipe(env: JobEnv, folders=(("Projects",),), mailbox: str | None = None) -> None:
    """A mailbox that lost its mail: every item deleted, ``folders`` deleted with their subfolders."""
    mailbox = mailbox or env.mailbox
    for path in folders:
        env.store.delete_folder(mailbox, path)
    for info in env.store.list_folders(mailbox):
        for item in list(env.store.list_items(mailbox, info.path)):
            env.store.delete_item(mailbox, info.path, item.uid)


class DroppingStore:
    """A store wrapper whose connection 'drops' after ``reads`` item reads (like a server gone
    away mid-backup): every later read raises the driver's ImapConnectionError."""

    def __init__(self, store, reads: int):
        self._store = store
        self.left = reads

    def __getattr__(self, name):
        return getattr(self._store, name)

    def read_item(self, mailbox, folder, uid):
        if self.left <= 0:
            raise ImapConnectionError(f"connection to the mail server dropped during reading uid {uid}")
        self.left -= 1
        return self._store.read_item(mailbox, folder, uid)
