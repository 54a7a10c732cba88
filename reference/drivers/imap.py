"""``ImapMailboxStore``: the MailboxStore protocol over any IMAP4rev1 server (IMAPClient).

One store is one login, and that login is its only mailbox (``list_mailboxes() == [user]``);
:class:`ImapAccounts` joins several logins into one store. Spec ``brick-level-imap.md`` §5 and
``dovecot-fixture.md`` §5 (gotchas 4, 5, 9, 10, 11, 12 are handled here).

* Folder paths are tuples; on the wire they are joined with the server's hierarchy delimiter and
  encoded as modified UTF-7 by IMAPClient. A name containing the delimiter cannot exist on the
  server and is refused with :class:`FolderNameError` (as are names the server itself refuses).
* Item ids are IMAP UIDs; ``uid_validity`` is UIDVALIDITY; ``change_counter``/``modseq`` are
  HIGHESTMODSEQ/MODSEQ when the server offers CONDSTORE, else 0 (and ``changed_since`` is then
  ignored: every item is listed).
* Bodies are fetched with ``BODY.PEEK[]`` (byte-exact, does not set ``\\Seen``); ``\\Recent``
  is dropped everywhere; INTERNALDATE is kept as an instant (Unix seconds).
* A dropped connection is re-opened once for reads; a UIDVALIDITY change seen on re-select raises
  :class:`FolderIdentityChanged`, so no caller acts on void UIDs.
"""

from __future__ import annotations

import email.parser
import imaplib
import re
import ssl
from datetime import datetime, timezone
from typing import Callable, Iterator, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from reference.errors import NotFoundError
from reference.protocols.mailbox import FolderInfo, FolderPath, ItemInfo, NewItem

from .imap_errors import (FolderIdentityChanged, FolderNameError, ImapAuthError, ImapConnectionError,
                          ImapError)
from .imap_url import ImapUrl, parse_imap_url, resolve_password

