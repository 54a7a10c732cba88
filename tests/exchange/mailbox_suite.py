"""The MailboxStore behaviour suite: what any implementation of ``reference.protocols.mailbox.MailboxStore``
must do, written against the protocol only, so the same tests run against the emulated Exchange store
and against a real IMAP server (Dovecot) behind the IMAP driver.

How to reuse it (e.g. in tests/imap/test_imap_store_suite.py, which loads this file by path under the
module name ``mailbox_suite`` so both directories share one module object)::

    import pytest
    from mailbox_suite import MailboxStoreSuite, StoreUnderTest   # or load by path, see above

    class TestDovecotStore(MailboxStoreSuite):
        @pytest.fixture
        def subject(self, dovecot) -> StoreUnderTest:
            return StoreUnderTest(store=ImapMailboxStore(...), mailbox="alice")

The ``subject`` fixture gives a store and the name of a mailbox the store can reach; every test works
inside its own new top-level folder (named after the test), so the mailbox need not be empty and
tests do not see each other's folders. Requirements on errors: an unknown mailbox, folder or uid
raises ``reference.errors.NotFoundError`` whose message names it. Internal dates are whole seconds
(IMAP INTERNALDATE has no fraction). A subclass can skip a behaviour its server lacks by overriding
the test with a ``pytest.mark.skip`` reason (for example ``test_odd_folder_names`` on a server whose
hierarchy delimiter cannot be escaped).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

import pytest

from reference.errors import NotFoundError
from reference.protocols.conformance import conformance_problems
from reference.protocols.mailbox import FolderInfo, MailboxStore, NewItem

_counter = itertools.count(1)


@dataclass
class StoreUnderTest:
    store: MailboxStore
    mailbox: str


def message(n: int = 1, message_id: str | None = "default", body: bytes = b"Hello.\r\n", extra: bytes = b"") -> bytes:
    """A small valid RFC 5322 message; ``message_id=None`` leaves the header out."""
    mid = f"<suite-{n}@mailtape.test>" if message_id == "default" else message_id
    head = [b"From: Suite <suite@mailtape.test>", b"To: Someone <someone@mailtape.test>",
            f"Subject: suite message {n}".encode(), b"Date: Tue, 09 Nov 2004 05:46:40 +0000"]
    if mid is not None:
        head.append(f"Message-ID: {mid}".encode())
    head.append(b"MIME-Version: 1.0")
    head.append(b"Content-Type: text/plain; charset=us-ascii")
    return b"\r\n".join(head) + b"\r\n" + extra + b"\r\n" + body


class MailboxStoreSuite:
    """Subclass and provide a ``subject`` fixture returning a :class:`StoreUnderTest`."""

    @pytest.fixture
    def base(self, subject: StoreUnderTest, request) -> tuple:
        """A fresh top-level folder for this test."""
        name = f"suite-{request.node.name.split('[')[0].replace('test_', '')}-{next(_counter)}"
        subject.store.create_folder(subject.mailbox, (name,))
        return (name,)

    # -- shape ----------------------------------------------------------------------------------

    def test_conforms_to_protocol(self, subject):
        assert isinstance(subject.store, MailboxStore)
        assert conformance_problems(subject.store, MailboxStore) == []

    def test_mailbox_is_listed(self, subject):
        assert subject.mailbox in subject.store.list_mailboxes()

    # -- folders --------------------------------------------------------------------------------

    def test_create_folder_returns_empty_folder(self, subject, base):
        info = subject.store.create_folder(subject.mailbox, base + ("Projects",))
        assert isinstance(info, FolderInfo)
        assert info.path == base + ("Projects",)
        assert info.item_count == 0
        assert info.uid_validity > 0

    def test_create_folder_makes_missing_parents_and_lists_parents_first(self, subject, base):
        subject.store.create_folder(subject.mailbox, base + ("a", "b", "c"))
        paths = [f.path for f in subject.store.list_folders(subject.mailbox)]
        for depth in (1, 2, 3):
            assert base + ("a", "b", "c")[:depth] in paths
        assert paths.index(base) < paths.index(base + ("a",)) < paths.index(base + ("a", "b")) < paths.index(
            base + ("a", "b", "c"))

    def test_create_existing_folder_returns_it_unchanged(self, subject, base):
        first = subject.store.create_folder(subject.mailbox, base + ("x",))
        subject.store.append_item(subject.mailbox, base + ("x",), NewItem(message()))
        again = subject.store.create_folder(subject.mailbox, base + ("x",))
        assert again.uid_validity == first.uid_validity
        assert again.item_count == 1

    def test_odd_folder_names_are_plain_names(self, subject, base):
        """'/', '..', wildcards and non-ASCII are parts of a name, never path syntax."""
        odd = ["a/b", "..", "*", "%", "Grüße 日本", "dot.name"]
        for name in odd:
            subject.store.create_folder(subject.mailbox, base + (name,))
        paths = {f.path for f in subject.store.list_folders(subject.mailbox)}
        for name in odd:
            assert base + (name,) in paths
        assert base + ("a", "b") not in paths
        uid = subject.store.append_item(subject.mailbox, base + ("a/b",), NewItem(message(7)))
        assert subject.store.read_item(subject.mailbox, base + ("a/b",), uid) == message(7)

    def test_delete_folder_removes_it_with_items_and_children(self, subject, base):
        subject.store.create_folder(subject.mailbox, base + ("gone", "child"))
        subject.store.append_item(subject.mailbox, base + ("gone",), NewItem(message()))
        subject.store.delete_folder(subject.mailbox, base + ("gone",))
        paths = {f.path for f in subject.store.list_folders(subject.mailbox)}
        assert base + ("gone",) not in paths
        assert base + ("gone", "child") not in paths
        with pytest.raises(NotFoundError):
            list(subject.store.list_items(subject.mailbox, base + ("gone",)))

    def test_recreated_folder_has_new_uid_validity(self, subject, base):
        """A folder deleted and created again is a new folder: ids seen before are void."""
        before = subject.store.create_folder(subject.mailbox, base + ("again",))
        subject.store.append_item(subject.mailbox, base + ("again",), NewItem(message()))
        subject.store.delete_folder(subject.mailbox, base + ("again",))
        after = subject.store.create_folder(subject.mailbox, base + ("again",))
        assert after.uid_validity != before.uid_validity
        assert after.item_count == 0

    # -- items ----------------------------------------------------------------------------------

    def test_append_then_read_gives_exact_octets(self, subject, base):
        content = message(1, extra=b"X-Odd: tab\there\r\n", body=b"line one\r\n\r\n  indented\r\n" + b"z" * 5000 + b"\r\n")
        uid = subject.store.append_item(subject.mailbox, base, NewItem(content))
        assert subject.store.read_item(subject.mailbox, base, uid) == content

    def test_large_item_round_trips(self, subject, base):
        body = b"".join(hashlib.sha256(str(i).encode()).hexdigest().encode() + b"\r\n" for i in range(40000))
        content = message(2, body=body)
        uid = subject.store.append_item(subject.mailbox, base, NewItem(content))
        assert subject.store.read_item(subject.mailbox, base, uid) == content
        info = next(iter(subject.store.list_items(subject.mailbox, base)))
        assert info.size == len(content)

    def test_append_preserves_flags_date_and_reports_message_id(self, subject, base):
        flags = frozenset({"\\Seen", "\\Flagged", "$Label1"})
        uid = subject.store.append_item(subject.mailbox, base, NewItem(message(3), flags, 1_100_000_000.0))
        [info] = list(subject.store.list_items(subject.mailbox, base))
        assert info.uid == uid
        assert info.flags == flags
        assert info.internal_date == 1_100_000_000.0
        assert info.message_id == "<suite-3@mailtape.test>"
        assert info.size == len(message(3))

    def test_item_without_message_id(self, subject, base):
        subject.store.append_item(subject.mailbox, base, NewItem(message(4, message_id=None)))
        [info] = list(subject.store.list_items(subject.mailbox, base))
        assert info.message_id is None

    def test_uids_ascend_and_listing_is_in_uid_order(self, subject, base):
        uids = [subject.store.append_item(subject.mailbox, base, NewItem(message(n))) for n in range(6)]
        assert uids == sorted(uids) and len(set(uids)) == 6
        assert [i.uid for i in subject.store.list_items(subject.mailbox, base)] == uids

    def test_uids_are_not_reused_after_delete(self, subject, base):
        first = subject.store.append_item(subject.mailbox, base, NewItem(message(1)))
        subject.store.delete_item(subject.mailbox, base, first)
        second = subject.store.append_item(subject.mailbox, base, NewItem(message(2)))
        assert second > first

    def test_set_flags_replaces_flags(self, subject, base):
        uid = subject.store.append_item(subject.mailbox, base, NewItem(message(), frozenset({"\\Seen", "\\Flagged"})))
        subject.store.set_flags(subject.mailbox, base, uid, frozenset({"\\Answered"}))
        [info] = list(subject.store.list_items(subject.mailbox, base))
        assert info.flags == frozenset({"\\Answered"})
        subject.store.set_flags(subject.mailbox, base, uid, frozenset())
        [info] = list(subject.store.list_items(subject.mailbox, base))
        assert info.flags == frozenset()

    def test_change_counter_grows_on_every_change(self, subject, base):
        """Append, flag change and delete each raise the folder's change counter (HIGHESTMODSEQ)."""
        def counter():
            return next(f for f in subject.store.list_folders(subject.mailbox) if f.path == base).change_counter

        start = counter()
        uid = subject.store.append_item(subject.mailbox, base, NewItem(message()))
        after_append = counter()
        subject.store.set_flags(subject.mailbox, base, uid, frozenset({"\\Seen"}))
        after_flags = counter()
        subject.store.delete_item(subject.mailbox, base, uid)
        after_delete = counter()
        assert start < after_append < after_flags < after_delete

    def test_changed_since_returns_only_newer_changes(self, subject, base):
        """Incremental mailbox backup: items whose modseq is above the last seen counter."""
        old = subject.store.append_item(subject.mailbox, base, NewItem(message(1)))
        untouched = subject.store.append_item(subject.mailbox, base, NewItem(message(2)))
        mark = max(i.modseq for i in subject.store.list_items(subject.mailbox, base))
        assert list(subject.store.list_items(subject.mailbox, base, changed_since=mark)) == []
        subject.store.set_flags(subject.mailbox, base, old, frozenset({"\\Seen"}))
        new = subject.store.append_item(subject.mailbox, base, NewItem(message(3)))
        changed = [i.uid for i in subject.store.list_items(subject.mailbox, base, changed_since=mark)]
        assert changed == [old, new]
        assert untouched not in changed
        assert all(i.modseq > mark for i in subject.store.list_items(subject.mailbox, base, changed_since=mark))

    def test_item_count_follows_appends_and_deletes(self, subject, base):
        uids = [subject.store.append_item(subject.mailbox, base, NewItem(message(n))) for n in range(3)]
        subject.store.delete_item(subject.mailbox, base, uids[1])
        info = next(f for f in subject.store.list_folders(subject.mailbox) if f.path == base)
        assert info.item_count == 2
        assert [i.uid for i in subject.store.list_items(subject.mailbox, base)] == [uids[0], uids[2]]

    def test_deleted_item_cannot_be_read(self, subject, base):
        uid = subject.store.append_item(subject.mailbox, base, NewItem(message()))
        subject.store.delete_item(subject.mailbox, base, uid)
        with pytest.raises(NotFoundError, match=str(uid)):
            subject.store.read_item(subject.mailbox, base, uid)

    # -- bad input ------------------------------------------------------------------------------

    def test_unknown_mailbox_is_named_in_the_error(self, subject):
        with pytest.raises(NotFoundError, match="nosuchuser-zz"):
            subject.store.list_folders("nosuchuser-zz")

    def test_unknown_folder_is_named_in_the_error(self, subject, base):
        with pytest.raises(NotFoundError, match="no-such-folder"):
            list(subject.store.list_items(subject.mailbox, base + ("no-such-folder",)))
        with pytest.raises(NotFoundError, match="no-such-folder"):
            subject.store.append_item(subject.mailbox, base + ("no-such-folder",), NewItem(message()))

    def test_unknown_uid_is_named_in_the_error(self, subject, base):
        with pytest.raises(NotFoundError, match="4242"):
            subject.store.read_item(subject.mailbox, base, 4242)
        with pytest.raises(NotFoundError, match="4242"):
            subject.store.set_flags(subject.mailbox, base, 4242, frozenset({"\\Seen"}))
