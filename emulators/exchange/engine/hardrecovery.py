"""Hard recovery ("hard restore", spec §2.3): bring restored backup databases to a consistent
state by replaying the restored logs and, for a roll-forward restore, the storage group's
current logs.

Checks, in the engine's order: restored log set present (-557), one signature (-555), contiguous
tmPrevGen chain (-556); logs outside the set deleted; existing logs in the target folder
consistent (-610/-611, or warnings +558/+559 on the 2003 profile, then no roll-forward); each
database a backup database (-615), its trailer matching (-552) and inside the window (-554/-553);
then the replayed attach/detach records on one timeline (-551, engine/timeline.py).
"""

from __future__ import annotations

import dataclasses
import os

from .. import errors
from ..ondisk.structs import DBSTATE_CLEAN_SHUTDOWN, LgPos, LogTime, Trailer
from .database import route_table
from .instance import apply_records
from .logstream import Generation, LogCorrupt, list_log_files, parse_generation, records_of
from .pagefile import PageFile


def restored_log_set(folder: str, prefix: str | None, gen_low: int, gen_high: int) -> list[Generation]:
    """Parse and check the restored logs [gen_low, gen_high]."""
    if gen_low == 0:
        found = list_log_files(folder, prefix)
        if not found:
            raise errors.jet_error(errors.MissingRestoreLogFiles, f"{folder}: no log files were restored")
        gen_low, gen_high = found[0][0], found[-1][0]
    by_gen = {g: p for g, p in list_log_files(folder, prefix)}
    gens: list[Generation] = []
    for gen in range(gen_low, gen_high + 1):
        path = by_gen.get(gen)
        if path is None:
            raise errors.jet_error(errors.MissingRestoreLogFiles,
                                   f"{folder}: restore log file for generation {gen:#x} is missing")
        try:
            g = parse_generation(path, gen, keep=False)
        except LogCorrupt as e:
            raise errors.jet_error(errors.LogCorruptDuringHardRestore, str(e)) from None
        if gens:
            if g.header.sign_log != gens[0].header.sign_log:
                raise errors.jet_error(errors.GivenLogFileHasBadSignature,
                                       f"{path}: log signature differs from generation {gen_low:#x}")
            if g.header.tm_prev_gen != gens[-1].header.tm_create:
                raise errors.jet_error(errors.GivenLogFileIsNotContiguous,
                                       f"{path}: not contiguous with generation {gen - 1:#x}")
        gens.append(g)
    # logs outside the restored range are deleted before replay (behaviour 25)
    for g, p in list_log_files(folder, prefix):
        if g < gen_low or g > gen_high:
            os.remove(p)
    return gens


def check_existing_logs(profile, restored: list[Generation], instance) -> tuple[errors.JetCode | None, list[Generation]]:
    """Compare the target's current logs with the restored set; return (warning, logs to roll forward)."""
    log = instance.log
    sign = restored[0].header.sign_log
    low, high = restored[0].header.generation, restored[-1].header.generation
    existing = {}
    for gen in log.generations_on_disk():
        path = log.path_for(gen)
        try:
            existing[gen] = parse_generation(path, gen, allow_torn=(gen == log.gen), keep=False)
        except LogCorrupt as e:
            raise errors.jet_error(errors.LogFileCorrupt, str(e)) from None
    bad_sig = [g for g, x in existing.items() if x.header.sign_log != sign]
    if bad_sig:
        return _existing_problem(profile.existing_log_bad_signature,
                                 f"{log.path_for(bad_sig[0])}: existing log file has a different signature")
    rmap = {g.header.generation: g for g in restored}
    for gen, x in sorted(existing.items()):
        if gen == low - 1 and x.header.tm_create != rmap[low].header.tm_prev_gen:
            broken = gen
        elif low <= gen <= high and x.header.tm_create != rmap[gen].header.tm_create:
            broken = gen
        elif gen == high + 1 and x.header.tm_prev_gen != rmap[high].header.tm_create:
            broken = gen
        else:
            continue
        return _existing_problem(profile.existing_log_not_contiguous,
                                 f"{log.path_for(broken)}: existing log file is not contiguous with the restored logs")
    forward = []
    for gen in range(high + 1, log.gen + 1):
        x = existing.get(gen)
        if x is None:
            raise errors.jet_error(errors.MissingCurrentLogFiles,
                                   f"{log.path_for(gen)}: current log generation {gen:#x} is missing")
        if forward and x.header.tm_prev_gen != forward[-1].header.tm_create:
            raise errors.jet_error(errors.ExistingLogFileIsNotContiguous, f"{x.path}: broken log chain")
        forward.append(x)
    return None, forward


