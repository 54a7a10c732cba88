"""``mailtape verify SITE [--set N]``: re-read media and check every object against the catalog."""

from __future__ import annotations

import click

from reference.errors import MailtapeError


class VerifyFailed(MailtapeError):
    """Verification found objects that do not match the catalog."""


@click.command(name="verify")
@click.argument("site", type=click.Path(file_okay=False))
@click.option("--set", "set_ids", type=int, multiple=True, help="Catalog data set id (repeatable) [default: all].")
@click.option("--drive", type=int, default=None, help="Drive to read with [default: the first].")
@click.option("--against", "snapshot", metavar="NAME",
              help="Instead: compare SITE's Exchange server now with ground-truth snapshot NAME "
                   "(taken with 'mailtape exchange snapshot'), e.g. after a restore.")
@click.option("--storage-group", "-g", "groups", multiple=True, help="With --against: only these storage groups.")
@click.option("--recovery-storage-group", "recovery", is_flag=True,
              help="With --against: compare the Recovery Storage Group's copies with the snapshot's originals.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def command(site: str, set_ids: tuple[int, ...], drive: int | None, snapshot: str | None, groups: tuple[str, ...],
            recovery: bool, as_json: bool) -> None:
    """Re-read data sets from tape: sizes, CSUM and SHA-256 against the catalog; exit 1 on any mismatch.

    With --against NAME: check what a restore brought back against the emulated server's ground
    truth recorded as NAME: every database's records, every data page of its files (the two header
    pages excepted: a restore rewrites them) and every mailbox's items.
    """
    from dataclasses import asdict

    if snapshot:
        _verify_against(site, snapshot, list(groups) or None, recovery, as_json)
        return
    if groups or recovery:
        raise click.UsageError("--storage-group and --recovery-storage-group go with --against")

    from reference.server.report import emit_json
    from reference.server.site import open_site

    opened = open_site(site)
    try:
        clock = opened.runtime.clock
        job = opened.catalog.start_job("verify", ", ".join(map(str, set_ids)) or "all", started=clock.now())
        reader = opened.reader(drive)
        try:
            report = reader.verify(list(set_ids) or None)
        except MailtapeError as error:
            opened.catalog.finish_job(job, "failed", message=str(error), ended=clock.now())
            raise
        finally:
            reader.close()
        opened.catalog.finish_job(job, "ok" if report.ok else "failed", bytes=report.bytes, objects=report.objects,
                                  message=None if report.ok else f"{len(report.problems)} problem(s)",
                                  ended=clock.now())
    finally:
        opened.close()
    if as_json:
        emit_json({"sets": report.sets, "objects": report.objects, "bytes": report.bytes,
                   "problems": [asdict(p) for p in report.problems]})
    else:
        click.echo(f"verified {report.sets} data set(s), {report.objects} object(s), {report.bytes} bytes")
        for problem in report.problems:
            click.echo(f"MISMATCH {problem}")
    if not report.ok:
        raise VerifyFailed(f"verify found {len(report.problems)} problem(s) on {site}")


def _verify_against(site: str, name: str, groups: list[str] | None, recovery: bool, as_json: bool) -> None:
    import json
    from dataclasses import asdict
    from pathlib import Path

    from emulators.exchange import ground_truth
    from reference.cli.commands.exchange import opened_server

    root = Path(site) / "exchange"
    expected = ground_truth.load(root, name)
    with opened_server(str(root)) as (server, _store):
        result = ground_truth.compare(expected, server, groups=groups, recovery=recovery)
    if as_json:
        click.echo(json.dumps({"snapshot": name, "verified": result.ok,
                               "databases": [asdict(check) for check in result.databases],
                               "mailboxes": result.mailboxes, "problems": result.problems}, indent=1))
    else:
        for check in result.databases:
            click.echo(check.summary())
        if not recovery:
            click.echo(f"{result.mailboxes} mailbox(es) compared")
        if result.ok:
            click.echo(f"the Exchange server matches ground-truth snapshot {name!r} "
                       f"(records, data pages, mailboxes; header pages 0-1 excluded)")
        for problem in result.problems:
            click.echo(f"MISMATCH {problem}")
    if not result.ok:
        raise VerifyFailed(f"{len(result.problems)} difference(s) from ground-truth snapshot {name!r}")
