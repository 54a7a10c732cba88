"""Server-side oracle (spec brick-level-imap.md §7.3): after a restore into Dovecot, `doveadm fetch`
- which does not go through our IMAP driver - sees every item with its flags, received date and
text. (Dovecot's maildir keeps LF line ends, so texts are compared with CRLF → LF.)"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from brick_helpers import BASE_DATE, DAY, backup, msg, put

from reference.agent.brick import BrickCatalog, RestoreOptions, Selection, run_restore

pytestmark = pytest.mark.imap


def _doveadm_view(dovecot, user, folder: str) -> list:
    out = dovecot.doveadm("-f", "json", "fetch", "-u", user, "flags date.received text",
                          "mailbox", folder, "ALL").stdout
    return sorted((tuple(sorted(f for f in row["flags"].split() if f != "\\Recent")), row["date.received"],
                   row["text"]) for row in json.loads(out or "[]"))


def test_restored_items_seen_by_doveadm(request, dovecot):
    from brick_stores import FACTORIES
    from reference.drivers.imap import ImapMailboxStore
    source = FACTORIES["emulator"](request)
    request.addfinalizer(lambda: [close() for close in source.closers])
    s, me = source.store, source.mailbox
    s.create_folder(me, ("Projects", "Q1"))
    put(s, me, ("Inbox",), msg(1), {"\\Seen", "$Label1"}, BASE_DATE)
    put(s, me, ("Inbox",), msg(2, mid=None), (), BASE_DATE + DAY)
    put(s, me, ("Projects", "Q1"), msg(3, body="Grüße\r\n".encode()), {"\\Answered"}, BASE_DATE + 2 * DAY)
    catalog = BrickCatalog.from_sets([backup(source)[0]])
    user, password = dovecot.fresh_account()
    with ImapMailboxStore(dovecot.url(user), password) as imap:
        result = run_restore(catalog, imap, RestoreOptions(selection=Selection(mailboxes=(me,)),
                                                           target_mailbox=user))
        assert result.ok, result.failed
    for folder, imap_name in [(("Inbox",), "INBOX"), (("Projects", "Q1"), "Projects/Q1")]:
        wanted = sorted((tuple(sorted(i.flags)),
                         datetime.fromtimestamp(i.internal_date, timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
                         catalog.content(i).replace(b"\r\n", b"\n").decode())
                        for i in catalog.items(me, folder))
        assert _doveadm_view(dovecot, user, imap_name) == wanted
