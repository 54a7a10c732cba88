"""Golden checks on the real SQL Server MTF files (spec mtf.md §2 item 1, §9; samples/mtf/README.md)."""

import struct

import pytest

from mtf_helpers import SHARED_MTF, read_media
from reference.format import mtf_structs as m
from reference.format.walk import plausible_dblk

SAMPLES = {
    "sqlserver-a.bak": [
        (0, "TAPE"), (1024, "SFMB"), (1536, "SSET"), (2560, "VOLB"), (3584, "MSCI"), (7680, "MSDA"),
        (3548672, "MSTL"), (3616256, "MSTL"), (3617280, "MSTL"), (3618304, "MSTL"), (3619328, "MSLS"),
        (3623424, "SFMB"), (3623936, "ESET"), (3625984, "ESET"), (3627008, "SFMB")],
    "sqlserver-b.bak": [
        (0, "TAPE"), (4096, "SFMB"), (8192, "SSET"), (9216, "VOLB"), (10240, "MSCI"), (14336, "MSDA"),
        (3490816, "MSTL"), (3560448, "MSTL"), (3561472, "MSTL"), (3562496, "MSTL"), (3563520, "MSLS"),
        (3567616, "SFMB"), (3571712, "ESET"), (3579904, "ESET"), (3584000, "SFMB")],
}


@pytest.fixture(params=sorted(SAMPLES))
def sample(request):
    path = SHARED_MTF / request.param
    if not path.is_file():
        pytest.skip(f"shared MTF samples not found at {SHARED_MTF} (../shared beside the repo)")
    return path


def test_9_walk_finds_the_15_dblks_and_22_stream_headers(sample):
    reader, media = read_media([sample])
    blocks = reader.catalog.blocks
    assert [(b.offset, b.kind) for b in blocks] == SAMPLES[sample.name]
    assert sum(len(b.streams) for b in blocks) == 22
    assert all(ok for b in blocks for (*_, ok) in b.streams)
    assert blocks[-1].offset + blocks[-1].length == sample.stat().st_size  # walk ends at EOF
    assert reader.catalog.problems == []


def test_2_1_every_header_and_stream_checksum_verifies_by_the_spec_algorithm(sample):
    data = sample.read_bytes()
    reader, _ = read_media([sample])
    for b in reader.catalog.blocks:
        assert struct.unpack_from("<H", data, b.offset + 50)[0] == m.xor16(data[b.offset:b.offset + 50])
        for off, *_ in b.streams:
            at = b.offset + off
            assert struct.unpack_from("<H", data, at + 20)[0] == m.xor16(data[at:at + 20])


def test_9_summary_one_set_one_volume_no_files_seven_unknown(sample):
    reader, _ = read_media([sample])
    cat = reader.catalog
    assert len(cat.media) == 1 and cat.media[0].sequence == 1 and cat.media[0].flb == 1024
    assert cat.media[0].software == "Microsoft SQL Server" and cat.media[0].vendor_id == 0x1200
    (s,) = cat.sets
    assert (s.number, s.name, s.attr, s.ended) == (1, "test-Full Database Backup", m.SSET_NORMAL, True)
    assert [v.device for v in s.volumes] == ["C:"]
    assert s.objects == []
    assert sorted(b.kind for b in cat.unknown_blocks) == ["MSCI", "MSDA", "MSLS", "MSTL", "MSTL", "MSTL", "MSTL"]


def test_2_1_dates_decode_to_the_commit_times(sample):
    reader, _ = read_media([sample])
    when = reader.catalog.sets[0].write_date
    expected = {"sqlserver-a.bak": "2022-10-19 14:36:02", "sqlserver-b.bak": "2018-08-27 15:09:05"}
    assert when.isoformat(sep=" ") == expected[sample.name]


def test_2_5_resync_scan_does_not_take_false_positive_xor_windows(sample):
    """Every 512-byte offset: plain 'four letters + XOR' finds 17 windows; our test only the 15."""
    data = sample.read_bytes()
    real = {off for off, _ in SAMPLES[sample.name]}
    naive = {off for off in range(0, len(data) - 52, 512)
             if all(65 <= c <= 90 for c in data[off:off + 4]) and m.header_ok(data, off)}
    assert real < naive and len(naive - real) == 2  # the README's MQDA and SPAD windows
    ours = {off for off in range(0, len(data) - 52, 512)
            if plausible_dblk(data[off:off + 52], kind_required=False)}
    assert ours == real
