"""Fuzzing the driver's small parsers: they answer or refuse clearly, never crash."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reference.drivers.imap import _uid_set, parse_appenduid, parse_copyuid, parse_message_id
from reference.drivers.imap_url import parse_imap_url
from reference.errors import MailtapeError

uids = st.lists(st.integers(1, 2**32 - 1), min_size=1, max_size=8)


@given(uids, uids)
def test_copyuid_round_trip(src, dst):
    text = f"7 {','.join(map(str, src))} {','.join(map(str, dst))}".encode()
    assert parse_copyuid(text) == (7, src, dst)


@given(st.integers(1, 2**32 - 1), st.integers(1, 60))
def test_uid_ranges_expand_in_order(start, length):
    assert _uid_set(f"{start}:{start + length - 1}".encode()) == list(range(start, start + length))


@given(st.binary(max_size=200) | st.sampled_from([b"1 a b", b"1 1::2 3", b"5 1,2 3:", b"[APPENDUID x 1]"]))
def test_response_parsers_never_crash(blob):
    parse_appenduid(blob)
    parse_copyuid(blob)
    value = parse_message_id(blob)
    assert value is None or (value == value.strip() and value)


@given(st.text(max_size=60) | st.sampled_from(["imap://[", "imap://a@[::1", "imap://a@h:-1", "imaps://a@h:0"]))
def test_url_parser_refuses_clearly(text):
    try:
        url = parse_imap_url(text)
    except MailtapeError:
        return
    assert url.scheme in ("imap", "imaps") and url.user and url.host and 0 < url.port < 65536
