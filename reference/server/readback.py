"""Reading media back: restore streams, verify, and catalog rebuild (like Bacula's bscan).

All three load cartridges through the media manager (changer + drive), look at them through
:class:`~reference.server.tapeview.TapeView` and let the MTF reader (``reference.format.reader``)
do every bit of format work: walk, continuation joining across cartridges, CSUM/XSHA checks.

* :meth:`MediaReader.read_objects` — a **synchronous generator** (device I/O is blocking; run it
  in a worker thread or through ``Runtime.call`` from async code). For each selected object of a
  data set it yields ``(ObjectRecord, chunks)``; ``chunks`` (an :class:`ObjectStream`) yields
  read-only memoryviews of the object's bytes in order (batches of up to ``READ_BATCH`` bytes read
  straight from the drive into fresh buffers) and raises :class:`CorruptDataError` at its end if
  the size or digest differs from the catalog (XXH3-128 when the catalog has it, else SHA-256), so
  a consumer must treat the object as bad when iteration raises. Its ``read_raw`` / ``hash`` /
  ``finish`` steps let an async consumer read the next batch while the previous one is hashed
  (``reference/jobs.py``). Consume ``chunks`` before asking for the next object.
* :meth:`MediaReader.verify` — re-read sets and compare every object with the catalog and the
  media (size, SHA-256 of XSHA, CSUM, and XXH3-128 when cataloged).
* :func:`rebuild_catalog` — read every cartridge in the library and recreate media, data sets
  and objects (``BackupMetadata.json`` gives server, storage group, level and log range).

One drive serves all cartridges of a set. A restore walks the set's cartridges one at a time and
only as far as it needs (:class:`_SetWalk`): the first cartridge holding a selected object (the
catalog's extents say which) is loaded, mapped and walked (headers only), its objects are
extracted while it is loaded, and the next cartridge is loaded only when an object continues on it
or starts there; so every needed cartridge is loaded once (issue 6). The label check on every
load (wrong or overwritten cartridge) and the walk's checks (set number, continuation order,
joining) are the same as for a whole-set walk. ``verify`` and ``rebuild`` walk everything first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import xxhash

from reference.errors import CorruptDataError, MailtapeError
from reference.format import mtf_structs as m
from reference.format.reader import MtfReader, ObjectEntry
from reference.protocols.tape import TapeDevice
from reference.server.catalog import Catalog, DataSetRecord, ObjectRecord
from reference.server.media import SCRATCH_POOL, MediaManager, MediaOverwrittenError, TapeLabel
from reference.server.tapeview import TapeFile, TapeView, map_files

log = logging.getLogger("mailtape.server.readback")

METADATA_NAME = "BackupMetadata.json"
LOG_DIRECTORY = "Log Files"
READ_BATCH = 4 << 20
"""Object bytes read per ``ObjectStream.read_raw`` call: large enough that a thread hand-off per
batch costs little next to hashing it (~2.5 ms at 1.7 GB/s), small enough to keep memory bounded."""


class _CatalogOrderReader(MtfReader):
    """The MTF reader over media already in family/sequence order (the catalog knows it), so it
    does not load every cartridge just to read its TAPE header for sorting."""

    def _order(self, media):
        return list(media)


class _Mounter:
    """Keeps one cartridge open in one drive; swaps when a view asks for another."""

    def __init__(self, media: MediaManager, drive: int, *, check: bool = True):
        self.media = media
        self.drive = drive
        self.check = check
        self.barcode: str | None = None
        self.device: TapeDevice | None = None
        self.label: TapeLabel | None = None
        self.blank = False
        self.epoch = 0

    def mount(self, barcode: str) -> TapeDevice:
        if self.barcode != barcode or self.device is None:
            self.close()
            self.device, self.label, self.blank = self.media.mount_for_read(barcode, self.drive, check=self.check)
            self.barcode = barcode
            self.epoch += 1
        return self.device

    def close(self) -> None:
        if self.device is not None:
            try:
                self.device.close()
            finally:
                self.device = None
                self.barcode = None


def _set_not_found(record: DataSetRecord) -> MediaOverwrittenError:
    """The set the catalog places at its first cartridge and file was not found walking there."""
    where = f"cartridge {record.first_barcode} file {record.first_file}"
    return MediaOverwrittenError(f"data set {record.id} (set number {record.set_number}) is not at {where}: "
                                 "the media was overwritten or the catalog is wrong")


def object_path(entry: ObjectEntry) -> str:
    """The catalog path of a reader object: directory components then name (``DB1/priv1.edb``)."""
    return "/".join(list(entry.path) + [entry.name])


@dataclass
class VerifyProblem:
    data_set_id: int
    barcode: str
    tape_file: int
    object: str
    message: str

    def __str__(self) -> str:
        return (f"set {self.data_set_id}: cartridge {self.barcode} file {self.tape_file}: "
                f"{self.object}: {self.message}")


@dataclass
class VerifyReport:
    sets: int = 0
    objects: int = 0
    bytes: int = 0
    problems: list[VerifyProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class MediaReader:
    """Read-back of cataloged data sets through one drive of the site."""

    def __init__(self, catalog: Catalog, media: MediaManager, drive: int | None = None):
        self.catalog = catalog
        self.media = media
        self.mounter = _Mounter(media, media.drives.numbers[0] if drive is None else drive)

    def close(self) -> None:
        self.mounter.close()

    # -- views --------------------------------------------------------------------------------

    def _view(self, barcode: str, first_file: int) -> TapeView:
        """File 0 and the set's files (``first_file`` up to its ESET or the EOTM), mapped lazily."""

        def mapper(device):
            files = [TapeFile(0, 0, 1, b"TAPE")] + map_files(device, first_file, stop_at=(b"ESET", b"EOTM"))
            return self.mounter.label.block_size, files

        return TapeView(barcode, lambda: self.mounter.mount(barcode), epoch=lambda: self.mounter.epoch,
                        mapper=mapper)

    def _set_views(self, record: DataSetRecord) -> list[TapeView]:
        if record.status != "ok":
            raise MediaOverwrittenError(
                f"data set {record.id} ({record.storage_group}, {record.backup_type}) was on media that has since "
                "been overwritten or relabelled")
        barcodes = self.catalog.cartridges_of(record.id)
        views = []
        for index, barcode in enumerate(barcodes):
            views.append(self._view(barcode, record.first_file if index == 0 else 1))
        return views

    def _walk(self, record: DataSetRecord):
        views = self._set_views(record)
        reader = _CatalogOrderReader(views)
        found = reader.read()
        sets = [s for s in found.sets if s.number == record.set_number]
        if not sets:
            raise _set_not_found(record)
        by_path = {object_path(e): e for e in sets[0].objects if not e.corrupt_flag}
        # A set that starts on cartridge N > 1 of its family needs none before it: the reader's
        # "continuation cartridge without its predecessor" note about the first view is expected.
        problems = [p for p in found.problems if not (p.kind == "missing" and p.medium == views[0].name)]
        return reader, views, by_path, problems

    # -- restore ------------------------------------------------------------------------------

    def read_objects(self, data_set_id: int, select: Callable[[ObjectRecord], bool] | Iterable[str] | None = None
                     ) -> Iterator[tuple[ObjectRecord, "ObjectStream"]]:
        """See the module docstring. ``select``: None (all), a predicate, or a collection of paths."""
        record = self.catalog.data_set(data_set_id)
        wanted = _selector(select)
        chosen = [o for o in record.objects if wanted(o)]
        if not chosen:
            return
        views = self._set_views(record)
        barcodes = [v.name for v in views]
        needed = {b for o in chosen for b in (o.extents or [o.barcode])}
        start = next((i for i, b in enumerate(barcodes) if b in needed), 0)
        walk = _SetWalk(record, views, start)
        for obj in chosen:
            entry = walk.find(obj.path)
            if entry is None and walk.start > 0:  # the catalog's extents were wrong: walk it all
                walk = _SetWalk(record, views, 0)
                entry = walk.find(obj.path)
            if entry is None:
                raise CorruptDataError(f"object {obj.path!r} of data set {data_set_id} not found on the media "
                                       "(damaged?)", where=f"cartridge {obj.barcode} file {obj.tape_file}")
            yield obj, ObjectStream(walk, entry, obj)

    def read_chain(self, data_set_ids: Iterable[int], select=None):
        """``read_objects`` over several data sets in order (a restore chain): yields (set id, object, chunks)."""
        for set_id in data_set_ids:
            for obj, chunks in self.read_objects(set_id, select):
                yield set_id, obj, chunks

    # -- verify -------------------------------------------------------------------------------

    def verify(self, set_ids: Iterable[int] | None = None) -> VerifyReport:
        report = VerifyReport()
        ids = list(set_ids) if set_ids is not None else [s.id for s in self.catalog.data_sets() if s.status == "ok"]
        for set_id in ids:
            record = self.catalog.data_set(set_id)
            report.sets += 1
            try:
                reader, _views, by_path, problems = self._walk(record)
            except MailtapeError as error:
                report.problems.append(VerifyProblem(set_id, record.first_barcode, record.first_file, "(data set)",
                                                     str(error)))
                continue
            for problem in problems:
                report.problems.append(VerifyProblem(set_id, problem.medium, -1, ", ".join(problem.objects) or "-",
                                                     f"{problem.kind}: {problem.message}"))
            for obj in record.objects:
                report.objects += 1
                entry = by_path.get(obj.path)
                if entry is None:
                    report.problems.append(VerifyProblem(set_id, obj.barcode, obj.tape_file, obj.path,
                                                         "not found on the media"))
                    continue
                fast = xxhash.xxh3_128() if obj.xxh3 else None
                wrong = reader.verify_object(entry, fast.update if fast else None)
                if entry.sha256 is not None and entry.sha256.hex() != obj.sha256:
                    wrong.append("SHA-256 on the media differs from the catalog")
                if fast is not None and not wrong and fast.hexdigest() != obj.xxh3:
                    wrong.append("XXH3-128 of the data differs from the catalog (a restore would refuse it)")
                if entry.size != obj.size:
                    wrong.append(f"size on the media {entry.size} differs from the catalog {obj.size}")
                report.bytes += entry.size
                for message in wrong:
                    report.problems.append(VerifyProblem(set_id, obj.barcode, obj.tape_file, obj.path, message))
        return report


