"""The workload generator: valid MIME, the size model, determinism from the seed, population and activity."""

from __future__ import annotations

import base64
import email
import email.policy
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from emulators.clock import VirtualClock
from emulators.exchange.mailbox_store import snapshot
from emulators.exchange.mime import ContentPools, header_fields, message_class_of
from emulators.exchange.workload import (
    MALFORMED_VARIANTS,
    MessageGenerator,
    Workload,
    WorkloadProfile,
    make_users,
    populate,
)
from mailbox_helpers import one_database_store, server_store, two_group_store  # noqa: F401

USERS = [("jsmith", "John Smith"), ("alee", "Amy Lee")]


def batch(seed: int, n: int = 200, profile: WorkloadProfile | None = None):
    generator = MessageGenerator(seed, profile)
    dates = 1_100_000_000.0 + np.arange(n) * 60.0
    return generator.batch(n, dates, [USERS[i % 2] for i in range(n)], [USERS[(i + 1) % 2] for i in range(n)])


def test_same_seed_gives_identical_bytes():
    assert [m.content for m in batch(7)] == [m.content for m in batch(7)]


def test_different_seeds_give_different_mail():
    assert [m.content for m in batch(7, 20)] != [m.content for m in batch(8, 20)]


def test_messages_are_valid_mime_with_decodable_attachments():
    messages = batch(3, 300)
    with_attachments = 0
    for generated in messages:
        assert b"\n" not in generated.content.replace(b"\r\n", b""), "CRLF line ends only"
        assert max(len(line) for line in generated.content.split(b"\r\n")) <= 998
        parsed = email.message_from_bytes(generated.content, policy=email.policy.default)
        assert parsed["Message-ID"] == generated.message_id
        assert not parsed.defects
        if parsed.is_multipart():
            assert parsed.get_content_type() == "multipart/mixed"
            parts = [p for p in parsed.iter_parts() if p.get_content_disposition() == "attachment"]
            assert len(parts) == generated.attachments >= 1
            for part in parts:
                raw = part.get_payload(decode=False).replace("\r\n", "").replace("\n", "")
                assert base64.b64decode(raw, validate=True)
                assert not part.defects
            with_attachments += 1
    assert 0.1 < with_attachments / len(messages) < 0.4


def test_message_ids_are_unique():
    ids = [m.message_id for m in batch(5, 2000)]
    assert len(set(ids)) == len(ids) and None not in ids


def test_body_sizes_follow_the_lognormal_model():
    profile = WorkloadProfile()
    sizes = [len(m.content) for m in batch(11, 3000) if m.attachments == 0]
    median = float(np.median(sizes))
    assert profile.body_median * 0.8 < median < profile.body_median * 1.6, median
    assert max(sizes) > 8 * median, "a log-normal has a long right tail"


def test_attachment_sizes_are_heavy_tailed():
    profile = WorkloadProfile(attachment_fraction=1.0, attachment_extra_mean=0.0)
    sizes = np.array([len(m.content) for m in batch(13, 1500, profile)])
    assert sizes.min() >= profile.attachment_min * 4 / 3
    assert np.percentile(sizes, 99) > 10 * np.median(sizes)


def test_item_types_land_in_their_folders_with_their_class():
    for generated in batch(17, 600):
        assert message_class_of(header_fields(generated.content)) == generated.message_class
        if generated.message_class == "IPM.Appointment":
            assert generated.folder == ("Calendar",) and b"BEGIN:VEVENT" in generated.content
        if generated.message_class == "IPM.Contact":
            assert generated.folder == ("Contacts",) and b"BEGIN:VCARD" in generated.content
    assert {m.message_class for m in batch(17, 600)} >= {"IPM.Note", "IPM.Appointment", "IPM.Contact", "IPM.Task"}


def test_edge_cases_only_when_asked():
    plain = batch(19, 500)
    assert all(m.variant == "normal" and m.message_id for m in plain)
    edgy = batch(19, 3000, WorkloadProfile().with_edge_cases())
    assert sum(m.message_id is None for m in edgy) > 30
    assert {m.variant for m in edgy} >= set(MALFORMED_VARIANTS)
    bare_lf = next(m for m in edgy if m.variant == "bare-lf")
    assert b"\r\n" not in bare_lf.content
    duplicate = next(m for m in edgy if m.variant == "duplicate-message-id")
    assert sum(m.message_id == duplicate.message_id for m in edgy) >= 2


def test_pools_slices_stay_on_line_boundaries():
    pools = ContentPools(np.random.default_rng(1), text_bytes=1 << 16, binary_bytes=1 << 16)
    rng = np.random.default_rng(2)
    starts, ends = pools.text_spans(rng, np.array([1, 100, 5000, 10**9]))
    for start, end in zip(starts, ends):
        piece = pools.text_slice(int(start), int(end))
        assert piece.endswith(b"\r\n") and (start == 0 or pools.text[start - 2 : start] == b"\r\n")
    starts, ends, extra = pools.base64_spans(rng, np.array([1, 57, 58, 1000, 10**9]))
    for s, e, x, size in zip(starts, ends, extra, [1, 57, 58, 1000, pools.max_attachment]):
        decoded = base64.b64decode(pools.base64_slice(int(s), int(e), int(x)).replace(b"\r\n", b""), validate=True)
        assert size <= len(decoded) < size + 3


