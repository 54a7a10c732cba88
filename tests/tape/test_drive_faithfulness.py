"""Drive faithfulness suite (spec tape-drive.md §7, D and P series): st semantics at the errno level.

Every test runs against the emulated drive and, with MAILTAPE_TEST_TAPE=/dev/nstN, a real one; the
test names cite the behaviour numbers.
"""

from __future__ import annotations

import errno

import pytest

from reference.protocols.tape import Gstat, MtOp, TapeDevice

KiB, MiB = 1 << 10, 1 << 20


def block(tag: int, size: int) -> bytes:
    """A recognisable block: its tag repeated (so a wrong block is never mistaken for the right one)."""
    unit = tag.to_bytes(4, "little")
    return (unit * (size // 4 + 1))[:size]


def write_files(tape, blocks_per_file, size=1024, start=0) -> list[list[bytes]]:
    """Write files of the given block counts, each followed by a filemark; returns the blocks."""
    files, tag = [], start
    for count in blocks_per_file:
        data = []
        for _ in range(count):
            data.append(block(tag, size))
            assert tape.write(data[-1]) == size
            tag += 1
        tape.mtop(MtOp.MTWEOF, 1)
        files.append(data)
    return files


def oserror(call, *args) -> int:
    with pytest.raises(OSError) as caught:
        call(*args)
    return caught.value.errno


def scan(tape, size=2 * MiB) -> list[list[int]]:
    """btape ``scan``: read until two zero reads in a row (or an error); block lengths per file."""
    files, current, zeros = [], [], 0
    while True:
        try:
            data = tape.read(size)
        except OSError:
            break
        if data:
            zeros = 0
            current.append(len(data))
            continue
        zeros += 1
        if zeros == 2:
            break
        files.append(current)
        current = []
    return files


# ------------------------------------------------------------------------- D: reading / writing

def test_D1_variable_blocks_read_back_with_exact_lengths_and_bytes(rig):
    sizes = [1, 512, 64512, 1 * MiB]
    with rig.open() as tape:
        assert isinstance(tape, TapeDevice)
        blocks = [block(i, n) for i, n in enumerate(sizes)]
        for data in blocks:
            assert tape.write(data) == len(data)
        tape.mtop(MtOp.MTREW)
        for data in blocks:
            assert tape.read(2 * MiB) == data


def test_D2_large_read_of_smaller_block_returns_block_length(rig):
    with rig.open() as tape:
        tape.write(block(7, 64 * KiB))
        tape.mtop(MtOp.MTREW)
        assert len(tape.read(2 * MiB)) == 65536


def test_D3_short_read_gives_ENOMEM_and_skips_the_block(rig):
    with rig.open() as tape:
        tape.write(block(1, 64 * KiB))
        tape.write(block(2, 1000))
        tape.mtop(MtOp.MTREW)
        assert oserror(tape.read, 512) == errno.ENOMEM
        assert tape.read(2 * MiB) == block(2, 1000)


def test_D4_read_at_filemark_returns_zero_and_crosses_it(rig):
    with rig.open() as tape:
        files = write_files(tape, [2, 1])
        tape.mtop(MtOp.MTREW)
        tape.read(4096), tape.read(4096)
        assert tape.read(4096) == b""
        status = tape.status()
        assert (status.fileno, status.blkno) == (1, 0)
        assert tape.read(4096) == files[1][0]  # no FSF needed: the filemark is already crossed


def test_D5_filemark_then_end_of_data_gives_two_zero_reads_then_EIO(rig):
    with rig.open() as tape:
        tape.write(block(1, 1024))
        tape.mtop(MtOp.MTWEOF, 1)
        tape.mtop(MtOp.MTREW)
        assert tape.read(4096) == block(1, 1024)
        assert tape.read(4096) == b""
        assert tape.read(4096) == b""
        assert oserror(tape.read, 4096) == errno.EIO
        tape.mtop(MtOp.MTREW)
        assert scan(tape) == [[1024]]  # btape scan stops on the second zero read


def test_D6_end_of_data_without_filemark_gives_EIO_at_once(rig):
    with rig.open() as tape:
        tape.write(block(1, 1024))
        tape.write(block(2, 1024))
        assert oserror(tape.read, 4096) == errno.EIO  # reading right after writing: at EOD
        tape.mtop(MtOp.MTREW)  # the last op was a read, so no filemark is added
        assert tape.read(4096) == block(1, 1024)
        assert tape.read(4096) == block(2, 1024)
        assert oserror(tape.read, 4096) == errno.EIO


def test_D7_read_after_MTEOM_gives_EIO(rig):
    with rig.open() as tape:
        write_files(tape, [2, 2])
        tape.mtop(MtOp.MTREW)
        tape.mtop(MtOp.MTEOM)
        assert oserror(tape.read, 4096) == errno.EIO


def test_D8_writing_in_the_middle_truncates_the_rest(rig):
    with rig.open() as tape:
        write_files(tape, [1, 1, 1])
        tape.mtop(MtOp.MTREW)
        tape.mtop(MtOp.MTFSF, 1)
        tape.write(block(99, 1024))
        tape.mtop(MtOp.MTWEOF, 1)
        tape.mtop(MtOp.MTREW)
        tape.mtop(MtOp.MTEOM)
        assert tape.status().fileno == 2
        tape.mtop(MtOp.MTREW)
        tape.mtop(MtOp.MTFSF, 1)
        assert tape.read(4096) == block(99, 1024)
        assert tape.read(4096) == b""
        assert tape.read(4096) == b""


@pytest.mark.parametrize("two_fm", [False, True])
def test_D9_close_after_write_adds_one_filemark_or_two_with_TWO_FM(rig, two_fm):
    MT_ST_SETBOOLEANS, MT_ST_CLEARBOOLEANS, MT_ST_TWO_FM = 0x30000000, 0x40000000, 0x10
    with rig.open() as tape:
        tape.mtop(MtOp.MTSETDRVBUFFER,
                  (MT_ST_SETBOOLEANS if two_fm else MT_ST_CLEARBOOLEANS) | MT_ST_TWO_FM)
        tape.write(block(1, 1024))
    try:
        with rig.open() as tape:
            tape.mtop(MtOp.MTREW)
            tape.mtop(MtOp.MTEOM)
            assert tape.tell() == (3 if two_fm else 2)
    finally:
        with rig.open() as tape:
            tape.mtop(MtOp.MTSETDRVBUFFER, MT_ST_CLEARBOOLEANS | MT_ST_TWO_FM)


def test_D9_close_after_WEOFI_adds_no_filemark(rig):
    with rig.open() as tape:
        tape.write(block(1, 1024))
        tape.mtop(MtOp.MTWEOFI, 1)
    with rig.open() as tape:
        tape.mtop(MtOp.MTREW)
        tape.mtop(MtOp.MTEOM)
        assert tape.tell() == 2


@pytest.mark.parametrize("op", ["rewind", "bsf", "seek"])
def test_D10_REW_BSF_SEEK_right_after_a_write_insert_a_filemark(rig, op):
    with rig.open() as tape:
        write_files(tape, [1])
        tape.write(block(1, 1024))
        tape.write(block(2, 1024))
        if op == "rewind":
            tape.mtop(MtOp.MTREW)
        elif op == "bsf":
            # st writes the filemark, then bumps the count so the user's BSF 1 still means
            # "back over the filemark before this file": the tape stops before file 0's mark.
            tape.mtop(MtOp.MTBSF, 1)
            assert tape.tell() == 1
            assert tape.read(4096) == b""
        else:
            tape.mtop(MtOp.MTSEEK, 0)
        tape.mtop(MtOp.MTREW)
        tape.mtop(MtOp.MTEOM)
        assert tape.tell() == 5  # block, FM, two blocks and the inserted filemark


def test_D10_OFFL_right_after_a_write_inserts_a_filemark(rig):
    with rig.open() as tape:
        tape.write(block(1, 1024))
        tape.mtop(MtOp.MTOFFL)
    with rig.open(nonblock=True) as tape:
        tape.mtop(MtOp.MTLOAD)
        tape.mtop(MtOp.MTEOM)
        assert tape.tell() == 2


def test_D11_rewinding_node_rewinds_on_close_non_rewinding_keeps_position(rig):
    with rig.open() as tape:
        write_files(tape, [1, 1])
    with rig.open() as tape:
        assert tape.tell() == 4  # nst: position kept
    with rig.open(rewind=True) as tape:
        tape.mtop(MtOp.MTBSF, 1)
        assert tape.tell() == 3
    with rig.open() as tape:
        assert tape.tell() == 0 and tape.status().has(Gstat.BOT)


@pytest.mark.parametrize("sysv", [False, True])
def test_D11_closing_a_reader_BSD_keeps_position_SysV_skips_the_file(rig, sysv):
    MT_ST_SETBOOLEANS, MT_ST_CLEARBOOLEANS, MT_ST_SYSV = 0x30000000, 0x40000000, 0x1000
    with rig.open() as tape:
        files = write_files(tape, [2, 1])
        tape.mtop(MtOp.MTSETDRVBUFFER, (MT_ST_SETBOOLEANS if sysv else MT_ST_CLEARBOOLEANS)
                  | MT_ST_SYSV)
        tape.mtop(MtOp.MTREW)
        assert tape.read(4096) == files[0][0]
    try:
        with rig.open() as tape:
            assert tape.read(4096) == (files[1][0] if sysv else files[0][1])
    finally:
        with rig.open() as tape:
            tape.mtop(MtOp.MTSETDRVBUFFER, MT_ST_CLEARBOOLEANS | MT_ST_SYSV)


def test_D12_fixed_mode_write_must_be_a_multiple_and_counts_blocks(rig):
    with rig.open() as tape:
        tape.mtop(MtOp.MTSETBLK, 512)
        try:
            assert oserror(tape.write, bytes(1000)) == errno.EINVAL
            before = tape.tell()
            assert tape.write(bytes(4096)) == 4096
            assert tape.tell() == before + 8
        finally:
            tape.mtop(MtOp.MTSETBLK, 0)


def test_D13_fixed_mode_read_of_wrong_length_block_is_EIO_and_stays_put(rig):
    with rig.open() as tape:
        tape.write(block(1, 1024))
        tape.mtop(MtOp.MTWEOF, 1)
        tape.mtop(MtOp.MTREW)
        tape.mtop(MtOp.MTSETBLK, 512)
        try:
            assert oserror(tape.read, 512) == errno.EIO
            assert tape.tell() == 0
        finally:
            tape.mtop(MtOp.MTSETBLK, 0)
        assert tape.read(4096) == block(1, 1024)


def test_D14_variable_mode_count_above_block_limit_is_EINVAL(rig):
    huge = 64 * MiB
    with rig.open() as tape:
        assert oserror(tape.write, bytes(huge)) == errno.EINVAL
        assert oserror(tape.read, huge) == errno.EINVAL


def test_D15_SETBLK_outside_limits_is_EINVAL_and_zero_means_variable(rig):
    with rig.open() as tape:
        assert oserror(tape.mtop, MtOp.MTSETBLK, 0xFFFFFF) == errno.EINVAL  # > READ BLOCK LIMITS max
        tape.mtop(MtOp.MTSETBLK, 1024)
        assert tape.status().blksize == 1024
        tape.mtop(MtOp.MTSETBLK, 0)
        status = tape.status()
        assert status.blksize == 0 and status.dsreg & 0xFFFFFF == 0


# ------------------------------------------------------------------------- P: positioning

def test_P1_btape_fsf_test(rig):
    with rig.open() as tape:
        files = write_files(tape, [1, 2, 3, 2, 1])
        tape.mtop(MtOp.MTREW)
        tape.mtop(MtOp.MTFSF, 1)
        assert tape.status().fileno == 1 and tape.read(4096) == files[1][0]
        tape.mtop(MtOp.MTFSF, 2)
        assert tape.status().fileno == 3 and tape.read(4096) == files[3][0]
        tape.mtop(MtOp.MTREW)
        tape.mtop(MtOp.MTFSF, 4)
        assert tape.status().fileno == 4 and tape.read(4096) == files[4][0]
        tape.mtop(MtOp.MTFSF, 1)
        assert tape.status().fileno == 5


def test_P2_fsf_beyond_last_filemark_is_EIO_at_EOD(rig):
    with rig.open() as tape:
        write_files(tape, [1, 1])
        tape.mtop(MtOp.MTREW)
        assert oserror(tape.mtop, MtOp.MTFSF, 5) == errno.EIO
        status = tape.status()
        assert status.has(Gstat.EOD)
        assert status.fileno == 2  # 0 + 5 - residue 3
        assert status.blkno == -1
        assert tape.tell() == 4


def test_P3_bsf_stops_before_the_filemark(rig):
    with rig.open() as tape:
        write_files(tape, [1, 1, 2])
        tape.mtop(MtOp.MTREW)
        tape.mtop(MtOp.MTFSF, 2)
        tape.read(4096)  # inside file 2
        tape.mtop(MtOp.MTBSF, 1)
        status = tape.status()
        assert (status.fileno, status.blkno) == (1, -1)
        assert tape.read(4096) == b""  # the filemark that ends file 1


def test_P4_bsfm_to_start_of_file_and_fsfm_before_next_filemark(rig):
    with rig.open() as tape:
        files = write_files(tape, [2, 3])
        tape.mtop(MtOp.MTREW)
        tape.mtop(MtOp.MTFSF, 1)
        tape.read(4096), tape.read(4096)
        tape.mtop(MtOp.MTBSFM, 1)
        assert tape.read(4096) == files[1][0]
        tape.mtop(MtOp.MTREW)
        tape.mtop(MtOp.MTFSFM, 1)
        assert tape.read(4096) == b""  # just before the filemark ending file 0
        assert tape.read(4096) == files[1][0]


def test_P5_bsf_at_BOT_is_EIO_and_stays_at_BOT(rig):
    with rig.open() as tape:
        write_files(tape, [1])
        tape.mtop(MtOp.MTREW)
        assert oserror(tape.mtop, MtOp.MTBSF, 1) == errno.EIO
        assert tape.status().has(Gstat.BOT) and tape.tell() == 0


def test_P6_fsr_and_bsr_across_a_filemark(rig):
    with rig.open() as tape:
        files = write_files(tape, [2, 2])
        tape.mtop(MtOp.MTREW)
        assert oserror(tape.mtop, MtOp.MTFSR, 3) == errno.EIO
        status = tape.status()
        assert (status.fileno, status.blkno) == (1, 0)
        assert tape.read(4096) == files[1][0]
        assert oserror(tape.mtop, MtOp.MTBSR, 3) == errno.EIO
        status = tape.status()
        assert (status.fileno, status.blkno) == (0, -1)
        assert tape.read(4096) == b""  # stopped on the BOP side of the filemark


def test_P7_btape_append_test(rig):
    with rig.open() as tape:
        write_files(tape, [1, 2, 3])
    with rig.open() as tape:  # close and reopen
        tape.mtop(MtOp.MTREW)
        tape.mtop(MtOp.MTEOM)
        assert tape.status().fileno == 3
        tape.write(block(50, 1024))
        tape.mtop(MtOp.MTWEOF, 1)
        tape.mtop(MtOp.MTREW)
        assert scan(tape) == [[1024], [1024] * 2, [1024] * 3, [1024]]


def test_P8_btape_re_read_block_test(rig):
    with rig.open() as tape:
        for value in (1, 2, 3):
            tape.write(bytes([value]) * 10000)
        tape.mtop(MtOp.MTWEOF, 1)
        tape.mtop(MtOp.MTBSF, 1)
        tape.mtop(MtOp.MTBSR, 1)
        assert tape.read(64 * KiB) == bytes([3]) * 10000


def test_P9_btape_write_read_and_position_test(rig):
    """btape ``test`` steps 1-2: 2 x 10000 ordinal-stamped records, read back, reposition."""
    record = 412  # buf_len (512) - 100, as btape does; small so the test stays quick
    with rig.open() as tape:
        tape.mtop(MtOp.MTREW)
        for ordinal in range(1, 20001):
            tape.write(block(ordinal, record))
            if ordinal in (10000, 20000):
                tape.mtop(MtOp.MTWEOF, 1)
        tape.mtop(MtOp.MTREW)
        ordinal, eofs = 1, 0
        while ordinal <= 20000:
            data = tape.read(64 * KiB)
            if not data:
                eofs += 1
                assert eofs == 1
                continue
            assert data == block(ordinal, record)
            ordinal += 1
        for file, blk, expected in [(0, 4, 5), (0, 200, 201), (0, 9999, 10000), (1, 0, 10001),
                                    (1, 600, 10601), (1, 9999, 20000)]:
            tape.mtop(MtOp.MTREW)
            if file:
                tape.mtop(MtOp.MTFSF, file)
            if blk:
                tape.mtop(MtOp.MTFSR, blk)
            status = tape.status()
            assert (status.fileno, status.blkno) == (file, blk)
            assert tape.read(64 * KiB) == block(expected, record)


def test_P10_logical_object_numbers_count_filemarks(rig):
    with rig.open() as tape:
        for tag in (1, 2, 3):
            tape.write(block(tag, 1024))
        tape.mtop(MtOp.MTWEOF, 1)
        tape.write(block(4, 1024))
        tape.write(block(5, 1024))
        assert tape.tell() == 6
        tape.mtop(MtOp.MTSEEK, 3)  # after a write: st appends a filemark at 6 first
        status = tape.status()
        assert (status.fileno, status.blkno) == (-1, -1)
        assert tape.read(4096) == b""
        tape.mtop(MtOp.MTSEEK, 4)
        assert tape.read(4096) == block(4, 1024)
        tape.mtop(MtOp.MTEOM)
        assert tape.tell() == 7


def test_P11_seek_past_EOD_is_EIO_and_leaves_the_tape_at_EOD(rig):
    with rig.open() as tape:
        write_files(tape, [2])
        tape.mtop(MtOp.MTREW)
        assert oserror(tape.mtop, MtOp.MTSEEK, 100) == errno.EIO
        assert tape.tell() == 3
        assert oserror(tape.read, 4096) == errno.EIO


def test_P12_status_bits_at_BOT_and_after_FSF(rig):
    with rig.open() as tape:
        write_files(tape, [1, 1])
        tape.mtop(MtOp.MTREW)
        status = tape.status()
        assert status.has(Gstat.BOT) and status.has(Gstat.ONLINE)
        assert not status.has(Gstat.EOF) and not status.has(Gstat.DR_OPEN)
        assert status.resid == 0  # partition number
        if not rig.real:
            assert status.gstat == Gstat.BOT | Gstat.ONLINE | Gstat.IM_REP_EN
            assert status.density == 0x60  # LTO-9 media
        tape.mtop(MtOp.MTFSF, 1)
        status = tape.status()
        assert status.has(Gstat.EOF) and not status.has(Gstat.BOT)


@pytest.mark.parametrize("op", [MtOp.MTTELL, MtOp.MTRESET])
def test_P13_MTTELL_and_MTRESET_are_ENOSYS(rig, op):
    with rig.open() as tape:
        assert oserror(tape.mtop, op, 1) == errno.ENOSYS


def test_P14_WEOF_zero_is_a_flush_without_motion(rig):
    with rig.open() as tape:
        tape.write(block(1, 1024))
        tape.write(block(2, 1024))
        before = tape.tell()
        tape.mtop(MtOp.MTWEOF, 0)
        assert tape.tell() == before
        tape.mtop(MtOp.MTREW)  # WEOF (even of 0) ends st's write state: REW adds no filemark
        tape.mtop(MtOp.MTEOM)
        assert tape.tell() == 2
