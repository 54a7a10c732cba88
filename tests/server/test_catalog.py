"""The SQLite catalog and the restore-chain rules (ese-backup-api.md §2.4)."""

from __future__ import annotations

import pytest

from reference.errors import MailtapeError, NotFoundError
from reference.server.catalog import Catalog, DataSetRecord, ObjectRecord
from reference.server.restore_plan import restore_chain


def _set(catalog, backup_type, completed, barcode="000001L9", sg="First Storage Group", xxh3=""):
    record = DataSetRecord(
        set_number=catalog.next_set_number(7), family_id=7, kind="database", server="EXCH01", storage_group=sg,
        backup_type=backup_type, started=completed - 1, completed=completed, first_barcode=barcode, first_file=1,
        bytes=10, objects=[ObjectRecord(path=f"x/{completed}", kind="log", size=10, sha256="00" * 32,
                                        barcode=barcode, tape_file=1, block=0, fla=3, xxh3=xxh3)],
        log_gen_low=1, log_gen_high=2,
    )
    catalog.commit_data_set(record)
    return record


@pytest.fixture
def catalog(tmp_path):
    cat = Catalog(tmp_path / "catalog.sqlite")
    yield cat
    cat.close()


def test_commit_and_read_back(catalog):
    record = _set(catalog, "full", 100)
    again = catalog.data_set(record.id)
    assert again.backup_type == "full" and again.objects[0].extents == ["000001L9"]
    assert catalog.next_set_number(7) == 2


def test_a_catalog_from_before_xxh3_gains_the_column_and_reads_its_objects_without_one(tmp_path):
    """Objects cataloged before the XXH3-128 column existed read back with ``xxh3 == ""`` (their
    restores check SHA-256); new objects keep theirs."""
    path = tmp_path / "old.sqlite"
    old = Catalog(path)
    _set(old, "full", 100)
    old.db.execute("ALTER TABLE objects DROP COLUMN xxh3")
    old.close()
    reopened = Catalog(path)
    try:
        [first] = reopened.data_sets()
        assert reopened.data_set(first.id).objects[0].xxh3 == ""
        record = _set(reopened, "incremental", 200, xxh3="ab" * 16)
        assert reopened.data_set(record.id).objects[0].xxh3 == "ab" * 16
    finally:
        reopened.close()


def test_commit_is_atomic(catalog):
    record = DataSetRecord(
        set_number=1, family_id=7, kind="database", server="EXCH01", storage_group="SG", backup_type="full",
        started=0, completed=1, first_barcode="A", first_file=1, bytes=1,
        objects=[ObjectRecord(path="a", kind="log", size=1, sha256="0", barcode="A", tape_file=1, block=0, fla=0),
                 ObjectRecord(path="b", kind="log", size=None, sha256="0", barcode="A", tape_file=1, block=0, fla=0)],
    )
    with pytest.raises(Exception):
        catalog.commit_data_set(record)
    assert catalog.data_sets() == []


def test_chain_full_plus_incrementals_in_order(catalog):
    full = _set(catalog, "full", 100)
    inc1 = _set(catalog, "incremental", 200)
    _set(catalog, "copy", 250)
    inc2 = _set(catalog, "incremental", 300)
    chain = restore_chain(catalog, "EXCH01", "First Storage Group", set_id=inc2.id)
    assert [s.id for s in chain] == [full.id, inc1.id, inc2.id]


def test_chain_full_plus_last_differential_only(catalog):
    full = _set(catalog, "full", 100)
    _set(catalog, "differential", 200)
    diff2 = _set(catalog, "differential", 300)
    assert [s.id for s in restore_chain(catalog, "EXCH01", "First Storage Group")] == [full.id, diff2.id]


def test_chain_differential_after_incrementals(catalog):
    full = _set(catalog, "full", 100)
    inc = _set(catalog, "incremental", 200)
    diff = _set(catalog, "differential", 300)
    assert [s.id for s in restore_chain(catalog, "EXCH01", "First Storage Group")] == [full.id, inc.id, diff.id]


def test_chain_point_in_time_by_time(catalog):
    full = _set(catalog, "full", 100)
    inc = _set(catalog, "incremental", 200)
    _set(catalog, "incremental", 300)
    assert [s.id for s in restore_chain(catalog, "EXCH01", "First Storage Group", at=250)] == [full.id, inc.id]


def test_copy_stands_alone(catalog):
    _set(catalog, "full", 100)
    copy = _set(catalog, "copy", 200)
    assert [s.id for s in restore_chain(catalog, "EXCH01", "First Storage Group", set_id=copy.id)] == [copy.id]


def test_no_backup_is_a_clear_error(catalog):
    with pytest.raises(NotFoundError, match="no database backup of storage group 'Nope'"):
        restore_chain(catalog, "EXCH01", "Nope")


def test_incremental_without_full_is_refused(catalog):
    _set(catalog, "incremental", 100)
    with pytest.raises(NotFoundError, match="no full backup"):
        restore_chain(catalog, "EXCH01", "First Storage Group")


def test_relabel_expires_sets_on_that_cartridge(catalog):
    _set(catalog, "full", 100, barcode="000001L9")
    catalog.label_medium("000001L9", "Default", family_id=9, sequence=1, labeled_at=500)
    with pytest.raises(MailtapeError, match="overwritten"):
        restore_chain(catalog, "EXCH01", "First Storage Group")


def test_not_a_catalog_is_a_clear_error(tmp_path):
    bogus = tmp_path / "catalog.sqlite"
    bogus.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(MailtapeError, match="not a usable mailtape catalog"):
        Catalog(bogus)
