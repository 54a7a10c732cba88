"""The Dovecot fixture itself (spec dovecot-fixture.md): greeting, capabilities, isolation, doveadm."""

from __future__ import annotations

import imaplib

import pytest
from imapclient import IMAPClient

pytestmark = pytest.mark.imap

NEEDED = {b"CONDSTORE", b"QRESYNC", b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"NAMESPACE", b"ENABLE"}


def _login(dovecot, user, password):
    client = IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10)  # gotcha 4
    client.login(user, password)
    return client


def test_capabilities_after_login(dovecot):
    """dovecot-fixture.md §3: the extensions the driver relies on are all offered."""
    client = _login(dovecot, "alice", dovecot.users["alice"])
    try:
        assert NEEDED <= set(client.capabilities())
        assert client.namespace().personal == (("", "/"),)
    finally:
        client.logout()


def test_pool_accounts_are_empty_and_isolated(dovecot, account):
    """Gotcha 7: pool users exist from the start, each with only the auto-created folders."""
    user, password = account
    client = _login(dovecot, user, password)
    try:
        names = {name for _flags, _delim, name in client.list_folders()}
        assert names == {"INBOX", "Drafts", "Sent", "Trash", "Junk"}
        client.create_folder(f"only-{user}")
    finally:
        client.logout()
    other = _login(dovecot, "bob", dovecot.users["bob"])
    try:
        assert f"only-{user}" not in {n for _f, _d, n in other.list_folders()}
    finally:
        other.logout()


def test_wrong_password_is_refused(dovecot):
    """Gotcha 8: refused quickly (auth_failure_delay = 0), reason in the log."""
    client = IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10)
    try:
        with pytest.raises(Exception):
            client.login("alice", "wrong")
    finally:
        client.logout()                        # an open session makes the server's stop take seconds
    assert "Password mismatch" in dovecot.log_text() or "password" in dovecot.log_text().lower()


def test_doveadm_talks_to_the_test_instance(dovecot, account):
    """Gotcha 15: doveadm -c CONF sees the test users, and can change UIDVALIDITY (gotcha 11)."""
    user, password = account
    client = _login(dovecot, user, password)
    client.create_folder("Box")
    before = client.folder_status("Box", [b"UIDVALIDITY"])[b"UIDVALIDITY"]
    client.select_folder("Box")
    dovecot.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(before + 1000), "Box")
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        client.noop()                          # session with the folder selected gets BYE
    client.shutdown()
    fresh = _login(dovecot, user, password)
    try:
        assert fresh.folder_status("Box", [b"UIDVALIDITY"])[b"UIDVALIDITY"] == before + 1000
    finally:
        fresh.logout()
