"""Brick-level restore: plan (read-only), then apply, against any MailboxStore.

Target: the original mailbox and folders, another mailbox (``target_mailbox``) and/or under a
folder (``target_folder`` prefix: ``("Recovered 2024-05-01",)`` + original path). Missing folders
are created, parents first. Flags and internal dates are restored; ``mark_unread`` drops ``\\Seen``.

An item *exists* in the target folder when an item there has the same Message-ID (normalised; or
both have none and the same size) and the same body sha256; each target item answers for one
backup item only. Same Message-ID with another body is a *conflict*. Conflict policy:

==========  =====================  ======================================  ==============
policy      exists                 conflict                                absent
==========  =====================  ======================================  ==============
skip        skip                   skip                                    append
overwrite   fix flags / re-append  replace (append, then delete the old)   append
            when the date differs
copy        skip                   append beside it                        append
==========  =====================  ======================================  ==============

So a restore run twice creates no duplicates under every policy. Dry run = :func:`plan_restore`
alone: it lists target folders and reads candidate bodies but writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from reference.errors import MailtapeError, NotFoundError, UsageError
from reference.protocols.mailbox import ItemInfo, MailboxStore, NewItem

from .catalog import BrickCatalog, CatalogItem
from .model import display_path, norm_message_id, sha256_hex, visible_flags
from .selection import Selection, _inbox_folded

POLICIES = ("skip", "overwrite", "copy")
CREATE_FOLDER, APPEND, REPLACE, SET_FLAGS, SKIP = "create-folder", "append", "replace", "set-flags", "skip"


@dataclass(frozen=True)
class RestoreOptions:
    selection: Selection = Selection()
    target_mailbox: str | None = None
    """None: each item goes back to the mailbox it came from."""
    target_folder: tuple[str, ...] = ()
    """Prefix put before every original folder path (an alternate folder)."""
    conflict: str = "skip"
    mark_unread: bool = False

    def __post_init__(self) -> None:
        if self.conflict not in POLICIES:
            raise UsageError(f"conflict policy must be one of {', '.join(POLICIES)}, not {self.conflict!r}")
        if isinstance(self.target_folder, str):
            raise UsageError("target_folder is a tuple of folder names, not a string")


@dataclass(frozen=True)
class Action:
    op: str
    mailbox: str
    """Target mailbox."""
    folder: tuple[str, ...]
    """Target folder."""
    item: CatalogItem | None = None
    existing: tuple[int, ...] = ()
    """Target uids the action touches (replaced, re-flagged or matched)."""
    reason: str = ""
    flags: frozenset[str] = frozenset()


@dataclass
class RestorePlan:
    actions: list[Action] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for action in self.actions:
            key = action.op if action.op != SKIP else f"skip ({action.reason.split(':')[0]})"
            counts[key] = counts.get(key, 0) + 1
        return counts


@dataclass
class RestoreResult:
    plan: RestorePlan
    dry_run: bool
    done: list[tuple[Action, int | None]] = field(default_factory=list)
    """Applied actions with the new uid (append/replace)."""
    failed: list[tuple[Action, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


class _TargetFolder:
    """The items already in a target folder, matched lazily (bodies are read only for candidates)."""

    def __init__(self, store: MailboxStore, mailbox: str, folder: tuple[str, ...]):
        self.store, self.mailbox, self.folder = store, mailbox, folder
        self.by_key: dict[tuple, list[ItemInfo]] = {}
        for info in store.list_items(mailbox, folder):
            self.by_key.setdefault(_key(norm_message_id(info.message_id), info.size), []).append(info)
            mid = norm_message_id(info.message_id)
            if mid:
                self.by_key.setdefault(("mid", mid), []).append(info)
        self.used: set[int] = set()
        self._sha: dict[int, str] = {}

    def sha(self, uid: int) -> str:
        if uid not in self._sha:
            self._sha[uid] = sha256_hex(self.store.read_item(self.mailbox, self.folder, uid))
        return self._sha[uid]

    def match(self, item: CatalogItem) -> tuple[str, list[ItemInfo]]:
        mid = norm_message_id(item.message_id)
        for info in self.by_key.get(_key(mid, item.size), []):
            if info.uid not in self.used and self.sha(info.uid) == item.sha256:
                self.used.add(info.uid)
                return "exists", [info]
        if mid:
            others = [i for i in self.by_key.get(("mid", mid), []) if i.uid not in self.used]
            if others:
                return "conflict", others
        return "absent", []


def _key(mid: str | None, size: int) -> tuple:
    return ("mid+size", mid, size) if mid else ("size", size)


def plan_restore(catalog: BrickCatalog, store: MailboxStore, options: RestoreOptions = RestoreOptions()) -> RestorePlan:
    """The actions a restore would take; reads the target, changes nothing (the dry run)."""
    sources = [m for m in catalog.mailboxes() if options.selection.takes_mailbox(m)]
    if not sources:
        raise NotFoundError(f"no mailbox in the backup matches {list(options.selection.mailboxes)} "
                            f"(backup has: {', '.join(catalog.mailboxes()) or 'none'})")
    if options.target_mailbox is not None and len(sources) > 1:
        raise UsageError(f"an alternate target mailbox takes one source mailbox; selection matches {sources}")
    reachable = set(store.list_mailboxes())
    plan = RestorePlan()
    for source in sources:
        target = options.target_mailbox or source
        if target not in reachable:
            raise NotFoundError(f"target mailbox {target!r} does not exist in the target store "
                                "(create it first)")
        _plan_mailbox(catalog, store, options, source, target, plan)
    return plan


def _plan_mailbox(catalog, store, options, source, target, plan) -> None:
    existing = {f.path for f in store.list_folders(target)}
    spelled = {_inbox_folded(p): p for p in existing}
    created: set[tuple[str, ...]] = set()
    for folder in catalog.folders(source):
        if not options.selection.takes_folder(folder.path, folder.meta.get("folder_class", "IPF.Note")):
            continue
        target_path = tuple(options.target_folder) + folder.path
        target_path = spelled.get(_inbox_folded(target_path), target_path)
        items = [folder.items[uid] for uid in sorted(folder.items)
                 if options.selection.takes_date(folder.items[uid].internal_date)]
        if target_path not in existing and target_path not in created:
            plan.actions.append(Action(CREATE_FOLDER, target, target_path, reason="missing"))
            created.update(target_path[:depth] for depth in range(1, len(target_path) + 1))
            here = None
        else:
            here = _TargetFolder(store, target, target_path) if items else None
        for item in items:
            plan.actions.append(_decide(item, here, options, target, target_path))


def _decide(item: CatalogItem, here: _TargetFolder | None, options: RestoreOptions, target: str,
            path: tuple[str, ...]) -> Action:
    flags = frozenset(visible_flags(item.flags))
    if options.mark_unread:
        flags = flags - {"\\Seen"}
    state, found = here.match(item) if here is not None else ("absent", [])
    if state == "absent":
        return Action(APPEND, target, path, item, flags=flags)
    if state == "exists":
        uid = found[0].uid
        if options.conflict != "overwrite":
            return Action(SKIP, target, path, item, (uid,), "exists: identical item already there", flags)
        if int(found[0].internal_date) != int(item.internal_date):
            return Action(REPLACE, target, path, item, (uid,), "internal date differs", flags)
        if frozenset(visible_flags(found[0].flags)) != flags:
            return Action(SET_FLAGS, target, path, item, (uid,), "flags differ", flags)
        return Action(SKIP, target, path, item, (uid,), "exists: identical, same flags and date", flags)
    other = found[0]
    if options.conflict == "skip":
        return Action(SKIP, target, path, item, (other.uid,),
                      "conflict: same Message-ID, different content", flags)
    if options.conflict == "overwrite":
        here.used.add(other.uid)
        return Action(REPLACE, target, path, item, (other.uid,), "same Message-ID, different content", flags)
    return Action(APPEND, target, path, item, (other.uid,), "copy beside an item with the same Message-ID", flags)


def run_restore(catalog: BrickCatalog, store: MailboxStore, options: RestoreOptions = RestoreOptions(), *,
                dry_run: bool = False, progress: Callable[[Action], None] | None = None) -> RestoreResult:
    """Plan, then (unless ``dry_run``) apply; per-item failures are collected, not fatal."""
    plan = plan_restore(catalog, store, options)
    result = RestoreResult(plan, dry_run)
    if dry_run:
        return result
    broken: dict[tuple[str, tuple[str, ...]], str] = {}
    for action in plan.actions:
        if progress is not None:
            progress(action)
        if action.op == SKIP:
            continue
        where = (action.mailbox, action.folder)
        if where in broken:
            result.failed.append((action, broken[where]))
            continue
        try:
            result.done.append((action, _apply(catalog, store, action)))
        except MailtapeError as exc:
            result.failed.append((action, str(exc)))
            if action.op == CREATE_FOLDER:
                broken[where] = f"folder {display_path(action.folder)!r} could not be created: {exc}"
    return result


def _apply(catalog: BrickCatalog, store: MailboxStore, action: Action) -> int | None:
    if action.op == CREATE_FOLDER:
        store.create_folder(action.mailbox, action.folder)
        return None
    if action.op == SET_FLAGS:
        store.set_flags(action.mailbox, action.folder, action.existing[0], action.flags)
        return None
    new = NewItem(catalog.content(action.item), action.flags, action.item.internal_date)
    uid = store.append_item(action.mailbox, action.folder, new)
    if action.op == REPLACE:                       # the new copy is in place before the old one goes
        for old in action.existing:
            store.delete_item(action.mailbox, action.folder, old)
    return uid


def describe(result: RestoreResult) -> str:
    counts = ", ".join(f"{n} {op}" for op, n in sorted(result.plan.counts().items())) or "nothing to do"
    head = "would do" if result.dry_run else "did"
    tail = f"; {len(result.failed)} failed" if result.failed else ""
    return f"restore {head}: {counts}{tail}"
