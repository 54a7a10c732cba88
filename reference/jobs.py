"""Database-level backup and restore jobs with agent and server in one process.

This is what ``mailtape backup``/``restore``, the demo and the scenario engine run: the agent
(``reference/agent``) talks to Exchange through the backup API, the backup server
(``reference/server``) writes and reads the media, and the two meet through the in-process
data-set session (``reference/transfer.py``) — the same seam the NDMP data connection fills when
they run on different machines.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from reference.agent.database_backup import ANNOTATION, GroupBackupResult, StorageGroupBackup
from reference.agent.database_restore import RestoreResult, StorageGroupRestore
from reference.errors import MailtapeError, NotFoundError
from reference.protocols.exchange import ExchangeBackupApi, ExchangeError
from reference.restore_feed import ReadBackFeed
from reference.server.restore_plan import restore_chain

log = logging.getLogger("mailtape.jobs")


class ExchangeRefused(MailtapeError):
    """Exchange answered an API call with an error (the message carries its HRESULT)."""


def storage_group_names(api: ExchangeBackupApi) -> list[str]:
    """The storage groups the backup API offers (HrESEBackupPrepare, then End)."""
    context = api.backup_prepare(ANNOTATION)
    try:
        return [instance.name for instance in context.instances]
    finally:
        context.end()


def resolve_storage_groups(api: ExchangeBackupApi, wanted: list[str] | None) -> list[str]:
    """Check names before anything starts, so an unknown name changes nothing anywhere."""
    available = storage_group_names(api)
    if not wanted:
        return available
    by_lower = {name.lower(): name for name in available}
    chosen = []
    for name in wanted:
        if name.lower() not in by_lower:
            raise NotFoundError(f"storage group {name!r} not found on {api.server_name} "
                                f"(it has: {', '.join(repr(n) for n in available)})")
        chosen.append(by_lower[name.lower()])
    return chosen


async def backup_storage_groups(
    site,
    api: ExchangeBackupApi,
    storage_groups: list[str] | None,
    level: str,
    *,
    databases: list[str] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> list[GroupBackupResult]:
    """Back up storage groups concurrently (one data set each, on as many drives as are free).

    A failed group does not stop the others; its result has status ``failed`` and ``error``.
    """
    names = resolve_storage_groups(api, storage_groups)
    jobs = [
        StorageGroupBackup(api, name, level, open_session=site.server.open_session, runtime=site.runtime,
                           databases=databases, progress=progress,
                           base_available=has_full_backup(site.catalog, api.server_name, name))
        for name in names
    ]
    outcomes = await asyncio.gather(*(job.run() for job in jobs), return_exceptions=True)
    await site.server.drain()
    results = []
    for job, outcome in zip(jobs, outcomes):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, (MailtapeError, ExchangeError, OSError)):
                raise outcome
            log.error("backup of %s failed: %s", job.storage_group, outcome)
            job.result.status = "failed"
            job.result.error = str(outcome)
        results.append(job.result)
    return results


def has_full_backup(catalog, server: str, storage_group: str) -> bool:
    """Whether the catalog holds a restorable full backup an incremental or differential can build on."""
    return any(s.kind == "database" and s.backup_type == "full" and s.status == "ok"
               for s in catalog.data_sets(server, storage_group))


async def restore_storage_group(
    site,
    api: ExchangeBackupApi,
    storage_group: str,
    *,
    mode: str = "roll-forward",
    set_id: int | None = None,
    at: float | None = None,
    databases: list[str] | None = None,
    mount: bool = True,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[RestoreResult, list]:
    """Restore ``storage_group`` from the chain the catalog picks; returns (result, chain)."""
    [name] = resolve_storage_groups(api, [storage_group])
    chain = restore_chain(site.catalog, api.server_name, name, at=at, set_id=set_id)
    clock = site.runtime.clock
    job_id = site.catalog.start_job("restore", f"{api.server_name}/{name}", mode, started=clock.now())
    reader = site.reader()
    readback = None
    restore = StorageGroupRestore(api, name, runtime=site.runtime, mode=mode, databases=databases, mount=mount,
                                  progress=progress)
    try:
        readback = ReadBackFeed(site, reader, [s.id for s in chain])
        result = await restore.run(readback.objects())
    except ExchangeError as error:
        site.catalog.finish_job(job_id, "failed", message=str(error), ended=clock.now())
        raise ExchangeRefused(f"restore of {name!r}: Exchange refused: {error}") from error
    except BaseException as error:
        site.catalog.finish_job(job_id, "failed", message=str(error), ended=clock.now())
        raise
    finally:
        if readback is not None:
            await readback.settle()  # never close the drive under a read still running
        reader.close()
    site.catalog.finish_job(job_id, "ok", level=mode, bytes=result.bytes,
                            objects=result.logs + sum(len(d) for d in result.destinations.values()),
                            ended=clock.now())
    return result, chain
