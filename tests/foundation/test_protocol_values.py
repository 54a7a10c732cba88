"""Values the protocols carry must match the real interfaces bit for bit."""

from __future__ import annotations

from reference.protocols.changer import ChangerError, Sense
from reference.protocols.exchange import ExchangeError, hresult_for_jet
from reference.protocols.tape import Gstat, MtGet, MtOp


def test_hresult_mapping_matches_bkmsg_h():
    """ese-backup-api.md §6 behaviour 27: 0xC8000000 | -jetErr, warnings 0x88000000 | n."""
    assert hresult_for_jet(-505) == 0xC80001F9
    assert hresult_for_jet(-521) == 0xC8000209
    assert hresult_for_jet(-526) == 0xC800020E
    assert hresult_for_jet(-560) == 0xC8000230
    assert hresult_for_jet(-1018) == 0xC80003FA
    assert hresult_for_jet(-1203) == 0xC80004B3
    assert hresult_for_jet(558) == 0x8800022E


def test_exchange_error_carries_numbers():
    error = ExchangeError(hresult_for_jet(-521), "OpenFile after log list", jet=-521, symbol="JET_errInvalidBackupSequence")
    assert error.hr == 0xC8000209 and error.jet == -521
    assert "hr=0xC8000209" in str(error) and "JET_errInvalidBackupSequence" in str(error)


def test_linux_mt_op_numbers():
    """tape-drive.md §2.2: Linux numbering, not BSD's."""
    assert (MtOp.MTFSF, MtOp.MTWEOF, MtOp.MTREW, MtOp.MTEOM, MtOp.MTSETBLK, MtOp.MTSEEK, MtOp.MTWEOFI) == (
        1, 5, 6, 12, 20, 22, 35,
    )


def test_mtget_dsreg_packs_block_size_and_density():
    status = MtGet(type=0x72, resid=0, blksize=262144, density=0x60, gstat=Gstat.BOT | Gstat.ONLINE,
                   erreg=0, fileno=0, blkno=0)
    assert status.dsreg == (0x60 << 24) | 262144
    assert status.has(Gstat.BOT) and not status.has(Gstat.EOD)
    assert int(Gstat.BOT | Gstat.ONLINE | Gstat.IM_REP_EN) == 0x41010000


def test_changer_error_prints_sense():
    error = ChangerError("Source Element Address 3 is Empty", Sense(5, 0x3B, 0x0E))
    assert "5/3B/0E" in str(error)