class _SetWalk:
    """The MTF walk of one data set, a cartridge at a time and only as far as asked.

    Starts at view ``start`` (the first cartridge holding a selected object; a walk that starts
    on a continuation cartridge is what the MTF reader does with a set whose start was not given).
    ``find`` walks on until the object is seen; ``more`` walks the next cartridge while an object
    is still open (continued on it). The set-number check is the whole walk's: the set must be
    found on the cartridges walked, or the media was overwritten."""

    def __init__(self, record: DataSetRecord, views: list[TapeView], start: int = 0):
        self.record = record
        self.start = start
        self.reader = _CatalogOrderReader(views)
        self.media = self.reader.media
        self._next = start
        self._set = None
        self._by_path: dict[str, ObjectEntry] = {}
        while self._set is None and self.step():
            pass
        if self._set is None:
            raise _set_not_found(record)

    def step(self) -> bool:
        """Walk the next cartridge (loading it); False when every one has been walked."""
        if self._next >= len(self.media):
            return False
        self.reader.walk(self._next)
        self._next += 1
        if self._set is None:
            self._set = next((s for s in self.reader.catalog.sets if s.number == self.record.set_number), None)
        if self._set is not None:  # rebuilt: a CFIL on this cartridge may mark an earlier object
            self._by_path = {object_path(e): e for e in self._set.objects if not e.corrupt_flag}
        return True

    def find(self, path: str) -> ObjectEntry | None:
        while True:
            entry = self._by_path.get(path)
            if entry is not None or not self.step():
                return entry

    def more(self, entry: ObjectEntry) -> bool:
        """Walk on for the rest of ``entry`` (continued on the next cartridge); False if none."""
        pieces = len(entry.pieces)
        while entry.received < entry.size and not entry.incomplete and len(entry.pieces) == pieces:
            if not self.step():
                return False
        return len(entry.pieces) > pieces


