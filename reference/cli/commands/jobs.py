"""``mailtape jobs SITE``: the job history (backup, restore, verify) with status and exit status."""

from __future__ import annotations

import click


@click.command(name="jobs")
@click.argument("site", type=click.Path(file_okay=False))
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--job", "job_id", type=int, default=None, help="Show one job.")
def command(site: str, limit: int, as_json: bool, job_id: int | None) -> None:
    """List jobs of SITE, newest first (exit status: 0 ok, 1 warning, 2 failed)."""
    from reference.server.catalog import Catalog
    from reference.server.report import emit_json, size, table, when
    from reference.server.site import open_site_catalog

    catalog: Catalog = open_site_catalog(site)
    try:
        jobs = [catalog.job(job_id)] if job_id is not None else catalog.jobs(limit)
    finally:
        catalog.close()
    if as_json:
        emit_json(jobs)
        return
    table(f"jobs of {site}", ["id", "kind", "target", "level", "status", "exit", "started", "ended", "bytes",
                              "objects", "message"],
          [[j["id"], j["kind"], j["target"], j["level"], j["status"], j["exit_status"], when(j["started"]),
            when(j["ended"]), size(j["bytes"]), j["objects"],
            "; ".join(filter(None, [j["message"]] + j["warnings"]))] for j in jobs])
