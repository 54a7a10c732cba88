"""Which data sets a restore needs: the backup chain for a point in time.

Exchange's rules for database sets (ese-backup-api.md §2.4): restore the last full backup, then
every later incremental **in order** (each adds the log generations after the previous one's
truncation), or the full plus only the **last** differential (a differential holds every log since
the last truncation). Brick-level mailbox sets chain differently (brick-level-imap.md §6): a
differential holds the changes since the last full, an incremental those since the previous backup
of any type. For every kind, a copy backup stands alone and never joins a chain, and a chain is
refused when any set in it lives on media that was overwritten since.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reference.errors import MailtapeError, NotFoundError
from reference.server.catalog import Catalog, DataSetRecord


def _order(s: DataSetRecord) -> tuple:
    return (s.completed, s.id)


def _database_links(candidates: list[DataSetRecord], chosen: DataSetRecord, base: DataSetRecord) -> list[DataSetRecord]:
    """The full, every incremental after it, and the chosen set if it is a differential."""
    after_base = [s for s in candidates if _order(s) > _order(base)]
    chain = [base] + [s for s in after_base if s.backup_type == "incremental"]
    if chosen.backup_type == "differential":
        chain.append(chosen)
    return chain


def _mailbox_links(candidates: list[DataSetRecord], chosen: DataSetRecord, base: DataSetRecord) -> list[DataSetRecord]:
    """The full, then the last differential after it (if any), then every incremental after that, up
    to the point; a chosen differential needs only the full."""
    chain = [base]
    after = [s for s in candidates if _order(s) > _order(base)]
    differentials = [s for s in after if s.backup_type == "differential"]
    if differentials:
        chain.append(differentials[-1])
    tail = chain[-1]
    return chain + [s for s in after if _order(s) > _order(tail) and s.backup_type == "incremental"]


@dataclass(frozen=True)
class _ChainRule:
    """How the sets of one catalog kind chain, and how its errors name them (fields: ``{server}``,
    ``{sg}``, ``{id}``, ``{ids}``)."""

    links: Callable[[list[DataSetRecord], DataSetRecord, DataSetRecord], list[DataSetRecord]]
    no_sets: str
    not_one_of_them: str
    none_by_then: str
    no_full: str
    overwritten: str


RULES = {
    "database": _ChainRule(
        _database_links,
        no_sets="no database backup of storage group '{sg}' on {server} in the catalog",
        not_one_of_them="data set {id} is not a backup of '{sg}' on {server}",
        none_by_then="no backup of '{sg}' completed at or before the requested time",
        no_full="no full backup of '{sg}' precedes data set {id}",
        overwritten="cannot restore '{sg}': data set(s) {ids} were on media that has since been overwritten",
    ),
    "mailbox": _ChainRule(
        _mailbox_links,
        no_sets="no brick-level backup of {server}/{sg} in the catalog",
        not_one_of_them="data set {id} is not a brick-level backup of {server}/{sg}",
        none_by_then="no brick-level backup of {server}/{sg} completed at or before the requested time",
        no_full="no full brick-level backup precedes data set {id}",
        overwritten="cannot restore {server}/{sg}: data set(s) {ids} were on media that has since been overwritten",
    ),
}


def restore_chain(
    catalog: Catalog,
    server: str,
    storage_group: str,
    *,
    at: float | None = None,
    set_id: int | None = None,
    kind: str = "database",
) -> list[DataSetRecord]:
    """The data sets of ``kind`` (a key of :data:`RULES`) to restore, oldest first, to bring
    ``storage_group`` back to a point.

    ``set_id`` names the last set to include (point-in-time = that backup); otherwise ``at`` (a
    time) or, if both are None, the newest backup.
    """
    rule = RULES[kind]
    names = {"server": server, "sg": storage_group}
    sets = [s for s in catalog.data_sets(server, storage_group) if s.kind == kind]
    if not sets:
        raise NotFoundError(rule.no_sets.format(**names))
    if set_id is not None:
        chosen = next((s for s in sets if s.id == set_id), None)
        if chosen is None:
            raise NotFoundError(rule.not_one_of_them.format(id=set_id, **names))
        candidates = [s for s in sets if _order(s) <= _order(chosen)]
    else:
        candidates = [s for s in sets if at is None or s.completed <= at]
        if not candidates:
            raise NotFoundError(rule.none_by_then.format(**names))
        chosen = candidates[-1]

    if chosen.backup_type == "copy":
        chain = [chosen]
    else:
        fulls = [s for s in candidates if s.backup_type == "full"]
        if not fulls:
            raise NotFoundError(rule.no_full.format(id=chosen.id, **names))
        chain = rule.links(candidates, chosen, fulls[-1])
    expired = [s for s in chain if s.status != "ok"]
    if expired:
        raise MailtapeError(rule.overwritten.format(ids=", ".join(str(s.id) for s in expired), **names))
    return chain
