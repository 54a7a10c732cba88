"""Whole-family operations behind ``mailtape mtf``: open media, extract safely, convert to .bkf."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from reference.errors import CorruptDataError, UsageError

from .media import MediaIdentity, MediaWriter
from .reader import MtfReader, ObjectEntry
from .sources import open_medium


@contextlib.contextmanager
def opened(paths, keep_blocks: bool = False):
    """An :class:`MtfReader` over the given media files (closed afterwards)."""
    media = []
    try:
        for p in paths:
            media.append(open_medium(p))
        reader = MtfReader(media, keep_blocks=keep_blocks)
        reader.read()
        yield reader
    finally:
        for med in media:
            med.close()


def verification_report(reader: MtfReader) -> tuple[list[str], int, int]:
    """(problem lines, objects checked, bytes checked): every walk problem plus every object whose
    data, checksums or header fail, each naming medium, offset and object."""
    lines = [str(p) for p in reader.catalog.problems]
    count = total = 0
    for e in reader.catalog.objects():
        wrong = reader.verify_object(e)
        count += 1
        total += e.size
        if wrong:
            lines.append(f"{e.medium} at {e.offset}: object {e.display_path} "
                         f"(file-id:{e.file_id}): {'; '.join(wrong)}")
    return lines, count, total


def _safe_component(part: str, what: str) -> str:
    bad = (not part or part in (".", "..") or "/" in part or "\\" in part or "\0" in part
           or any(ord(c) < 32 for c in part))
    if bad:
        raise CorruptDataError(f"unsafe {what} name {part!r} would escape the target folder")
    return part


def extraction_path(target: Path, entry: ObjectEntry) -> Path:
    """Where ``entry`` goes under ``target``; raises if any component could escape it."""
    parts = [_safe_component(entry.volume, "volume")]
    parts += [_safe_component(p, "directory") for p in entry.path]
    parts.append(_safe_component(entry.name, "object"))
    dest = target.joinpath(*parts)
    root = target.resolve()
    if not dest.resolve().is_relative_to(root):  # symlinks already inside the target
        raise CorruptDataError(f"{entry.display_path!r} resolves outside {target}")
    return dest


def extract(reader: MtfReader, target: Path, select=None) -> tuple[int, list[str]]:
    """Write every (selected) object under ``target``; returns (count written, failures)."""
    target.mkdir(parents=True, exist_ok=True)
    written, failures = 0, []
    taken: set[Path] = set()
    for entry in reader.catalog.objects():
        if select is not None and not select(entry):
            continue
        try:
            dest = extraction_path(target, entry)
        except CorruptDataError as err:
            failures.append(f"{entry.display_path}: refused: {err}")
            continue
        if dest in taken:
            failures.append(f"{entry.display_path}: set {entry.set_number}: same path as an object "
                            "already extracted (choose one set with --set)")
            continue
        taken.add(dest)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.parent.resolve().is_relative_to(target.resolve()):
                failures.append(f"{entry.display_path}: refused: parent resolves outside the target")
                continue
            tmp = dest.with_name(dest.name + ".part")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
            with os.fdopen(fd, "wb") as out:
                wrong = reader.verify_object(entry, out.write)
            if wrong:
                failures.append(f"{entry.display_path}: {'; '.join(wrong)} (kept as {tmp.name})")
                continue
            os.replace(tmp, dest)
        except OSError as err:
            failures.append(f"{entry.display_path}: cannot write: {err.strerror or err}")
            continue
        written += 1
    return written, failures


def convert(paths, output: Path, *, block_size: int = 1024) -> int:
    """Rewrite a cartridge family as one ``.bkf`` image, verifying every object on the way."""
    if output.exists():
        raise UsageError(f"{output}: already exists")
    with opened(paths) as reader:
        cat = reader.catalog
        if cat.problems:
            raise CorruptDataError(f"{len(cat.problems)} problem(s) on the media, first: {cat.problems[0]}; "
                                   "run 'mailtape mtf verify' (convert copies only intact media)")
        first = cat.media[0] if cat.media else None
        if first is None or first.family_id is None:
            raise CorruptDataError("no MTF media header (TAPE) found", where=str(paths[0]))
        ident = MediaIdentity(first.family_id, first.media_name, first.label, None,
                              first.software or "mailtape")
        writer = MediaWriter.create_bkf(output, block_size=block_size, flb=first.flb, identity=ident)
        count = 0
        try:
            for s in cat.sets:
                writer.next_set_number = s.number
                dsw = writer.begin_set(name=s.name, description=s.description, user=s.user,
                                       backup_type=s.attr or 4, write_date=s.write_date)
                by_volume: dict[int, list[ObjectEntry]] = {}
                for entry in s.objects:
                    by_volume.setdefault(entry.volume_index, []).append(entry)
                for vi, entries in by_volume.items():
                    vol = s.volumes[vi] if vi >= 0 else None
                    metadata = None
                    if vol is not None and vol.metadata:
                        import json
                        try:
                            metadata = json.loads(vol.metadata)
                        except ValueError:
                            metadata = None
                    dsw.begin_volume(vol.device if vol else entries[0].volume,
                                     vol.volume if vol else "", vol.machine if vol else "",
                                     metadata=metadata)
                    current = None
                    for entry in entries:
                        if entry.path != current:
                            dsw.begin_directory(entry.path)
                            current = entry.path
                        with dsw.open_file(entry.name, entry.size) as f:
                            wrong = reader.verify_object(entry, f.write)
                        if wrong:
                            raise CorruptDataError(f"{entry.display_path}: {'; '.join(wrong)}")
                        count += 1
                writer.end_set(dsw.end())
        except BaseException:
            writer.close()
            output.unlink(missing_ok=True)
            raise
        writer.close()
        return count
