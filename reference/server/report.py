"""Rendering catalog rows for the CLI: rich tables for people, JSON for scripts."""

from __future__ import annotations

import datetime as dt
import json

import click


def when(value) -> str:
    if value is None:
        return "-"
    return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(value)


def table(title: str, columns: list[str], rows: list[list]) -> None:
    """A rich table on stdout (plain columns when stdout is not a terminal, rich still aligns)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*["-" if v is None else str(v) for v in row])
    Console(width=160).print(t)


def emit_json(value) -> None:
    click.echo(json.dumps(value, indent=1, sort_keys=True, default=str))

