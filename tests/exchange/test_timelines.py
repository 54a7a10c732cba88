"""Behaviours 22-24 after a point-in-time restore: the generations of the abandoned timeline stay
in the storage group's log folder, so a later roll-forward of the same backup must not replay
them into the database (JET_errConsistentTimeMismatch -551, docs/exchange-emulator.md
"Timelines after a point-in-time restore")."""

from __future__ import annotations

import dataclasses

import pytest
from exchange_test_helpers import SG1, db_name, fill

from emulators.exchange import errors
from emulators.exchange.harness import run_backup, run_restore
from emulators.exchange.ondisk.structs import DbHeader
from reference.protocols.exchange import ExchangeError, RestoreComplete, hresult_for_jet


def _dismount_for_restore(server):
    name = db_name(server)
    server.dismount(SG1, name)
    server.set_allow_restore_overwrite(SG1, name, True)


def _db(server):
    return server.database(SG1, db_name(server))


def _header(server) -> DbHeader:
    edb = server.abspath(server.storage_group(SG1).databases[0].files[0])
    with open(edb, "rb") as f:
        return DbHeader.unpack(f.read(server.profile.page_size), False)


def _point_in_time_restore_of_first_full(server, tmp_path):
    """Full 1, mail, point-in-time restore of full 1, new mail: returns (full 1, state now)."""
    fill(_db(server), 20)
    full = [run_backup(server.backup_api(), SG1, "full", str(tmp_path / "full1"))]
    fill(_db(server), 10, 5000)
    with _db(server).transaction() as tx:
        tx.delete("items", b"k%06d" % 3)
    _dismount_for_restore(server)
    assert run_restore(server.backup_api(), full, roll_forward=False, restore_path=str(tmp_path / "pit")) == 0
    fill(_db(server), 4, 9000)
    return full, _db(server).snapshot()


def test_B24_roll_forward_after_point_in_time_restore_is_refused_551(server, tmp_path):
    """Behaviour 24 (+22): the re-attach logged after the point-in-time restore was made from the
    consistent point of that restore, the replay of the abandoned timeline reaches another one
    (its detach) -> -551, as an error from Complete; the database is not mounted."""
    full, _now = _point_in_time_restore_of_first_full(server, tmp_path)
    _dismount_for_restore(server)
    with pytest.raises(ExchangeError) as e:
        run_restore(server.backup_api(), full, roll_forward=True, restore_path=str(tmp_path / "rf"))
    assert e.value.jet == errors.ConsistentTimeMismatch.number == -551
    assert e.value.hr == hresult_for_jet(-551) == 0xC8000227
    assert "consistent" in str(e.value)
    assert not server.is_mounted(SG1, db_name(server))


def test_B24_point_in_time_restore_still_possible_after_the_refusal(server, tmp_path):
    """Behaviour 24: the refused roll-forward leaves the way open to a point-in-time restore."""
    full, _now = _point_in_time_restore_of_first_full(server, tmp_path)
    _dismount_for_restore(server)
    with pytest.raises(ExchangeError):
        run_restore(server.backup_api(), full, roll_forward=True, restore_path=str(tmp_path / "rf"))
    assert run_restore(server.backup_api(), full, roll_forward=False, restore_path=str(tmp_path / "pit2")) == 0
    at_full = _db(server).snapshot()
    assert b"k%06d" % 3 in at_full["items"] and b"k%06d" % 9000 not in at_full["items"]


def test_B24_roll_forward_from_a_full_taken_after_point_in_time_restore(server, tmp_path):
    """Behaviour 24: a full taken on the new timeline rolls forward through its logs to the present."""
    _full, _now = _point_in_time_restore_of_first_full(server, tmp_path)
    full2 = [run_backup(server.backup_api(), SG1, "full", str(tmp_path / "full2"))]
    fill(_db(server), 5, 12000)
    latest = _db(server).snapshot()
    _dismount_for_restore(server)
    run_restore(server.backup_api(), full2, roll_forward=True, restore_path=str(tmp_path / "rf2"))
    assert _db(server).snapshot() == latest


def test_B24_repeated_roll_forward_restores_stay_on_one_timeline(server, tmp_path):
    """Behaviour 24: roll-forward restores keep one timeline (the database ends consistent at its
    last detach), so rolling the same full forward again reaches the present, no -551."""
    fill(_db(server), 20)
    full = [run_backup(server.backup_api(), SG1, "full", str(tmp_path / "full"))]
    for round_, start in enumerate((5000, 8000)):
        fill(_db(server), 6, start)
        latest = _db(server).snapshot()
        _dismount_for_restore(server)
        detached_at = _header(server).lgpos_consistent
        run_restore(server.backup_api(), full, roll_forward=True, restore_path=str(tmp_path / f"rf{round_}"))
        assert _db(server).snapshot() == latest
        server.dismount(SG1, db_name(server))
        assert _header(server).lgpos_consistent.generation >= detached_at.generation
        server.mount(SG1, db_name(server))


def test_B24_point_in_time_restore_is_consistent_at_the_end_of_the_restored_logs(server, tmp_path):
    """Behaviour 24: a point-in-time hard recovery leaves lgposConsistent in the last restored
    generation (what the next attach record carries), not at the abandoned detach."""
    fill(_db(server), 20)
    full = [run_backup(server.backup_api(), SG1, "full", str(tmp_path / "full"))]
    fill(_db(server), 10, 5000)
    _dismount_for_restore(server)
    detached_at = _header(server).lgpos_consistent
    path = str(tmp_path / "pit")
    run_restore(server.backup_api(), full, roll_forward=False, restore_path=path, flags=RestoreComplete.NONE)
    env = server.backup_api().restore_load_environment(path)
    consistent = _header(server).lgpos_consistent
    assert consistent.generation == env.gen_high
    assert consistent != detached_at and detached_at.generation > env.gen_high


def test_B24_profile_switch_replays_the_other_timeline(server, tmp_path):
    """Behaviour 24, UNVERIFIED choice `refuse_other_timeline`: switched off, the roll-forward
    replays both timelines (the abandoned mail comes back on top of the new)."""
    full, now = _point_in_time_restore_of_first_full(server, tmp_path)
    server.profile = dataclasses.replace(server.profile, refuse_other_timeline=False)
    _dismount_for_restore(server)
    run_restore(server.backup_api(), full, roll_forward=True, restore_path=str(tmp_path / "rf"))
    mixed = _db(server).snapshot()["items"]
    assert mixed != now["items"]
    assert b"k%06d" % 5000 in mixed and b"k%06d" % 9000 in mixed  # both timelines' mail
