"""Does the log stream a hard recovery replays belong to the restored database's timeline?

A point-in-time restore leaves the generations written after the backup (the abandoned
timeline: commits, then the detach before the restore) in the storage group's log folder, and
the log sequence goes on with the restored database attached again. A later roll-forward restore
of the same backup would replay both timelines. Real ESE notices it at the second attach: every
attach record carries the database's lgposConsistent at attach time (ATCHCHK), and redoing it
against a database whose replayed lgposConsistent (its last detach) differs fails with
``JET_errConsistentTimeMismatch -551`` ("Database last consistent time unmatched"; ESE
``ErrLGRICheckRedoAttachDb``: "an old copy of the database is being played against a more
current copy of the log files"). See docs/exchange-emulator.md, "Timelines after a
point-in-time restore".
"""

from __future__ import annotations

from .. import errors
from ..ondisk.structs import LgPos, Signature
from .instance import R_ATTACH, R_DETACH
from .logstream import Generation, positioned_records
from .pagefile import PageFile

_SIGN = 28


def check_timeline(db_files: list[list[str]], profile, gens: list[Generation]) -> dict[int, LgPos | None]:
    """Walk the attach/detach records of ``gens`` for the restored databases; raise -551 when a
    database is re-attached from another consistent point than the one the replay reaches.

    Returns per dbid the lgposConsistent the database ends with: its last replayed detach, or
    None when it stays attached to the end of the replay (consistent at the end of recovery)."""
    ours: dict[int, tuple[Signature, str]] = {}
    attached_at: dict[int, tuple[int, int, int]] = {}
    for paths in db_files:
        header = PageFile.read_header(paths[0], profile.page_size, profile.header_has_copy_diff)
        ours[header.dbid] = (header.sign_db, paths[0])
        attached_at[header.dbid] = _order(header.lgpos_attach)
    consistent: dict[int, LgPos | None] = {dbid: None for dbid in ours}  # None: attached, in replay
    attached_sign: dict[int, Signature | None] = {dbid: sign for dbid, (sign, _p) in ours.items()}
    for pos, _lsn, rtype, body in positioned_records(g.reload() for g in gens):
        if rtype not in (R_ATTACH, R_DETACH) or not body or body[0] not in ours:
            continue
        dbid = body[0]
        if _order(pos) < attached_at[dbid]:
            continue  # before the attach of the backed-up incarnation: not its history (ESE defers)
        gen = pos.generation
        sign, path = ours[dbid]
        if rtype == R_DETACH:
            if attached_sign[dbid] == sign and len(body) >= 1 + LgPos.FMT.size:
                consistent[dbid] = LgPos.unpack(body, 1)
            attached_sign[dbid] = None
            continue
        if len(body) < 1 + _SIGN + LgPos.FMT.size:
            continue  # an attach without its consistent position: nothing to compare
        logged_sign, logged = Signature.unpack(body, 1), LgPos.unpack(body, 1 + _SIGN)
        attached_sign[dbid] = logged_sign
        if logged_sign != sign:
            continue  # another database under this id: ESE defers it, nothing to compare
        replayed = consistent[dbid]
        if replayed is not None and logged != replayed:
            raise errors.jet_error(
                errors.ConsistentTimeMismatch,
                f"{path}: database last consistent time unmatched: the attach in log generation {gen:#x} "
                f"was made from consistent position {logged}, the replay reached {replayed} "
                "(the logs hold another timeline, e.g. written after a point-in-time restore)")
        consistent[dbid] = None
    return consistent


def _order(pos: LgPos) -> tuple[int, int, int]:
    return pos.generation, pos.isec, pos.ib
