"""Making the NDMP data connection: DATA_CONNECT and MOVER_CONNECT both dial the peer's addresses.

Either service is handed a list of IPv4 TCP addresses (the other side's LISTEN reply) and takes the
first that answers within :data:`CONNECT_TIMEOUT`; when none does, the request fails with
CONNECT_ERR naming every address tried and why.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from . import constants as c
from . import messages as m
from .errors import NdmpError

CONNECT_TIMEOUT = 30.0


async def connect_first(addrs) -> tuple[socket.socket, m.TcpAddr]:
    """A non-blocking socket connected to the first reachable of ``addrs``, and that address."""
    loop = asyncio.get_running_loop()
    errors = []
    for a in addrs:
        host = str(ipaddress.IPv4Address(a.ip_addr))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, a.port)), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:  # asyncio.TimeoutError is TimeoutError
            sock.close()
            errors.append(f"{host}:{a.port}: {exc or 'timeout'}")
            continue
        return sock, m.TcpAddr(a.ip_addr, a.port, [])
    raise NdmpError(c.Error.CONNECT_ERR, "; ".join(errors))
