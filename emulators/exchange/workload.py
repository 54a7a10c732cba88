"""Seeded mail traffic for the emulated server: bulk population and day-to-day activity.

Everything random comes from :class:`emulators.clock.SeedSequence` streams and all time from the
clock, so one seed always produces the same bytes (docs/exchange-mailboxes.md describes the model):

* :class:`MessageGenerator` - batches of RFC 5322/MIME messages: log-normal text bodies, a
  fraction with 1+Poisson base64 attachments of Pareto (heavy-tailed) size, non-mail items
  (appointments, contacts, tasks...) and, when the profile asks for them, messages without a
  Message-ID and malformed ones.
* :func:`populate` - fills a server to a target size with ``bulk_load`` (a 1 GiB store in seconds).
* :class:`Workload` - activity on the virtual clock: deliveries as a Poisson process, reads (flag
  changes), moves, deletes to Deleted Items, purges, new folders and new mailboxes.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from emulators.clock import Clock, SeedSequence, VirtualClock
from emulators.exchange.mailbox_store import WELL_KNOWN_FOLDERS, BulkItem, ServerMailboxStore
from emulators.exchange.mime import _VOCABULARY, Attachment, ContentPools, attachment_kind, render_message
from reference.protocols.mailbox import FolderPath, NewItem

MIB = 1 << 20

_FIRST_NAMES = ("James John Robert Michael William David Richard Joseph Thomas Charles Mary Patricia "
                "Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Nancy Lisa Betty Margaret "
                "Sandra Ashley Emily Donna Michelle Carol Amanda Melissa Deborah Stephanie Rebecca").split()
_LAST_NAMES = ("Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
               "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
               "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright").split()
_USER_FOLDERS = ("Projects", "Archive", "Customers", "Reports", "Travel", "Newsletters", "Receipts",
                 "Team", "Follow up", "Old mail")
_EDGE_FOLDERS = ("a/b", "..", "*", "%", "Ünïcödé", "日本語", "back\\slash", "[Gmail]", "INBOX.child", " lead")

ITEM_TYPES = (
    # message class, folder it lands in, body content type
    ("IPM.Note", ("Inbox",), "text/plain"),
    ("IPM.Appointment", ("Calendar",), "text/calendar"),
    ("IPM.Contact", ("Contacts",), "text/directory"),
    ("IPM.Task", ("Tasks",), "text/plain"),
    ("IPM.StickyNote", ("Notes",), "text/plain"),
    ("IPM.Activity", ("Journal",), "text/plain"),
)

MALFORMED_VARIANTS = (
    "no-header-separator",
    "bare-lf",
    "raw-8bit-subject",
    "overlong-line",
    "unterminated-multipart",
    "unbracketed-message-id",
    "duplicate-message-id",
)


@dataclass(frozen=True)
class WorkloadProfile:
    """Distributions and rates of the mail model (defaults documented in docs/exchange-mailboxes.md)."""

    body_median: int = 4096
    """Median text body bytes (log-normal)."""
    body_sigma: float = 1.1
    body_max: int = 512 * 1024
    attachment_fraction: float = 0.22
    attachment_extra_mean: float = 0.4
    """Messages with attachments carry 1 + Poisson(this) of them."""
    attachment_min: int = 16 * 1024
    """Pareto scale x_m: smallest attachment, decoded bytes."""
    attachment_alpha: float = 1.25
    """Pareto shape: below 2 the variance is infinite, the heavy tail of real attachments."""
    attachment_max: int = 8 * MIB
    recipients_mean: float = 1.5
    item_type_weights: tuple[float, ...] = (0.90, 0.04, 0.03, 0.02, 0.005, 0.005)
    """Weights of :data:`ITEM_TYPES` (mail, appointment, contact, task, note, journal)."""
    sent_fraction: float = 0.12
    """Mail a user sent (lands in Sent Items, seen)."""
    user_folder_fraction: float = 0.15
    """Mail filed into a user folder at population."""
    seen_fraction: float = 0.7
    flagged_fraction: float = 0.05
    answered_fraction: float = 0.15
    user_folders_mean: float = 3.0
    missing_message_id_fraction: float = 0.0
    malformed_fraction: float = 0.0
    edge_case_folder_names: bool = False
    history_days: float = 365.0
    deliveries_per_hour: float = 600.0
    """Server-wide arrival rate of the activity Poisson process (virtual time)."""
    reads_per_delivery: float = 0.8
    moves_per_delivery: float = 0.08
    deletes_per_delivery: float = 0.12
    purges_per_delivery: float = 0.04
    folders_per_delivery: float = 0.01
    mailboxes_per_delivery: float = 0.002
    domain: str = "example.org"

    def with_edge_cases(self) -> "WorkloadProfile":
        """The same model plus messages without Message-ID, malformed messages and odd folder names."""
        from dataclasses import replace

        return replace(self, missing_message_id_fraction=0.03, malformed_fraction=0.03, edge_case_folder_names=True)


@dataclass(frozen=True)
class GeneratedMessage:
    content: bytes
    message_id: str | None
    message_class: str
    folder: FolderPath
    flags: frozenset[str]
    attachments: int
    variant: str = "normal"
    subject: str = ""


def make_users(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """``count`` (alias, display name) pairs, unique aliases, deterministic for the seed."""
    rng = SeedSequence(seed).rng("workload.users")
    users, seen = [], Counter()
    firsts = rng.integers(0, len(_FIRST_NAMES), count)
    lasts = rng.integers(0, len(_LAST_NAMES), count)
    for first_i, last_i in zip(firsts.tolist(), lasts.tolist()):
        first, last = _FIRST_NAMES[first_i], _LAST_NAMES[last_i]
        alias = (first[0] + last).lower()
        seen[alias] += 1
        if seen[alias] > 1:
            alias = f"{alias}{seen[alias]}"
        users.append((alias, f"{first} {last}"))
    return users


@functools.lru_cache(maxsize=2)
def _pools(seed: int) -> ContentPools:
    return ContentPools(SeedSequence(seed).rng("workload.pools"))


class MessageGenerator:
    """Batches of messages; all randomness from the seed, sequence numbers make Message-IDs unique."""

    def __init__(self, seed: int, profile: WorkloadProfile | None = None, stream: str = "messages"):
        self.profile = profile or WorkloadProfile()
        self.seeds = SeedSequence(seed)
        self.rng = self.seeds.rng(f"workload.{stream}")
        self.pools = _pools(seed)
        self.sequence = 0
        self._recent_ids: list[str] = []

    def _sizes(self, n: int) -> np.ndarray:
        p = self.profile
        sizes = self.rng.lognormal(np.log(p.body_median), p.body_sigma, n)
        return np.clip(sizes, 64, p.body_max).astype(np.int64)

    def batch(self, n: int, dates: Sequence[float], recipients: Sequence[tuple[str, str]],
              senders: Sequence[tuple[str, str]], kinds: np.ndarray | None = None) -> list[GeneratedMessage]:
        """``n`` messages dated ``dates``, each to ``recipients[i]`` from ``senders[i]`` (alias, name).

        ``kinds`` picks the :data:`ITEM_TYPES` entry per message (drawn from the profile when None).
        Random draws are made for the whole batch at once (numpy), then each message is assembled
        from pool slices.
        """
        p, rng, pools = self.profile, self.rng, self.pools
        if kinds is None:
            weights = np.asarray(p.item_type_weights, dtype=float)
            kinds = rng.choice(len(ITEM_TYPES), size=n, p=weights / weights.sum())
        body_start, body_end = pools.text_spans(rng, self._sizes(n))
        has_attachments = rng.random(n) < p.attachment_fraction
        counts = np.where(has_attachments, 1 + rng.poisson(p.attachment_extra_mean, n), 0)
        total_attachments = int(counts.sum())
        att_sizes = np.minimum(p.attachment_min * (1.0 + rng.pareto(p.attachment_alpha, total_attachments)),
                               min(p.attachment_max, pools.max_attachment)).astype(np.int64)
        att_start, att_end, att_extra = pools.base64_spans(rng, att_sizes)
        att_kind = rng.integers(0, 1 << 16, total_attachments)
        subject_words = rng.integers(0, 1 << 16, (n, 8))
        subject_lengths = rng.integers(2, 9, n)
        tokens = rng.integers(0, 1 << 62, n)
        sent = rng.random(n) < p.sent_fraction
        seen = rng.random(n) < p.seen_fraction
        flagged = rng.random(n) < p.flagged_fraction
        answered = rng.random(n) < p.answered_fraction
        missing_id = rng.random(n) < p.missing_message_id_fraction
        malformed = rng.random(n) < p.malformed_fraction
        variants = rng.integers(0, len(MALFORMED_VARIANTS), n)
        vocab = _VOCABULARY
        messages = []
        cursor = 0
        for i in range(n):
            self.sequence += 1
            message_class, folder, body_type = ITEM_TYPES[int(kinds[i])]
            to_alias, to_name = recipients[i]
            from_alias, from_name = senders[i]
            flags = set()
            if message_class == "IPM.Note" and sent[i]:
                folder = ("Sent Items",)
                to_alias, to_name, from_alias, from_name = from_alias, from_name, to_alias, to_name
                flags.add("\\Seen")
            elif message_class == "IPM.Note":
                if seen[i]:
                    flags.add("\\Seen")
                if flagged[i]:
                    flags.add("\\Flagged")
                if answered[i]:
                    flags.add("\\Answered")
            words = subject_words[i, : subject_lengths[i]] % len(vocab)
            subject = " ".join(vocab[w] for w in words.tolist()).capitalize()
            message_id = f"<{int(tokens[i]):016X}.{self.sequence}@{p.domain}>"
            if missing_id[i]:
                message_id = None
            k = int(counts[i])
            attachments = []
            for j in range(cursor, cursor + k):
                filename, ctype = attachment_kind(int(att_kind[j]))
                attachments.append(Attachment(filename, ctype, pools.base64_slice(
                    int(att_start[j]), int(att_end[j]), int(att_extra[j]))))
            cursor += k
            body = pools.text_slice(int(body_start[i]), int(body_end[i]))
            if body_type == "text/calendar":
                body = _calendar_body(subject, float(dates[i]), message_id or f"uid-{self.sequence}") + body
            elif body_type == "text/directory":
                body = _vcard_body(to_name) + body
            content = render_message(
                sender=f'"{from_name}" <{from_alias}@{p.domain}>',
                recipients=[f'"{to_name}" <{to_alias}@{p.domain}>'],
                subject=subject,
                date=float(dates[i]),
                message_id=message_id,
                body=body,
                attachments=attachments,
                boundary=f"----=_NextPart_{int(tokens[i]):016X}",
                message_class=message_class,
                body_type=body_type,
            )
            variant = "normal"
            if malformed[i]:
                variant = MALFORMED_VARIANTS[int(variants[i])]
                content, message_id = self._malform(variant, content, message_id)
            if message_id is not None:
                self._recent_ids = (self._recent_ids + [message_id])[-64:]
            messages.append(GeneratedMessage(content, message_id, message_class, folder, frozenset(flags), k, variant,
                                             subject))
        return messages

    def _malform(self, variant: str, content: bytes, message_id: str | None) -> tuple[bytes, str | None]:
        """Break a message the way real mail is broken (each variant named in MALFORMED_VARIANTS)."""
        head, _, body = content.partition(b"\r\n\r\n")
        if variant == "no-header-separator":
            return head + b"\r\n" + body, message_id
        if variant == "bare-lf":
            return content.replace(b"\r\n", b"\n"), message_id
        if variant == "raw-8bit-subject":
            return head.replace(b"Subject: ", "Subject: Grüße – 日本 ".encode("utf-8"), 1) + b"\r\n\r\n" + body, message_id
        if variant == "overlong-line":
            return head + b"\r\n\r\n" + b"x" * 1200 + b"\r\n" + body, message_id
        if variant == "unterminated-multipart":
            cut = content.rfind(b"\r\n--")
            return (content[:cut] + b"\r\n") if b"multipart/" in head and cut > 0 else content[: max(len(head) + 4, len(content) // 2)], message_id
        if variant == "unbracketed-message-id" and message_id is not None:
            bare = message_id.strip("<>") + " (no brackets)"
            return content.replace(f"Message-ID: {message_id}".encode(), f"Message-ID: {bare}".encode(), 1), bare
        if variant == "duplicate-message-id" and message_id is not None and self._recent_ids:
            twin = self._recent_ids[0]
            return content.replace(f"Message-ID: {message_id}".encode(), f"Message-ID: {twin}".encode(), 1), twin
        return content, message_id


def _calendar_body(subject: str, start: float, uid: str) -> bytes:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(start))
    end = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(start + 3600))
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailtape//emulated Exchange//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:{stamp}\r\nDTSTART:{stamp}\r\nDTEND:{end}\r\nSUMMARY:{subject}\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n").encode("utf-8")


def _vcard_body(name: str) -> bytes:
    first, _, last = name.partition(" ")
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:{name}\r\nN:{last};{first};;;\r\nEND:VCARD\r\n".encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Population


@dataclass
class PopulationReport:
    mailboxes: int = 0
    folders_created: int = 0
    items: int = 0
    bytes: int = 0
    attachments: int = 0
    seconds: float = 0.0
    """Wall-clock seconds (for benchmarks; never used in results)."""
    by_class: Counter = field(default_factory=Counter)


def ensure_mailboxes(store: ServerMailboxStore, count: int, seed: int = 0,
                     profile: WorkloadProfile | None = None) -> tuple[list[str], int]:
    """Create ``count`` users' mailboxes (spread over the databases) with a few user folders each.

    Returns (all mailbox names on the server, user folders created). Existing mailboxes are kept.
    """
    profile = profile or WorkloadProfile()
    rng = SeedSequence(seed).rng("workload.folders")
    existing = {name.casefold() for name in store.list_mailboxes()}
    created_folders = 0
    for alias, display in make_users(count, seed):
        if alias.casefold() in existing:
            continue
        store.create_mailbox(alias, display_name=display)
        names = _EDGE_FOLDERS + _USER_FOLDERS if profile.edge_case_folder_names else _USER_FOLDERS
        for _ in range(int(rng.poisson(profile.user_folders_mean))):
            parent = ("Inbox",) if rng.random() < 0.7 else ()
            store.create_folder(alias, parent + (names[int(rng.integers(0, len(names)))],))
            created_folders += 1
    return sorted(store.list_mailboxes(), key=str.casefold), created_folders


def populate(store: ServerMailboxStore, target_bytes: int, *, seed: int = 0, mailboxes: int = 10,
             profile: WorkloadProfile | None = None, clock: Clock | None = None,
             progress: Callable[[int, int], None] | None = None, batch_bytes: int = 16 * MIB) -> PopulationReport:
    """Fill the server's mailboxes with about ``target_bytes`` of mail, using bulk loads.

    Messages are dated over the profile's history (ascending, ending at the clock's now), spread
    over mailboxes with log-normal weights (some users get much more mail), and land in the folder
    their type and flags call for. ``progress(done, total)`` is called after every batch.
    """
    started = time.perf_counter()
    profile = profile or WorkloadProfile()
    clock = clock or store.clock
    report = PopulationReport()
    names, report.folders_created = ensure_mailboxes(store, mailboxes, seed, profile)
    report.mailboxes = len(names)
    if not names or target_bytes <= 0:
        report.seconds = time.perf_counter() - started
        return report
    rng = SeedSequence(seed).rng("workload.population")
    generator = MessageGenerator(seed, profile, stream="population")
    weights = rng.lognormal(0.0, 0.8, len(names))
    weights /= weights.sum()
    places = {name: store.locate(name) for name in names}
    display = {alias: name for alias, name in make_users(mailboxes, seed)}
    special = {(folder_name,) for folder_name, _, _ in WELL_KNOWN_FOLDERS}
    user_folders = {name: [f.path for f in store.list_folders(name)
                           if f.folder_class == "IPF.Note" and f.path not in special]
                    for name in names}
    external = [(f"contact{i}", f"External Contact {i}") for i in range(50)]
    now = clock.now()
    history = profile.history_days * 86400.0
    expected_size = _expected_message_size(profile)
    while report.bytes < target_bytes:
        n = int(max(8, min(4096, batch_bytes // expected_size)))
        n = int(max(1, min(n, (target_bytes - report.bytes) // expected_size + 1)))
        fraction = report.bytes / target_bytes
        dates = now - history * (1.0 - fraction) + np.sort(rng.random(n)) * history * n * expected_size / target_bytes
        dates = np.minimum(dates, now)
        owners = rng.choice(len(names), size=n, p=weights)
        senders_idx = rng.integers(0, len(external) + len(names), n)
        refile = rng.random(n) < profile.user_folder_fraction
        refile_pick = rng.integers(0, 1 << 30, n)
        recipients = [(names[o], display.get(names[o], names[o])) for o in owners.tolist()]
        senders = [external[s] if s < len(external) else (names[s - len(external)], display.get(names[s - len(external)], names[s - len(external)]))
                   for s in senders_idx.tolist()]
        messages = generator.batch(n, dates, recipients, senders)
        per_store: dict[tuple[str, str], list[BulkItem]] = {}
        for i, message in enumerate(messages):
            if report.bytes >= target_bytes:
                break  # the batch overshot the target: the rest is drawn but not stored
            owner = names[int(owners[i])]
            folder = message.folder
            if folder == ("Inbox",) and refile[i] and user_folders[owner]:
                folder = user_folders[owner][int(refile_pick[i]) % len(user_folders[owner])]
            per_store.setdefault(places[owner], []).append(BulkItem(
                owner, folder, message.content, message.flags, float(dates[i]), message.message_id,
                message.message_class, message.subject, message.attachments))
            report.bytes += len(message.content)
            report.attachments += message.attachments
            report.by_class[message.message_class] += 1
            report.items += 1
        for place in sorted(per_store):
            store.stores[place].bulk_append(per_store[place])
        if progress is not None:
            progress(min(report.bytes, target_bytes), target_bytes)
    report.seconds = time.perf_counter() - started
    return report


def _expected_message_size(profile: WorkloadProfile) -> int:
    body = profile.body_median * np.exp(profile.body_sigma ** 2 / 2)
    a = profile.attachment_alpha
    attachment = profile.attachment_min * a / (a - 1) if a > 1 else profile.attachment_max / 4
    attachment = min(attachment, profile.attachment_max) * 4 / 3
    per_message = 900 + body + profile.attachment_fraction * (1 + profile.attachment_extra_mean) * attachment
    return int(per_message)


def populate_mib(store: ServerMailboxStore, mib: float, seed: int = 0, mailboxes: int = 20) -> PopulationReport:
    """Benchmark entry point: populate ``mib`` MiB of mail (used by benchmarks/bench_exchange.py)."""
    return populate(store, int(mib * MIB), seed=seed, mailboxes=mailboxes)


# ---------------------------------------------------------------------------------------------
# Activity


@dataclass
class ActivityReport:
    operations: Counter = field(default_factory=Counter)
    bytes_delivered: int = 0
    virtual_seconds: float = 0.0


class Workload:
    """Day-to-day activity on the virtual clock, against any MailboxStore.

    Deliveries arrive as a Poisson process at ``profile.deliveries_per_hour``; after each one, reads,
    moves, deletes (to Deleted Items), purges (hard deletes from Deleted Items), new folders and
    new mailboxes happen with the profile's per-delivery rates. Moves use the store's ``move_item``
    when it has one, otherwise append + delete. Item ids the workload touches are tracked locally,
    so a folder is listed at most once per run.
    """

    def __init__(self, store, clock: Clock | None = None, seed: int = 0, profile: WorkloadProfile | None = None):
        self.store = store
        self.clock = clock or getattr(store, "clock", None) or VirtualClock()
        self.profile = profile or WorkloadProfile()
        self.seed = seed
        self.rng = SeedSequence(seed).rng("workload.activity")
        self.generator = MessageGenerator(seed, self.profile, stream="activity")
        self._items: dict[tuple[str, FolderPath], list[tuple[int, frozenset[str]]]] = {}
        self._folders: dict[str, list[FolderPath]] = {}

    def _known(self, mailbox: str, folder: FolderPath) -> list[tuple[int, frozenset[str]]]:
        key = (mailbox, folder)
        if key not in self._items:
            self._items[key] = [(i.uid, i.flags) for i in self.store.list_items(mailbox, folder)]
        return self._items[key]

    def _mail_folders(self, mailbox: str) -> list[FolderPath]:
        if mailbox not in self._folders:
            self._folders[mailbox] = [f.path for f in self.store.list_folders(mailbox)
                                      if f.folder_class == "IPF.Note" and f.path not in (("Deleted Items",), ("Outbox",))]
        return self._folders[mailbox]

    def run(self, messages: int, progress: Callable[[int, int], None] | None = None) -> ActivityReport:
        """Deliver ``messages`` messages with the activity around them; returns what was done."""
        p, rng = self.profile, self.rng
        report = ActivityReport()
        started = self.clock.now()
        mailboxes = sorted(self.store.list_mailboxes(), key=str.casefold)
        if not mailboxes:
            create = getattr(self.store, "create_mailbox", None)
            if create is None:
                return report
            mailboxes = [alias for alias, _ in make_users(1, self.seed)]
            create(mailboxes[0])
            report.operations["create_mailbox"] += 1
        for done in range(messages):
            self.clock.sleep(float(rng.exponential(3600.0 / p.deliveries_per_hour)))
            owner = mailboxes[int(rng.integers(0, len(mailboxes)))]
            sender = mailboxes[int(rng.integers(0, len(mailboxes)))]
            message = self.generator.batch(1, [self.clock.now()], [(owner, owner)], [(sender, sender)])[0]
            folder = message.folder
            flags = frozenset() if folder == ("Inbox",) else message.flags
            known = self._known(owner, folder)
            uid = self.store.append_item(owner, folder, NewItem(message.content, flags, self.clock.now()))
            known.append((uid, flags))
            report.operations["deliver"] += 1
            report.bytes_delivered += len(message.content)
            for operation, rate in (("read", p.reads_per_delivery), ("move", p.moves_per_delivery),
                                    ("delete", p.deletes_per_delivery), ("purge", p.purges_per_delivery),
                                    ("create_folder", p.folders_per_delivery),
                                    ("create_mailbox", p.mailboxes_per_delivery)):
                for _ in range(int(rng.poisson(rate))):
                    mailbox = mailboxes[int(rng.integers(0, len(mailboxes)))]
                    if getattr(self, f"_{operation}")(mailbox, mailboxes):
                        report.operations[operation] += 1
            if progress is not None:
                progress(done + 1, messages)
        report.virtual_seconds = self.clock.now() - started
        return report

    def _pick(self, items: list) -> int | None:
        return int(self.rng.integers(0, len(items))) if items else None

    def _read(self, mailbox: str, _mailboxes) -> bool:
        items = self._known(mailbox, ("Inbox",))
        unread = [i for i, (_, flags) in enumerate(items[-200:]) if "\\Seen" not in flags]
        if not unread:
            return False
        index = len(items) - min(len(items), 200) + unread[int(self.rng.integers(0, len(unread)))]
        uid, flags = items[index]
        new_flags = flags | {"\\Seen"}
        if self.rng.random() < 0.1:
            new_flags |= {"\\Flagged"}
        self.store.set_flags(mailbox, ("Inbox",), uid, new_flags)
        items[index] = (uid, new_flags)
        return True

    def _move_between(self, mailbox: str, source: FolderPath, target: FolderPath) -> bool:
        items = self._known(mailbox, source)
        index = self._pick(items)
        if index is None or source == target:
            return False
        destination = self._known(mailbox, target)  # list the target before the item lands there
        uid, flags = items.pop(index)
        mover = getattr(self.store, "move_item", None)
        if mover is not None:
            new_uid = mover(mailbox, source, uid, target)
        else:
            info = next(i for i in self.store.list_items(mailbox, source) if i.uid == uid)
            content = self.store.read_item(mailbox, source, uid)
            new_uid = self.store.append_item(mailbox, target, NewItem(content, flags, info.internal_date))
            self.store.delete_item(mailbox, source, uid)
        destination.append((new_uid, flags))
        return True

    def _move(self, mailbox: str, _mailboxes) -> bool:
        folders = [f for f in self._mail_folders(mailbox) if f != ("Inbox",)]
        index = self._pick(folders)
        return index is not None and self._move_between(mailbox, ("Inbox",), folders[index])

    def _delete(self, mailbox: str, _mailboxes) -> bool:
        folders = self._mail_folders(mailbox)
        index = self._pick(folders)
        return index is not None and self._move_between(mailbox, folders[index], ("Deleted Items",))

    def _purge(self, mailbox: str, _mailboxes) -> bool:
        items = self._known(mailbox, ("Deleted Items",))
        index = self._pick(items)
        if index is None:
            return False
        uid, _ = items.pop(index)
        self.store.delete_item(mailbox, ("Deleted Items",), uid)
        return True

    def _create_folder(self, mailbox: str, _mailboxes) -> bool:
        names = _EDGE_FOLDERS + _USER_FOLDERS if self.profile.edge_case_folder_names else _USER_FOLDERS
        name = f"{names[int(self.rng.integers(0, len(names)))]} {int(self.rng.integers(1, 1000))}"
        parent = ("Inbox",) if self.rng.random() < 0.6 else ()
        info = self.store.create_folder(mailbox, parent + (name,))
        folders = self._mail_folders(mailbox)
        if info.path not in folders:
            folders.append(info.path)
        return True

    def _create_mailbox(self, _mailbox: str, mailboxes: list[str]) -> bool:
        create = getattr(self.store, "create_mailbox", None)
        if create is None:
            return False
        taken = {m.casefold() for m in mailboxes}
        for alias, display in make_users(len(mailboxes) + 8, self.seed + 1):
            if alias.casefold() not in taken:
                create(alias, display_name=display)
                mailboxes.append(alias)
                return True
        return False


__all__ = [
    "ActivityReport",
    "GeneratedMessage",
    "ITEM_TYPES",
    "MALFORMED_VARIANTS",
    "MessageGenerator",
    "PopulationReport",
    "Workload",
    "WorkloadProfile",
    "ensure_mailboxes",
    "make_users",
    "populate",
    "populate_mib",
]
