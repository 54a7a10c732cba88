"""The emulated library beyond the shared suite: Bareos fixtures reproduced (C1/C2), mail slot and
PREVENT (C6), drive ejection profiles (C5), cleaning cartridges, inventory (C7), robot time,
persistence, corrupt state, and a model-based property test of moves.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from emulators.clock import VirtualClock
from emulators.tape.cartridge import Cartridge
from emulators.tape.library import EmulatedLibrary, create_library, standard_barcode
from emulators.tape.library_state import LibraryStore
from reference.errors import CorruptDataError, MailtapeError, NotFoundError
from reference.protocols.changer import ChangerError, Sense


def bareos_library(root: Path, cartridges: int = 8, **profile_changes) -> EmulatedLibrary:
    """The library of the Bareos fixtures: 2 drives, 20 slots + 4 import/export, LTO-8 tapes."""
    create_library(root, drives=2, slots=20, import_export=4, media="LTO8", cartridges=cartridges,
                   capacity_bytes=4 << 20)
    if profile_changes:
        store = LibraryStore(root)
        state = store.load()
        state.profile = replace(state.profile, **profile_changes)
        store.save(state)
    return EmulatedLibrary(root, clock=VirtualClock(), device_name="/dev/sg0")


@pytest.fixture
def library(tmp_path: Path) -> EmulatedLibrary:
    return bareos_library(tmp_path / "lib")


def fixture_text(shared_dir: Path, state: str) -> str:
    return (shared_dir / "samples" / "mtx" / f"mtx-status-{state}.txt").read_text()


# --- C1/C2: the Bareos inventories, produced by real moves ----------------------------------------

@pytest.mark.parametrize("state, moves", [
    ("notloaded", []),
    ("loaded1", [(2, 0)]),
    ("loaded2", [(6, 1)]),
    ("loadedboth", [(3, 0), (4, 1)]),
])
def test_c1_moves_reproduce_bareos_fixtures(tmp_path, shared_dir, state, moves) -> None:
    """C1: after the same loads the emulator prints the fixture byte for byte (so C2's list/listall
    expected outputs follow, see test_mtx_format)."""
    library = bareos_library(tmp_path / "lib")
    for slot, drive in moves:
        library.load(slot, drive)
    assert library.render_mtx_status() == fixture_text(shared_dir, state)


def test_c1_empty_library_matches_fixture(tmp_path, shared_dir) -> None:
    library = bareos_library(tmp_path / "lib", cartridges=0)
    assert library.render_mtx_status() == fixture_text(shared_dir, "empty")


def test_c1_c6_operator_import_reproduces_impexp_fixture(library, shared_dir) -> None:
    """C1 + C6: cartridges put in the mail slots by the operator show as IMPORT/EXPORT Full."""
    for serial in range(21, 25):
        name = standard_barcode(serial, "LTO-8")
        Cartridge.create(library.cartridge_path(name), barcode=name, capacity_bytes=1 << 20).close()
    library.open_map()
    for serial in range(21, 25):
        library.operator_insert(serial, standard_barcode(serial, "LTO-8"))
    library.close_map()
    assert library.render_mtx_status() == fixture_text(shared_dir, "impexp")
    assert library.operator_placed(21)


# --- C6: mail slot, unit attention, PREVENT -------------------------------------------------------

def test_c6_move_to_or_from_open_mail_slot_is_2_3a_02(library) -> None:
    library.open_map()
    with pytest.raises(ChangerError) as error:
        library.transfer(1, 21)
    assert error.value.sense == Sense(0x2, 0x3A, 0x02)
    library.close_map()
    library.transfer(1, 21)
    library.open_map()
    with pytest.raises(ChangerError) as error:
        library.load(21, 0)
    assert error.value.sense == Sense(0x2, 0x3A, 0x02)
    assert library.status().slot(21).full


def test_c6_operator_import_sets_impexp_and_posts_unit_attention(library) -> None:
    """C6: operator load + close -> IMPEXP set and UA 6/28/01 once; robot moves clear IMPEXP."""
    library.open_map()
    library.operator_remove(21) if library.status().slot(21).full else None
    with pytest.raises(ChangerError, match="not an import/export element"):
        library.operator_insert(3, "000001L8")
    with pytest.raises(ChangerError, match="already inside the library"):
        library.operator_insert(21, "000001L8")
    name = standard_barcode(99, "LTO-8")
    Cartridge.create(library.cartridge_path(name), barcode=name, capacity_bytes=1 << 20).close()
    assert library.shelf() == [name]
    library.operator_insert(22, name)
    status = library.status()
    assert status.slot(22).full and status.slot(22).barcode is None  # not scanned while open
    library.close_map()
    assert library.status().slot(22).barcode == name
    assert library.operator_placed(22)
    assert library.take_unit_attention() == Sense(0x6, 0x28, 0x01)
    assert library.take_unit_attention() is None
    library.transfer(22, 9)
    assert library.status().slot(9).barcode == name
    assert library.shelf() == []


def test_c6_operator_export_to_shelf(library) -> None:
    library.transfer(5, 24)
    library.open_map()
    assert library.operator_remove(24) == "000005L8"
    assert library.shelf() == ["000005L8"]
    with pytest.raises(ChangerError, match="is empty"):
        library.operator_remove(24)
    library.close_map()
    assert library.take_unit_attention() is None  # nothing was imported
    with pytest.raises(ChangerError, match="closed"):
        library.operator_insert(24, "000005L8")


def test_c6_prevent_medium_removal_blocks_opening_the_map(library) -> None:
    library.prevent_medium_removal(True)
    with pytest.raises(ChangerError) as error:
        library.open_map()
    assert error.value.sense == Sense(0x5, 0x53, 0x02)
    library.transfer(1, 21)  # the robot may still use the mail slot
    library.prevent_medium_removal(False)
    library.open_map()


# --- robot time, exchange, SCSI addresses ---------------------------------------------------------

def test_robot_moves_are_charged_to_the_clock(library) -> None:
    clock = library.clock
    start = clock.now()
    library.transfer(1, 10)
    assert clock.now() - start == pytest.approx(library.profile.robot_move_seconds)
    library.exchange(10, 2)
    assert clock.now() - start == pytest.approx(3 * library.profile.robot_move_seconds)
    with pytest.raises(ChangerError):
        library.transfer(11, 12)  # a refused move costs nothing
    assert clock.now() - start == pytest.approx(3 * library.profile.robot_move_seconds)
    status = library.status()
    assert (status.slot(10).barcode, status.slot(2).barcode) == ("000002L8", "000001L8")


def test_move_medium_uses_scsi_addresses(library) -> None:
    """SMC MOVE MEDIUM by element address (mhvtl generic map: drives 1.., MAP 0x300.., slots 0x400..)."""
    assert (library.drive_address(0), library.slot_address(1), library.slot_address(21)) == (1, 0x400, 0x300)
    library.move_medium(0x400, 0x401 + 10)
    assert library.status().slot(12).barcode == "000001L8"
    with pytest.raises(ChangerError, match="MOVE MEDIUM from Element Address 4660 to 1 Failed") as error:
        library.move_medium(0x1234, 1)
    assert error.value.sense == Sense(0x5, 0x21, 0x01)
    with pytest.raises(ChangerError) as error:
        library.move_medium(0x401, 1, transport=0x77)
    assert error.value.sense == Sense(0x5, 0x21, 0x01)


# --- C7: inventory --------------------------------------------------------------------------------

def test_c7_inventory_rereads_labels_and_notices_missing_cartridges(library) -> None:
    with Cartridge.open(library.cartridge_path("000003L8")) as cartridge:
        cartridge.meta["barcode"] = "RELABEL1"
    library.cartridge_path("000004L8").unlink()
    assert library.status().slot(3).barcode == "000003L8"  # cached until re-scanned
    clock_before = library.clock.now()
    library.inventory()
    status = library.status()
    assert status.slot(3).barcode == "RELABEL1"
    assert not status.slot(4).full
    assert library.clock.now() > clock_before


def test_c7_no_barcode_reader_prints_no_volume_tags(tmp_path) -> None:
    library = bareos_library(tmp_path / "lib", barcode_reader=False)
    library.load(1, 0)
    text = library.render_mtx_status()
    assert "VolumeTag" not in text
    assert "Data Transfer Element 0:Full (Storage Element 1 Loaded)\n" in text
    assert "      Storage Element 2:Full \n" in text


# --- persistence and bad state --------------------------------------------------------------------

def test_state_survives_reopening_and_is_shared_between_instances(library) -> None:
    other = EmulatedLibrary(library.root)
    library.load(7, 1)
    assert other.status().drive(1).source == 7
    with pytest.raises(ChangerError, match="No Source for tape in drive 0!"):
        other.unload()  # mtx unload defaults to drive 0, which is empty
    with pytest.raises(ChangerError, match="Data Transfer Element 0 is Empty"):
        other.unload(3, 0)
    other.unload(None, 1)
    assert library.status().slot(7).full


def test_write_is_atomic_when_the_rename_fails(library, monkeypatch) -> None:
    before = library.store.state_path.read_bytes()

    def crash(*_args):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        library.transfer(1, 15)
    monkeypatch.undo()
    assert library.store.state_path.read_bytes() == before
    assert not [p for p in library.root.iterdir() if p.name.endswith(".tmp")]
    assert EmulatedLibrary(library.root).status().slot(1).full


@pytest.mark.parametrize("damage, complaint", [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: text.replace('"number": 3,', '"number": 4,', 1), "numbered"),
    (lambda text: text.replace('"000002L8"', '"000001L8"', 1), "is in both"),
    (lambda text: text.replace('"format": "mailtape-tape-library"', '"format": "x"'), "not a"),
    (lambda text: text.replace('"map_open": false', '"map_open": "no"'), "map_open"),
    (lambda text: text.replace('"robot_move_seconds": 10.0', '"robot_move_seconds": "fast"'), "robot_move"),
    (lambda text: text.replace('"pending_unit_attention": []', '"pending_unit_attention": ["6/28"]'),
     "K/AA/QQ"),
])
def test_corrupt_library_json_is_reported_naming_the_file(library, damage, complaint) -> None:
    path = library.store.state_path
    path.write_text(damage(path.read_text()))
    with pytest.raises(CorruptDataError, match=complaint) as error:
        EmulatedLibrary(library.root)
    assert str(path) in str(error.value)


def test_missing_library_is_not_found(tmp_path) -> None:
    with pytest.raises(NotFoundError, match="no tape library here"):
        EmulatedLibrary(tmp_path)


# --- creation -------------------------------------------------------------------------------------

def test_create_library_barcodes_capacity_and_refusals(tmp_path) -> None:
    create_library(tmp_path / "L", drives=1, slots=3, import_export=1, media="LTO9", cartridges=2,
                   capacity_bytes=5_000_000)
    library = EmulatedLibrary(tmp_path / "L")
    status = library.status()
    assert [s.barcode for s in status.slots] == ["000001L9", "000002L9", None, None]
    with Cartridge.open(library.cartridge_path("000002L9")) as cartridge:
        assert (cartridge.generation, cartridge.kind, cartridge.capacity_bytes) == ("LTO-9", "data", 5_000_000)
    with pytest.raises(MailtapeError, match="already exists"):
        create_library(tmp_path / "L", drives=1, slots=3)
    with pytest.raises(MailtapeError, match="--cartridges"):
        create_library(tmp_path / "M", drives=1, slots=3, cartridges=4)
    with pytest.raises(NotFoundError, match="unknown LTO media"):
        create_library(tmp_path / "N", media="LTO99")
    assert standard_barcode(123, "LTO-7") == "000123L7"


# --- model-based property: moves keep every cartridge in exactly one place ------------------------

class LibraryMoves(RuleBasedStateMachine):
    """Random load/unload/transfer/exchange sequences against a dict model of where tapes are."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self._tmp = tempfile.TemporaryDirectory()
        self.library: EmulatedLibrary | None = None
        self.model: dict[str, str] = {}

    @initialize()
    def setup(self) -> None:
        root = Path(self._tmp.name) / "lib"
        create_library(root, drives=2, slots=6, import_export=2, media="LTO8", cartridges=4,
                       capacity_bytes=1 << 20)
        self.library = EmulatedLibrary(root)
        self.model = {f"S{n}": f"{n:06d}L8" for n in range(1, 5)}
        self.sources: dict[int, int] = {}

    def teardown(self) -> None:
        self._tmp.cleanup()

    def _expect(self, action, ok: bool, sense: tuple[int, int] | None) -> bool:
        try:
            action()
        except ChangerError as error:
            assert not ok, f"refused unexpectedly: {error}"
            assert sense is None or (error.sense.asc, error.sense.ascq) == sense, error
            return False
        assert ok, "a move the model forbids succeeded"
        return True

    @rule(slot=st.integers(1, 8), drive=st.integers(0, 1))
    def load(self, slot: int, drive: int) -> None:
        s, d = f"S{slot}", f"D{drive}"
        ok = d not in self.model and s in self.model
        sense = (0x3B, 0x0D) if d in self.model else (0x3B, 0x0E)
        if self._expect(lambda: self.library.load(slot, drive), ok, None if ok else sense):
            self.model[d] = self.model.pop(s)
            self.sources[drive] = slot

    @rule(slot=st.one_of(st.none(), st.integers(1, 8)), drive=st.integers(0, 1))
    def unload(self, slot: int | None, drive: int) -> None:
        d = f"D{drive}"
        target = slot if slot is not None else self.sources.get(drive)
        ok = d in self.model and target is not None and f"S{target}" not in self.model
        if self._expect(lambda: self.library.unload(slot, drive), ok, None):
            self.model[f"S{target}"] = self.model.pop(d)
            self.sources.pop(drive)

    @rule(source=st.integers(1, 8), destination=st.integers(1, 8))
    def transfer(self, source: int, destination: int) -> None:
        s, t = f"S{source}", f"S{destination}"
        ok = s in self.model and (t not in self.model or s == t)
        if self._expect(lambda: self.library.transfer(source, destination), ok, None):
            self.model[t] = self.model.pop(s)

    @rule(first=st.integers(1, 8), second=st.integers(1, 8))
    def exchange(self, first: int, second: int) -> None:
        a, b = f"S{first}", f"S{second}"
        ok = a in self.model and b in self.model
        if self._expect(lambda: self.library.exchange(first, second), ok, None):
            self.model[a], self.model[b] = self.model[b], self.model[a]

    @invariant()
    def matches_model(self) -> None:
        if self.library is None:
            return
        status = self.library.status()
        seen = {f"D{e.number}": e.barcode for e in status.drives if e.full}
        seen |= {f"S{e.number}": e.barcode for e in status.slots if e.full}
        assert seen == self.model
        reopened = LibraryStore(self.library.root).load()  # the file on disk is valid and agrees
        assert sum(1 for e in [*reopened.drives, *reopened.slots] if e.cartridge) == 4


