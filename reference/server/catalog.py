"""The backup catalog: what is on which cartridge, in SQLite.

One SQLite file holds jobs, media, data sets and objects. A data set and all its objects are
committed in **one transaction** (:meth:`Catalog.commit_data_set`) after its closing filemark is on
tape; that commit is the moment the agent may truncate Exchange logs. Everything in here can be
rebuilt from the media alone (``mailtape catalog rebuild``), the way Bacula's bscan does.

Addresses follow MTF: a data set starts at ``(barcode, tape_file)``; an object's first byte is at
format logical address ``fla`` of its set, and ``block`` is the physical block the catalog can
seek to. An object that spans cartridges lists every cartridge it touches in ``extents``.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from reference.errors import MailtapeError, NotFoundError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS media (
    barcode       TEXT PRIMARY KEY,
    pool          TEXT NOT NULL DEFAULT 'Default',
    family_id     INTEGER,
    sequence      INTEGER,
    label_count   INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL DEFAULT 'blank',   -- blank | append | full | foreign | error
    labeled_at    REAL,
    bytes_written INTEGER NOT NULL DEFAULT 0,
    data_sets     INTEGER NOT NULL DEFAULT 0,
    next_file     INTEGER NOT NULL DEFAULT 0       -- tape file number where the next set goes
);
CREATE TABLE IF NOT EXISTS jobs (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,                 -- backup | restore | verify
    level           TEXT,
    requested_level TEXT,
    target          TEXT NOT NULL,
    status          TEXT NOT NULL,                 -- running | ok | warning | failed
    started         REAL NOT NULL,
    ended           REAL,
    bytes           INTEGER NOT NULL DEFAULT 0,
    objects         INTEGER NOT NULL DEFAULT 0,
    message         TEXT,
    warnings        TEXT NOT NULL DEFAULT '[]',
    exit_status     INTEGER                        -- 0 ok, 1 warning, 2 failed (docs/server.md)
);
CREATE TABLE IF NOT EXISTS data_sets (
    id            INTEGER PRIMARY KEY,
    job_id        INTEGER REFERENCES jobs(id),
    set_number    INTEGER NOT NULL,
    family_id     INTEGER NOT NULL,
    kind          TEXT NOT NULL,                   -- database | mailbox
    server        TEXT NOT NULL,
    storage_group TEXT NOT NULL,
    backup_type   TEXT NOT NULL,                   -- full | incremental | differential | copy
    started       REAL NOT NULL,
    completed     REAL NOT NULL,
    log_gen_low   INTEGER,
    log_gen_high  INTEGER,
    first_barcode TEXT NOT NULL,
    first_file    INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    metadata      TEXT NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL DEFAULT 'ok'       -- ok | expired (its media was overwritten)
);
CREATE TABLE IF NOT EXISTS objects (
    id          INTEGER PRIMARY KEY,
    data_set_id INTEGER NOT NULL REFERENCES data_sets(id),
    path        TEXT NOT NULL,
    kind        TEXT NOT NULL,                     -- stream | log | metadata | item
    database    TEXT,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    barcode     TEXT NOT NULL,
    tape_file   INTEGER NOT NULL,
    block       INTEGER NOT NULL,
    fla         INTEGER NOT NULL,
    xxh3        TEXT                               -- XXH3-128 (in-line restore check); NULL: not recorded
);
CREATE TABLE IF NOT EXISTS extents (
    object_id INTEGER NOT NULL REFERENCES objects(id),
    seq       INTEGER NOT NULL,
    barcode   TEXT NOT NULL,
    PRIMARY KEY (object_id, seq)
);
CREATE TABLE IF NOT EXISTS set_media (
    data_set_id INTEGER NOT NULL REFERENCES data_sets(id),
    seq         INTEGER NOT NULL,
    barcode     TEXT NOT NULL,                     -- every cartridge the set touches, in order
    PRIMARY KEY (data_set_id, seq)
);
CREATE INDEX IF NOT EXISTS objects_by_set ON objects(data_set_id);
CREATE INDEX IF NOT EXISTS sets_by_group ON data_sets(server, storage_group, completed);
"""

BACKUP_TYPES = ("full", "incremental", "differential", "copy")
JOB_EXIT_STATUS = {"ok": 0, "warning": 1, "failed": 2}