def _existing_problem(code: errors.JetCode, message: str):
    if code.is_warning:
        return code, []
    raise errors.jet_error(code, message)


def check_database(path: str, profile, gens: list[Generation]) -> tuple[int, int]:
    """Validate a restored stream file (header, trailer, window); return (dbid, lsn_flushed)."""
    cb = profile.page_size
    try:
        header = PageFile.read_header(path, cb, profile.header_has_copy_diff)
    except errors.ExchangeError:
        raise
    except OSError as e:
        raise errors.jet_error(errors.FileNotFound, f"{path}: {e.strerror}") from None
    if header.full_cur.gen_low == 0:
        raise errors.jet_error(errors.RestoreOfNonBackupDatabase,
                               f"{path}: not a database restored from an online backup")
    size = os.path.getsize(path)
    if profile.trailer_page:
        if size < 3 * cb or size % cb:
            raise errors.jet_error(errors.DatabasePatchFileMismatch, f"{path}: no backup trailer page")
        with open(path, "rb") as f:
            f.seek(size - cb)
            raw = f.read(cb)
        try:
            trailer = Trailer.unpack(raw)
        except ValueError as e:
            raise errors.jet_error(errors.DatabasePatchFileMismatch, f"{path}: database and its patch file do not match ({e})") from None
        sign_log = gens[0].header.sign_log
        if (trailer.sign_db != header.sign_db or trailer.sign_log != header.sign_log or trailer.sign_log != sign_log
                or trailer.bkinfo.mark != header.full_cur.mark):
            raise errors.jet_error(errors.DatabasePatchFileMismatch, f"Database {path} and its patch file do not match")
        low, high = gens[0].header.generation, gens[-1].header.generation
        if trailer.bkinfo.gen_low < low:
            raise errors.jet_error(errors.StartingRestoreLogTooHigh,
                                   f"The starting restored logfile {low:#x} is too high. It should start from logfile {trailer.bkinfo.gen_low:#x}")
        if trailer.bkinfo.gen_high > high:
            raise errors.jet_error(errors.EndingRestoreLogTooLow,
                                   f"The ending restored logfile {high:#x} is too low. It should end at logfile {trailer.bkinfo.gen_high:#x}")
    elif header.sign_log != gens[0].header.sign_log:
        raise errors.jet_error(errors.DatabasePatchFileMismatch, f"{path}: log signature mismatch")
    return header.dbid, header.lsn_flushed


def replay(db_files: list[list[str]], profile, gens: list[Generation], clock,
           consistent: dict[int, LgPos | None] | None = None) -> int:
    """Strip trailers, replay ``gens`` into the databases, leave them clean. Returns ops applied.

    ``consistent`` (from :func:`timeline.check_timeline`): per dbid the last replayed detach; a
    database still attached at the end is consistent at the end of the replayed logs."""
    cb = profile.page_size
    opened: dict[int, list[PageFile]] = {}
    try:
        for paths in db_files:
            files = []
            for p in paths:
                if profile.trailer_page:
                    with open(p, "r+b") as f:
                        f.truncate(os.path.getsize(p) - cb)
                files.append(PageFile.open(p, cb, profile.header_has_copy_diff))
            opened.setdefault(files[0].header.dbid, []).extend(files)
        applied = apply_records(records_of(g.reload() for g in gens), opened, route_table)
        top = max((lsn for _g, lsn, _t, _b in records_of([gens[-1].reload()])), default=0)
        high = gens[-1].header.generation
        end_of_replay = LgPos.at(high, gens[-1].end)
        now = LogTime.from_seconds(clock.now())
        for dbid, files in opened.items():
            for pf in files:
                pf.flush(max(top, pf.header.lsn_flushed))
                h = pf.header
                h.full_cur = dataclasses.replace(h.full_cur, gen_high=high)
                h.dbstate = DBSTATE_CLEAN_SHUTDOWN
                h.time_consistent = now
                h.lgpos_consistent = (consistent or {}).get(dbid) or end_of_replay
                h.gen_max_required = high
                pf.write_header()
        return applied
    finally:
        for files in opened.values():
            for pf in files:
                pf.close()
