"""Ground truth of an emulated server: what its databases and mailboxes hold at a moment.

A restore is only proven by comparing what came back with what was there. The emulator can see
inside its own databases, so it records a *snapshot* and compares a later state with it:

* per database, a SHA-256 over every record of every table in key order;
* per database file, the *data pages* exactly as the file holds them (pages 1..pgno_last, the
  unflushed tail rendered as a flush would write it, so taking a snapshot writes nothing): a
  SHA-256 per page, kept in the snapshot as its first 8 bytes (enough to name the first page that
  differs) plus a SHA-256 over all of them, and the logical data length (pgno_last and heap
  bytes). The two header pages are left out: a restore legitimately rewrites them (backup
  information, state, consistent time);
* the mailbox view of each database (every folder and item with flags, dates and a SHA-256 of
  the octets).

The demo uses this in-process; ``mailtape exchange snapshot`` saves one beside the server and
``mailtape verify SITE --against NAME`` checks a restore against it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reference.errors import CorruptDataError, NotFoundError, UsageError

SNAPSHOT_DIR = "ground-truth"
PAGE_DIGEST_BYTES = 8  # kept per page: names the differing page; the per-file digest is a full SHA-256


def database_digest(database) -> str:
    """SHA-256 over every record of every table of a mounted database, in key order."""
    digest = hashlib.sha256()
    for table in sorted(database.tables()):
        digest.update(b"\0table\0" + table.encode())
        for key, value in database.scan(table):
            digest.update(len(key).to_bytes(4, "little") + key + len(value).to_bytes(8, "little"))
            digest.update(value)
    return digest.hexdigest()


def file_pages(page_file) -> dict:
    """The data pages of one database file: per-page digests, their digest, logical length."""
    digests = page_file.data_page_digests(hashlib.sha256)
    return {"file": os.path.basename(page_file.path), "page_size": page_file.cb, "pgno_last": len(digests),
            "heap_bytes": page_file.heap_end, "digest": hashlib.sha256(b"".join(digests)).hexdigest(),
            "pages": base64.b64encode(b"".join(d[:PAGE_DIGEST_BYTES] for d in digests)).decode("ascii")}


def database_pages(database) -> list[dict]:
    """:func:`file_pages` of each file of a mounted database (``.edb`` first, then ``.stm``)."""
    with database.instance.lock:
        return [file_pages(f) for f in database.files]


def _mounted(server, groups: list[str] | None, recovery: bool):
    for group in server.storage_groups:
        if group.recovery != recovery or (groups is not None and group.name not in groups):
            continue
        for db in group.databases:
            if server.is_mounted(group.name, db.name):
                yield f"{group.name}/{db.name}", server.database(group.name, db.name)


def server_digests(server, groups: list[str] | None = None, *, recovery: bool = False) -> dict[str, str]:
    """``{"group/database": records digest}`` for mounted databases (of the Recovery Storage Group
    when ``recovery``)."""
    return {key: database_digest(db) for key, db in _mounted(server, groups, recovery)}


def server_pages(server, groups: list[str] | None = None, *, recovery: bool = False) -> dict[str, list[dict]]:
    """``{"group/database": [file pages...]}`` for mounted databases (see :func:`file_pages`)."""
    return {key: database_pages(db) for key, db in _mounted(server, groups, recovery)}


def server_truth(server, groups: list[str] | None = None, *, recovery: bool = False) -> dict:
    """Records and pages of the mounted databases: ``{"databases": {...}, "pages": {...}}``."""
    return {"databases": server_digests(server, groups, recovery=recovery),
            "pages": server_pages(server, groups, recovery=recovery)}


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
    return {"time": server.clock.now(), **server_truth(server), "mailboxes": mailbox_view(server)}


# -- comparing --------------------------------------------------------------------------------


@dataclass
class DatabaseCheck:
    """One database compared with the snapshot: records, and data pages file by file."""

    database: str
    mounted: bool = True
    records_equal: bool = False
    pages_equal: int = 0
    pages: int = 0
    first_difference: str | None = None  # "priv1.stm page 5209 (offset 21344256)"
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if not self.mounted:
            return f"{self.database}: not mounted"
        records = "records equal" if self.records_equal else "records DIFFER"
        if self.first_difference is None and self.pages_equal == self.pages:
            pages = f"{self.pages:,} pages equal"
        else:
            pages = f"{self.pages_equal:,} of {self.pages:,} pages equal, first difference {self.first_difference}"
        return f"{self.database}: {records}, {pages}"


@dataclass
class Comparison:
    databases: list[DatabaseCheck]
    mailboxes: int  # mailboxes compared
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _page_list(entry: dict) -> np.ndarray:
    raw = base64.b64decode(entry["pages"])
    return np.frombuffer(raw[: len(raw) - len(raw) % PAGE_DIGEST_BYTES], dtype=f"S{PAGE_DIGEST_BYTES}")


def compare_files(check: DatabaseCheck, expected: list[dict], actual: list[dict]) -> None:
    """Compare the data pages of a database's files; fill ``check`` (counts, first difference)."""
    if len(expected) != len(actual):
        check.problems.append(f"database {check.database}: {len(actual)} file(s), the snapshot has {len(expected)}")
    for want, have in zip(expected, actual):
        name, cb = want["file"], want.get("page_size", have["page_size"])
        w, h = _page_list(want), _page_list(have)
        common = min(len(w), len(h))
        differ = np.flatnonzero(w[:common] != h[:common])
        check.pages += len(w)
        check.pages_equal += common - len(differ)
        first = int(differ[0]) if differ.size else (common if len(w) != len(h) else None)
        if first is None and want["digest"] != have["digest"]:
            check.problems.append(f"database {check.database}: {name}: data pages differ from the snapshot "
                                  f"(every per-page digest matches, the file digest does not)")
            continue
        if want["heap_bytes"] != have["heap_bytes"] or len(w) != len(h):
            check.problems.append(f"database {check.database}: {name}: {len(h)} data pages / {have['heap_bytes']:,} "
                                  f"bytes of data, the snapshot has {len(w)} / {want['heap_bytes']:,}")
        if first is not None:
            pgno = first + 1
            where = f"{name} page {pgno} (offset {(pgno + 1) * cb})"
            if check.first_difference is None:
                check.first_difference = where
            check.problems.append(f"database {check.database}: {where} differs from the snapshot "
                                  f"({common - len(differ):,} of {len(w):,} pages of {name} equal)")


