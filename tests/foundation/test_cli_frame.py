"""The CLI frame: --help/--version, exit codes 0/1/2, one-line errors, tracebacks only with --debug."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from reference import __version__
from reference.cli import main as cli_main
from reference.errors import CorruptDataError, NotFoundError


@pytest.fixture
def failing_commands():
    """Temporarily register commands that fail in each of the ways the frame must handle."""

    @click.command("test-not-found")
    def not_found():
        raise NotFoundError("storage group 'Nope' not found on EXCH01")

    @click.command("test-corrupt")
    def corrupt():
        raise CorruptDataError("bad block header checksum", where="000001L9.tap offset 1048576")

    @click.command("test-bug")
    def bug():
        {}["missing"]

    added = [not_found, corrupt, bug]
    for command in added:
        cli_main.cli.add_command(command)
    yield
    for command in added:
        cli_main.cli.commands.pop(command.name)


def test_help_lists_only_real_commands(capsys):
    assert cli_main.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage: mailtape" in out
    for name, command in cli_main.cli.commands.items():
        assert command.help or command.short_help, f"command {name} has no help text"


def test_version(capsys):
    assert cli_main.main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    assert cli_main.main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_user_error_is_one_line_exit_1(capsys, failing_commands):
    assert cli_main.main(["test-not-found"]) == 1
    err = capsys.readouterr().err
    assert err == "mailtape: error: storage group 'Nope' not found on EXCH01\n"


def test_corrupt_data_error_names_where(capsys, failing_commands):
    assert cli_main.main(["test-corrupt"]) == 1
    err = capsys.readouterr().err
    assert "000001L9.tap offset 1048576: bad block header checksum" in err
    assert "Traceback" not in err


def test_internal_error_has_no_traceback_without_debug(capsys, failing_commands):
    assert cli_main.main(["test-bug"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "internal error: KeyError" in err and "--debug" in err


def test_debug_shows_the_traceback(failing_commands):
    with pytest.raises(KeyError):
        cli_main.main(["--debug", "test-bug"])


def test_console_script_runs_as_a_process():
    done = subprocess.run(
        [sys.executable, "-m", "reference.cli.main", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert __version__ in done.stdout


def test_verbose_flag_is_accepted(capsys):
    assert cli_main.main(["-vv", "--help"]) == 0