class ObjectStream:
    """One object's bytes read back from media and checked against the catalog: size, and the
    object's XXH3-128 (the agent's digest of the bytes it sent, ~17 GB/s) or, for a set cataloged
    without one (``catalog rebuild``), SHA-256 (~1.8 GB/s, capping a restore below a disk copy).
    Either way every byte is checked before the restore uses it; ``verify`` checks both and CSUM.

    Iterating yields the batches and raises :class:`CorruptDataError` after the last one if the
    object is not what the catalog says. The same three steps are public for a pipelined
    consumer: ``read_raw`` (next batch, unverified; None at the end), ``hash`` (every batch, in
    order), ``finish`` (the check). Each batch is a fresh buffer (``numpy.empty``: no zeroing),
    handed out read-only, so a consumer may hold it while later batches are read."""

    def __init__(self, walk: _SetWalk, entry: ObjectEntry, obj: ObjectRecord, batch: int | None = None):
        self._walk = walk
        self.entry = entry
        self.obj = obj
        self._batch = batch or READ_BATCH
        self._piece = 0
        self._done = 0  # bytes of the current piece read
        self.read = 0
        self.hashed = 0
        self._digest = xxhash.xxh3_128() if obj.xxh3 else hashlib.sha256()
        self._expected = obj.xxh3 or obj.sha256
        self.fast_check = bool(obj.xxh3)
        """The check costs little next to reading the bytes (a pipeline may hash on its reader)."""

    def read_raw(self) -> memoryview | None:
        pieces = self.entry.pieces
        while True:
            if self._piece >= len(pieces):
                if not self._walk.more(self.entry):
                    return None
                continue
            piece = pieces[self._piece]
            if self._done >= piece.length:
                self._piece += 1
                self._done = 0
                continue
            medium = self._walk.media[piece.medium]
            offset = piece.offset + self._done
            block = getattr(medium, "P", 0)
            if not block:  # not a tape view: the medium's own ranges
                view = medium.read(offset, min(self._batch, piece.length - self._done))
                view = memoryview(bytes(view))
            else:
                inside = offset % block
                want = min(piece.length - self._done, max(block, self._batch - inside))
                buffer = np.empty(-(-(inside + want) // block) * block, dtype=np.uint8)
                view = medium.read_into(offset, want, buffer).toreadonly()
            if not len(view):
                raise CorruptDataError(f"object {self.obj.path!r}: no data at stream offset {offset}",
                                       where=self._where())
            self._done += len(view)
            self.read += len(view)
            return view

    def hash(self, view) -> None:
        self._digest.update(view)
        self.hashed += len(view)

    def finish(self) -> None:
        where = self._where()
        if self.read != self.obj.size:
            raise CorruptDataError(f"object {self.obj.path!r}: read {self.read} of {self.obj.size} bytes", where=where)
        if self.entry.corrupt_flag:
            raise CorruptDataError(f"object {self.obj.path!r} of data set {self._walk.record.id} not found on the "
                                   "media (damaged?)", where=where)
        if self._digest.hexdigest() != self._expected:
            name = "XXH3-128" if self.obj.xxh3 else "SHA-256"
            raise CorruptDataError(f"object {self.obj.path!r}: {name} of the data read back does not match the catalog",
                                   where=where)

    def _where(self) -> str:
        return f"cartridge {self.obj.barcode} file {self.obj.tape_file}"

    def __iter__(self) -> Iterator[memoryview]:
        while (view := self.read_raw()) is not None:
            self.hash(view)
            yield view
        self.finish()


def _selector(select) -> Callable[[ObjectRecord], bool]:
    if select is None:
        return lambda o: True
    if callable(select):
        return select
    paths = set(select)
    return lambda o: o.path in paths


# -- rebuild -------------------------------------------------------------------------------------


@dataclass
class RebuildResult:
    media: int = 0
    data_sets: int = 0
    objects: int = 0
    problems: list[str] = field(default_factory=list)


def rebuild_catalog(target: Catalog, media: MediaManager, drive: int | None = None) -> RebuildResult:
    """Read every cartridge in the library and recreate its media, data sets and objects in ``target``.

    ``media`` may be built on a throw-away catalog: only its changer and drives are used to read
    (labels are not checked against any catalog).
    """
    result = RebuildResult()
    mounter = _Mounter(media, media.drives.numbers[0] if drive is None else drive, check=False)
    families: dict[int, list[tuple[TapeLabel, str]]] = {}
    try:
        for barcode in media.library_barcodes():
            mounter.mount(barcode)
            label = mounter.label
            result.media += 1
            if label is None:
                blank = mounter.blank
                target.restore_medium(_media_row(barcode, SCRATCH_POOL if blank else "Foreign",
                                                 status="blank" if blank else "foreign"))
                continue
            families.setdefault(label.family_id, []).append((label, barcode))
        for family_id, members in sorted(families.items()):
            members.sort(key=lambda lb: lb[0].sequence)
            views = []
            for label, barcode in members:
                views.append(TapeView(
                    barcode, lambda b=barcode: mounter.mount(b), epoch=lambda: mounter.epoch,
                    mapper=lambda device, size=label.block_size: (size, [TapeFile(0, 0, 1, b"TAPE")]
                                                                   + map_files(device, 1))))
            _rebuild_family(target, family_id, members, views, result)
    finally:
        mounter.close()
    return result


def _media_row(barcode: str, pool: str, **fields) -> dict:
    row = {"barcode": barcode, "pool": pool, "family_id": None, "sequence": None, "label_count": 0,
           "status": "blank", "labeled_at": None, "bytes_written": 0, "data_sets": 0, "next_file": 0}
    row.update(fields)
    return row


def _timestamp(value) -> float:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc).timestamp()
    return 0.0


def _rebuild_family(target: Catalog, family_id: int, members, views: list[TapeView], result: RebuildResult) -> None:
    reader = _CatalogOrderReader(views)
    found = reader.read()
    result.problems += [str(p) for p in found.problems]
    names = [v.name for v in views]
    # Where each set starts: the first non-continuation SSET (set number from its fixed part).
    starts: dict[int, tuple[str, int]] = {}
    touched: dict[int, list[str]] = {}
    for view in views:
        for index, f in enumerate(view.files):
            if f.kind != b"SSET":
                continue
            head = bytes(view.read(view.file_offset(index), m.DB_HDR_SIZE + m.SsetFixed.sizeof()))
            _k, attr, *_ = m.header_fields(head)
            number = m.SsetFixed.parse(head[52:]).set_number
            if not attr & m.MTF_CONTINUATION and number not in starts:
                starts[number] = (view.name, f.number)
                touched[number] = []
            if number in touched and view.name not in touched[number]:
                touched[number].append(view.name)
    cataloged: list[int] = []
    for entry in found.sets:
        if not entry.ended or entry.number not in starts:
            result.problems.append(f"family {family_id:08X}: data set {entry.number} is incomplete; not cataloged")
            continue
        first_barcode, first_file = starts[entry.number]
        objects = []
        usable = [obj for obj in entry.objects if not (obj.corrupt_flag or obj.incomplete)]
        # The set's own BackupMetadata.json (last in the set) says what kind of set this is.
        metadata: dict = next((_read_metadata(reader, obj) for obj in usable
                               if object_path(obj) == METADATA_NAME), {})
        set_kind = metadata.get("kind", "database")
        for obj in usable:
            path = object_path(obj)
            view = views[names.index(obj.medium)]
            tape_file, block = view.position(obj.offset)
            fla = m.header_fields(bytes(view.read(obj.offset, m.DB_HDR_SIZE)))[4]
            extents = list(dict.fromkeys([obj.medium] + [names[p.medium] for p in obj.pieces]))
            volume = entry.volumes[obj.volume_index].volume if 0 <= obj.volume_index < len(entry.volumes) else None
            kind, database = _classify(obj, set_kind, volume)
            objects.append(ObjectRecord(path, kind, obj.size, (obj.sha256 or b"").hex(), obj.medium, tape_file,
                                        block, fla, database, extents))
        record = DataSetRecord(
            set_number=entry.number, family_id=family_id, kind=metadata.get("kind", "database"),
            server=metadata.get("server", ""), storage_group=metadata.get("storage_group", entry.name),
            backup_type=metadata.get("backup_type", "full"), started=_timestamp(entry.write_date),
            completed=_timestamp(entry.write_date), first_barcode=first_barcode, first_file=first_file,
            bytes=sum(o.size for o in objects), objects=objects, log_gen_low=metadata.get("log_gen_low"),
            log_gen_high=metadata.get("log_gen_high"), metadata=metadata, cartridges=touched[entry.number],
        )
        target.commit_data_set(record)
        cataloged.append(entry.number)
        result.data_sets += 1
        result.objects += len(objects)
    for (label, barcode), view in zip(members, views):
        full = bool(view.files) and view.files[-1].kind == b"EOTM"
        target.restore_medium(_media_row(
            barcode, label.pool, family_id=family_id, sequence=label.sequence, label_count=1,
            status="full" if full else "append", labeled_at=None, bytes_written=view.size,
            data_sets=sum(1 for n in cataloged if barcode in touched[n]), next_file=len(view.files),
        ))


def _classify(obj: ObjectEntry, set_kind: str = "database", volume: str | None = None) -> tuple[str, str | None]:
    """Object kind and database (for a mailbox set: the mailbox) from the agent's layout
    (docs/server.md "Rebuild", docs/brick-level.md)."""
    folder = obj.path[0] if obj.path else None
    if obj.name == METADATA_NAME and not obj.path:
        return "metadata", None
    if set_kind == "mailbox":
        return ("item" if obj.name.endswith(".eml") else "metadata"), volume  # the VOLB volume is the mailbox
    if folder == LOG_DIRECTORY:
        return "log", None
    if obj.name == "DatabaseBackupInfo":
        return "metadata", folder
    return "stream", folder


def _read_metadata(reader: MtfReader, entry: ObjectEntry) -> dict:
    if entry.size > 16 << 20:
        return {}
    raw = b"".join(bytes(v) for v in reader.iter_object(entry))
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