def _locked(method):
    """Writes go through one lock: jobs in worker threads share this connection (a transaction
    on a shared connection must not interleave with another thread's statements)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


@dataclass
class ObjectRecord:
    path: str
    kind: str
    size: int
    sha256: str
    barcode: str
    tape_file: int
    block: int
    fla: int
    database: str | None = None
    extents: list[str] = field(default_factory=list)
    """Barcodes of every cartridge holding part of the object, in order (first = ``barcode``)."""
    xxh3: str = ""
    """XXH3-128 of the data as the agent sent it, hex; the restore's in-line check. Not on the
    media, so "" for a set cataloged by ``catalog rebuild`` (its restores check SHA-256 instead)."""


@dataclass
class DataSetRecord:
    set_number: int
    family_id: int
    kind: str
    server: str
    storage_group: str
    backup_type: str
    started: float
    completed: float
    first_barcode: str
    first_file: int
    bytes: int
    objects: list[ObjectRecord]
    log_gen_low: int | None = None
    log_gen_high: int | None = None
    metadata: dict = field(default_factory=dict)
    job_id: int | None = None
    id: int | None = None
    status: str = "ok"
    cartridges: list[str] = field(default_factory=list)
    """Every cartridge the set touches, in order — including one holding only its ESET (an end of
    medium right after the data, mtf.md §7.11). Empty: derived from the objects' extents."""


