"""Reading back through the changer and drive: restore streams, chains, verify, rebuild."""

from __future__ import annotations

import random

import pytest

from reference.errors import CorruptDataError
from reference.server.catalog import Catalog
from reference.server.media import MediaManager, MediaOverwrittenError
from reference.server.readback import MediaReader, rebuild_catalog
from reference.server.restore_plan import restore_chain
from server_helpers import MB, agent_backup, make_site, payload


@pytest.fixture
def busy_site(tmp_path):
    """Two storage groups: a spanned full, an incremental and a differential; a second family
    written concurrently; small cartridges so sets span and append."""
    site = make_site(tmp_path, cartridges=8, capacity=6 * MB)

    async def run():
        import asyncio

        full, other = await asyncio.gather(
            agent_backup(site.server, "SG1", {"DB1/priv1.edb": payload(1, 7 * MB), "DB1/priv1.stm": payload(2, 200_000),
                                              "Log Files/E00000010.log": payload(3, 1 << 20)}),
            agent_backup(site.server, "SG2", {"DB2/priv2.edb": payload(4, 2 * MB),
                                              "Log Files/E00000020.log": payload(5, 1 << 20)}),
        )
        inc = await agent_backup(site.server, "SG1", {"Log Files/E00000011.log": payload(6, 1 << 20)},
                                 backup_type="incremental")
        diff = await agent_backup(site.server, "SG1", {"Log Files/E00000011.log": payload(6, 1 << 20),
                                                       "Log Files/E00000012.log": payload(7, 3 * MB)},
                                  backup_type="differential")
        return full, other, inc, diff

    receipts = site.run(run())
    return site, receipts


def _collect(reader, set_id, select=None):
    return {obj.path: b"".join(bytes(c) for c in chunks) for obj, chunks in reader.read_objects(set_id, select)}


def test_read_objects_bit_exact_and_selectable(busy_site):
    site, (full, other, inc, diff) = busy_site
    loads = []
    original_load = site.library.load

    def counting_load(slot, drive=0):
        loads.append(site.library.status().slot(slot).barcode)
        return original_load(slot, drive)

    site.library.load = counting_load
    site.media.unload(0)
    site.media.unload(1)
    reader = MediaReader(site.catalog, site.media)
    try:
        got = _collect(reader, full.data_set_id)
        spanned = site.catalog.cartridges_of(full.data_set_id)
        # Issue 6: each cartridge is loaded once; its objects are extracted while it is loaded.
        assert len(spanned) == 2 and loads == spanned
        assert got["DB1/priv1.edb"] == payload(1, 7 * MB)
        assert got["DB1/priv1.stm"] == payload(2, 200_000)
        assert got["Log Files/E00000010.log"] == payload(3, 1 << 20)
        only = _collect(reader, other.data_set_id, ["DB2/priv2.edb"])
        assert list(only) == ["DB2/priv2.edb"] and only["DB2/priv2.edb"] == payload(4, 2 * MB)
        logs = _collect(reader, diff.data_set_id, lambda o: o.kind == "log")
        assert logs["Log Files/E00000012.log"] == payload(7, 3 * MB)
    finally:
        reader.close()


def test_the_catalog_keeps_each_objects_xxh3_of_the_bytes_sent(busy_site):
    """The restore's in-line check (docs/server.md "Checking what is read back"): every object
    the agent sent is cataloged with the XXH3-128 of exactly its bytes, next to the SHA-256."""
    import hashlib

    import xxhash

    site, (full, _other, _inc, _diff) = busy_site
    sent = {"DB1/priv1.edb": payload(1, 7 * MB), "DB1/priv1.stm": payload(2, 200_000),
            "Log Files/E00000010.log": payload(3, 1 << 20)}
    cataloged = {o.path: o for o in site.catalog.data_set(full.data_set_id).objects}
    for path, data in sent.items():
        assert cataloged[path].xxh3 == xxhash.xxh3_128(data).hexdigest()
        assert cataloged[path].sha256 == hashlib.sha256(data).hexdigest()
    assert len(cataloged["BackupMetadata.json"].xxh3) == 32


def test_restore_chain_across_sets_and_cartridges(busy_site):
    """Full + last differential (ese-backup-api.md §2.4), read in order through the changer."""
    site, (full, other, inc, diff) = busy_site
    chain = restore_chain(site.catalog, "EXCH01", "SG1")
    assert [s.id for s in chain] == [full.data_set_id, inc.data_set_id, diff.data_set_id]
    reader = MediaReader(site.catalog, site.media)
    try:
        seen = [(set_id, obj.path, len(b"".join(bytes(c) for c in chunks)))
                for set_id, obj, chunks in reader.read_chain([s.id for s in chain])]
    finally:
        reader.close()
    assert [s for s, _p, _n in seen] == sorted(s for s, _p, _n in seen)
    assert ("DB1/priv1.edb" in [p for _s, p, _n in seen])
    cartridges = {b for s in chain for b in site.catalog.cartridges_of(s.id)}
    assert len(cartridges) >= 2


