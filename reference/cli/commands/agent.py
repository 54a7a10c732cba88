"""``mailtape agent serve``: the Exchange agent as an NDMP v4 Data server (butype ``exchange``).

Credentials (NDMP TEXT/MD5 user and password) come from ``--config FILE`` (JSON or YAML with
``user`` and ``password``, optionally under an ``ndmp:`` key) or else from the environment
variables MAILTAPE_NDMP_USER / MAILTAPE_NDMP_PASSWORD; the agent refuses to start without them and
never logs the password. It listens on loopback unless ``--allow-remote`` is given, prints one
``listening on HOST:PORT`` line when ready, and stops cleanly on SIGINT or SIGTERM (open jobs are
aborted: an uncommitted backup keeps its logs).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import stat
from pathlib import Path

import click

from reference.errors import MailtapeError, NotFoundError, UsageError

log = logging.getLogger("mailtape.agent")

ENV_USER, ENV_PASSWORD = "MAILTAPE_NDMP_USER", "MAILTAPE_NDMP_PASSWORD"


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, "10000"
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT (port 0-65535)")
    return host, int(port)


def load_credentials(config: Path | None) -> tuple[str, str]:
    """(user, password) from the config file, else the environment; refuses when either is missing."""
    if config is not None:
        try:
            text = config.read_text(encoding="utf-8")
        except OSError as error:
            raise NotFoundError(f"{config}: cannot read the agent config ({error.strerror})") from None
        try:
            import yaml

            doc = yaml.safe_load(text)
        except Exception:  # noqa: BLE001 - YAML is a superset of JSON; report one clear error
            doc = None
        if not isinstance(doc, dict):
            raise MailtapeError(f"{config}: the agent config must be a JSON or YAML mapping with user and password")
        section = doc.get("ndmp", doc)
        if not isinstance(section, dict):
            raise MailtapeError(f"{config}: 'ndmp' must be a mapping with user and password")
        user, password = section.get("user"), section.get("password")
        if os.name == "posix" and config.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s holds a password and is readable by others (chmod 600 it)", config)
        where = str(config)
    else:
        user, password = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD)
        where = f"{ENV_USER} / {ENV_PASSWORD}"
    if not isinstance(user, str) or not user or not isinstance(password, str) or not password:
        raise MailtapeError(f"no NDMP user and password ({where}): the agent will not serve without them")
    return user, password


@click.group("agent")
def command() -> None:
    """The Exchange agent as a network service (NDMP v4 Data server)."""


@command.command("serve")
@click.option("--listen", default="127.0.0.1:10000", show_default=True, help="HOST:PORT to listen on (port 0: any).")
@click.option("--exchange", "exchange_root", required=True, type=click.Path(exists=True, file_okay=False),
              help="Root of the (emulated) Exchange server to back up.")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON/YAML file with the NDMP user and password (else MAILTAPE_NDMP_USER/_PASSWORD).")
@click.option("--allow-remote", is_flag=True, help="Allow listening beyond loopback.")
@click.option("--state", "state_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for mailbox-level incremental bases (default: beside the Exchange root).")
def serve(listen: str, exchange_root: str, config: Path | None, allow_remote: bool, state_dir: Path | None) -> None:
    """Serve the `exchange` (database) and `mailbox` (brick-level) butypes over NDMP until SIGINT or SIGTERM."""
    from emulators.exchange.server import CONFIG_NAME

    host, port = parse_listen(listen)
    try:
        remote = not ipaddress.ip_address(host).is_loopback
    except ValueError:
        remote = host != "localhost"
    if remote and not allow_remote:
        raise UsageError(f"--listen {listen}: beyond loopback; add --allow-remote to serve the network")
    user, password = load_credentials(config)
    if not (Path(exchange_root) / CONFIG_NAME).exists():
        raise NotFoundError(f"{exchange_root}: no Exchange server here (mailtape exchange init)")
    asyncio.run(_serve(host, port, exchange_root, user, password, allow_remote, state_dir))


async def _serve(host: str, port: int, exchange_root: str, user: str, password: str, allow_remote: bool,
                 state_dir: Path | None = None) -> None:
    from reference.agent.ndmp_butypes import make_agent_server
    from reference.cli.commands.exchange import opened_server, save_clock
    from reference.ndmp.auth import Credentials
    from reference.runtime import Runtime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with opened_server(exchange_root) as (exchange, _store):
        runtime = Runtime(exchange.clock)
        try:
            server, agent = make_agent_server(exchange.backup_api(), runtime, Credentials({user: password}),
                                              host=host, port=port, allow_remote=allow_remote,
                                              state_dir=state_dir)
        except ValueError as error:
            raise UsageError(str(error)) from None
        try:
            try:
                await server.start()
            except OSError as error:
                raise MailtapeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
            bound = server.address
            click.echo(f"listening on {bound[0]}:{bound[1]} (Exchange {exchange.server_name}, butypes exchange, mailbox)",
                       nl=True)
            import sys

            sys.stdout.flush()
            await stop.wait()
            log.info("agent: stopping")
        finally:
            await server.close()
            await loop.shutdown_default_executor()
            agent.close()
            runtime.close()
            save_clock(exchange)
    click.echo("agent stopped")
