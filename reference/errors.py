"""Errors a user sees.

Every failure the user can cause or meet (bad input, corrupt media, wrong cartridge, unknown names)
is raised as a :class:`MailtapeError` subclass with a message that says *what* and *where*. The CLI
prints it as one line on stderr and exits 1; any other exception is a bug in mailtape and is
reported the same way, with the traceback only under ``--debug``.
"""

from __future__ import annotations


class MailtapeError(Exception):
    """A failure we explain to the user in one line (exit status 1)."""

    exit_code = 1


class UsageError(MailtapeError):
    """The command line asked for something that cannot be done as written (exit status 2)."""

    exit_code = 2


class NotFoundError(MailtapeError):
    """A named object (storage group, database, cartridge, job, mailbox...) does not exist."""


class CorruptDataError(MailtapeError):
    """Data on media or disk failed a structural or checksum check.

    ``where`` names the place (file, cartridge, offset) so the message is actionable.
    """

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