def test_catalog_rebuild_equals_original(busy_site, tmp_path):
    site, _receipts = busy_site
    rebuilt = Catalog(tmp_path / "rebuilt.sqlite")
    result = rebuild_catalog(rebuilt, MediaManager(rebuilt, site.library, site.media.drives))
    assert result.problems == []
    assert rebuilt.dump() == site.catalog.dump()
    original = {r["barcode"]: r for r in site.catalog.media()}
    for row in rebuilt.media():
        keep = ("pool", "family_id", "sequence", "status", "next_file", "data_sets")
        assert {k: row[k] for k in keep} == {k: original[row["barcode"]][k] for k in keep}, row["barcode"]
    def metadata(catalog):
        return {(s.family_id, s.set_number): s.metadata for s in catalog.data_sets()}

    assert metadata(rebuilt) == metadata(site.catalog)


def test_a_rebuilt_catalog_restores_checking_sha256(busy_site, tmp_path):
    """XXH3-128 is not on the media, so a catalog rebuilt from the cartridges has none: its
    restores check every byte against the SHA-256 (XSHA) instead, and still refuse a bad byte."""
    site, (_full, other, _inc, _diff) = busy_site
    rebuilt = Catalog(tmp_path / "rebuilt.sqlite")
    media = MediaManager(rebuilt, site.library, site.media.drives)
    rebuild_catalog(rebuilt, media)
    [set_id] = [s.id for s in rebuilt.data_sets() if s.storage_group == "SG2"]
    assert all(o.xxh3 == "" for o in rebuilt.data_set(set_id).objects)
    reader = MediaReader(rebuilt, media)
    try:
        assert _collect(reader, set_id, ["DB2/priv2.edb"])["DB2/priv2.edb"] == payload(4, 2 * MB)
    finally:
        reader.close()
    target = next(o for o in site.catalog.data_set(other.data_set_id).objects if o.path == "DB2/priv2.edb")
    image = site.library.cartridge_path(target.barcode)
    raw = bytearray(image.read_bytes())
    raw[raw.find(payload(4, 2 * MB)[500_000:500_064]) + 5] ^= 0x10
    image.write_bytes(raw)
    reader = MediaReader(rebuilt, media)
    try:
        with pytest.raises(CorruptDataError, match="SHA-256 of the data read back does not match the catalog"):
            _collect(reader, set_id, ["DB2/priv2.edb"])
    finally:
        reader.close()


def test_verify_names_a_catalog_xxh3_that_does_not_match_the_media(busy_site):
    """A catalog row whose XXH3-128 is wrong (the media is fine) would make a restore refuse the
    object: ``verify`` says so, for that object only."""
    site, (_full, other, _inc, _diff) = busy_site
    site.catalog.db.execute("UPDATE objects SET xxh3=? WHERE path=? AND data_set_id=?",
                            ("0" * 32, "DB2/priv2.edb", other.data_set_id))
    reader = MediaReader(site.catalog, site.media)
    try:
        report = reader.verify()
    finally:
        reader.close()
    messages = [str(p) for p in report.problems]
    assert len(messages) == 1 and "DB2/priv2.edb: XXH3-128 of the data differs from the catalog" in messages[0]


def test_verify_clean_then_detects_a_corrupted_byte(busy_site):
    site, (full, other, inc, diff) = busy_site
    reader = MediaReader(site.catalog, site.media)
    try:
        clean = reader.verify()
        assert clean.ok and clean.sets == 4 and clean.objects == 12
    finally:
        reader.close()
    # Flip one byte inside the data of DB2/priv2.edb on its cartridge.
    record = site.catalog.data_set(other.data_set_id)
    target = next(o for o in record.objects if o.path == "DB2/priv2.edb")
    image = site.library.cartridge_path(target.barcode)
    raw = bytearray(image.read_bytes())
    needle = payload(4, 2 * MB)[1_000_000:1_000_064]
    at = raw.find(needle)
    assert at > 0
    raw[at + 10] ^= 0xFF
    image.write_bytes(raw)
    reader = MediaReader(site.catalog, site.media)
    try:
        report = reader.verify()
        assert not report.ok
        messages = [str(p) for p in report.problems]
        assert any(f"cartridge {target.barcode} file {target.tape_file}: DB2/priv2.edb: SHA-256 mismatch" in m
                   for m in messages), messages
        assert all("DB2/priv2.edb" in m for m in messages)
        with pytest.raises(CorruptDataError, match=f"cartridge {target.barcode}.*DB2/priv2.edb"):
            for _obj, chunks in reader.read_objects(other.data_set_id, ["DB2/priv2.edb"]):
                for _ in chunks:
                    pass
    finally:
        reader.close()


