"""``restore.env``: the saved RESTORE_ENVIRONMENT (spec §2.2).

The real encoding is private; this emulator writes ``b"MTRENV01"``, a little-endian u32 length and
u32 CRC-32 of the body, then the body as UTF-8 JSON of every RESTORE_ENVIRONMENT field. Anything
that does not parse back exactly is ``hrRestoreEnvCorrupted`` (0xC7FF0BC3).
"""

from __future__ import annotations

import json
import os
import struct
import uuid
import zlib

from reference.protocols.exchange import RestoreEnvironment

from .. import errors

ENV_NAME = "restore.env"
MAGIC = b"MTRENV01"


def encode(env: RestoreEnvironment) -> bytes:
    d = dict(env.__dict__)
    d["databases"] = [[n, str(g), list(s), list(t)] for n, g, s, t in env.databases]
    body = json.dumps(d, sort_keys=True).encode("utf-8")
    return MAGIC + struct.pack("<II", len(body), zlib.crc32(body)) + body


def decode(raw: bytes, where: str = ENV_NAME) -> RestoreEnvironment:
    def corrupt(why: str) -> errors.ExchangeError:
        return errors.library_error(errors.HR_RESTORE_ENV_CORRUPTED, f"{where}: restore environment corrupted ({why})")

    if len(raw) < 16 or raw[:8] != MAGIC:
        raise corrupt("bad signature")
    length, crc = struct.unpack_from("<II", raw, 8)
    body = raw[16:]
    if len(body) != length or zlib.crc32(body) != crc:
        raise corrupt("length or checksum mismatch")
    try:
        d = json.loads(body.decode("utf-8"))
        d["databases"] = [(n, uuid.UUID(g), tuple(s), tuple(t)) for n, g, s, t in d["databases"]]
        return RestoreEnvironment(**d)
    except (ValueError, TypeError, KeyError) as e:
        raise corrupt(str(e)) from None


def save(env: RestoreEnvironment, folder: str) -> None:
    path = os.path.join(folder, ENV_NAME)
    try:
        os.makedirs(folder, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(encode(env))
        os.replace(tmp, path)
    except OSError as e:
        raise errors.library_error(errors.HR_RESTORE_ENV_WRITE_FAILED, f"{path}: {e.strerror}") from None


def load(folder: str) -> RestoreEnvironment:
    path = os.path.join(folder, ENV_NAME)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise errors.library_error(errors.HR_OPEN_RESTORE_ENV_FAILED, f"{path}: {e.strerror}") from None
    return decode(raw, path)
