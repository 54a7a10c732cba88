"""Property: for ANY sequence of mailbox activity (appends with duplicate bodies, flag changes,
deletes, moves, renumbered folders) interleaved with backups, the chain full + incrementals
reproduces the mailbox exactly, stores each body once, and restoring it elsewhere (twice) gives
exactly that view with no duplicates. Runs on the in-memory store (fast; it passes the shared
MailboxStore suite), so hypothesis can search many histories."""

from __future__ import annotations

from brick_helpers import BASE_DATE, catalog_view, msg, snapshot
from hypothesis import given
from hypothesis import strategies as st
from memory_store import MemoryMailboxStore

from reference.agent.brick import BrickBackup, BrickCatalog, RestoreOptions, Selection, run_restore
from reference.agent.brick.model import ITEM
from reference.protocols.mailbox import NewItem

FOLDERS = [("INBOX",), ("A",), ("A", "..")]
FLAGS = st.frozensets(st.sampled_from(["\\Seen", "\\Flagged", "\\Answered", "$Work"]), max_size=3)
folder_i = st.integers(0, len(FOLDERS) - 1)
pick = st.integers(0, 30)
OPS = st.one_of(
    st.tuples(st.just("append"), folder_i, st.integers(0, 6), FLAGS),
    st.tuples(st.just("flags"), folder_i, pick, FLAGS),
    st.tuples(st.just("delete"), folder_i, pick),
    st.tuples(st.just("move"), folder_i, pick, folder_i),
    st.tuples(st.just("renumber"), folder_i),
    st.tuples(st.just("backup")),
)


def _body(n: int) -> bytes:
    return msg(n, mid=None if n % 3 == 0 else "default")      # some without Message-ID


def _apply(store, op) -> None:
    kind, me = op[0], "alice"
    if kind == "append":
        store.append_item(me, FOLDERS[op[1]], NewItem(_body(op[2]), op[3], BASE_DATE + op[2] * 60))
        return
    if kind == "renumber":
        store.renumber(me, FOLDERS[op[1]])
        return
    items = list(store.list_items(me, FOLDERS[op[1]]))
    if not items:
        return
    uid = items[op[2] % len(items)].uid
    if kind == "flags":
        store.set_flags(me, FOLDERS[op[1]], uid, op[3])
    elif kind == "delete":
        store.delete_item(me, FOLDERS[op[1]], uid)
    elif kind == "move":
        item = items[op[2] % len(items)]
        data = store.read_item(me, FOLDERS[op[1]], uid)
        store.append_item(me, FOLDERS[op[3]], NewItem(data, item.flags, item.internal_date))
        store.delete_item(me, FOLDERS[op[1]], uid)


@given(st.lists(OPS, max_size=30))
def test_any_history_is_reproduced_by_the_chain(ops):
    store = MemoryMailboxStore("alice", "bob")
    for folder in FOLDERS[1:]:
        store.create_folder("alice", folder)
    selection = Selection(mailboxes=("alice",))
    job = BrickBackup(store, selection)
    chain = [list(job.objects())]
    for op in list(ops) + [("backup",)]:
        if op[0] != "backup":
            _apply(store, op)
            continue
        job = BrickBackup(store, selection, job.state)
        chain.append(list(job.objects()))
        catalog = BrickCatalog.from_sets(chain)
        assert catalog_view(catalog, "alice") == snapshot(store, "alice")
        stored = [o.meta["sha256"] for objects in chain for o in objects if o.kind == ITEM and o.content is not None]
        assert len(stored) == len(set(stored))                       # every body at most once in the chain
    options = RestoreOptions(selection=selection, target_mailbox="bob")
    assert run_restore(catalog, store, options).ok
    wanted = catalog_view(catalog, "alice")
    assert snapshot(store, "bob") == {**{("INBOX",): []}, **wanted}
    again = run_restore(catalog, store, options)
    assert [a for a, _ in again.done if a.op != "create-folder"] == [] and snapshot(store, "bob") == \
        {**{("INBOX",): []}, **wanted}
