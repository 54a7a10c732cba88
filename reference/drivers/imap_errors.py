"""Errors of the IMAP driver, each naming the server, mailbox and folder involved.

``FolderIdentityChanged`` is not IMAP-specific: any MailboxStore may raise it when a folder's
``uid_validity`` changed under an operation, so item ids the caller holds are void. (It belongs
in reference/protocols/mailbox.py; it lives here until that shared file takes it.)
"""

from __future__ import annotations

from reference.errors import MailtapeError


class ImapError(MailtapeError):
    """The IMAP server refused or failed an operation."""


class ImapAuthError(ImapError):
    """Login refused: wrong user name or password, or the account is disabled."""


class ImapConnectionError(ImapError):
    """The server cannot be reached, or the connection dropped and could not be resumed."""


class FolderNameError(ImapError):
    """A folder path cannot be represented on this server (delimiter inside a name, reserved name...)."""


class FolderIdentityChanged(MailtapeError):
    """A folder's uid_validity changed: item ids seen before it are meaningless now."""

    def __init__(self, message: str, *, mailbox: str, folder: tuple[str, ...], old: int, new: int):
        super().__init__(message)
        self.mailbox, self.folder, self.old, self.new = mailbox, folder, old, new
