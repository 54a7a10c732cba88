"""Which mailboxes, folders and items a brick-level backup or restore takes.

Patterns are shell wildcards (``fnmatch``, case-sensitive). A folder pattern is matched against
the folder path written with '/' between names (``Inbox/Projects``) and against every ancestor of
it, so ``Archive`` takes or leaves the whole subtree below Archive. A top-level INBOX matches in
any case (RFC 3501; Exchange spells it "Inbox"), in patterns and paths alike. Dates are internal dates
(received time), Unix seconds: ``since`` inclusive, ``before`` exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from .model import display_path


@dataclass(frozen=True)
class Selection:
    mailboxes: tuple[str, ...] = ("*",)
    exclude_mailboxes: tuple[str, ...] = ()
    folders: tuple[str, ...] = ("*",)
    exclude_folders: tuple[str, ...] = ()
    folder_classes: tuple[str, ...] = ("*",)
    """Exchange container classes to take (``IPF.Note*`` = mail only)."""
    since: float | None = None
    before: float | None = None

    def takes_mailbox(self, mailbox: str) -> bool:
        return (any(fnmatchcase(mailbox, p) for p in self.mailboxes)
                and not any(fnmatchcase(mailbox, p) for p in self.exclude_mailboxes))

    def takes_folder(self, folder: tuple[str, ...], folder_class: str | None = "IPF.Note") -> bool:
        """``folder_class=None``: class unknown (a folder that is gone), judged by path only."""
        if not folder:
            return False
        folder = _inbox_folded(folder)
        candidates = [display_path(folder[:depth]) for depth in range(1, len(folder) + 1)]
        included = any(fnmatchcase(c, _inbox_pattern(p)) for c in candidates for p in self.folders)
        excluded = any(fnmatchcase(c, _inbox_pattern(p)) for c in candidates for p in self.exclude_folders)
        by_class = folder_class is None or any(fnmatchcase(folder_class, p) for p in self.folder_classes)
        return included and not excluded and by_class

    def takes_date(self, internal_date: float) -> bool:
        if self.since is not None and internal_date < self.since:
            return False
        return not (self.before is not None and internal_date >= self.before)

    def to_meta(self) -> dict:
        return {"mailboxes": list(self.mailboxes), "exclude_mailboxes": list(self.exclude_mailboxes),
                "folders": list(self.folders), "exclude_folders": list(self.exclude_folders),
                "folder_classes": list(self.folder_classes), "since": self.since, "before": self.before}


def _inbox_folded(folder: tuple[str, ...]) -> tuple[str, ...]:
    return ("INBOX",) + folder[1:] if folder and folder[0].casefold() == "inbox" else folder


def _inbox_pattern(pattern: str) -> str:
    head, sep, rest = pattern.partition("/")
    return "INBOX" + sep + rest if head.casefold() == "inbox" else pattern
