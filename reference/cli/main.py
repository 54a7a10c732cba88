"""Entry point of the ``mailtape`` command: options shared by every subcommand, exit codes, errors.

Exit codes: 0 success, 1 the operation failed (with one line on stderr saying what and where),
2 usage error. A Python traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys

import click

from reference import __version__
from reference.errors import MailtapeError

from . import commands as _commands_pkg

log = logging.getLogger("mailtape")


def _discover_commands() -> list[click.Command]:
    found = []
    for info in sorted(pkgutil.iter_modules(_commands_pkg.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{_commands_pkg.__name__}.{info.name}")
        command = getattr(module, "command", None)
        if isinstance(command, click.Command):
            found.append(command)
    return found


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="mailtape")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool) -> None:
    """mailtape: Exchange backup agent, backup server and tape, with faithful emulators.

    Every command works the same against the emulators and against real devices.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


for _command in _discover_commands():
    cli.add_command(_command)


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map every outcome onto an exit status (never lets a traceback escape)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    try:
        cli.main(args=args, prog_name="mailtape", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.exceptions.Abort:
        click.echo("mailtape: interrupted", err=True)
        return 130
    except click.ClickException as usage:
        usage.show()
        return usage.exit_code
    except MailtapeError as failure:
        if debug:
            raise
        click.echo(f"mailtape: error: {failure}", err=True)
        return failure.exit_code
    except KeyboardInterrupt:
        click.echo("mailtape: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as bug:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            raise
        click.echo(
            f"mailtape: internal error: {type(bug).__name__}: {bug} (rerun with --debug for details)",
            err=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
