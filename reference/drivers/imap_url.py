"""Connection URLs (``imap://user@host:port``, ``imaps://...``) and where the password comes from.

The password is never part of the URL: it comes from the caller, from the environment variable
``MAILTAPE_IMAP_PASSWORD``, or from a prompt when a terminal is attached, in that order.
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote, urlsplit

from reference.errors import UsageError

PASSWORD_ENV = "MAILTAPE_IMAP_PASSWORD"
DEFAULT_PORTS = {"imap": 143, "imaps": 993}


@dataclass(frozen=True)
class ImapUrl:
    scheme: str
    user: str
    host: str
    port: int

    @property
    def ssl(self) -> bool:
        return self.scheme == "imaps"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}"


def parse_imap_url(url: str) -> ImapUrl:
    """Parse ``imap[s]://user@host[:port]``; the user may be percent-encoded (``a%40b.org``)."""
    try:
        parts = urlsplit(url)
        parts.port                                  # noqa: B018 - validates the port now
    except ValueError as exc:
        raise UsageError(f"IMAP URL {url!r}: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise UsageError(f"IMAP URL {url!r}: scheme must be imap:// or imaps://")
    if parts.password is not None:
        raise UsageError(f"IMAP URL {url!r}: put the password in ${PASSWORD_ENV}, not in the URL")
    if not parts.username:
        raise UsageError(f"IMAP URL {url!r}: no user name (imap://USER@host:port)")
    if not parts.hostname:
        raise UsageError(f"IMAP URL {url!r}: no host name")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"IMAP URL {url!r}: only imap[s]://user@host:port is accepted")
    port = DEFAULT_PORTS[parts.scheme] if parts.port is None else parts.port
    if port == 0:
        raise UsageError(f"IMAP URL {url!r}: port 0 is not a server port")
    return ImapUrl(parts.scheme, unquote(parts.username), parts.hostname, port)


def resolve_password(url: ImapUrl, password: str | None = None, *,
                     environ: dict | None = None,
                     prompt: Callable[[str], str] | None = None,
                     interactive: bool | None = None) -> str:
    """The password for ``url``: explicit, else $MAILTAPE_IMAP_PASSWORD, else a terminal prompt."""
    if password is not None:
        return password
    env = os.environ if environ is None else environ
    if env.get(PASSWORD_ENV):
        return env[PASSWORD_ENV]
    if interactive is None:
        interactive = sys.stdin.isatty()
    if not interactive:
        raise UsageError(f"no password for {url}: set ${PASSWORD_ENV} (no terminal to prompt on)")
    return (prompt or getpass.getpass)(f"IMAP password for {url}: ")
