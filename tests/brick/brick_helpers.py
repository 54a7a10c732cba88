"""Helpers for the brick-level tests: messages, store snapshots and backup runs."""

from __future__ import annotations

import dataclasses
import hashlib

from reference.agent.brick import BackupState, BrickBackup, BrickCatalog, Selection
from reference.protocols.mailbox import NewItem

DAY = 86400.0
BASE_DATE = 1_100_000_000.0            # 2004-11-09, whole seconds (IMAP INTERNALDATE has no fraction)


def msg(n: int, mid: str | None = "default", body: bytes | None = None, subject: str | None = None) -> bytes:
    head = [b"From: Brick <brick@mailtape.test>", b"To: Someone <someone@mailtape.test>",
            f"Subject: {subject or f'brick message {n}'}".encode(),
            b"Date: Tue, 09 Nov 2004 05:46:40 +0000"]
    if mid is not None:
        head.append(f"Message-ID: {f'<brick-{n}@mailtape.test>' if mid == 'default' else mid}".encode())
    text = body if body is not None else f"Body of message {n}.\r\n  indented line\r\n".encode()
    return b"\r\n".join(head) + b"\r\n\r\n" + text


def put(store, mailbox, folder, content, flags=(), date=BASE_DATE) -> int:
    return store.append_item(mailbox, folder, NewItem(content, frozenset(flags), date))


def snapshot(store, mailbox, folders=None) -> dict:
    """{folder: sorted [(sha256, flags, whole-second date)]} read back from the store."""
    view = {}
    for info in store.list_folders(mailbox):
        if folders is not None and info.path not in folders:
            continue
        if info.uid_validity == 0:
            continue
        rows = []
        for item in store.list_items(mailbox, info.path):
            data = store.read_item(mailbox, info.path, item.uid)
            rows.append((hashlib.sha256(data).hexdigest(), tuple(sorted(f for f in item.flags if f != "\\Recent")),
                         int(item.internal_date)))
        view[info.path] = sorted(rows)
    return view


def uid_snapshot(store, mailbox) -> dict:
    """Everything a restore could change, including uids: for 'dry run changes nothing'."""
    return {info.path: (info.uid_validity, info.item_count,
                        [(i.uid, tuple(sorted(i.flags)), i.internal_date) for i in store.list_items(mailbox, info.path)])
            for info in store.list_folders(mailbox)}


def catalog_view(catalog: BrickCatalog, mailbox: str, prefix: tuple = ()) -> dict:
    view = {}
    for folder in catalog.folders(mailbox):
        if folder.meta.get("uid_validity") == 0:
            continue
        rows = []
        for item in catalog.items(mailbox, folder.path):
            assert hashlib.sha256(catalog.content(item)).hexdigest() == item.sha256
            rows.append((item.sha256, tuple(sorted(item.flags)), int(item.internal_date)))
        view[prefix + folder.path] = sorted(rows)
    return view


def backup(env, base: BackupState | None = None, selection: Selection | None = None, store=None, **kw):
    """Run one pass over ``env.mailbox`` only; (objects, BrickBackup) with the objects materialised."""
    selection = selection or Selection()
    if selection.mailboxes == ("*",):
        selection = dataclasses.replace(selection, mailboxes=(env.mailbox,))
    job = BrickBackup(store or env.store, selection, base, clock=lambda: BASE_DATE, **kw)
    objects = list(job.objects())
    return objects, job
