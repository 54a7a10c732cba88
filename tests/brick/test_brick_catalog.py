"""The restore view over a chain of sets: ordering rules and corruption reports (no store needed)."""

from __future__ import annotations

import pytest

from reference.agent.brick import BrickCatalog
from reference.agent.brick.model import (DATASET, EXPUNGED, FOLDER, FOLDER_GONE, ITEM, MAILBOX, UPDATE,
                                         BrickObject, sha256_hex)
from reference.errors import CorruptDataError, NotFoundError

BODY = b"Subject: x\r\n\r\nbody\r\n"


def _item(uid, stored=True, content=BODY, sha=None, folder=("INBOX",)):
    meta = {"uid": uid, "flags": ["\\Seen"], "internal_date": 1.0e9, "message_id": "<x@y>", "size": len(BODY),
            "sha256": sha or sha256_hex(BODY), "modseq": 1, "stored": stored}
    return BrickObject(ITEM, ("m", *folder), meta, content if stored else None)


def _head(complete=True, folder=("INBOX",)):
    return [BrickObject(DATASET, (), {"level": "full"}), BrickObject(MAILBOX, ("m",)),
            BrickObject(FOLDER, ("m", *folder), {"complete": complete, "uid_validity": 5})]


def test_chain_rules_update_expunge_complete_and_gone():
    full = _head() + [_item(1), _item(2, stored=False)]
    inc = _head(complete=False) + [BrickObject(UPDATE, ("m", "INBOX"), {"uid": 1, "flags": ["\\Flagged"]}),
                                   BrickObject(EXPUNGED, ("m", "INBOX"), {"uid": 2})]
    catalog = BrickCatalog.from_sets([full, inc])
    [item] = catalog.items("m", ("INBOX",))
    assert item.uid == 1 and item.flags == ("\\Flagged",) and catalog.content(item) == BODY
    reset = _head(complete=True) + [_item(7, stored=False)]             # new identity: old uids forgotten
    assert [i.uid for i in BrickCatalog.from_sets([full, reset]).items("m", ("INBOX",))] == [7]
    gone = [BrickObject(DATASET, (), {}), BrickObject(MAILBOX, ("m",)), BrickObject(FOLDER_GONE, ("m", "INBOX"))]
    with pytest.raises(NotFoundError):
        BrickCatalog.from_sets([full, gone]).items("m", ("INBOX",))


def test_body_missing_from_chain_is_named():
    catalog = BrickCatalog.from_sets([_head() + [_item(1, stored=False)]])
    [item] = catalog.items("m", ("INBOX",))
    with pytest.raises(CorruptDataError, match="no data set of the chain"):
        catalog.content(item)


def test_body_not_matching_its_hash_is_refused():
    catalog = BrickCatalog.from_sets([_head() + [_item(1, content=BODY + b"tampered")]])
    [item] = catalog.items("m", ("INBOX",))
    with pytest.raises(CorruptDataError, match="does not match its sha256"):
        catalog.content(item)


def test_records_out_of_order_are_corrupt():
    with pytest.raises(CorruptDataError, match="before its folder"):
        BrickCatalog.from_sets([[BrickObject(MAILBOX, ("m",)), _item(1)]])
    with pytest.raises(CorruptDataError, match="unknown brick object kind"):
        BrickCatalog.from_sets([[BrickObject("bogus", ("m",))]])
