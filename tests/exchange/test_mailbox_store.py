"""The emulated Exchange mailbox store: the shared MailboxStore suite plus Exchange-specific behaviour
(spec ese-backup-api.md §4, brick-level-imap.md §6)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from emulators.exchange.mailbox_store import (
    BODIES,
    ITEMS,
    WELL_KNOWN_FOLDERS,
    DatabaseMailboxStore,
    FolderNotFoundError,
    MailboxExistsError,
    MailboxNotFoundError,
    MailboxStoreError,
    ServerMailboxStore,
    snapshot,
)
from emulators.exchange.records import STREAM_TABLE_PREFIX
from emulators.exchange.server import ExchangeServer
from mailbox_helpers import DB_A, DB_B, SERVER, SG_A, SG_B, one_database_store, server_store, two_group_store  # noqa: F401
from mailbox_suite import MailboxStoreSuite, StoreUnderTest, message
from reference.errors import MailtapeError, NotFoundError
from reference.protocols.mailbox import NewItem



class TestEmulatedStoreSuite(MailboxStoreSuite):
    @pytest.fixture
    def subject(self, two_group_store) -> StoreUnderTest:
        two_group_store.create_mailbox("someone", storage_group=SG_B)
        two_group_store.create_mailbox("jsmith", storage_group=SG_A)
        return StoreUnderTest(two_group_store, "jsmith")


class TestDatabaseStoreSuite(MailboxStoreSuite):
    """The same suite on the per-database store (what a mounted priv.edb offers)."""

    @pytest.fixture
    def subject(self, one_database_store) -> StoreUnderTest:
        [store] = one_database_store.stores.values()
        store.create_mailbox("alice")
        return StoreUnderTest(store, "alice")


@pytest.fixture
def store(two_group_store) -> ServerMailboxStore:
    two_group_store.create_mailbox("jsmith", storage_group=SG_A, display_name="John Smith")
    return two_group_store


# -- hierarchy (brick-level-imap.md §6 "Hierarchy", "Well-known folders") ------------------------


def test_new_mailbox_has_the_well_known_folders_with_their_classes(store):
    folders = {f.path: f.folder_class for f in store.list_folders("jsmith")}
    for name, folder_class, _ in WELL_KNOWN_FOLDERS:
        assert folders[(name,)] == folder_class
    assert folders[("Calendar",)] == "IPF.Appointment"
    assert folders[("Contacts",)] == "IPF.Contact"
    assert () not in folders, "Top of Information Store is the root, not a listed folder"


def test_mailbox_has_a_legacy_dn_and_a_place(store):
    info = store.mailbox_info("jsmith")
    assert info.legacy_dn == "/o=First Organization/ou=First Administrative Group/cn=Recipients/cn=jsmith"
    assert info.display_name == "John Smith"
    assert (info.storage_group, info.database) == (SG_A, DB_A)


def test_well_known_folders_cannot_be_deleted(store):
    with pytest.raises(MailboxStoreError, match="Inbox"):
        store.delete_folder("jsmith", ("Inbox",))
    with pytest.raises(MailboxStoreError):
        store.delete_folder("jsmith", ())


def test_top_of_information_store_holds_no_items(store):
    with pytest.raises(MailboxStoreError, match="Top of Information Store"):
        store.append_item("jsmith", (), NewItem(message()))


def test_subfolder_inherits_parent_class(store):
    assert store.create_folder("jsmith", ("Calendar", "Holidays")).folder_class == "IPF.Appointment"
    assert store.create_folder("jsmith", ("Reports",)).folder_class == "IPF.Note"
    assert store.create_folder("jsmith", ("Team tasks",), folder_class="IPF.Task").folder_class == "IPF.Task"


def test_names_compare_case_insensitively_like_exchange(store):
    uid = store.append_item("jsmith", ("inbox",), NewItem(message()))
    assert store.read_item("JSmith", ("INBOX",), uid) == message()
    store.create_folder("jsmith", ("Projects",))
    again = store.create_folder("jsmith", ("PROJECTS",))
    assert again.path == ("Projects",), "the folder keeps the spelling it was created with"
    with pytest.raises(MailboxExistsError, match="JSMITH"):
        store.create_mailbox("JSMITH")


def test_list_folders_is_depth_first_by_name(store):
    store.create_folder("jsmith", ("Inbox", "b"))
    store.create_folder("jsmith", ("Inbox", "a", "z"))
    paths = [f.path for f in store.list_folders("jsmith")]
    i = paths.index(("Inbox",))
    assert paths[i + 1 : i + 4] == [("Inbox", "a"), ("Inbox", "a", "z"), ("Inbox", "b")]


# -- items and properties -------------------------------------------------------------------------


def test_message_class_comes_from_content_class(store):
    appointment = message(1, extra=b"Content-Class: urn:content-classes:appointment\r\n")
    uid = store.append_item("jsmith", ("Calendar",), NewItem(appointment))
    assert store.folder_info("jsmith", ("Calendar",)).item_count == 1
    [info] = list(store.list_items("jsmith", ("Calendar",)))
    assert (info.uid, info.message_class) == (uid, "IPM.Appointment")


def test_item_properties_carry_entry_id_and_subject(store):
    uid = store.append_item("jsmith", ("Inbox",), NewItem(message(5)))
    props = store.store_for("jsmith").item_properties("jsmith", ("Inbox",), uid)
    assert props["subject"] == "suite message 5"
    assert len(props["entry"]) == 24


def test_attachments_are_counted_from_the_mime_parts(store):
    from emulators.exchange.mime import Attachment, render_message

    content = render_message(sender="a@x.test", recipients=["b@x.test"], subject="files", date=1.1e9,
                             message_id="<f@x.test>", body=b"see attached\r\n", boundary="=_b",
                             attachments=[Attachment("a.pdf", "application/pdf", b"QUJD\r\n"),
                                          Attachment("b.zip", "application/zip", b"REVG\r\n")])
    uid = store.append_item("jsmith", ("Inbox",), NewItem(content))
    assert store.store_for("jsmith").item_properties("jsmith", ("Inbox",), uid)["attachments"] == 2


def test_internal_date_defaults_to_the_virtual_clock(store):
    store.clock.advance(123.0)
    store.append_item("jsmith", ("Inbox",), NewItem(message()))
    [info] = list(store.list_items("jsmith", ("Inbox",)))
    assert info.internal_date == store.clock.now()


def test_move_item_gives_new_uid_and_bumps_both_counters(store):
    store.create_folder("jsmith", ("Inbox", "Archive"))
    uid = store.append_item("jsmith", ("Inbox",), NewItem(message(9), frozenset({"\\Seen"}), 1_100_000_000.0))
    before_src = store.folder_info("jsmith", ("Inbox",)).change_counter
    before_dst = store.folder_info("jsmith", ("Inbox", "Archive")).change_counter
    new_uid = store.move_item("jsmith", ("Inbox",), uid, ("Inbox", "Archive"))
    assert list(store.list_items("jsmith", ("Inbox",))) == []
    [moved] = list(store.list_items("jsmith", ("Inbox", "Archive")))
    assert (moved.uid, moved.flags, moved.internal_date) == (new_uid, frozenset({"\\Seen"}), 1_100_000_000.0)
    assert store.read_item("jsmith", ("Inbox", "Archive"), new_uid) == message(9)
    assert store.folder_info("jsmith", ("Inbox",)).change_counter > before_src
    assert store.folder_info("jsmith", ("Inbox", "Archive")).change_counter > before_dst


def test_set_flags_with_same_flags_is_no_change(store):
    uid = store.append_item("jsmith", ("Inbox",), NewItem(message(), frozenset({"\\Seen"})))
    before = store.folder_info("jsmith", ("Inbox",)).change_counter
    store.set_flags("jsmith", ("Inbox",), uid, frozenset({"\\seen"}))
    assert store.folder_info("jsmith", ("Inbox",)).change_counter == before


def test_listing_survives_deletes_while_iterating(store):
    """Listing reads in chunks: changing the folder meanwhile neither breaks nor repeats the iteration."""
    for n in range(2500):
        store.append_item("jsmith", ("Inbox",), NewItem(message(n)))
    seen = []
    for info in store.list_items("jsmith", ("Inbox",)):
        seen.append(info.uid)
        if info.uid % 3 == 0 and info.uid < 2500:
            store.delete_item("jsmith", ("Inbox",), info.uid + 1)
    assert seen == sorted(set(seen))
    survivors = [i.uid for i in store.list_items("jsmith", ("Inbox",))]
    assert set(survivors) <= set(seen)
    assert len(survivors) == 2500 - 833


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["Inbox", ["Inbox", 3], ("",), ("a\x00b",), ("tab\there",), ("x" * 300,)])
def test_bad_folder_paths_are_refused_with_the_name(store, bad):
    with pytest.raises(MailboxStoreError):
        store.create_folder("jsmith", bad)


@pytest.mark.parametrize("flag", ["\\Recent", "\\Bogus", "has space", "paren(", "", "ünï"])
def test_bad_flags_are_refused(store, flag):
    with pytest.raises(MailboxStoreError, match="flag|keyword"):
        store.append_item("jsmith", ("Inbox",), NewItem(message(), frozenset({flag})))


@pytest.mark.parametrize("date", ["yesterday", float("nan"), True])
def test_bad_internal_dates_are_refused(store, date):
    with pytest.raises(MailboxStoreError, match="internal date"):
        store.append_item("jsmith", ("Inbox",), NewItem(message(), internal_date=date))


def test_empty_content_is_refused(store):
    with pytest.raises(MailboxStoreError, match="non-empty"):
        store.append_item("jsmith", ("Inbox",), NewItem(b""))


def test_unknown_names_are_errors_a_user_sees(store):
    with pytest.raises(MailboxNotFoundError, match="'ghost' not found on server 'EXCHANGE01'") as failure:
        store.list_folders("ghost")
    assert isinstance(failure.value, MailtapeError)
    with pytest.raises(FolderNotFoundError, match=r"\['Inbox', 'a/b'\].*'jsmith'"):
        store.folder_info("jsmith", ("Inbox", "a/b"))
    with pytest.raises(NotFoundError, match="'Nope'.*'First Storage Group'"):
        store.database_store("First Storage Group", "Nope")


# -- the server directory ------------------------------------------------------------------------


def test_directory_maps_mailboxes_to_storage_group_and_database(store):
    store.create_mailbox("alee", storage_group=SG_B)
    assert store.directory() == {"jsmith": (SG_A, DB_A), "alee": (SG_B, DB_B)}
    assert store.locate("ALEE") == (SG_B, DB_B)
    assert sorted(store.list_mailboxes()) == ["alee", "jsmith"]


def test_new_mailboxes_go_to_the_emptiest_database(store):
    placed = [store.create_mailbox(f"user{i}") for i in range(4)]
    assert [info.database for info in placed] == [DB_B, DB_A] * 2
    counts = [len(s.list_mailboxes()) for s in store.stores.values()]
    assert counts == [3, 2]


def test_mailbox_names_are_unique_across_databases(store):
    with pytest.raises(MailboxExistsError, match="EXCHANGE01"):
        store.create_mailbox("jsmith", storage_group=SG_B)


def test_delete_mailbox_removes_every_record(store):
    database = store.store_for("jsmith")
    store.append_item("jsmith", ("Inbox",), NewItem(message()))
    database.delete_mailbox("jsmith")
    assert store.list_mailboxes() == []
    for table in (ITEMS, BODIES):
        assert list(database.db.scan(table)) == []


# -- everything lives in the database records (ese-backup-api.md §4) ------------------------------


def test_bodies_live_in_a_stream_table(store):
    uid = store.append_item("jsmith", ("Inbox",), NewItem(message(3)))
    database = store.store_for("jsmith").db
    assert BODIES.startswith(STREAM_TABLE_PREFIX)
    assert [value for _, value in database.scan(BODIES)] == [message(3)]
    assert uid == 1


def test_a_new_view_over_the_same_records_is_the_same_mailboxes(store):
    """The store keeps nothing outside the RecordDatabase: a new view over the same databases sees it all."""
    store.create_folder("jsmith", ("Inbox", "x/y"))
    store.append_item("jsmith", ("Inbox", "x/y"), NewItem(message(1), frozenset({"$Work"}), 1_000_000_000.0))
    again = ServerMailboxStore({place: s.db for place, s in store.stores.items()}, store.clock, SERVER)
    assert snapshot(again) == snapshot(store)


def test_mailboxes_survive_a_restart_of_the_server(tmp_path):
    """Shutdown, then open from the files: the mailboxes come back from the database pages."""
    with server_store(tmp_path / "srv") as store:
        store.create_mailbox("jsmith")
        store.create_folder("jsmith", ("Inbox", "Grüße", ".."))
        odd = ("Inbox", "Grüße", "..")
        store.append_item("jsmith", odd, NewItem(message(2), frozenset({"\\Seen"})))
        store.delete_item("jsmith", odd, store.append_item("jsmith", odd, NewItem(message(3))))
        store.append_item("jsmith", ("Drafts",), NewItem(message(4)))
        before = snapshot(store)
    server = ExchangeServer.open(tmp_path / "srv")
    try:
        assert snapshot(ServerMailboxStore.for_server(server)) == before
    finally:
        server.shutdown()


@pytest.mark.parametrize("log_size", [5 * 1024 * 1024, 64 * 1024])
def test_mailboxes_survive_a_crash_by_soft_recovery(tmp_path, log_size, monkeypatch):
    """Power loss after commits: replaying the logs at mount brings back every committed change."""
    import mailbox_helpers

    monkeypatch.setattr(mailbox_helpers, "SMALL_LOGS", log_size)
    with server_store(tmp_path / "srv", storage_groups=1) as store:
        store.create_mailbox("jsmith")
        for n in range(20):
            store.append_item("jsmith", ("Inbox",), NewItem(message(n) + b"x" * 3000 * n))
        store.move_item("jsmith", ("Inbox",), 3, ("Deleted Items",))
        before = snapshot(store)
        for instance in store.server.instances.values():
            instance.crash()
        store.server.instances.clear()
        store.server.running = False
    server = ExchangeServer.open(tmp_path / "srv")
    try:
        assert snapshot(ServerMailboxStore.for_server(server)) == before
    finally:
        server.shutdown()


def test_bulk_append_continues_uids_and_counters(store):
    from emulators.exchange.mailbox_store import BulkItem

    first = store.append_item("jsmith", ("Inbox",), NewItem(message(1)))
    database: DatabaseMailboxStore = store.store_for("jsmith")
    uids = database.bulk_append([BulkItem("jsmith", ("Inbox",), message(n), frozenset(), 1.0e9, None) for n in range(2, 5)])
    assert uids == [first + 1, first + 2, first + 3]
    after = store.append_item("jsmith", ("Inbox",), NewItem(message(9)))
    assert after == first + 4
    assert [i.modseq for i in store.list_items("jsmith", ("Inbox",))] == [1, 2, 3, 4, 5]
    assert store.read_item("jsmith", ("Inbox",), uids[1]) == message(3)


def test_unknown_mailbox_error_names_dismounted_databases(tmp_path):
    with server_store(tmp_path / "srv") as store:
        store.server.dismount(SG_B, DB_B)
        view = ServerMailboxStore.for_server(store.server)
        assert list(view.stores) == [(SG_A, DB_A)]
        with pytest.raises(MailboxNotFoundError, match=r"'ghost'.*not mounted.*Mailbox Store 2"):
            view.locate("ghost")


# -- fuzzing ---------------------------------------------------------------------------------------

_NAME = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30)


def test_any_valid_folder_name_round_trips(tmp_path):
    """Property: any name without control characters is stored, listed and found again as written."""
    with server_store(tmp_path / "srv", storage_groups=1) as store:
        store.create_mailbox("fuzz")

        @settings(max_examples=40, deadline=None)
        @given(path=st.lists(_NAME, min_size=1, max_size=3).map(tuple))
        def check(path):
            info = store.create_folder("fuzz", ("f",) + path)
            assert [n.casefold() for n in info.path] == [n.casefold() for n in ("f",) + path]
            uid = store.append_item("fuzz", ("f",) + path, NewItem(message(1)))
            assert store.read_item("fuzz", info.path, uid) == message(1)
            assert info.path in {f.path for f in store.list_folders("fuzz")}

        check()


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=600), message_id=st.from_regex(r"<[a-z0-9.]{1,20}@[a-z]{1,10}\.test>", fullmatch=True))
def test_header_parser_never_fails_and_finds_message_id(raw, message_id):
    from emulators.exchange.mime import header_fields, message_class_of, message_id_of

    fields = header_fields(raw)
    assert message_class_of(fields).startswith("IPM.")
    message_id_of(fields)
    content = b"Subject: x\r\nMessage-ID: " + message_id.encode() + b"\r\n\r\n" + raw
    assert message_id_of(header_fields(content)) == message_id


def test_database_restore_brings_back_exactly_the_mailboxes(tmp_path):
    """ese-backup-api.md §4 vs §1-2: a streaming full + incremental backup of a storage group, restored
    point-in-time, gives back the mailboxes as they were at the last backup (items, flags, uids,
    counters); a roll-forward restore gives the latest state."""
    from emulators.exchange.harness import run_backup, run_restore
    from emulators.exchange.workload import Workload, populate
    from reference.protocols.exchange import RestoreComplete

    with server_store(tmp_path / "srv", storage_groups=1, databases=2) as store:
        server, api = store.server, store.server.backup_api()
        populate(store, 400 << 10, seed=3, mailboxes=4)
        full = run_backup(api, SG_A, "full", str(tmp_path / "full"))
        Workload(store, seed=4).run(30)
        incremental = run_backup(api, SG_A, "incremental", str(tmp_path / "inc"))
        at_backup = snapshot(store)
        Workload(store, seed=5).run(30)
        latest = snapshot(store)
        assert latest != at_backup
        databases = [config.name for config in server.storage_group(SG_A).databases]
        for name in databases:
            server.dismount(SG_A, name)
            server.set_allow_restore_overwrite(SG_A, name, True)
        # roll-forward first: after a point-in-time restore the later logs are another timeline
        # and a roll-forward through them is refused (-551, tests/exchange/test_timelines.py)
        run_restore(api, [full, incremental], roll_forward=True, restore_path=str(tmp_path / "r2"))
        assert snapshot(ServerMailboxStore.for_server(server)) == latest
        for name in databases:
            server.dismount(SG_A, name)
        run_restore(api, [full, incremental], roll_forward=False, restore_path=str(tmp_path / "r1"),
                    flags=RestoreComplete.NONE)
        for name in databases:
            server.mount(SG_A, name)
        assert snapshot(ServerMailboxStore.for_server(server)) == at_backup


def test_mailbox_guids_are_unique_across_databases(store):
    store.create_mailbox("other", storage_group=SG_B)
    guids = {store.mailbox_info(name).guid for name in ("jsmith", "other")}
    assert len(guids) == 2
