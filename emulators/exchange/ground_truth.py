"""Ground truth of an emulated server: what its databases and mailboxes hold at a moment.

A restore is only proven by comparing what came back with what was there. The emulator can see
inside its own databases, so it records a *snapshot* — a SHA-256 per database over every record
of every table in key order, and the mailbox view of each database (every folder and item with
flags, dates and a SHA-256 of the octets) — and compares a later state with it. The demo and the
scenario engine use this in-process; ``mailtape exchange snapshot`` saves one beside the server and
``mailtape verify SITE --against NAME`` checks a restore against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from reference.errors import CorruptDataError, NotFoundError, UsageError

SNAPSHOT_DIR = "ground-truth"


def database_digest(database) -> str:
    """SHA-256 over every record of every table of a mounted database, in key order."""
    digest = hashlib.sha256()
    for table in sorted(database.tables()):
        digest.update(b"\0table\0" + table.encode())
        for key, value in database.scan(table):
            digest.update(len(key).to_bytes(4, "little") + key + len(value).to_bytes(8, "little"))
            digest.update(value)
    return digest.hexdigest()


def server_digests(server, groups: list[str] | None = None, *, recovery: bool = False) -> dict[str, str]:
    """``{"group/database": digest}`` for mounted databases (the Recovery Storage Group's copies
    keyed by the *original* database name when ``recovery``)."""
    result = {}
    for group in server.storage_groups:
        if group.recovery != recovery or (groups is not None and group.name not in groups):
            continue
        for db in group.databases:
            if server.is_mounted(group.name, db.name):
                result[f"{group.name}/{db.name}"] = database_digest(server.database(group.name, db.name))
    return result


def mailbox_view(server) -> dict[str, dict]:
    """``{mailbox: {"storage_group", "digest"}}`` over the mounted databases; the digest covers the
    mailbox's canonical view (folders, items, flags, dates, SHA-256 of the octets)."""
    from emulators.exchange.mailbox_store import ServerMailboxStore, snapshot

    store = ServerMailboxStore.for_server(server)
    directory = store.directory()
    view = snapshot(store)
    result = {}
    for mailbox, folders in view.items():
        canonical = sorted(([list(path), facts] for path, facts in folders.items()), key=lambda e: e[0])
        digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
        result[mailbox] = {"storage_group": directory[mailbox][0], "digest": digest}
    return result


def capture(server) -> dict:
    return {"time": server.clock.now(), "databases": server_digests(server), "mailboxes": mailbox_view(server)}


def _path(root, name: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise UsageError(f"snapshot name {name!r}: use letters, digits, '.', '_' and '-' (up to 64)")
    return Path(root) / SNAPSHOT_DIR / f"{name}.json"


def save(root, name: str, snapshot: dict) -> Path:
    path = _path(root, name)
    path.parent.mkdir(exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def load(root, name: str) -> dict:
    path = _path(root, name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        names = sorted(p.stem for p in (Path(root) / SNAPSHOT_DIR).glob("*.json"))
        raise NotFoundError(f"no ground-truth snapshot {name!r} at {path.parent} "
                            f"(have: {', '.join(names) or 'none'})") from None
    except ValueError as error:
        raise CorruptDataError(f"not a snapshot ({error})", where=str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("databases"), dict):
        raise CorruptDataError("not a snapshot (no databases)", where=str(path))
    return data


def compare(expected: dict, server, *, groups: list[str] | None = None, recovery: bool = False) -> list[str]:
    """Every difference between the snapshot and the server now, as sentences (empty: equal).

    Only databases and mailboxes of ``groups`` (default: all the snapshot holds) are compared;
    with ``recovery`` the Recovery Storage Group's copies stand in for the original databases
    (mailboxes are not compared then: the RSG is not part of the server's mailbox view).
    """
    actual = server_digests(server, recovery=recovery)
    if recovery:  # the RSG copy of "First Storage Group/X" is "Recovery Storage Group/X"
        by_name = {key.split("/", 1)[1]: value for key, value in actual.items()}
        actual = {key: by_name[key.split("/", 1)[1]] for key in expected["databases"]
                  if key.split("/", 1)[1] in by_name}
    problems = []
    for key, digest in sorted(expected["databases"].items()):
        if groups is not None and key.split("/", 1)[0] not in groups:
            continue
        if key not in actual:
            problems.append(f"database {key}: not mounted now, so it cannot be compared")
        elif actual[key] != digest:
            problems.append(f"database {key}: records differ from the snapshot")
    if not recovery:
        now = mailbox_view(server)
        for mailbox, facts in sorted(expected.get("mailboxes", {}).items()):
            if groups is not None and facts["storage_group"] not in groups:
                continue
            if mailbox not in now:
                problems.append(f"mailbox {mailbox}: missing")
            elif now[mailbox]["digest"] != facts["digest"]:
                problems.append(f"mailbox {mailbox}: contents differ from the snapshot")
    return problems
