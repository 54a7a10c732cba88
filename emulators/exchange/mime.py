"""Message content for the emulated store: valid RFC 5322/MIME octets, generated fast and deterministically.

Generating a gigabyte of mail one random word at a time would take minutes, so the content comes
from two pools built once per generator with numpy (:class:`ContentPools`): a text pool of CRLF
lines of words and a base64 pool of 76-character lines. A message body is a slice of the text pool
that starts and ends on a line boundary; an attachment is a slice of whole base64 lines (plus a
partial last line of a multiple of 4 characters, so it stays valid base64). Slicing costs a memcpy.

The item's MAPI message class travels in the ``Content-Class`` header the way Exchange writes it
when it renders an item as MIME (``urn:content-classes:message`` ...); :func:`message_class_of`
maps it back. The exact content-class names for notes and journal entries are UNVERIFIED (see
docs/exchange-mailboxes.md).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from email.utils import formatdate

import numpy as np

CRLF = b"\r\n"
BASE64_LINE = 76
"""Characters of base64 per line (RFC 2045 maximum)."""
BASE64_LINE_BYTES = BASE64_LINE // 4 * 3  # 57 decoded bytes per line
TEXT_WORDS_PER_LINE = 10

CONTENT_CLASSES = {
    "IPM.Note": "urn:content-classes:message",
    "IPM.Appointment": "urn:content-classes:appointment",
    "IPM.Contact": "urn:content-classes:person",
    "IPM.Task": "urn:content-classes:task",
    "IPM.StickyNote": "urn:content-classes:note",
    "IPM.Activity": "urn:content-classes:journal",
}
"""MAPI message class ⇄ the ``Content-Class`` header of its MIME rendering (notes/journal UNVERIFIED)."""
MESSAGE_CLASSES = {v: k for k, v in CONTENT_CLASSES.items()}

_VOCABULARY = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but "
    "have an they you were her she there been one all we their has would when if so no will more can "
    "about said up out them some could into other then time only new these two may first any like "
    "over such our after most also made well before must through back years where much your way down "
    "should because each just those people how too little state good very make world still own see "
    "men work long get here between both life being under never day same another know while last might "
    "us great old year off come since against go came right used take three meeting project budget "
    "quarter report server mailbox backup restore tape database schedule review please thanks regards "
    "attached agenda invoice customer release migration storage exchange deadline update status"
).split()

_ATTACHMENTS = (
    ("report.pdf", "application/pdf"),
    ("budget.xls", "application/vnd.ms-excel"),
    ("minutes.doc", "application/msword"),
    ("slides.ppt", "application/vnd.ms-powerpoint"),
    ("photo.jpg", "image/jpeg"),
    ("diagram.png", "image/png"),
    ("archive.zip", "application/zip"),
    ("data.bin", "application/octet-stream"),
)


class ContentPools:
    """Random text and base64 material, built once with numpy and sliced per message."""

    def __init__(self, rng: np.random.Generator, text_bytes: int = 4 << 20, binary_bytes: int = 8 << 20):
        self.text, self.text_line_offsets = _text_pool(rng, text_bytes)
        """Lines of words; :attr:`text_line_offsets` holds every line's start plus the total length."""

        raw_len = max(BASE64_LINE_BYTES, binary_bytes - binary_bytes % BASE64_LINE_BYTES)
        encoded = np.frombuffer(base64.b64encode(rng.bytes(raw_len)), dtype=np.uint8).reshape(-1, BASE64_LINE)
        lined = np.empty((encoded.shape[0], BASE64_LINE + 2), dtype=np.uint8)
        lined[:, :BASE64_LINE] = encoded
        lined[:, BASE64_LINE] = 13
        lined[:, BASE64_LINE + 1] = 10
        self.base64 = lined.tobytes()
        self.base64_lines = encoded.shape[0]

    @property
    def max_text(self) -> int:
        return int(self.text_line_offsets[-1])

    @property
    def max_attachment(self) -> int:
        """Largest decoded attachment the pool can provide."""
        return (self.base64_lines - 1) * BASE64_LINE_BYTES

    def text_spans(self, rng: np.random.Generator, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) offsets of line-aligned text slices of at least ``sizes`` bytes each (vectorised)."""
        sizes = np.clip(np.asarray(sizes, dtype=np.int64), 1, self.max_text // 2)
        offsets = self.text_line_offsets
        wanted = (rng.random(len(sizes)) * (self.max_text - sizes)).astype(np.int64)
        first = np.searchsorted(offsets, wanted, side="left")
        start = offsets[first]
        last = np.minimum(np.searchsorted(offsets, start + sizes, side="left"), len(offsets) - 1)
        return start, offsets[last]

    def base64_spans(self, rng: np.random.Generator, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For decoded ``sizes``: (start, end of whole lines, extra chars of a last partial line)."""
        sizes = np.clip(np.asarray(sizes, dtype=np.int64), 1, self.max_attachment)
        full = sizes // BASE64_LINE_BYTES
        extra = -(-(sizes % BASE64_LINE_BYTES) // 3) * 4
        first = (rng.random(len(sizes)) * (self.base64_lines - full - 1)).astype(np.int64)
        start = first * (BASE64_LINE + 2)
        return start, start + full * (BASE64_LINE + 2), extra

    def text_slice(self, start: int, end: int) -> bytes:
        return self.text[start:end]

    def base64_slice(self, start: int, end: int, extra: int) -> bytes:
        if extra:
            return self.base64[start : end + extra] + CRLF
        return self.base64[start:end]


def _text_pool(rng: np.random.Generator, text_bytes: int) -> tuple[bytes, np.ndarray]:
    """CRLF-terminated lines of TEXT_WORDS_PER_LINE random words, built without a Python loop.

    Returns the text and the start offset of every line plus the total length.
    """
    vocab = [w.encode("ascii") for w in _VOCABULARY]
    vocab_chars = np.frombuffer(b"".join(vocab), dtype=np.uint8)
    vocab_len = np.fromiter((len(w) for w in vocab), dtype=np.int64, count=len(vocab))
    vocab_start = np.concatenate(([0], np.cumsum(vocab_len)[:-1]))
    n_words = max(1, text_bytes // 6 // TEXT_WORDS_PER_LINE) * TEXT_WORDS_PER_LINE
    picks = rng.integers(0, len(vocab), size=n_words)
    lengths = vocab_len[picks]
    line_end = (np.arange(n_words) % TEXT_WORDS_PER_LINE) == TEXT_WORDS_PER_LINE - 1
    separator = np.where(line_end, 2, 1)  # CRLF after the last word of a line, else a space
    word_start = np.concatenate(([0], np.cumsum(lengths + separator)[:-1]))
    total = int(word_start[-1] + lengths[-1] + separator[-1])
    out = np.full(total, ord(" "), dtype=np.uint8)
    within = np.arange(int(lengths.sum())) - np.repeat(np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    out[np.repeat(word_start, lengths) + within] = vocab_chars[np.repeat(vocab_start[picks], lengths) + within]
    ends = (word_start + lengths)[line_end]
    out[ends] = 13
    out[ends + 1] = 10
    line_starts = word_start[::TEXT_WORDS_PER_LINE]
    return out.tobytes(), np.concatenate((line_starts, [total])).astype(np.int64)


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    base64_body: bytes
    """Already base64-encoded, CRLF-terminated lines."""


def attachment_kind(index: int) -> tuple[str, str]:
    """Filename and content type of attachment kind ``index`` (any integer; wraps)."""
    return _ATTACHMENTS[index % len(_ATTACHMENTS)]


def render_message(
    *,
    sender: str,
    recipients: list[str],
    subject: str,
    date: float,
    message_id: str | None,
    body: bytes,
    attachments: list[Attachment] = (),
    boundary: str = "",
    message_class: str = "IPM.Note",
    body_type: str = "text/plain",
) -> bytes:
    """A complete RFC 5322 message: headers, then a text body or a multipart/mixed with attachments."""
    head = [
        f"From: {sender}",
        f"To: {', '.join(recipients)}",
        f"Subject: {subject}",
        f"Date: {formatdate(date, usegmt=True)}",
    ]
    if message_id is not None:
        head.append(f"Message-ID: {message_id}")
    head.append("MIME-Version: 1.0")
    head.append(f"Content-Class: {CONTENT_CLASSES.get(message_class, CONTENT_CLASSES['IPM.Note'])}")
    if not attachments:
        head.append(f'Content-Type: {body_type}; charset="us-ascii"')
        head.append("Content-Transfer-Encoding: 7bit")
        return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + body
    head.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
    parts = [
        ("\r\n".join(head) + "\r\n\r\nThis is a multi-part message in MIME format.\r\n\r\n").encode("utf-8"),
        (
            f"--{boundary}\r\nContent-Type: {body_type}; charset=\"us-ascii\"\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n"
        ).encode("ascii"),
        body,
    ]
    for attachment in attachments:
        parts.append(
            (
                f"\r\n--{boundary}\r\nContent-Type: {attachment.content_type}; name=\"{attachment.filename}\"\r\n"
                "Content-Transfer-Encoding: base64\r\n"
                f"Content-Disposition: attachment; filename=\"{attachment.filename}\"\r\n\r\n"
            ).encode("ascii")
        )
        parts.append(attachment.base64_body)
    parts.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(parts)


# ---------------------------------------------------------------------------------------------
# Reading the few header fields the store indexes

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_HEADER_SCAN_LIMIT = 256 * 1024


def header_fields(content: bytes, names: tuple[str, ...] = ("message-id", "content-class", "subject")) -> dict[str, str]:
    """First value of each wanted header field (lower-cased names), unfolded; tolerant of bad input.

    Only the header section is read (up to the first empty line, at most 256 KiB); a message with no
    empty line is treated as all header, as a lenient MIME parser would.
    """
    window = content[:_HEADER_SCAN_LIMIT]
    end = _HEADER_END.search(window)
    header = window[: end.start()] if end else window
    wanted = set(names)
    found: dict[str, str] = {}
    current: str | None = None
    for raw_line in re.split(rb"\r?\n", header):
        if raw_line[:1] in (b" ", b"\t"):
            if current is not None and current in found:
                found[current] += " " + raw_line.strip().decode("utf-8", "replace")
            continue
        name, sep, value = raw_line.partition(b":")
        if not sep:
            current = None
            continue
        current = name.strip().decode("ascii", "replace").lower()
        if current in wanted and current not in found:
            found[current] = value.strip().decode("utf-8", "replace")
        elif current in found:
            current = None  # a repeated field: keep only the first one's continuation lines
    return found


_ATTACHMENT_DISPOSITION = re.compile(rb"^content-disposition:[ \t]*attachment", re.IGNORECASE | re.MULTILINE)


def count_attachments(content: bytes) -> int:
    """MIME parts marked ``Content-Disposition: attachment`` (what MAPI lists as attachments)."""
    return len(_ATTACHMENT_DISPOSITION.findall(content))


def message_class_of(fields: dict[str, str]) -> str:
    """The MAPI message class an item's ``Content-Class`` header stands for (default ``IPM.Note``)."""
    value = fields.get("content-class", "").strip().lower()
    return MESSAGE_CLASSES.get(value, "IPM.Note")


def message_id_of(fields: dict[str, str]) -> str | None:
    value = fields.get("message-id", "").strip()
    return value or None


__all__ = [
    "Attachment",
    "CONTENT_CLASSES",
    "ContentPools",
    "attachment_kind",
    "count_attachments",
    "header_fields",
    "message_class_of",
    "message_id_of",
    "render_message",
]
