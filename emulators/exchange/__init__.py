"""Emulated Microsoft Exchange server: ESE-like storage engine on real files, the streaming
backup/restore API (``esebcli2``) with the real error numbers, hard recovery and fault injection.

Entry point: :class:`ExchangeServer` (see docs/exchange-emulator.md).
"""

from .profiles import EXCHANGE_2003, EXCHANGE_2007, PROFILES, Profile, get_profile
from .server import SERVICE_ANNOTATION, ExchangeServer

__all__ = ["ExchangeServer", "Profile", "PROFILES", "EXCHANGE_2003", "EXCHANGE_2007", "get_profile",
           "SERVICE_ANNOTATION"]
