"""MTF ``CSUM``: XOR of the stream data as little-endian 32-bit words, tail zero-padded.

Incremental and segmentation-independent (any chunking gives the same value); the bulk of each
chunk is reduced with numpy as 64-bit words, folded to 32 bits at the end.
"""

from __future__ import annotations

import numpy as np

_xor_reduce = np.bitwise_xor.reduce


class Xor32:
    __slots__ = ("_acc64", "_acc32", "_carry")

    def __init__(self) -> None:
        self._acc64 = 0
        self._acc32 = 0
        self._carry = b""  # 0..3 bytes of an incomplete word

    def update(self, data) -> None:
        view = memoryview(data).cast("B")
        n = len(view)
        i = 0
        if self._carry:
            take = min(4 - len(self._carry), n)
            self._carry += bytes(view[:take])
            i = take
            if len(self._carry) < 4:
                return
            self._acc32 ^= int.from_bytes(self._carry, "little")
            self._carry = b""
        bulk = (n - i) // 8 * 8
        if bulk:
            self._acc64 ^= int(_xor_reduce(np.frombuffer(view[i:i + bulk], dtype="<u8")))
            i += bulk
        if n - i >= 4:
            self._acc32 ^= int.from_bytes(view[i:i + 4], "little")
            i += 4
        if i < n:
            self._carry = bytes(view[i:])

    def value(self) -> int:
        acc = self._acc32 ^ (self._acc64 & 0xFFFFFFFF) ^ (self._acc64 >> 32)
        if self._carry:
            acc ^= int.from_bytes(self._carry.ljust(4, b"\0"), "little")
        return acc


def xor32(data) -> int:
    x = Xor32()
    x.update(data)
    return x.value()