class Catalog:
    """The SQLite catalog. One connection shared by the server's threads; writes take ``lock``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:
            raise MailtapeError(f"{self.path}: not a usable mailtape catalog ({error})") from None
        self.db.row_factory = sqlite3.Row
        self.lock = threading.RLock()
        columns = {row["name"] for row in self.db.execute("PRAGMA table_info(jobs)")}
        if "exit_status" not in columns:  # catalogs made before the column existed
            self.db.execute("ALTER TABLE jobs ADD COLUMN exit_status INTEGER")
        if "xxh3" not in {row["name"] for row in self.db.execute("PRAGMA table_info(objects)")}:
            self.db.execute("ALTER TABLE objects ADD COLUMN xxh3 TEXT")  # restores of its sets check SHA-256
        self.db.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )

    def close(self) -> None:
        self.db.close()

    # -- jobs ---------------------------------------------------------------------------------

    @_locked
    def start_job(self, kind: str, target: str, level: str | None = None, started: float | None = None) -> int:
        cursor = self.db.execute(
            "INSERT INTO jobs(kind, level, requested_level, target, status, started) VALUES (?,?,?,?,?,?)",
            (kind, level, level, target, "running", time.time() if started is None else started),
        )
        return int(cursor.lastrowid)

    @_locked
    def finish_job(
        self,
        job_id: int,
        status: str,
        *,
        level: str | None = None,
        bytes: int = 0,
        objects: int = 0,
        message: str | None = None,
        warnings: list[str] | None = None,
        ended: float | None = None,
    ) -> None:
        self.db.execute(
            "UPDATE jobs SET status=?, level=COALESCE(?, level), bytes=?, objects=?, message=?, warnings=?, ended=?,"
            " exit_status=? WHERE id=?",
            (status, level, bytes, objects, message, json.dumps(warnings or []),
             time.time() if ended is None else ended, JOB_EXIT_STATUS.get(status), job_id),
        )

    def jobs(self, limit: int = 100) -> list[dict]:
        rows = self.db.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [dict(row) | {"warnings": json.loads(row["warnings"])} for row in rows]

    def job(self, job_id: int) -> dict:
        row = self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"job {job_id} not found in catalog {self.path}")
        return dict(row) | {"warnings": json.loads(row["warnings"])}

    # -- media --------------------------------------------------------------------------------

    def media(self) -> list[dict]:
        return [dict(row) for row in self.db.execute("SELECT * FROM media ORDER BY barcode")]

    def medium(self, barcode: str) -> dict | None:
        row = self.db.execute("SELECT * FROM media WHERE barcode=?", (barcode,)).fetchone()
        return dict(row) if row else None

    @_locked
    def add_medium(self, barcode: str, pool: str, status: str = "blank") -> None:
        """Record a cartridge seen for the first time (no label of ours yet)."""
        self.db.execute(
            "INSERT INTO media(barcode, pool, status) VALUES (?, ?, ?) ON CONFLICT(barcode) DO NOTHING",
            (barcode, pool, status),
        )

    @_locked
    def restore_medium(self, row: dict) -> None:
        """Insert or replace a whole media row (catalog rebuild)."""
        names = ["barcode", "pool", "family_id", "sequence", "label_count", "status", "labeled_at",
                 "bytes_written", "data_sets", "next_file"]
        self.db.execute(
            f"INSERT OR REPLACE INTO media({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [row[n] for n in names],
        )

    @_locked
    def label_medium(self, barcode: str, pool: str, family_id: int, sequence: int, labeled_at: float) -> None:
        """Record a (re)label. Data sets on the old contents of this cartridge become ``expired``."""
        with self._transaction():
            self.db.execute(
                "INSERT INTO media(barcode, pool) VALUES (?, ?) ON CONFLICT(barcode) DO NOTHING", (barcode, pool)
            )
            self.db.execute(
                "UPDATE data_sets SET status='expired' WHERE first_barcode=? OR id IN "
                "(SELECT DISTINCT o.data_set_id FROM objects o JOIN extents e ON e.object_id=o.id WHERE e.barcode=?)"
                " OR id IN (SELECT data_set_id FROM set_media WHERE barcode=?)",
                (barcode, barcode, barcode),
            )
            self.db.execute(
                "UPDATE media SET pool=?, family_id=?, sequence=?, label_count=label_count+1, status='append',"
                " labeled_at=?, bytes_written=0, data_sets=0, next_file=1 WHERE barcode=?",
                (pool, family_id, sequence, labeled_at, barcode),
            )

    @_locked
    def update_medium(self, barcode: str, **fields) -> None:
        allowed = {"status", "bytes_written", "next_file", "data_sets", "pool", "sequence", "family_id"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update media fields {sorted(unknown)}")
        assignments = ", ".join(f"{name}=?" for name in fields)
        self.db.execute(f"UPDATE media SET {assignments} WHERE barcode=?", (*fields.values(), barcode))

    # -- data sets ----------------------------------------------------------------------------

    def next_set_number(self, family_id: int) -> int:
        row = self.db.execute("SELECT MAX(set_number) FROM data_sets WHERE family_id=?", (family_id,)).fetchone()
        return (row[0] or 0) + 1

    @_locked
    def commit_data_set(self, record: DataSetRecord) -> int:
        """Store a data set and all its objects atomically; returns its id.

        This is the commit the agent waits for before it truncates logs.
        """
        if record.backup_type not in BACKUP_TYPES:
            raise ValueError(f"unknown backup type {record.backup_type!r}")
        with self._transaction():
            cursor = self.db.execute(
                "INSERT INTO data_sets(job_id, set_number, family_id, kind, server, storage_group, backup_type,"
                " started, completed, log_gen_low, log_gen_high, first_barcode, first_file, bytes, metadata, status)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (record.job_id, record.set_number, record.family_id, record.kind, record.server,
                 record.storage_group, record.backup_type, record.started, record.completed,
                 record.log_gen_low, record.log_gen_high, record.first_barcode, record.first_file,
                 record.bytes, json.dumps(record.metadata, sort_keys=True), record.status),
            )
            set_id = int(cursor.lastrowid)
            for obj in record.objects:
                cursor = self.db.execute(
                    "INSERT INTO objects(data_set_id, path, kind, database, size, sha256, barcode, tape_file, block,"
                    " fla, xxh3) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (set_id, obj.path, obj.kind, obj.database, obj.size, obj.sha256, obj.barcode,
                     obj.tape_file, obj.block, obj.fla, obj.xxh3 or None),
                )
                object_id = cursor.lastrowid
                for seq, barcode in enumerate(obj.extents or [obj.barcode]):
                    self.db.execute(
                        "INSERT INTO extents(object_id, seq, barcode) VALUES (?,?,?)", (object_id, seq, barcode)
                    )
            for seq, barcode in enumerate(record.cartridges):
                self.db.execute("INSERT INTO set_media(data_set_id, seq, barcode) VALUES (?,?,?)",
                                (set_id, seq, barcode))
        record.id = set_id
        return set_id

    def data_sets(self, server: str | None = None, storage_group: str | None = None) -> list[DataSetRecord]:
        query = "SELECT * FROM data_sets WHERE 1=1"
        args: list = []
        if server:
            query += " AND server=?"
            args.append(server)
        if storage_group:
            query += " AND storage_group=?"
            args.append(storage_group)
        query += " ORDER BY completed, id"
        return [self._set_from_row(row, with_objects=False) for row in self.db.execute(query, args)]

    def data_set(self, set_id: int) -> DataSetRecord:
        row = self.db.execute("SELECT * FROM data_sets WHERE id=?", (set_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"data set {set_id} not found in catalog {self.path}")
        return self._set_from_row(row, with_objects=True)

    def objects(self, set_id: int) -> list[ObjectRecord]:
        rows = self.db.execute("SELECT * FROM objects WHERE data_set_id=? ORDER BY id", (set_id,)).fetchall()
        result = []
        for row in rows:
            extents = [r[0] for r in self.db.execute(
                "SELECT barcode FROM extents WHERE object_id=? ORDER BY seq", (row["id"],))]
            result.append(ObjectRecord(
                path=row["path"], kind=row["kind"], size=row["size"], sha256=row["sha256"], barcode=row["barcode"],
                tape_file=row["tape_file"], block=row["block"], fla=row["fla"], database=row["database"],
                extents=extents, xxh3=row["xxh3"] or "",
            ))
        return result

    def _set_from_row(self, row: sqlite3.Row, with_objects: bool) -> DataSetRecord:
        return DataSetRecord(
            id=row["id"], job_id=row["job_id"], set_number=row["set_number"], family_id=row["family_id"],
            kind=row["kind"], server=row["server"], storage_group=row["storage_group"],
            backup_type=row["backup_type"], started=row["started"], completed=row["completed"],
            log_gen_low=row["log_gen_low"], log_gen_high=row["log_gen_high"], first_barcode=row["first_barcode"],
            first_file=row["first_file"], bytes=row["bytes"], metadata=json.loads(row["metadata"]),
            status=row["status"], objects=self.objects(row["id"]) if with_objects else [],
            cartridges=self.cartridges_of(row["id"]) if with_objects else [],
        )

    def cartridges_of(self, set_id: int) -> list[str]:
        """Every cartridge holding part of the set, in the order they were written."""
        listed = [row[0] for row in self.db.execute(
            "SELECT barcode FROM set_media WHERE data_set_id=? ORDER BY seq", (set_id,))]
        if listed:
            return listed
        rows = self.db.execute(
            "SELECT e.barcode, MIN(o.id * 1000 + e.seq) AS first FROM objects o JOIN extents e ON e.object_id=o.id"
            " WHERE o.data_set_id=? GROUP BY e.barcode ORDER BY first",
            (set_id,),
        ).fetchall()
        barcodes = [row[0] for row in rows]
        first = self.data_set_row(set_id)["first_barcode"]
        if first not in barcodes:
            barcodes.insert(0, first)
        return barcodes

    def data_set_row(self, set_id: int) -> dict:
        row = self.db.execute("SELECT * FROM data_sets WHERE id=?", (set_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"data set {set_id} not found in catalog {self.path}")
        return dict(row)

    # -- helpers ------------------------------------------------------------------------------

    def _transaction(self):
        return _Transaction(self.db)

    def dump(self) -> dict:
        """A comparable, id-free view of the catalog's data sets and objects (rebuild tests use it).
        Everything a rebuild recovers from the media: so not the objects' XXH3-128, kept off the media."""
        sets = []
        for record in self.data_sets():
            full = self.data_set(record.id)
            sets.append({
                "set_number": full.set_number, "family_id": full.family_id, "kind": full.kind,
                "server": full.server, "storage_group": full.storage_group, "backup_type": full.backup_type,
                "log_gen_low": full.log_gen_low, "log_gen_high": full.log_gen_high,
                "first_barcode": full.first_barcode, "first_file": full.first_file, "bytes": full.bytes,
                "cartridges": tuple(self.cartridges_of(record.id)),
                "objects": [
                    (o.path, o.kind, o.database, o.size, o.sha256, o.barcode, o.tape_file, o.block, o.fla,
                     tuple(o.extents))
                    for o in full.objects
                ],
            })
        sets.sort(key=lambda s: (s["family_id"], s["set_number"]))  # media order, not commit order
        return {"data_sets": sets}


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False