def test_make_users_gives_unique_aliases():
    users = make_users(500, seed=3)
    assert len({alias for alias, _ in users}) == 500
    assert users == make_users(500, seed=3)


# -- population and activity ------------------------------------------------------------------


def test_populate_reaches_the_target_and_matches_the_store(two_group_store):
    store = two_group_store
    report = populate(store, 3 << 20, seed=1, mailboxes=6)
    assert report.bytes >= 3 << 20
    assert report.mailboxes == len(store.list_mailboxes()) == 6
    summaries = [store.mailbox_summary(name) for name in store.list_mailboxes()]
    assert sum(s["items"] for s in summaries) == report.items
    assert sum(s["bytes"] for s in summaries) == report.bytes
    assert {len(s.list_mailboxes()) for s in store.stores.values()} == {3}
    dates = [i.internal_date for name in store.list_mailboxes() for i in store.list_items(name, ("Inbox",))]
    assert max(dates) <= store.clock.now()
    assert min(dates) >= store.clock.now() - 366 * 86400


def test_population_is_deterministic(tmp_path):
    views = []
    for run in range(2):
        with server_store(tmp_path / f"run{run}") as store:
            populate(store, 1 << 20, seed=4, mailboxes=3)
            views.append(snapshot(store))
    assert views[0] == views[1]


def test_activity_runs_on_the_virtual_clock(two_group_store):
    store = two_group_store
    populate(store, 1 << 20, seed=2, mailboxes=4)
    before = store.clock.now()
    report = Workload(store, seed=5).run(200)
    assert report.operations["deliver"] == 200
    assert report.operations["read"] > 50 and report.operations["move"] + report.operations["delete"] > 5
    assert store.clock.now() - before == pytest.approx(report.virtual_seconds)
    assert 0.1 * 3600 < report.virtual_seconds < 0.6 * 3600, "600 deliveries/hour → 200 in ~20 minutes"
    deleted = store.folder_info(store.list_mailboxes()[0], ("Deleted Items",))
    assert deleted.change_counter > 0 or report.operations["delete"] < 4


class _NoMoveStore:
    """A MailboxStore without move_item (like an IMAP server without MOVE): the workload falls back."""

    def __init__(self, inner):
        self._inner = inner
        for name in ("list_mailboxes", "list_folders", "list_items", "read_item", "create_folder",
                     "delete_folder", "append_item", "set_flags", "delete_item"):
            setattr(self, name, getattr(inner, name))


def test_activity_works_without_move_item(two_group_store):
    store = two_group_store
    populate(store, 256 << 10, seed=2, mailboxes=2)
    report = Workload(_NoMoveStore(store), store.clock, seed=6).run(80)
    assert report.operations["deliver"] == 80
    assert report.operations["move"] + report.operations["delete"] > 0
    assert report.operations["create_mailbox"] == 0


@settings(max_examples=8)
@given(seed=st.integers(0, 2**32), deliveries=st.integers(0, 40), edge=st.booleans())
def test_workload_view_is_deterministic_for_a_seed(seed, deliveries, edge):
    """Property: random workload, then the full mailbox view (list/read everything) is a function of the seed."""
    profile = WorkloadProfile(history_days=30).with_edge_cases() if edge else WorkloadProfile(history_days=30)
    views = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as root, server_store(Path(root) / "server", clock=VirtualClock()) as store:
            populate(store, 96 << 10, seed=seed, mailboxes=3, profile=profile)
            Workload(store, seed=seed, profile=profile).run(deliveries)
            views.append(snapshot(store))
    assert views[0] == views[1]
    assert sum(len(folder["items"]) for mailbox in views[0].values() for folder in mailbox.values()) > 0


def test_message_counts_by_type_are_reported(one_database_store):
    store = one_database_store
    report = populate(store, 2 << 20, seed=9, mailboxes=2)
    stored = Counter(i.message_class for name in store.list_mailboxes() for f in store.list_folders(name)
                     for i in store.list_items(name, f.path))
    assert stored == report.by_class


def test_population_records_subject_and_attachment_count_like_append(one_database_store):
    """Bulk population stores the same properties append_item derives from the octets."""
    from emulators.exchange.mime import count_attachments, header_fields

    store = one_database_store
    populate(store, 1 << 20, seed=12, mailboxes=2)
    database = next(iter(store.stores.values()))
    checked = 0
    for name in store.list_mailboxes():
        for info in store.list_items(name, ("Inbox",)):
            props = database.item_properties(name, ("Inbox",), info.uid)
            content = store.read_item(name, ("Inbox",), info.uid)
            assert props["subject"] == header_fields(content)["subject"]
            assert props["attachments"] == count_attachments(content)
            checked += props["attachments"]
    assert checked > 0
