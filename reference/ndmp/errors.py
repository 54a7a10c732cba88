"""NDMP failures as exceptions: one carries an NDMP error code (and the message it answered)."""

from __future__ import annotations

from reference.errors import MailtapeError

from .constants import Error
from .messages import message_name


class NdmpError(MailtapeError):
    """An NDMP request failed with ``error`` (an :class:`Error` value)."""

    def __init__(self, error: int, message: str = "", code: int | None = None):
        self.error = error
        self.code = code
        try:
            err_name = Error(error).name
        except ValueError:
            err_name = f"error {error}"
        where = f"{message_name(code)}: " if code is not None else ""
        super().__init__(f"{where}{err_name}" + (f" ({message})" if message else ""))


class NdmpProtocolError(MailtapeError):
    """The peer broke the protocol (bad record, undecodable message, unexpected reply)."""


class NdmpRefused(MailtapeError):
    """The server refused the connection (NOTIFY_CONNECTION_STATUS = REFUSED or SHUTDOWN)."""