T = TypeVar("T")
FETCH_BATCH = 500
META_FIELDS = ["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]
MESSAGE_ID_KEY = b"BODY[HEADER.FIELDS (MESSAGE-ID)]"
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
_COPYUID = re.compile(rb"^(\d+) ([\d:,]+) ([\d:,]+)(?:\s|$)")
_DROPPED = (imaplib.IMAP4.abort, OSError)   # socket errors, EOF, BYE (IMAPClientAbortError is an abort)


def parse_appenduid(response: bytes) -> tuple[int, int] | None:
    """(uidvalidity, uid) from a tagged APPEND OK text carrying UIDPLUS ``[APPENDUID v uid]``."""
    match = _APPENDUID.search(response or b"")
    return (int(match[1]), int(match[2])) if match else None


def parse_copyuid(text: bytes) -> tuple[int, list[int], list[int]] | None:
    """(uidvalidity, source uids, destination uids) from a COPYUID response code text."""
    match = _COPYUID.match(text or b"")
    if not match:
        return None
    try:
        return int(match[1]), _uid_set(match[2]), _uid_set(match[3])
    except ValueError:                                  # e.g. "1::2": not a uid-set
        return None


def _uid_set(text: bytes) -> list[int]:
    uids: list[int] = []
    for part in text.decode("ascii").split(","):
        low, _, high = part.partition(":")
        start, end = int(low), int(high or low)
        step = 1 if end >= start else -1
        uids.extend(range(start, end + step, step))
    return uids


def parse_message_id(header_block: bytes | None) -> str | None:
    """The Message-ID header value (unfolded, stripped), or None when absent or empty."""
    if not header_block:
        return None
    value = email.parser.BytesHeaderParser().parsebytes(header_block).get("Message-ID")
    if value is None:
        return None
    value = " ".join(str(value).split())
    return value or None


def _flags(raw) -> frozenset[str]:
    names = (f.decode("utf-8", "replace") if isinstance(f, bytes) else str(f) for f in raw)
    return frozenset(f for f in names if f.lower() != "\\recent")     # gotcha 9


class ImapMailboxStore:
    """MailboxStore over one IMAP login (``imap[s]://user@host:port``)."""

    def __init__(self, url: str | ImapUrl, password: str | None = None, *, timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None, use_condstore: bool = True,
                 mailbox_name: str | None = None):
        self.url = url if isinstance(url, ImapUrl) else parse_imap_url(url)
        self._password = resolve_password(self.url, password)
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._want_condstore = use_condstore
        self.mailbox_name = mailbox_name or self.url.user
        self._client: IMAPClient | None = None
        self._selected: tuple[str, bool] | None = None
        self._validity: dict[str, int] = {}
        self.condstore = False
        self.capabilities: frozenset[bytes] = frozenset()
        self.delimiter = "/"
        self._connect()

    # -- connection ------------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            client = IMAPClient(self.url.host, port=self.url.port, ssl=self.url.ssl,   # gotcha 4
                                ssl_context=self._ssl_context, timeout=self._timeout)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ImapConnectionError(f"cannot connect to {self.url}: {exc}") from None
        try:
            client.login(self.url.user, self._password)
        except LoginError as exc:
            _close_quietly(client)
            raise ImapAuthError(f"login to {self.url} refused: {_text(exc)}") from None
        except _DROPPED as exc:
            raise ImapConnectionError(f"connection to {self.url} dropped during login: {exc}") from None
        client.normalise_times = False                  # keep INTERNALDATE as an aware instant (gotcha 10)
        self.capabilities = frozenset(client.capabilities())
        self.condstore = self._want_condstore and b"CONDSTORE" in self.capabilities
        if self.condstore and b"ENABLE" in self.capabilities:
            client.enable("CONDSTORE")
        self.delimiter = _personal_delimiter(client)
        self._client, self._selected = client, None

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.logout()
            except Exception:                            # already gone: nothing left to release
                _close_quietly(self._client)
            self._client = None

    def __enter__(self) -> "ImapMailboxStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self, what: str, op: Callable[[IMAPClient], T], *, retry: bool = True) -> T:
        """Run ``op``; on a dropped connection re-open once (reads only) and run it again."""
        for attempt in (1, 2):
            if self._client is None:
                self._connect()
            try:
                return op(self._client)
            except _DROPPED as exc:
                _close_quietly(self._client)
                self._client, self._selected = None, None
                if not retry or attempt == 2:
                    raise ImapConnectionError(f"connection to {self.url} dropped during {what}: "
                                              f"{_text(exc)}") from None
        raise AssertionError("unreachable")

    # -- names and selection ---------------------------------------------------------------------

    def folder_name(self, folder: FolderPath) -> str:
        """The server-side name for a path; refuses paths the server cannot hold."""
        if not folder:
            raise FolderNameError(f"{self.url}: empty folder path")
        for part in folder:
            if part == "":
                raise FolderNameError(f"{self.url}: folder path {folder!r} has an empty name")
            if self.delimiter and self.delimiter in part:
                raise FolderNameError(
                    f"{self.url}: folder name {part!r} in {folder!r} contains the server's hierarchy "
                    f"delimiter {self.delimiter!r}; it cannot be stored on this IMAP server")
        if not self.delimiter and len(folder) > 1:
            raise FolderNameError(f"{self.url}: server has a flat namespace; cannot hold {folder!r}")
        return self.delimiter.join(folder)

    def folder_path(self, name: str) -> FolderPath:
        return tuple(name.split(self.delimiter)) if self.delimiter else (name,)

    def _check_mailbox(self, mailbox: str) -> None:
        if mailbox != self.mailbox_name:
            raise NotFoundError(f"{self.url}: no mailbox {mailbox!r} (this login reaches only "
                                f"{self.mailbox_name!r})")

    def _select(self, client: IMAPClient, mailbox: str, folder: FolderPath, readonly: bool) -> dict:
        name = self.folder_name(folder)
        if self._selected == (name, readonly):
            return {}
        try:
            info = client.select_folder(name, readonly=readonly)
        except imaplib.IMAP4.abort:
            raise
        except IMAPClientError as exc:
            self._selected = None
            raise NotFoundError(f"{self.url}: cannot open folder {folder!r} of mailbox {mailbox!r}: "
                                f"{_text(exc)}") from None
        self._selected = (name, readonly)
        self._note_validity(mailbox, folder, name, int(info.get(b"UIDVALIDITY", 0)))
        return info

    # -- MailboxStore: reading -------------------------------------------------------------------

    def list_mailboxes(self) -> list[str]:
        return [self.mailbox_name]

    def list_folders(self, mailbox: str) -> list[FolderInfo]:
        self._check_mailbox(mailbox)
        what = [b"MESSAGES", b"UIDVALIDITY"] + ([b"HIGHESTMODSEQ"] if self.condstore else [])

        def op(client: IMAPClient) -> list[FolderInfo]:
            folders = []
            for flags, _delim, name in client.list_folders():
                lowered = {f.lower() for f in flags}
                if b"\\nonexistent" in lowered:
                    continue
                path = self.folder_path(name)
                if b"\\noselect" in lowered:
                    folders.append(FolderInfo(path, uid_validity=0, change_counter=0, item_count=0))
                    continue
                status = client.folder_status(name, what)
                validity = int(status[b"UIDVALIDITY"])
                self._validity[name] = validity
                folders.append(FolderInfo(path, uid_validity=validity,
                                          change_counter=int(status.get(b"HIGHESTMODSEQ", 0)),
                                          item_count=int(status[b"MESSAGES"])))
            return sorted(folders, key=lambda f: f.path)      # parents before children
        return self._run(f"listing folders of {mailbox!r}", op)

    def list_items(self, mailbox: str, folder: FolderPath, changed_since: int = 0) -> Iterator[ItemInfo]:
        self._check_mailbox(mailbox)
        by_modseq = self.condstore and changed_since > 0
        uids = self._run(f"listing folder {folder!r}",
                         lambda c: self._search(c, mailbox, folder, changed_since if by_modseq else 0))
        modifiers = [f"CHANGEDSINCE {changed_since}"] if by_modseq else None
        fields = META_FIELDS + (["MODSEQ"] if self.condstore else [])
        for start in range(0, len(uids), FETCH_BATCH):
            batch = uids[start:start + FETCH_BATCH]

            def op(client: IMAPClient, batch=batch):
                self._select(client, mailbox, folder, readonly=True)
                return client.fetch(batch, fields, modifiers=modifiers)
            data = self._run(f"listing folder {folder!r}", op)
            for uid in sorted(data):
                yield _item_info(uid, data[uid])

    def _search(self, client: IMAPClient, mailbox: str, folder: FolderPath, changed_since: int) -> list[int]:
        """UIDs of the folder (a list, never "1:*", gotcha 5); with CONDSTORE only MODSEQ > changed_since."""
        self._select(client, mailbox, folder, readonly=True)
        criteria = ["MODSEQ", str(changed_since + 1)] if changed_since else ["ALL"]
        return sorted(client.search(criteria))

    def read_item(self, mailbox: str, folder: FolderPath, uid: int) -> bytes:
        self._check_mailbox(mailbox)

        def op(client: IMAPClient) -> bytes:
            self._select(client, mailbox, folder, readonly=True)
            data = client.fetch([uid], ["BODY.PEEK[]"])
            if uid not in data or b"BODY[]" not in data[uid]:
                raise NotFoundError(f"{self.url}: no item uid {uid} in folder {folder!r} of {mailbox!r}")
            return bytes(data[uid][b"BODY[]"])
        return self._run(f"reading uid {uid} of {folder!r}", op)

    # -- MailboxStore: writing -------------------------------------------------------------------

    def create_folder(self, mailbox: str, folder: FolderPath) -> FolderInfo:
        self._check_mailbox(mailbox)
        name = self.folder_name(folder)

        def op(client: IMAPClient) -> FolderInfo:
            listed = _listing(client)
            for depth in range(1, len(folder) + 1):
                part = self.delimiter.join(folder[:depth])
                if part.upper() == "INBOX" and depth == 1:
                    continue                                 # always there, any spelling (RFC 3501)
                if part not in listed or b"\\noselect" in listed[part]:
                    self._create(client, folder, part)       # a \Noselect parent becomes a real folder
            return self._folder_info(client, folder, name)
        return self._run(f"creating folder {folder!r}", op, retry=False)

    def _create(self, client: IMAPClient, folder: FolderPath, name: str) -> None:
        try:
            client.create_folder(name)
        except imaplib.IMAP4.abort:
            raise
        except IMAPClientError as exc:
            raise FolderNameError(f"{self.url}: server refused to create folder {folder!r} "
                                  f"(as {name!r}): {_text(exc)}") from None

    def _folder_info(self, client: IMAPClient, folder: FolderPath, name: str) -> FolderInfo:
        what = [b"MESSAGES", b"UIDVALIDITY"] + ([b"HIGHESTMODSEQ"] if self.condstore else [])
        status = client.folder_status(name, what)
        self._validity[name] = int(status[b"UIDVALIDITY"])
        return FolderInfo(folder, uid_validity=int(status[b"UIDVALIDITY"]),
                          change_counter=int(status.get(b"HIGHESTMODSEQ", 0)),
                          item_count=int(status[b"MESSAGES"]))

    def delete_folder(self, mailbox: str, folder: FolderPath) -> None:
        """Delete the folder and its subfolders (deepest first; IMAP DELETE leaves children)."""
        self._check_mailbox(mailbox)
        name = self.folder_name(folder)

        def op(client: IMAPClient) -> None:
            listed = _listing(client)                        # exact names: '*' and '%' are LIST wildcards
            if name not in listed:
                raise NotFoundError(f"{self.url}: no folder {folder!r} in mailbox {mailbox!r}")
            if self._selected and (self._selected[0] == name
                                   or self._selected[0].startswith(name + self.delimiter)):
                client.unselect_folder() if b"UNSELECT" in self.capabilities else client.close_folder()
                self._selected = None
            below = [n for n in listed if n.startswith(name + self.delimiter)]
            for child in sorted(below, key=lambda n: n.count(self.delimiter), reverse=True) + [name]:
                try:
                    client.delete_folder(child)
                except imaplib.IMAP4.abort:
                    raise
                except IMAPClientError as exc:
                    raise ImapError(f"{self.url}: cannot delete folder {child!r}: {_text(exc)}") from None
                self._validity.pop(child, None)
        self._run(f"deleting folder {folder!r}", op, retry=False)

    def append_item(self, mailbox: str, folder: FolderPath, item: NewItem) -> int:
        self._check_mailbox(mailbox)
        name = self.folder_name(folder)
        flags = sorted(f for f in item.flags if f.lower() != "\\recent")
        when = (datetime.fromtimestamp(item.internal_date, timezone.utc)
                if item.internal_date is not None else None)

        def op(client: IMAPClient) -> int:
            uidnext = None
            if b"UIDPLUS" not in self.capabilities:
                uidnext = int(client.folder_status(name, [b"UIDNEXT"])[b"UIDNEXT"])
            try:
                response = client.append(name, item.content, flags=flags, msg_time=when)
            except imaplib.IMAP4.abort:
                raise
            except IMAPClientError as exc:
                if "TRYCREATE" in _text(exc).upper():
                    raise NotFoundError(f"{self.url}: no folder {folder!r} in mailbox {mailbox!r} "
                                        f"({_text(exc)})") from None
                raise ImapError(f"{self.url}: APPEND to folder {folder!r} of {mailbox!r} refused: "
                                f"{_text(exc)}") from None
            parsed = parse_appenduid(response)
            if parsed is not None:
                validity, uid = parsed
                self._note_validity(mailbox, folder, name, validity)
                return uid
            return self._uid_after_append(client, mailbox, folder, uidnext)
        return self._run(f"appending to {folder!r}", op, retry=False)

    def _note_validity(self, mailbox: str, folder: FolderPath, name: str, validity: int) -> None:
        old = self._validity.get(name)
        self._validity[name] = validity
        if old is not None and old != validity:
            raise FolderIdentityChanged(
                f"{self.url}: UIDVALIDITY of folder {folder!r} changed from {old} to {validity}",
                mailbox=mailbox, folder=folder, old=old, new=validity)

    def _uid_after_append(self, client: IMAPClient, mailbox: str, folder: FolderPath, uidnext) -> int:
        """Without UIDPLUS: the highest UID at or above the UIDNEXT seen before APPEND (racy)."""
        self._selected = None
        self._select(client, mailbox, folder, readonly=True)
        found = client.search(["UID", f"{uidnext}:*"]) if uidnext else []
        if not found:
            raise ImapError(f"{self.url}: APPEND to {folder!r} succeeded but its UID is unknown "
                            "(no UIDPLUS)")
        return max(found)

    def set_flags(self, mailbox: str, folder: FolderPath, uid: int, flags: frozenset[str]) -> None:
        self._check_mailbox(mailbox)
        wanted = sorted(f for f in flags if f.lower() != "\\recent")

        def op(client: IMAPClient) -> None:
            self._select(client, mailbox, folder, readonly=False)
            if uid not in client.fetch([uid], ["UID"]):
                raise NotFoundError(f"{self.url}: no item uid {uid} in folder {folder!r} of {mailbox!r}")
            try:
                client.set_flags([uid], wanted, silent=True)
            except imaplib.IMAP4.abort:
                raise
            except IMAPClientError as exc:
                raise ImapError(f"{self.url}: cannot set flags {wanted} on uid {uid} in {folder!r}: "
                                f"{_text(exc)}") from None
        self._run(f"setting flags of uid {uid} in {folder!r}", op)

    def delete_item(self, mailbox: str, folder: FolderPath, uid: int) -> None:
        """\\Deleted + UID EXPUNGE (UIDPLUS), so other \\Deleted items in the folder stay."""
        self._check_mailbox(mailbox)

        def op(client: IMAPClient) -> None:
            self._select(client, mailbox, folder, readonly=False)
            if uid not in client.fetch([uid], ["UID"]):
                raise NotFoundError(f"{self.url}: no item uid {uid} in folder {folder!r} of {mailbox!r}")
            client.add_flags([uid], [b"\\Deleted"], silent=True)
            if b"UIDPLUS" in self.capabilities:
                client.uid_expunge([uid])
                return
            others = set(client.search(["DELETED"])) - {uid}
            if others:
                raise ImapError(f"{self.url}: server lacks UIDPLUS and folder {folder!r} holds other "
                                f"\\Deleted items {sorted(others)[:5]}; not expunging them")
            client.expunge()
        self._run(f"deleting uid {uid} from {folder!r}", op, retry=False)

    # -- beyond the protocol ---------------------------------------------------------------------

    def move_item(self, mailbox: str, folder: FolderPath, uid: int, target: FolderPath) -> int | None:
        """Move one item (MOVE, else COPY + expunge); the new UID from COPYUID when offered."""
        self._check_mailbox(mailbox)
        target_name = self.folder_name(target)

        def op(client: IMAPClient) -> int | None:
            self._select(client, mailbox, folder, readonly=False)
            if uid not in client.fetch([uid], ["UID"]):
                raise NotFoundError(f"{self.url}: no item uid {uid} in folder {folder!r} of {mailbox!r}")
            client._imap.untagged_responses.pop("COPYUID", None)
            if b"MOVE" in self.capabilities:
                client.move([uid], target_name)
            else:
                client.copy([uid], target_name)
                self.delete_item(mailbox, folder, uid)
            _code, data = client._imap.response("COPYUID")   # gotcha 12: move()/copy() return None
            parsed = parse_copyuid(data[-1]) if data and data[-1] else None
            if parsed is None:
                return None
            return dict(zip(parsed[1], parsed[2])).get(uid)
        return self._run(f"moving uid {uid} from {folder!r}", op, retry=False)

    def folder_info(self, mailbox: str, folder: FolderPath) -> FolderInfo:
        """Current STATUS of one folder (a cheaper re-check than list_folders)."""
        self._check_mailbox(mailbox)
        name = self.folder_name(folder)
        return self._run(f"status of {folder!r}", lambda c: self._folder_info(c, folder, name))