def test_relabelled_media_is_a_clear_error(busy_site):
    """A set whose cartridge was relabelled (catalog knows: expired) or overwritten behind the
    catalog's back (family on tape differs) cannot be read back, and says why."""
    site, (full, other, inc, diff) = busy_site
    record = site.catalog.data_set(other.data_set_id)
    # Overwritten outside the catalog: label it with another catalog's media manager.
    stranger = Catalog(site.root.parent / "stranger.sqlite")
    MediaManager(stranger, site.library, site.media.drives, rng=random.Random(99)).label(
        record.first_barcode, "Other", 0, force=True)
    reader = MediaReader(site.catalog, site.media)
    try:
        with pytest.raises(MediaOverwrittenError, match=f"cartridge {record.first_barcode} no longer holds"):
            list(reader.read_objects(other.data_set_id))
        # Relabelled through this catalog: the sets on it expire.
        site.media.label(record.first_barcode, "Default", 0, force=True)
        with pytest.raises(MediaOverwrittenError, match="overwritten or relabelled"):
            list(reader.read_objects(other.data_set_id))
    finally:
        reader.close()


def test_a_spanned_set_loads_only_the_cartridges_the_selection_needs(busy_site):
    """Issue 6: the catalog says which cartridges hold the chosen objects. Objects that lie on the
    continuation cartridge alone do not load the set's first cartridge; the object that spans
    loads both, once each. Bytes stay bit-exact either way."""
    site, (full, _other, _inc, _diff) = busy_site
    spanned = site.catalog.cartridges_of(full.data_set_id)
    record = site.catalog.data_set(full.data_set_id)
    second_only = [o.path for o in record.objects if (o.extents or [o.barcode]) == [spanned[1]]]
    assert len(spanned) == 2 and "DB1/priv1.stm" in second_only
    expected = {"DB1/priv1.edb": payload(1, 7 * MB), "DB1/priv1.stm": payload(2, 200_000),
                "Log Files/E00000010.log": payload(3, 1 << 20)}
    for paths, cartridges in ((second_only, [spanned[1]]), (["DB1/priv1.edb"], spanned)):
        loads = []
        original_load = site.library.load

        def counting_load(slot, drive=0, original_load=original_load, loads=loads):
            loads.append(site.library.status().slot(slot).barcode)
            return original_load(slot, drive)

        site.library.load = counting_load
        site.media.unload(0)
        reader = MediaReader(site.catalog, site.media)
        try:
            got = _collect(reader, full.data_set_id, paths)
        finally:
            reader.close()
            site.library.load = original_load
        assert loads == cartridges
        assert set(got) == set(paths)
        for path in paths:
            if path in expected:
                assert got[path] == expected[path]


def test_a_corrupted_byte_fails_the_object_at_its_end_not_before(busy_site):
    """The XXH3-128 check stays: every batch is handed over, then the object fails with the same
    error as a whole-object read (and batches are read-only views a consumer may keep)."""
    site, (_full, other, _inc, _diff) = busy_site
    record = site.catalog.data_set(other.data_set_id)
    target = next(o for o in record.objects if o.path == "DB2/priv2.edb")
    image = site.library.cartridge_path(target.barcode)
    raw = bytearray(image.read_bytes())
    at = raw.find(payload(4, 2 * MB)[1_500_000:1_500_064])
    raw[at + 3] ^= 0x01
    image.write_bytes(raw)
    reader = MediaReader(site.catalog, site.media)
    kept = []
    try:
        with pytest.raises(CorruptDataError, match="XXH3-128 of the data read back does not match the catalog"):
            for _obj, chunks in reader.read_objects(other.data_set_id, ["DB2/priv2.edb"]):
                for chunk in chunks:
                    assert memoryview(chunk).readonly
                    kept.append(chunk)
    finally:
        reader.close()
    data = b"".join(bytes(c) for c in kept)
    assert len(data) == 2 * MB and data != payload(4, 2 * MB)


def test_wrong_extents_in_the_catalog_fall_back_to_walking_the_whole_set(busy_site, monkeypatch):
    """The first cartridge to load comes from the catalog's extents; if they are wrong (the object
    is not where the walk starts), the reader walks the set from its first cartridge instead of
    failing, and the bytes are still checked against the catalog's digest."""
    import dataclasses

    site, (full, _other, _inc, _diff) = busy_site
    spanned = site.catalog.cartridges_of(full.data_set_id)
    real = site.catalog.data_set

    def lying(set_id):
        record = real(set_id)
        objects = [dataclasses.replace(o, extents=[spanned[1]]) if o.path == "DB1/priv1.edb" else o
                   for o in record.objects]
        return dataclasses.replace(record, objects=objects)

    monkeypatch.setattr(site.catalog, "data_set", lying)
    reader = MediaReader(site.catalog, site.media)
    try:
        got = _collect(reader, full.data_set_id, ["DB1/priv1.edb"])
    finally:
        reader.close()
    assert got["DB1/priv1.edb"] == payload(1, 7 * MB)
