"""Connection URL parsing and password sources for the IMAP driver (no server needed)."""

from __future__ import annotations

import pytest

from reference.drivers.imap_url import PASSWORD_ENV, ImapUrl, parse_imap_url, resolve_password
from reference.errors import MailtapeError


def test_parse_plain_and_tls_urls():
    assert parse_imap_url("imap://alice@127.0.0.1:1143") == ImapUrl("imap", "alice", "127.0.0.1", 1143)
    url = parse_imap_url("imaps://a%40example.org@mail.example.org")
    assert (url.user, url.port, url.ssl) == ("a@example.org", 993, True)
    assert str(parse_imap_url("imap://bob@h")) == "imap://bob@h:143"


@pytest.mark.parametrize("bad", ["http://a@h", "imap://h:143", "imap://a:pw@h", "imap://a@h/INBOX",
                                 "imap://a@:143", "imap://a@h:99999", "imap://a@h:0", "imap://a@["])
def test_bad_urls_are_refused_clearly(bad):
    with pytest.raises(MailtapeError, match="IMAP URL"):
        parse_imap_url(bad)


def test_password_order_explicit_env_prompt():
    url = parse_imap_url("imap://alice@h:1")
    assert resolve_password(url, "given", environ={PASSWORD_ENV: "env"}) == "given"
    assert resolve_password(url, environ={PASSWORD_ENV: "env"}) == "env"
    asked = []
    got = resolve_password(url, environ={}, interactive=True, prompt=lambda text: asked.append(text) or "typed")
    assert got == "typed" and "imap://alice@h:1" in asked[0]
    with pytest.raises(MailtapeError, match=PASSWORD_ENV):
        resolve_password(url, environ={}, interactive=False)
