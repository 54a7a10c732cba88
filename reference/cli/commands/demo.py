"""``mailtape demo``: the main job on an embedded default site, verified end to end."""

from __future__ import annotations

from pathlib import Path

import click

from reference.errors import MailtapeError


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-site"),
              show_default=True, help="A new (or empty) folder for the site; it stays there for exploring.")
@click.option("--seed", type=click.IntRange(0), default=1, show_default=True, help="Seed of the whole run.")
@click.option("--size-mb", type=click.FloatRange(min=1), default=512, show_default=True,
              help="Mail to populate the Exchange server with.")
@click.option("--mailboxes", type=click.IntRange(1), default=300, show_default=True)
def command(workdir: Path, seed: int, size_mb: float, mailboxes: int) -> None:
    """Back up an emulated Exchange server to an emulated tape library, lose it, restore it, verify it.

    Full, incremental and differential backups across cartridges, a disaster, a roll-forward
    restore and a point-in-time restore into the Recovery Storage Group, each compared with the
    ground truth. Writes WORKDIR/report.json ("verified": true|false) and WORKDIR/drives.png.
    """
    from reference.demo import DemoSettings, run_demo

    report = run_demo(workdir, DemoSettings(size_mb=size_mb, mailboxes=mailboxes, seed=seed))
    if not report["verified"]:
        raise MailtapeError(f"demo finished but verification failed; see {workdir / 'report.json'}")