def compare_truths(expected: dict, actual: dict, keys: list[str] | None = None) -> list[DatabaseCheck]:
    """Compare :func:`server_truth`-shaped states database by database (``keys``: default all
    the expected state holds). A snapshot without page digests cannot prove pages equal."""
    checks = []
    pages_expected = expected.get("pages")
    for key in sorted(expected["databases"] if keys is None else keys):
        check = DatabaseCheck(key)
        checks.append(check)
        if key not in actual["databases"]:
            check.mounted = False
            check.problems.append(f"database {key}: not mounted now, so it cannot be compared")
            continue
        check.records_equal = actual["databases"][key] == expected["databases"][key]
        if not check.records_equal:
            check.problems.append(f"database {key}: records differ from the snapshot")
        if pages_expected is None or key not in pages_expected:
            check.problems.append(f"database {key}: the snapshot has no page digests (take a new snapshot)")
            continue
        compare_files(check, pages_expected[key], actual["pages"][key])
    return checks


def as_originals(actual: dict, expected_keys) -> dict:
    """A Recovery Storage Group's state keyed like the originals it stands in for: the RSG copy of
    "First Storage Group/X" is "Recovery Storage Group/X"."""
    result = {}
    for part in ("databases", "pages"):
        by_name = {key.split("/", 1)[1]: value for key, value in actual[part].items()}
        result[part] = {key: by_name[key.split("/", 1)[1]] for key in expected_keys
                        if key.split("/", 1)[1] in by_name}
    return result


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
    if data.get("pages") is not None and not isinstance(data["pages"], dict):
        raise CorruptDataError("not a snapshot (pages is not a table)", where=str(path))
    return data


def compare(expected: dict, server, *, groups: list[str] | None = None, recovery: bool = False) -> Comparison:
    """The server now against the snapshot: records and data pages per database, mailboxes.

    Only databases and mailboxes of ``groups`` (default: all the snapshot holds) are compared;
    with ``recovery`` the Recovery Storage Group's copies stand in for the original databases
    (mailboxes are not compared then: the RSG is not part of the server's mailbox view).
    """
    keys = [key for key in expected["databases"] if groups is None or key.split("/", 1)[0] in groups]
    actual = server_truth(server, recovery=recovery)
    if recovery:
        actual = as_originals(actual, keys)
    checks = compare_truths(expected, actual, keys)
    problems = [p for check in checks for p in check.problems]
    compared = 0
    if not recovery:
        now = mailbox_view(server)
        for mailbox, facts in sorted(expected.get("mailboxes", {}).items()):
            if groups is not None and facts["storage_group"] not in groups:
                continue
            compared += 1
            if mailbox not in now:
                problems.append(f"mailbox {mailbox}: missing")
            elif now[mailbox]["digest"] != facts["digest"]:
                problems.append(f"mailbox {mailbox}: contents differ from the snapshot")
    return Comparison(checks, compared, problems)
