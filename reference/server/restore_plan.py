"""Which data sets a restore needs: the backup chain for a point in time.

Exchange's rules (ese-backup-api.md §2.4): restore the last full backup, then every later
incremental **in order** (each adds the log generations after the previous one's truncation), or
the full plus only the **last** differential (a differential holds every log since the last
truncation). A copy backup stands alone and never joins a chain. A chain is refused when any set
in it lives on media that was overwritten since.
"""

from __future__ import annotations

from reference.errors import MailtapeError, NotFoundError
from reference.server.catalog import Catalog, DataSetRecord


def restore_chain(
    catalog: Catalog,
    server: str,
    storage_group: str,
    *,
    at: float | None = None,
    set_id: int | None = None,
) -> list[DataSetRecord]:
    """The data sets to restore, oldest first, to bring ``storage_group`` back to a point.

    ``set_id`` names the last set to include (point-in-time = that backup); otherwise ``at`` (a
    time) or, if both are None, the newest backup.
    """
    sets = [s for s in catalog.data_sets(server, storage_group) if s.kind == "database"]
    if not sets:
        raise NotFoundError(f"no database backup of storage group '{storage_group}' on {server} in the catalog")
    if set_id is not None:
        chosen = next((s for s in sets if s.id == set_id), None)
        if chosen is None:
            raise NotFoundError(f"data set {set_id} is not a backup of '{storage_group}' on {server}")
        candidates = [s for s in sets if (s.completed, s.id) <= (chosen.completed, chosen.id)]
    else:
        candidates = [s for s in sets if at is None or s.completed <= at]
        if not candidates:
            raise NotFoundError(f"no backup of '{storage_group}' completed at or before the requested time")
        chosen = candidates[-1]

    if chosen.backup_type == "copy":
        chain = [chosen]
    else:
        fulls = [s for s in candidates if s.backup_type == "full"]
        if not fulls:
            raise NotFoundError(f"no full backup of '{storage_group}' precedes data set {chosen.id}")
        base = fulls[-1]
        after_base = [s for s in candidates if (s.completed, s.id) > (base.completed, base.id)]
        chain = [base] + [s for s in after_base if s.backup_type == "incremental"]
        if chosen.backup_type == "differential":
            chain.append(chosen)
    expired = [s for s in chain if s.status != "ok"]
    if expired:
        ids = ", ".join(str(s.id) for s in expired)
        raise MailtapeError(
            f"cannot restore '{storage_group}': data set(s) {ids} were on media that has since been overwritten"
        )
    return chain
