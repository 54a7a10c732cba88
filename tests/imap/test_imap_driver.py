"""ImapMailboxStore against a real Dovecot: names, UIDs, flags, dates, bytes, CONDSTORE, errors.

Numbers cite brick-level-imap.md §5 (IMAPClient notes) and dovecot-fixture.md §5 gotchas.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import pytest
from imapclient import IMAPClient

from reference.drivers.imap import (ImapAccounts, ImapMailboxStore, parse_appenduid, parse_copyuid,
                                    parse_message_id)
from reference.drivers.imap_errors import (FolderIdentityChanged, FolderNameError, ImapAuthError,
                                           ImapConnectionError)
from reference.errors import MailtapeError, NotFoundError
from reference.protocols.mailbox import MailboxStore, NewItem

pytestmark = pytest.mark.imap

RAW = (b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: first\r\n"
       b"Message-ID:\r\n <msg1@example.org>\r\nDate: Sat, 06 May 2023 07:08:09 +0200\r\n\r\n"
       b"Body 1 with trailing spaces   \r\n\r\n")
WHEN = datetime(2023, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2))).timestamp()


def raw_client(dovecot, user, password) -> IMAPClient:
    client = IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10)
    client.login(user, password)
    return client


def test_is_a_mailbox_store(imap_store):
    assert isinstance(imap_store, MailboxStore)
    assert imap_store.list_mailboxes() == [imap_store.url.user]
    assert imap_store.condstore and imap_store.delimiter == "/"


def test_append_read_byte_exact_with_flags_and_date(imap_store):
    """§5: APPEND (flags) "internaldate", APPENDUID parsed; BODY.PEEK[] byte-exact, no \\Seen set."""
    me = imap_store.mailbox_name
    imap_store.create_folder(me, ("Projects", "2024", "Q1"))
    uid = imap_store.append_item(me, ("Projects", "2024", "Q1"),
                                 NewItem(RAW, frozenset({"\\Flagged", "$Label1"}), WHEN))
    second = imap_store.append_item(me, ("Projects", "2024", "Q1"), NewItem(b"Subject: x\r\n\r\nno id\r\n"))
    assert second == uid + 1
    assert imap_store.read_item(me, ("Projects", "2024", "Q1"), uid) == RAW
    items = list(imap_store.list_items(me, ("Projects", "2024", "Q1")))
    assert [i.uid for i in items] == [uid, second]
    first = items[0]
    assert first.flags == {"\\Flagged", "$Label1"}           # no \Recent (gotcha 9), no \Seen from PEEK
    assert first.internal_date == WHEN                        # same instant (gotcha 10)
    assert first.size == len(RAW)
    assert first.message_id == "<msg1@example.org>"           # folded header unfolded
    assert items[1].message_id is None and first.modseq > 0


def test_folder_paths_are_tuples_with_utf7_names(dovecot, imap_store):
    """Non-ASCII names go over the wire in modified UTF-7 and come back as the same tuple."""
    me = imap_store.mailbox_name
    paths = [("Entwürfe ä€",), ("日本語", "子"), ("Mr. Smith",), ("x*y%z",), ("&amp",)]
    for path in paths:
        info = imap_store.create_folder(me, path)
        assert info.path == path and info.uid_validity > 0 and info.item_count == 0
    listed = [f.path for f in imap_store.list_folders(me)]
    assert set(paths) <= set(listed) and ("日本語",) in listed
    assert listed.index(("日本語",)) < listed.index(("日本語", "子"))   # parents before children
    assert {"INBOX", "Drafts", "Sent", "Trash", "Junk"} <= {p[0] for p in listed}
    on_disk = {p.name for p in (dovecot.run_dir / "home" / me / "Maildir").iterdir()}
    assert "Entw&APw-rfe &AOQgrA-" in on_disk


@pytest.mark.parametrize("path", [("a/b",), ("ok", ""), ()])
def test_name_with_delimiter_is_refused_clearly(imap_store, path):
    """A name holding the hierarchy delimiter cannot exist on the server: refused, nothing created."""
    with pytest.raises(FolderNameError):
        imap_store.create_folder(imap_store.mailbox_name, path)
    assert ("a",) not in [f.path for f in imap_store.list_folders(imap_store.mailbox_name)]


@pytest.mark.parametrize("path", [("..",), ("~home",), ("cur",), ("tab\tname",)])
def test_names_the_server_refuses_raise_folder_name_error(imap_store, path):
    with pytest.raises(FolderNameError, match="refused"):
        imap_store.create_folder(imap_store.mailbox_name, path)


def test_condstore_changed_since_lists_only_changed_items(imap_store):
    """§5 CONDSTORE: HIGHESTMODSEQ as change_counter, CHANGEDSINCE filters by MODSEQ."""
    me, box = imap_store.mailbox_name, ("Box",)
    imap_store.create_folder(me, box)
    uids = [imap_store.append_item(me, box, NewItem(f"Subject: {n}\r\n\r\n{n}\r\n".encode())) for n in range(4)]
    before = next(f for f in imap_store.list_folders(me) if f.path == box)
    assert before.item_count == 4 and before.change_counter > 0
    imap_store.set_flags(me, box, uids[2], frozenset({"\\Seen", "$Work"}))
    after = next(f for f in imap_store.list_folders(me) if f.path == box)
    assert after.change_counter > before.change_counter
    changed = list(imap_store.list_items(me, box, changed_since=before.change_counter))
    assert [i.uid for i in changed] == [uids[2]] and changed[0].flags == {"\\Seen", "$Work"}


def test_without_condstore_changed_since_lists_everything(dovecot, account):
    user, password = account
    with ImapMailboxStore(dovecot.url(user), password, use_condstore=False) as store:
        store.append_item(user, ("INBOX",), NewItem(b"Subject: a\r\n\r\na\r\n"))
        info = next(f for f in store.list_folders(user) if f.path == ("INBOX",))
        assert info.change_counter == 0
        items = list(store.list_items(user, ("INBOX",), changed_since=5))
        assert len(items) == 1 and items[0].modseq == 0


def test_delete_item_expunges_only_that_uid(dovecot, imap_store):
    """UID EXPUNGE (UIDPLUS): another message already marked \\Deleted stays."""
    me, box = imap_store.mailbox_name, ("Box",)
    imap_store.create_folder(me, box)
    a = imap_store.append_item(me, box, NewItem(b"Subject: a\r\n\r\na\r\n", frozenset({"\\Deleted"})))
    b = imap_store.append_item(me, box, NewItem(b"Subject: b\r\n\r\nb\r\n"))
    imap_store.delete_item(me, box, b)
    assert [i.uid for i in imap_store.list_items(me, box)] == [a]
    with pytest.raises(NotFoundError):
        imap_store.delete_item(me, box, b)
    with pytest.raises(NotFoundError):
        imap_store.read_item(me, box, b)
    with pytest.raises(NotFoundError):
        imap_store.set_flags(me, box, b, frozenset())


def test_move_returns_new_uid_from_copyuid(imap_store):
    """Gotcha 12: MOVE's COPYUID arrives untagged; the driver reads it."""
    me = imap_store.mailbox_name
    imap_store.create_folder(me, ("From",))
    imap_store.create_folder(me, ("To",))
    imap_store.append_item(me, ("To",), NewItem(b"Subject: z\r\n\r\nz\r\n"))
    uid = imap_store.append_item(me, ("From",), NewItem(RAW, frozenset({"\\Seen"})))
    new_uid = imap_store.move_item(me, ("From",), uid, ("To",))
    assert new_uid == 2
    assert imap_store.read_item(me, ("To",), new_uid) == RAW
    assert list(imap_store.list_items(me, ("From",))) == []


