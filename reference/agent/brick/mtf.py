"""Brick-level data sets on MTF: BrickObjects ⇄ VOLB / DIRB / FILE (spec mtf.md, docs/format.md).

Layout of one set (written through :class:`reference.format.DataSetWriter`):

* one **VOLB per mailbox**: device ``Microsoft Exchange Mailboxes``, volume = mailbox name, and an
  XMET metadata stream with ``{"kind": "mailbox", "mailbox": ..., "dataset": {level, created,...}}``;
* one **DIRB per folder** (names escaped, see :func:`escape_name`), entered whenever the folder changes;
* the records as JSON lines ``{"kind", "folder", "meta"[, "body"]}`` (the exact folder names,
  authoritative) in FILEs ``NNNNNNNN.records.jsonl`` of up to 256 records each (NNNNNNNN = number of
  the first record), and for an item whose bytes are stored, before its record, a FILE
  ``NNNNNNNN.eml`` with the RFC 5322 octets (its SHA-256 goes into the XSHA stream too).

DIRB names are escaped so that no other MTF reader can be led outside its restore directory by a
folder called ``..`` or ``a/b``: ``%`` → ``%25``, ``/`` → ``%2F``, ``\\`` → ``%5C``, NUL → ``%00``,
and a name that is only dots has them as ``%2E``. The JSON keeps the names byte-exact.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Iterable, Iterator
from urllib.parse import unquote

from reference.errors import CorruptDataError

from .model import DATASET, FORMAT, ITEM, MAILBOX, BrickObject

DEVICE = "Microsoft Exchange Mailboxes"


def escape_name(name: str) -> str:
    """A folder name as a safe MTF DIRB component (reversible with :func:`unescape_name`)."""
    out = name.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C").replace("\0", "%00")
    if out.strip(".") == "":
        out = out.replace(".", "%2E") or "%"          # "" → "%" (cannot occur: names are non-empty)
    return out


def unescape_name(component: str) -> str:
    return "" if component == "%" else unquote(component)


@dataclass
class WriteSummary:
    volumes: int = 0
    directories: int = 0
    records: int = 0
    bodies: int = 0
    body_bytes: int = 0


RECORDS_PER_FILE = 256
"""Metadata records are batched: one FILE per this many records (the per-FILE cost of MTF headers
is larger than a record), flushed early whenever the folder (DIRB) changes."""


def write_brick_set(objects: Iterable[BrickObject], writer) -> WriteSummary:
    """Write one brick-level pass into an open DataSetWriter (the caller ends the set)."""
    summary = WriteSummary()
    dataset: dict = {}
    folder: tuple[str, ...] | None = None
    batch: list[bytes] = []
    first_seq = seq = 0

    def flush() -> None:
        if batch:
            payload = b"".join(batch)
            writer.add_file(f"{first_seq:08d}.records.jsonl", len(payload), payload)
            summary.records += len(batch)
            batch.clear()

    for obj in objects:
        if obj.kind == DATASET:
            dataset = dict(obj.meta)
            continue
        if obj.kind == MAILBOX:
            flush()
            writer.begin_volume(DEVICE, obj.mailbox, "", metadata={
                "format": FORMAT, "kind": "mailbox", "mailbox": obj.mailbox, "dataset": dataset})
            summary.volumes += 1
            folder = None
            continue
        if obj.folder != folder:
            flush()
            writer.begin_directory([escape_name(n) for n in obj.folder])
            summary.directories += 1
            folder = obj.folder
        seq += 1
        if not batch:
            first_seq = seq
        record = {"kind": obj.kind, "folder": list(obj.folder), "meta": obj.meta}
        if obj.kind == ITEM and obj.meta.get("stored"):
            data = obj.load_content()
            body_name = f"{seq:08d}.eml"
            writer.add_file(body_name, len(data), data, sha256=bytes.fromhex(obj.meta["sha256"]))
            record["body"] = body_name
            summary.bodies += 1
            summary.body_bytes += len(data)
        batch.append(json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")
        if len(batch) >= RECORDS_PER_FILE:
            flush()
    flush()
    return summary


def read_brick_sets(reader, catalog) -> list[list[BrickObject]]:
    """Every brick-level set on the media (MtfReader + its Catalog), as BrickObject lists.

    Item bodies are loaded lazily from the medium; metadata records are verified (XSHA/CSUM) as
    they are read, so damage is reported with the object's path.
    """
    sets = []
    for entry in catalog.sets:
        volumes = [(i, v) for i, v in enumerate(entry.volumes) if v.device == DEVICE]
        if not volumes:
            continue
        sets.append(list(_set_objects(reader, entry, dict(volumes))))
    return sets


def _set_objects(reader, entry, volumes: dict) -> Iterator[BrickObject]:
    by_volume: dict[int, list] = {}
    for obj in entry.objects:
        by_volume.setdefault(obj.volume_index, []).append(obj)
    first = True
    for index in sorted(volumes):
        meta = _json(volumes[index].metadata, f"set {entry.number} volume {volumes[index].volume!r}")
        if first:
            yield BrickObject(DATASET, (), dict(meta.get("dataset", {})))
            first = False
        mailbox = meta["mailbox"]
        yield BrickObject(MAILBOX, (mailbox,), {})
        bodies = {}
        for obj in by_volume.get(index, []):
            where = f"set {entry.number}: {obj.display_path}"
            if obj.name.endswith(".eml"):
                bodies[(tuple(obj.path), obj.name)] = obj
                continue
            if not obj.name.endswith(".records.jsonl"):
                raise CorruptDataError("unexpected object in a brick-level set", where)
            for line_no, line in enumerate(_read(reader, obj, where).splitlines(), 1):
                record = _json(line, f"{where} line {line_no}")
                content = None
                if "body" in record:
                    body = bodies.get((tuple(obj.path), record["body"]))
                    if body is None:
                        raise CorruptDataError(f"item body {record['body']} is missing", where)
                    content = _loader(reader, body, f"set {entry.number}: {body.display_path}")
                yield BrickObject(record["kind"], (mailbox, *record["folder"]), record["meta"], content)


def _read(reader, obj, where: str) -> bytes:
    buf = io.BytesIO()
    wrong = reader.verify_object(obj, sink=buf.write)
    if wrong:
        raise CorruptDataError("; ".join(wrong), where)
    return buf.getvalue()


def _loader(reader, obj, where: str):
    return lambda: _read(reader, obj, where)


def _json(raw: bytes | None, where: str) -> dict:
    try:
        return json.loads(raw or b"")
    except ValueError as exc:
        raise CorruptDataError(f"brick metadata is not JSON ({exc})", where) from None