class ImapAccounts:
    """Several IMAP logins seen as one store whose mailboxes are the logins' mailbox names."""

    def __init__(self, stores: list[ImapMailboxStore]):
        self._stores = {s.mailbox_name: s for s in stores}

    def _store(self, mailbox: str) -> ImapMailboxStore:
        try:
            return self._stores[mailbox]
        except KeyError:
            raise NotFoundError(f"no IMAP login for mailbox {mailbox!r} "
                                f"(have: {', '.join(sorted(self._stores))})") from None

    def list_mailboxes(self) -> list[str]:
        return sorted(self._stores)

    def list_folders(self, mailbox: str) -> list[FolderInfo]:
        return self._store(mailbox).list_folders(mailbox)

    def list_items(self, mailbox: str, folder: FolderPath, changed_since: int = 0) -> Iterator[ItemInfo]:
        return self._store(mailbox).list_items(mailbox, folder, changed_since)

    def read_item(self, mailbox: str, folder: FolderPath, uid: int) -> bytes:
        return self._store(mailbox).read_item(mailbox, folder, uid)

    def create_folder(self, mailbox: str, folder: FolderPath) -> FolderInfo:
        return self._store(mailbox).create_folder(mailbox, folder)

    def delete_folder(self, mailbox: str, folder: FolderPath) -> None:
        self._store(mailbox).delete_folder(mailbox, folder)

    def append_item(self, mailbox: str, folder: FolderPath, item: NewItem) -> int:
        return self._store(mailbox).append_item(mailbox, folder, item)

    def set_flags(self, mailbox: str, folder: FolderPath, uid: int, flags: frozenset[str]) -> None:
        self._store(mailbox).set_flags(mailbox, folder, uid, flags)

    def delete_item(self, mailbox: str, folder: FolderPath, uid: int) -> None:
        self._store(mailbox).delete_item(mailbox, folder, uid)

    def close(self) -> None:
        for store in self._stores.values():
            store.close()


