"""``mailtape jobs|catalog|media|verify`` on a site folder backed up in-process (real-time runtime,
worker threads), through the CLI's real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from reference.cli.main import main
from reference.server.catalog import Catalog
from reference.server.site import create_site, open_site
from server_helpers import MB, agent_backup, payload


def run(*args: str) -> tuple[int, str, str]:
    with CliRunner().isolation() as (out, err, _):
        code = main(list(args))
        return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.fixture
def site_dir(tmp_path) -> Path:
    root = create_site(tmp_path / "site", drives=2, slots=6, cartridges=6, capacity_bytes=6 * MB,
                       settings={"seed": 5, "block_size": 65536})
    site = open_site(root)
    try:
        async def backups():
            await agent_backup(site.server, "SG1", {"DB1/priv1.edb": payload(1, 7 * MB),
                                                    "Log Files/E00000001.log": payload(2, 300_000)})
            await agent_backup(site.server, "SG1", {"Log Files/E00000002.log": payload(3, 300_000)},
                               backup_type="incremental")
        site.runtime.run(backups())
    finally:
        site.close()
    return root


def test_jobs_lists_exit_status(site_dir):
    code, out, err = run("jobs", str(site_dir), "--json")
    assert (code, err) == (0, "")
    jobs = json.loads(out)
    assert [(j["kind"], j["level"], j["status"], j["exit_status"]) for j in jobs] == [
        ("backup", "incremental", "ok", 0), ("backup", "full", "ok", 0)]
    code, out, _ = run("jobs", str(site_dir))
    assert code == 0 and "EXCH01/SG1" in out and "incremental" in out


def test_catalog_ls_and_show(site_dir):
    code, out, _ = run("catalog", "ls", str(site_dir), "--json")
    sets = json.loads(out)
    assert code == 0 and [s["backup_type"] for s in sets] == ["full", "incremental"]
    assert sets[0]["cartridges"] == ["000001L9", "000002L9"]
    code, out, _ = run("catalog", "show", str(site_dir), str(sets[0]["id"]), "--json")
    shown = json.loads(out)
    edb = next(o for o in shown["objects"] if o["path"] == "DB1/priv1.edb")
    assert edb["extents"] == ["000001L9", "000002L9"]
    code, out, _ = run("catalog", "show", str(site_dir), str(sets[0]["id"]))
    assert code == 0 and "DB1/priv1.edb" in out and "000002L9" in out
    code, out, err = run("catalog", "show", str(site_dir), "99")
    assert code == 1 and err.startswith("mailtape: error: data set 99 not found")


def test_media_ls_and_label(site_dir):
    code, out, _ = run("media", "ls", str(site_dir), "--json")
    media = {m["barcode"]: m for m in json.loads(out)}
    assert code == 0 and media["000001L9"]["status"] == "full" and media["000002L9"]["status"] == "append"
    code, out, err = run("media", "label", str(site_dir), "000001L9")
    assert code == 1 and "is not blank" in err and "--force" in err
    code, out, err = run("media", "label", str(site_dir), "000006L9", "--pool", "Offsite")
    assert (code, err) == (0, "") and out.startswith("labelled 000006L9: pool Offsite, media family ")
    code, out, _ = run("media", "ls", str(site_dir), "--json")
    media = {m["barcode"]: m for m in json.loads(out)}
    assert (media["000006L9"]["pool"], media["000006L9"]["status"], media["000006L9"]["location"]) == (
        "Offsite", "append", "slot 6")


def test_verify_ok_then_mismatch_exits_1(site_dir):
    code, out, err = run("verify", str(site_dir))
    assert (code, err) == (0, "") and out.startswith("verified 2 data set(s), 5 object(s)")
    image = site_dir / "library" / "cartridges" / "000002L9.tap"
    raw = bytearray(image.read_bytes())
    at = raw.find(payload(3, 300_000)[5000:5064])
    raw[at] ^= 1
    image.write_bytes(raw)
    code, out, err = run("verify", str(site_dir), "--set", "2")
    assert code == 1
    assert "MISMATCH set 2: cartridge 000002L9 file 3: Log Files/E00000002.log: SHA-256 mismatch" in out
    assert err == f"mailtape: error: verify found 2 problem(s) on {site_dir}\n"
    code, out, _ = run("jobs", str(site_dir), "--json")
    assert json.loads(out)[0]["kind"] == "verify" and json.loads(out)[0]["exit_status"] == 2


def test_catalog_rebuild_from_media(site_dir, tmp_path):
    original = Catalog(site_dir / "catalog.sqlite")
    expected = original.dump()
    original.close()
    code, _out, err = run("catalog", "rebuild", str(site_dir))
    assert code == 1 and "a catalog already exists" in err
    code, out, err = run("catalog", "rebuild", str(site_dir), "--force")
    assert (code, err) == (0, ""), err
    assert "2 data set(s), 5 object(s)" in out
    assert (site_dir / "catalog.sqlite.old").exists()
    rebuilt = Catalog(site_dir / "catalog.sqlite")
    try:
        assert rebuilt.dump() == expected
    finally:
        rebuilt.close()
    code, out, _ = run("verify", str(site_dir))
    assert code == 0


def test_missing_site_is_one_line_error(tmp_path):
    code, out, err = run("jobs", str(tmp_path / "nope"))
    assert code == 1 and err == f"mailtape: error: {tmp_path / 'nope'}: no such site folder\n"
    (tmp_path / "empty").mkdir()
    code, out, err = run("media", "ls", str(tmp_path / "empty"))
    assert code == 1 and "no tape library here" in err


def test_label_write_protected_and_bad_settings_are_clear_errors(site_dir):
    from emulators.tape.cartridge import Cartridge

    cart = Cartridge.open(site_dir / "library" / "cartridges" / "000005L9.tap")
    cart.set_write_protect(True)
    cart.close()
    code, _out, err = run("media", "label", str(site_dir), "000005L9")
    assert code == 1 and err == "mailtape: error: cartridge 000005L9 is write-protected; it cannot be labelled\n"
    (site_dir / "site.json").write_text('{"pool": "Default", "colour": "blue"}')
    code, _out, err = run("media", "ls", str(site_dir))
    assert code == 1 and err == f"mailtape: error: {site_dir / 'site.json'}: unknown settings ['colour']\n"
