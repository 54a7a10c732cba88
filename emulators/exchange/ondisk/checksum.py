"""Old-format ESE checksums (spec §3.3), vectorised with numpy.

Page: DWORD0 = 0x89ABCDEF XOR every other DWORD of the page, DWORD1 = the page number, so a page
written to the wrong place fails too. Equivalently the XOR of *all* DWORDs of a good page is the
seed, which is what :func:`verify_pages` tests on a whole buffer of pages at once.
Headers (DB, log, checkpoint, trailer) have no pgno: a 4-byte checksum over the block.
"""

from __future__ import annotations

import struct

import numpy as np

SEED = 0x89ABCDEF


def xor_rows(block: np.ndarray) -> np.ndarray:
    """XOR of the uint32 words of each row."""
    return np.bitwise_xor.reduce(block, axis=1)


def seal_pages(pages: np.ndarray, first_pgno: int) -> None:
    """Write pgno and checksum into a (n, page_size) uint8 array of pages, in place."""
    words = pages.view("<u4")
    words[:, 1] = np.arange(first_pgno, first_pgno + len(pages), dtype=np.uint32)
    words[:, 0] = 0
    words[:, 0] = xor_rows(words) ^ np.uint32(SEED)


def bad_pages(buffer, page_size: int, first_pgno: int) -> np.ndarray:
    """Indices (0-based within ``buffer``) of pages that fail verification.

    A page passes when its checksum and pgno are right, or when it is entirely zero (an
    uninitialised page is not an error during backup, spec §1.2-4).
    """
    data = np.frombuffer(buffer, dtype="<u4")
    n = data.size * 4 // page_size
    if n == 0:
        return np.empty(0, dtype=np.int64)
    words = data[: n * (page_size // 4)].reshape(n, page_size // 4)
    total = xor_rows(words)
    ok = (total == np.uint32(SEED)) & (words[:, 1] == np.arange(first_pgno, first_pgno + n, dtype=np.uint32))
    suspects = np.flatnonzero(~ok)
    if suspects.size:
        zero = ~words[suspects].any(axis=1)
        suspects = suspects[~zero]
    return suspects


def header_checksum(block: bytes | bytearray | memoryview) -> int:
    """Checksum of a header block: SEED XOR all DWORDs except DWORD0."""
    words = np.frombuffer(block, dtype="<u4")
    return int(np.bitwise_xor.reduce(words[1:])) ^ SEED


def seal_header(block: bytearray) -> None:
    struct.pack_into("<I", block, 0, header_checksum(block))


def header_ok(block: bytes | bytearray | memoryview) -> bool:
    return struct.unpack_from("<I", block, 0)[0] == header_checksum(block)