def test_delete_folder_removes_subfolders(imap_store):
    me = imap_store.mailbox_name
    imap_store.create_folder(me, ("Old", "Sub", "Deeper"))
    imap_store.create_folder(me, ("Older",))
    imap_store.delete_folder(me, ("Old",))
    paths = [f.path for f in imap_store.list_folders(me)]
    assert not [p for p in paths if p[0] == "Old"] and ("Older",) in paths
    with pytest.raises(NotFoundError):
        imap_store.delete_folder(me, ("Old",))


def test_unknown_mailbox_and_folder_are_not_found(imap_store):
    with pytest.raises(NotFoundError, match="no mailbox"):
        imap_store.list_folders("somebody-else")
    with pytest.raises(NotFoundError, match="Nope"):
        list(imap_store.list_items(imap_store.mailbox_name, ("Nope",)))


def test_wrong_password_is_a_clear_error(dovecot):
    with pytest.raises(ImapAuthError, match="login to imap://alice@127.0.0.1"):
        ImapMailboxStore(dovecot.url("alice"), "not-the-password")


def test_unreachable_server_is_a_clear_error():
    import socket
    with socket.socket() as s:                    # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ImapConnectionError, match="cannot connect"):
        ImapMailboxStore(f"imap://alice@127.0.0.1:{port}", "x", timeout=2)