TestLibraryMoves = LibraryMoves.TestCase
TestLibraryMoves.settings = settings(max_examples=15, stateful_step_count=15, deadline=None)


def test_library_json_is_readable_json_with_the_documented_layout(library) -> None:
    data = json.loads(library.store.state_path.read_text())
    assert data["format"] == "mailtape-tape-library" and data["version"] == 1
    assert [d["number"] for d in data["drives"]] == [0, 1]
    assert [s["number"] for s in data["slots"]] == list(range(1, 25))
    assert [s["import_export"] for s in data["slots"]].count(True) == 4


def test_concurrent_writers_do_not_lose_moves(library) -> None:
    """Two library objects (as two processes would) moving tapes at once: the flock around every
    read-modify-write means no move is lost and no cartridge is duplicated."""
    import threading

    def shuttle(source: int, destination: int) -> None:
        mine = EmulatedLibrary(library.root)
        for _ in range(10):
            mine.transfer(source, destination)
            mine.transfer(destination, source)
        mine.transfer(source, destination)

    threads = [threading.Thread(target=shuttle, args=pair) for pair in ((1, 11), (2, 12), (3, 13))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    status = library.status()
    assert [status.slot(n).barcode for n in (11, 12, 13)] == ["000001L8", "000002L8", "000003L8"]
    assert not any(status.slot(n).full for n in (1, 2, 3))
    assert sum(1 for s in status.slots if s.full) == 8


def test_inventory_with_a_corrupt_cartridge_sidecar_names_it_and_changes_nothing(library) -> None:
    sidecar = library.cartridge_path("000006L8").with_name("000006L8.tap.json")
    sidecar.write_text("{not json")
    before = library.store.state_path.read_bytes()
    with pytest.raises(CorruptDataError, match="unreadable cartridge sidecar") as error:
        library.inventory()
    assert str(sidecar) in str(error.value)
    assert library.store.state_path.read_bytes() == before


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_library_json_fuzz_only_ever_raises_corrupt_data(tmp_path_factory, data) -> None:
    """Fuzz: replace any one field of a valid library.json with any JSON value -> either a valid
    state or CorruptDataError naming the file; never another exception."""
    from emulators.tape.library_state import LibraryState

    root = tmp_path_factory.getbasetemp() / "fuzz-lib"
    if not (root / "library.json").exists():
        create_library(root, drives=2, slots=3, import_export=1, media="LTO8", cartridges=2,
                       capacity_bytes=1 << 20)
    document = json.loads((root / "library.json").read_text())
    paths = [("",)]
    for key, value in document.items():
        paths.append((key,))
        if isinstance(value, dict):
            paths += [(key, inner) for inner in value]
        if isinstance(value, list):
            for index, item in enumerate(value):
                paths.append((key, index))
                paths += [(key, index, inner) for inner in item] if isinstance(item, dict) else []
    path = data.draw(st.sampled_from(paths[1:]))
    replacement = data.draw(json_values)
    target = document
    for step in path[:-1]:
        target = target[step]
    if data.draw(st.booleans()) and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = replacement
    try:
        state = LibraryState.from_json(document, "fuzz/library.json")
    except CorruptDataError as error:
        assert "fuzz/library.json" in str(error)
    else:
        state.validate()


def test_one_library_object_shared_by_threads_queues_robot_time(tmp_path) -> None:
    """A backup server's jobs share one library object: moves stay consistent and, with one
    picker, robot time adds up on the virtual clock (Timeline) instead of overlapping."""
    import threading

    library = bareos_library(tmp_path / "lib")
    start = library.clock.now()
    errors: list[BaseException] = []

    def shuttle(source: int, destination: int) -> None:
        try:
            for _ in range(5):
                library.transfer(source, destination)
                library.transfer(destination, source)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=shuttle, args=pair) for pair in ((1, 11), (2, 12), (3, 13))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [library.status().slot(n).barcode for n in (1, 2, 3)] == ["000001L8", "000002L8", "000003L8"]
    assert library.clock.now() - start == pytest.approx(30 * library.profile.robot_move_seconds)
