"""Backup server and media manager against the emulated library: spanning, appending,
multi-streaming, wrong/no/write-protected cartridges, failures that commit nothing."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from emulators.tape.cartridge import Cartridge
from reference.format.media import MediaIdentity, MediaWriter
from reference.server.media import NoUsableCartridgeError, WrongCartridgeError
from reference.server.readback import MediaReader
from reference.transfer import TransferAborted
from server_helpers import MB, agent_backup, make_site, payload, sha


def _tape_digest(site, barcode: str) -> str:
    return hashlib.sha256(site.library.cartridge_path(barcode).read_bytes()).hexdigest()


def _read_all(site, set_id: int) -> dict[str, bytes]:
    reader = MediaReader(site.catalog, site.media)
    try:
        return {obj.path: b"".join(bytes(c) for c in chunks) for obj, chunks in reader.read_objects(set_id)}
    finally:
        reader.close()


def test_spanning_across_cartridges_reads_back_bit_exact(tmp_path):
    """mtf.md §7.11 (spanning): a 9 MB object on 6 MB cartridges continues on the next cartridge of
    the same family (sequence 2); the catalog lists both cartridges as its extents, the first is
    marked full, and the read-back is bit-exact."""
    site = make_site(tmp_path)
    files = {"DB1/priv1.edb": payload(1, 9 * MB), "DB1/priv1.stm": payload(2, 300_000),
             "Log Files/E0000000A.log": payload(3, 1 << 20)}
    receipt = site.run(agent_backup(site.server, "SG1", files))
    assert receipt.barcodes == ("000001L9", "000002L9")
    record = site.catalog.data_set(receipt.data_set_id)
    edb = next(o for o in record.objects if o.path == "DB1/priv1.edb")
    assert edb.extents == ["000001L9", "000002L9"] and edb.barcode == "000001L9" and edb.tape_file == 1
    assert [o.path for o in record.objects][-1] == "BackupMetadata.json"
    media = {r["barcode"]: r for r in site.catalog.media()}
    # 000001L9 ended with EOTM; the set ends on 000002L9 beyond its early warning (5.5 of 6 MB):
    # both are full, the next set starts on a new cartridge.
    assert media["000001L9"]["status"] == "full" and media["000002L9"]["status"] == "full"
    assert (media["000001L9"]["family_id"], media["000001L9"]["sequence"]) == (record.family_id, 1)
    assert (media["000002L9"]["family_id"], media["000002L9"]["sequence"]) == (record.family_id, 2)
    back = _read_all(site, receipt.data_set_id)
    for path, data in files.items():
        assert back[path] == data, path
    assert site.catalog.jobs()[0]["status"] == "ok" and site.catalog.jobs()[0]["exit_status"] == 0


def test_several_sets_append_to_one_tape(tmp_path):
    """mtf.md §7.2 (appending): sets 1..3 go one after the other on the same cartridge (tape files
    1, 3, 5: FM ESET FM after each), numbered last + 1; every object's catalog block obeys §7.1's
    PBA = PBA(SSET) + floor(FLA x FLB / P)."""
    site = make_site(tmp_path, capacity=40 * MB)

    async def three():
        out = []
        for level, seed in (("full", 10), ("incremental", 11), ("incremental", 12)):
            out.append(await agent_backup(site.server, "SG1", {f"Log Files/E000000{seed:02X}.log": payload(seed, 500_000)},
                                          backup_type=level))
        return out

    receipts = site.run(three())
    sets = [site.catalog.data_set(r.data_set_id) for r in receipts]
    assert {r.barcodes for r in receipts} == {("000001L9",)}
    assert [s.set_number for s in sets] == [1, 2, 3]
    assert [s.first_file for s in sets] == [1, 3, 5]
    assert len({s.family_id for s in sets}) == 1
    assert site.catalog.medium("000001L9")["next_file"] == 7
    for record in sets:
        sset_pba = record.objects[0].block - (record.objects[0].fla * 1024) // (64 * 1024)
        assert sset_pba > 0
        assert all(o.block == sset_pba + (o.fla * 1024) // (64 * 1024) for o in record.objects)
    for r, seed in zip(receipts, (10, 11, 12)):
        assert _read_all(site, r.data_set_id)[f"Log Files/E000000{seed:02X}.log"] == payload(seed, 500_000)


def test_concurrent_sessions_use_two_drives(tmp_path):
    """Two storage groups stream at once to two drives (two cartridges, two families); a third
    waits for a free drive and then appends."""
    site = make_site(tmp_path, capacity=40 * MB)
    site.server.max_buffered = 512 * 1024
    peak = {"busy": 0}
    original = site.server._acquire_drive

    async def tracked():
        drive = await original()
        peak["busy"] = max(peak["busy"], len(site.media.drives.numbers) - len(site.server._free))
        return drive

    site.server._acquire_drive = tracked

    async def run():
        return await asyncio.gather(*[
            agent_backup(site.server, f"SG{n}", {"DB/db.edb": payload(n, 3 * MB)}) for n in (1, 2, 3)])

    receipts = site.run(run())
    assert peak["busy"] == 2
    first_two = {receipts[0].barcodes, receipts[1].barcodes}
    assert first_two == {("000001L9",), ("000002L9",)}
    families = {site.catalog.data_set(r.data_set_id).family_id for r in receipts}
    assert len(families) == 2
    for n, r in zip((1, 2, 3), receipts):
        assert _read_all(site, r.data_set_id)["DB/db.edb"] == payload(n, 3 * MB)


def test_wrong_cartridge_is_refused_and_nothing_written(tmp_path):
    """A cartridge whose TAPE header names another media family than the catalog expects."""
    site = make_site(tmp_path, cartridges=2, capacity=40 * MB)
    site.run(agent_backup(site.server, "SG1", {"DB/a.edb": payload(1, 100_000)}))
    site.media.unload(0)
    # Someone relabelled 000001L9 outside this catalog (another family).
    drive = site.drives[0]
    drive.load(Cartridge.open(site.library.cartridge_path("000001L9")))
    device = drive.open(write=True)
    writer = MediaWriter.for_tape(device, identity=MediaIdentity(0xABCDEF01, media_name="Other"))
    writer.write_media_header()
    device.close()
    drive.unload().close()
    before = _tape_digest(site, "000001L9")
    with pytest.raises(WrongCartridgeError, match=r"wrong cartridge: 000001L9 should carry media family .* "
                                                  r"but holds media family ABCDEF01.*nothing was written"):
        site.run(agent_backup(site.server, "SG1", {"DB/a.edb": payload(2, 100_000)}))
    assert _tape_digest(site, "000001L9") == before
    assert site.catalog.jobs()[0]["status"] == "failed"
    assert len(site.catalog.data_sets()) == 1


def test_blank_expected_but_foreign_data_found(tmp_path):
    """A scratch cartridge that is not blank (foreign data) is not overwritten."""
    site = make_site(tmp_path, cartridges=1, capacity=40 * MB)
    drive = site.drives[0]
    drive.load(Cartridge.open(site.library.cartridge_path("000001L9")))
    device = drive.open(write=True)
    device.write(b"NOT MTF " * 64)
    device.close()
    drive.unload().close()
    before = _tape_digest(site, "000001L9")
    with pytest.raises(WrongCartridgeError, match="should be blank but holds a foreign"):
        site.run(agent_backup(site.server, "SG1", {"DB/a.edb": payload(2, 1000)}))
    assert _tape_digest(site, "000001L9") == before
    assert site.catalog.data_sets() == []


def test_no_usable_cartridge_fails_before_writing(tmp_path):
    """Every cartridge full → a clear error at open_session; no bytes are sent or written."""
    site = make_site(tmp_path, cartridges=2, capacity=40 * MB)
    for barcode in ("000001L9", "000002L9"):
        site.media.ensure_known(barcode)
        site.catalog.label_medium(barcode, "Default", 7, 1, 0)
        site.catalog.update_medium(barcode, status="full")
    digests = [_tape_digest(site, b) for b in ("000001L9", "000002L9")]
    with pytest.raises(NoUsableCartridgeError, match="no usable cartridge for pool 'Default'.*2 full"):
        site.run(agent_backup(site.server, "SG1", {"DB/a.edb": payload(2, 1000)}))
    assert [_tape_digest(site, b) for b in ("000001L9", "000002L9")] == digests
    assert site.catalog.jobs()[0]["status"] == "failed" and site.catalog.jobs()[0]["exit_status"] == 2


def test_write_protected_cartridge_is_skipped_with_warning(tmp_path):
    site = make_site(tmp_path, cartridges=2, capacity=40 * MB)
    cart = Cartridge.open(site.library.cartridge_path("000001L9"))
    cart.set_write_protect(True)
    cart.close()
    receipt = site.run(agent_backup(site.server, "SG1", {"DB/a.edb": payload(1, 1000)}))
    assert receipt.barcodes == ("000002L9",)
    job = site.catalog.jobs()[0]
    assert job["status"] == "warning" and job["exit_status"] == 1
    assert any("000001L9 is write-protected" in w for w in job["warnings"])
    assert site.library.cartridge_path("000001L9").stat().st_size == 0


def test_all_write_protected_means_no_usable_cartridge(tmp_path):
    site = make_site(tmp_path, cartridges=1, capacity=40 * MB)
    cart = Cartridge.open(site.library.cartridge_path("000001L9"))
    cart.set_write_protect(True)
    cart.close()
    with pytest.raises(NoUsableCartridgeError, match="1 write-protected"):
        site.run(agent_backup(site.server, "SG1", {"DB/a.edb": payload(1, 1000)}))


def test_spanning_without_a_next_cartridge_fails_and_commits_nothing(tmp_path):
    """Early warning with no blank cartridge left: the set fails, the agent is told, no catalog rows."""
    site = make_site(tmp_path, cartridges=1, capacity=4 * MB)
    with pytest.raises((TransferAborted, NoUsableCartridgeError), match="no blank cartridge to continue"):
        site.run(agent_backup(site.server, "SG1", {"DB/a.edb": payload(1, 6 * MB)}))
    assert site.catalog.data_sets() == []
    assert site.catalog.jobs()[0]["status"] == "failed"
    assert site.catalog.medium("000001L9")["status"] == "full"


def test_agent_abort_commits_nothing_and_next_set_appends(tmp_path):
    site = make_site(tmp_path, cartridges=1, capacity=40 * MB)
    assert site.run(agent_backup(site.server, "SG1", {"DB/a.edb": payload(1, 2 * MB)}, abort_after=MB)) is None
    assert site.catalog.data_sets() == []
    job = site.catalog.jobs()[0]
    assert job["status"] == "failed" and "agent gave up" in job["message"]
    receipt = site.run(agent_backup(site.server, "SG1", {"DB/b.edb": payload(2, 100_000)}))
    record = site.catalog.data_set(receipt.data_set_id)
    assert record.set_number == 2  # the abandoned set 1 is still on the tape
    assert _read_all(site, receipt.data_set_id)["DB/b.edb"] == payload(2, 100_000)


def test_commit_receipt_arrives_only_after_catalog_commit(tmp_path):
    """The agent's licence to truncate logs: when finish() returns, the set is in the catalog."""
    site = make_site(tmp_path, capacity=40 * MB)

    async def run():
        receipt = await agent_backup(site.server, "SG1", {"Log Files/E00000001.log": payload(5, 1000)})
        return receipt, site.catalog.data_set(receipt.data_set_id)

    receipt, record = site.run(run())
    assert record.objects[0].sha256 == sha(payload(5, 1000))
    assert receipt.barcodes == (record.first_barcode,)


def test_set_ending_beyond_early_warning_marks_cartridge_full(tmp_path):
    """tape-drive.md §7 E1 (EOT from early warning on): a set whose last blocks land past early
    warning completes there, but the cartridge is marked full, so the next set starts on a fresh
    cartridge instead of failing in the last metres of this one (1 MB cartridges, 64 KiB blocks)."""
    site = make_site(tmp_path, cartridges=3, capacity=1 * MB)
    files = {f"DB/f{i}.edb": payload(i, size) for i, size in enumerate((9319, 34475, 109408, 65594, 108356,
                                                                      20777, 129814, 60228, 52427, 193322))}

    async def twice():
        return [await agent_backup(site.server, "SG1", files) for _ in range(2)]

    first, second = site.run(twice())
    assert first.barcodes == ("000001L9",) and second.barcodes == ("000002L9",)
    assert site.catalog.medium("000001L9")["status"] == "full"
    back = _read_all(site, second.data_set_id)
    assert all(back[path] == data for path, data in files.items())