def _item_info(uid: int, data: dict) -> ItemInfo:
    when = data.get(b"INTERNALDATE")
    stamp = when.timestamp() if isinstance(when, datetime) else 0.0
    return ItemInfo(uid=uid, size=int(data.get(b"RFC822.SIZE", 0)), flags=_flags(data.get(b"FLAGS", ())),
                    internal_date=stamp, message_id=parse_message_id(data.get(MESSAGE_ID_KEY)),
                    modseq=int(data.get(b"MODSEQ", (0,))[0]))


def _listing(client: IMAPClient) -> dict[str, set[bytes]]:
    """Every folder name → its lower-cased LIST flags (one LIST "" "*", compared exactly)."""
    return {name: {f.lower() for f in flags} for flags, _delim, name in client.list_folders()}


def _personal_delimiter(client: IMAPClient) -> str:
    """The hierarchy delimiter of the personal namespace ('' for a flat server)."""
    try:
        for _prefix, delimiter in client.namespace().personal or ():
            return delimiter or ""
    except imaplib.IMAP4.abort:
        raise
    except (IMAPClientError, AttributeError):
        pass
    listed = client.list_folders("", "")
    delim = listed[0][1] if listed else b"/"
    return (delim.decode() if isinstance(delim, bytes) else delim) or ""


def _text(exc: BaseException) -> str:
    text = str(exc)
    return text[2:-1] if text.startswith("b'") and text.endswith("'") else text


def _close_quietly(client: IMAPClient | None) -> None:
    if client is None:
        return
    try:
        client.shutdown()
    except Exception:            # best effort on a connection that is already broken
        pass
