"""NDMP authentication: TEXT and MD5 (challenge from CONFIG_GET_AUTH_ATTR), compared in constant time.

The MD5 digest follows the NDMP rule as NDMJOB implements it (``ndml_md5.c``): a 128-byte message
PASSWORD | zeros | CHALLENGE | zeros | PASSWORD with the password cut to 32 bytes, placed at 0, the
challenge at 64 - len, the second password copy at 128 - len.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from .constants import MD5_CHALLENGE_LENGTH, AuthType


def md5_digest(challenge: bytes, password: str | bytes) -> bytes:
    if len(challenge) != MD5_CHALLENGE_LENGTH:
        raise ValueError(f"an NDMP MD5 challenge is {MD5_CHALLENGE_LENGTH} bytes, got {len(challenge)}")
    pw = password.encode("utf-8") if isinstance(password, str) else bytes(password)
    pw = pw.split(b"\0", 1)[0][:32]  # a C string: stops at NUL, and NDMJOB uses 32 bytes at most
    message = bytearray(128)
    message[0:len(pw)] = pw
    message[64 - len(pw):128 - len(pw)] = challenge
    message[128 - len(pw):128] = pw
    return hashlib.md5(bytes(message)).digest()


def new_challenge() -> bytes:
    return secrets.token_bytes(MD5_CHALLENGE_LENGTH)


@dataclass
class Credentials:
    """Accepted user names and passwords, and the auth types offered (NONE is never offered by
    default). ``repr`` hides passwords so a config dump or a traceback cannot leak them."""

    users: dict[str, str] = field(default_factory=dict, repr=False)
    auth_types: tuple[AuthType, ...] = (AuthType.TEXT, AuthType.MD5)

    def __repr__(self) -> str:
        return f"Credentials(users={sorted(self.users)}, auth_types={[t.name for t in self.auth_types]})"

    def check_text(self, user: str, password: str) -> bool:
        expected = self.users.get(user)
        # compare something even for unknown users, so timing does not reveal which names exist
        ok = hmac.compare_digest(password.encode("utf-8", "surrogateescape"),
                                 (expected if expected is not None else "\0" * 64).encode("utf-8"))
        return ok and expected is not None and AuthType.TEXT in self.auth_types

    def check_md5(self, user: str, challenge: bytes | None, digest: bytes) -> bool:
        expected = self.users.get(user)
        if challenge is None:
            return False
        wanted = md5_digest(challenge, expected if expected is not None else "\0")
        ok = hmac.compare_digest(digest, wanted)
        return ok and expected is not None and AuthType.MD5 in self.auth_types