def test_dropped_connection_is_resumed_for_reads(imap_store):
    """The session is cut under the driver: the next read reconnects once and succeeds."""
    me = imap_store.mailbox_name
    uid = imap_store.append_item(me, ("INBOX",), NewItem(RAW))
    imap_store._client._imap.sock.shutdown(socket.SHUT_RDWR)   # the network drops the connection
    assert imap_store.read_item(me, ("INBOX",), uid) == RAW


def test_dropped_connection_during_write_is_an_error(imap_store):
    """Writes are not retried blindly (an APPEND might already have landed)."""
    imap_store._client._imap.sock.shutdown(socket.SHUT_RDWR)
    with pytest.raises(ImapConnectionError, match="dropped during appending"):
        imap_store.append_item(imap_store.mailbox_name, ("INBOX",), NewItem(RAW))
    assert isinstance(ImapConnectionError("x"), MailtapeError)


def test_uidvalidity_change_is_reported_not_hidden(dovecot, imap_store):
    """Gotcha 11: the selected session gets BYE; on reconnect the driver sees the new UIDVALIDITY
    and raises FolderIdentityChanged instead of serving possibly different items under old UIDs."""
    me, box = imap_store.mailbox_name, ("Box",)
    old = imap_store.create_folder(me, box).uid_validity
    uid = imap_store.append_item(me, box, NewItem(RAW))
    assert imap_store.read_item(me, box, uid) == RAW          # folder now selected
    dovecot.doveadm("mailbox", "update", "-u", me, "--uid-validity", str(old + 1000), "Box")
    with pytest.raises(FolderIdentityChanged) as info:
        imap_store.read_item(me, box, uid)
    assert (info.value.old, info.value.new) == (old, old + 1000)
    assert imap_store.read_item(me, box, uid) == RAW          # caller re-listed: works again
    assert next(f for f in imap_store.list_folders(me) if f.path == box).uid_validity == old + 1000


def test_accounts_route_by_mailbox(dovecot):
    alice = ImapMailboxStore(dovecot.url("alice"), dovecot.users["alice"])
    bob = ImapMailboxStore(dovecot.url("bob"), dovecot.users["bob"])
    accounts = ImapAccounts([alice, bob])
    try:
        assert accounts.list_mailboxes() == ["alice", "bob"] and isinstance(accounts, MailboxStore)
        assert ("INBOX",) in [f.path for f in accounts.list_folders("bob")]
        with pytest.raises(NotFoundError, match="carol"):
            accounts.list_folders("carol")
    finally:
        accounts.close()


def test_response_parsers():
    assert parse_appenduid(b"[APPENDUID 1700000000 17] Append completed.") == (1700000000, 17)
    assert parse_appenduid(b"Append completed.") is None
    assert parse_copyuid(b"38505 304,319:320 3956:3958") == (38505, [304, 319, 320], [3956, 3957, 3958])
    assert parse_message_id(b"Message-Id: <a@b>\r\n\r\n") == "<a@b>"
    assert parse_message_id(b"\r\n") is None


def test_imaps_with_a_trusted_certificate(dovecot, account):
    """imaps://: TLS from the first byte; the server's certificate is verified."""
    import ssl
    if not dovecot.tls_port:
        pytest.skip("openssl not available: the fixture has no imaps listener")
    user, password = account
    context = ssl.create_default_context(cafile=str(dovecot.cert))
    with ImapMailboxStore(f"imaps://{user}@127.0.0.1:{dovecot.tls_port}", password, ssl_context=context) as store:
        uid = store.append_item(user, ("INBOX",), NewItem(RAW))
        assert store.read_item(user, ("INBOX",), uid) == RAW
    with pytest.raises(ImapConnectionError, match="certificate"):
        ImapMailboxStore(f"imaps://{user}@127.0.0.1:{dovecot.tls_port}", password, timeout=5)
