"""Open a site (library + catalog) together with its emulated Exchange server on one clock.

The emulated server keeps its virtual time between commands (``exchange.opened_server``); the
site's drives and the agent run on that same clock, so log timestamps, catalog times and tape
timing all move forward together across ``mailtape exchange activity``, ``backup`` and ``restore``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from reference.errors import NotFoundError


@contextmanager
def site_with_exchange(site_path: str | Path) -> Iterator[tuple[object, object, object]]:
    """Yields (site, exchange server, mailbox store); saves the clock and closes everything."""
    from emulators.exchange.server import CONFIG_NAME
    from reference.cli.commands.exchange import opened_server, save_clock
    from reference.server.site import open_site

    root = Path(site_path)
    exchange_root = root / "exchange"
    if not (exchange_root / CONFIG_NAME).exists():
        raise NotFoundError(f"{exchange_root}: no Exchange server in this site "
                            f"(create one with 'mailtape exchange init {exchange_root}')")
    with opened_server(str(exchange_root)) as (server, store):
        site = open_site(root, clock=server.clock)
        try:
            yield site, server, store
        finally:
            try:
                if server.running:
                    save_clock(server)
            finally:
                site.close()
