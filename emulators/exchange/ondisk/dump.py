"""Text dumps of ESE file headers in the style of ``eseutil /mh``, ``/ml`` and ``/mk``."""

from __future__ import annotations

import os
import struct

from .checksum import bad_pages
from .structs import (
    DBSTATE_NAMES,
    FILETYPE_CHECKPOINT,
    FILETYPE_DATABASE,
    FILETYPE_LOG,
    FILETYPE_STREAMING,
    BkInfo,
    CheckpointHeader,
    DbHeader,
    LogHeader,
    Trailer,
)


class DumpError(Exception):
    """The file is not what the dump mode expects, or is damaged (message says what and where)."""


def _read(path: str, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _bk(title: str, b: BkInfo) -> list[str]:
    return [
        f"{title}:",
        f"        Log Gen: {b.gen_low}-{b.gen_high} (0x{b.gen_low:x}-0x{b.gen_high:x})",
        f"           Mark: {b.mark}",
        f"           Mark: {b.time_mark}",
    ]


def dump_database(path: str) -> str:
    raw = _read(path, 8192 * 2)
    if len(raw) < 4096:
        raise DumpError(f"{path}: too short for a database header ({len(raw)} bytes)")
    cb = struct.unpack_from("<I", raw, 236)[0] or 4096
    if cb not in (4096, 8192, 32768):
        cb = 4096
    hdr = None
    problems = []
    for copy in (0, 1):
        try:
            hdr = DbHeader.unpack(raw[copy * cb : (copy + 1) * cb], has_copy_diff=True)
            used = "header" if copy == 0 else "shadow header (page 0 is damaged)"
            break
        except ValueError as e:
            problems.append(f"page {copy}: {e}")
    if hdr is None:
        raise DumpError(f"{path}: database header unreadable ({'; '.join(problems)})")
    if hdr.filetype not in (FILETYPE_DATABASE, FILETYPE_STREAMING):
        raise DumpError(f"{path}: file type {hdr.filetype} is not a database")
    size = os.path.getsize(path)
    lines = [
        "Initiating FILE DUMP mode...",
        f"         Database: {os.path.basename(path)}",
        "",
        f"        File Type: {'Database' if hdr.filetype == FILETYPE_DATABASE else 'Streaming File'}",
        "   Format ulMagic: 0x89abcdef",
        f" Format ulVersion: 0x{hdr.version:x},{hdr.update}",
        f"     DB Signature: {hdr.sign_db}",
        f"         cbDbPage: {hdr.page_size}",
        f"           dbtime: {hdr.dbtime_dirtied} (0x{hdr.dbtime_dirtied:x})",
        f"            State: {DBSTATE_NAMES.get(hdr.dbstate, f'Unknown ({hdr.dbstate})')}",
        f"     Log Required: {hdr.gen_min_required}-{hdr.gen_max_required} "
        f"(0x{hdr.gen_min_required:x}-0x{hdr.gen_max_required:x})",
        f"    Log Committed: 0-{hdr.gen_max_committed} (0x0-0x{hdr.gen_max_committed:x})",
        f"   Log Consistent: {hdr.lgpos_consistent}",
        f"      Last Attach: {hdr.lgpos_attach}  {hdr.time_attach}",
        f"      Last Detach: {hdr.lgpos_detach}  {hdr.time_detach}",
        f"             Dbid: {hdr.dbid}",
        f"    Log Signature: {hdr.sign_log}",
        f"       Pages used: {hdr.pgno_last}",
        f"        Read from: {used}",
        "",
    ]
    lines += _bk("Previous Full Backup", hdr.full_prev)
    lines += [""] + _bk("Previous Incremental Backup", hdr.inc_prev)
    if not hdr.copy_prev.is_empty:
        lines += [""] + _bk("Previous Copy Backup", hdr.copy_prev)
    if not hdr.diff_prev.is_empty:
        lines += [""] + _bk("Previous Differential Backup", hdr.diff_prev)
    lines += [""] + _bk("Current Full Backup", hdr.full_cur)
    if hdr.full_cur.gen_low and size >= 3 * cb and size % cb == 0:
        try:
            t = Trailer.unpack(_read_at(path, size - cb, cb))
            lines += ["", "Backup trailer (patch) page:", f"        Log Gen: {t.bkinfo.gen_low}-{t.bkinfo.gen_high}",
                      f"           Mark: {t.bkinfo.mark}", f"   DB Signature: {t.sign_db}", f"  Log Signature: {t.sign_log}"]
        except ValueError:
            lines += ["", "Backup trailer (patch) page: missing or damaged"]
    return "\n".join(lines) + "\n"


def _read_at(path: str, off: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


def dump_log(path: str) -> str:
    from ..engine.logstream import LogCorrupt, parse_generation

    raw = _read(path, 4096)
    try:
        hdr = LogHeader.unpack(raw)
    except ValueError as e:
        raise DumpError(f"{path}: {e}") from None
    lines = [
        "Initiating FILE DUMP mode...",
        "",
        f"      Base name: {os.path.basename(path)[:3]}",
        f"      Log file: {path}",
        f"      lGeneration: {hdr.generation} (0x{hdr.generation:X})",
        f"      Checkpoint: {hdr.checkpoint}",
        f"      creation time: {hdr.tm_create}",
        f"      prev gen time: {hdr.tm_prev_gen}",
        f"      Format LGVersion: ({'.'.join(str(v) for v in hdr.version)})",
        f"      Signature: {hdr.sign_log}",
        f"      cbLogFile: {hdr.file_size}",
        f"      Circular logging: {'on' if hdr.flags & 1 else 'off'}",
    ]
    for a in hdr.attach:
        lines.append(f"      {a.dbid} {a.name}")
        lines.append(f"             Signature: {a.sign_db}")
    try:
        g = parse_generation(path)
        lines.append(f"Integrity check passed for log file: {path} ({len(g.fragments)} record fragments)")
    except LogCorrupt as e:
        lines.append(f"ERROR: {e}")
    return "\n".join(lines) + "\n"


def dump_checkpoint(path: str) -> str:
    raw = _read(path, 4096)
    try:
        hdr = CheckpointHeader.unpack(raw)
    except ValueError as e:
        raise DumpError(f"{path}: {e}") from None
    lines = [
        "Initiating FILE DUMP mode...",
        f"      Checkpoint file: {path}",
        "",
        f"      LastFullBackupCheckpoint: {hdr.last_full_backup_checkpoint}",
        f"      Checkpoint: {hdr.checkpoint}",
        f"      FullBackup: {hdr.full_backup}",
        f"      FullBackup time: {hdr.full_backup_time}",
        f"      IncBackup: {hdr.inc_backup}",
        f"      IncBackup time: {hdr.inc_backup_time}",
        f"      Signature: {hdr.sign_log}",
        f"      Circular logging: {'on' if hdr.flags & 1 else 'off'}",
    ]
    for a in hdr.attach:
        lines.append(f"      {a.dbid} {a.name}")
    return "\n".join(lines) + "\n"


def verify_pages(path: str) -> tuple[int, list[int]]:
    """(pages checked, bad pgnos) for a database file (eseutil /k style)."""
    cb = struct.unpack_from("<I", _read(path, 4096), 236)[0] or 4096
    bad: list[int] = []
    n = 0
    with open(path, "rb") as f:
        f.seek(2 * cb)
        pgno = 1
        while True:
            chunk = f.read(cb * 4096)
            if len(chunk) < cb:
                break
            chunk = chunk[: len(chunk) // cb * cb]
            bad += [pgno + int(i) for i in bad_pages(chunk, cb, pgno)]
            k = len(chunk) // cb
            n += k
            pgno += k
    return n, bad


__all__ = ["dump_database", "dump_log", "dump_checkpoint", "verify_pages", "DumpError",
           "FILETYPE_LOG", "FILETYPE_CHECKPOINT"]
