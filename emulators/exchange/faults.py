"""Fault injection for the emulated Exchange server: each fault is one documented call that acts
on the server's real files or state, usable from tests and scenarios.

| call | what the real world did | what the API then reports |
|---|---|---|
| ``corrupt_page`` | a -1018 page (bad checksum / misplaced page) | ReadFile of that DB: -1018 (per DB) |
| ``alter_page_silently`` | a page changed with a valid checksum (a lost or misdirected write of good data) | nothing: only a page-level comparison with ground truth sees it |
| ``corrupt_log`` | a damaged log generation | backup: -612 aborts the instance; restore: -573; mount: -501 |
| ``delete_log`` | a log deleted by hand / lost | incremental: -569 (2003: -562); recovery: -528/-557 |
| ``dismount`` | store dismounted by the admin | OpenFile: -1203 (per DB) |
| ``set_circular_logging`` | circular logging toggled | LOGS_ONLY Setup: -526 |
| ``stop_service_mid_backup`` | Information Store stopped during a backup | every later call: -801 |
| ``fill_log_disk`` | log volume full | commits and Setup: -529 |
| ``crash`` | power loss: nothing flushed | next open: soft recovery from the logs |
"""

from __future__ import annotations

import os

from . import errors
from .ondisk.structs import HEADER_BLOCK


def corrupt_page(server, sg_name: str, db_name: str, pgno: int = 1, file_index: int = 0,
                 byte_offset: int = 100, misplace: bool = False) -> int:
    """Damage logical page ``pgno`` of a database file on disk; returns the file offset touched.

    ``misplace=True`` rewrites the page's pgno field (a page written to the wrong place: checksum
    of the content still fine, the pgno check fails).
    """
    cfg = server.database_config(sg_name, db_name)
    inst = server.instance(sg_name)
    if cfg.dbid in inst.databases:
        inst.flush_all()
    path = server.abspath(cfg.files[file_index])
    cb = server.profile.page_size
    page_off = (pgno + 1) * cb
    if page_off + cb > os.path.getsize(path):
        raise ValueError(f"{path} has no page {pgno}")
    with open(path, "r+b") as f:
        if misplace:
            f.seek(page_off + 4)
            old = int.from_bytes(f.read(4), "little")
            f.seek(page_off + 4)
            f.write(((old + 7) & 0xFFFFFFFF).to_bytes(4, "little"))
            return page_off + 4
        f.seek(page_off + byte_offset)
        b = f.read(1)
        f.seek(page_off + byte_offset)
        f.write(bytes([b[0] ^ 0x5A]))
    return page_off + byte_offset


def alter_page_silently(path, pgno: int, page_size: int, byte_offset: int = 32) -> int:
    """Change one byte of data page ``pgno`` of a database file and re-seal the page's checksum.

    The default offset is the page header's ibMicFree, which no record read looks at, so records
    and checksums stay good: what a restore check must catch by comparing pages. Returns the file
    offset touched."""
    import numpy as np

    from .ondisk.checksum import seal_pages

    page_off = (pgno + 1) * page_size
    with open(path, "r+b") as f:
        f.seek(page_off)
        raw = f.read(page_size)
        if len(raw) < page_size:
            raise ValueError(f"{path} has no page {pgno}")
        page = np.frombuffer(raw, dtype=np.uint8).reshape(1, page_size).copy()
        page[0, byte_offset] ^= 0x5A
        seal_pages(page, pgno)
        f.seek(page_off)
        f.write(page.tobytes())
    return page_off + byte_offset


def log_path(server, sg_name: str, generation: int) -> str:
    log = server.instance(sg_name).log
    return log.path_for(generation)


def corrupt_log(server, sg_name: str, generation: int, where: str = "record") -> str:
    """Flip a byte of a log generation: ``where="record"`` inside the first log record,
    ``"header"`` in the header block."""
    path = log_path(server, sg_name, generation)
    off = 200 if where == "header" else HEADER_BLOCK + 12
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0xFF]))
    return path


def delete_log(server, sg_name: str, generation: int) -> str:
    path = log_path(server, sg_name, generation)
    os.remove(path)
    return path


def dismount(server, sg_name: str, db_name: str) -> None:
    server.dismount(sg_name, db_name)


def set_circular_logging(server, sg_name: str, enabled: bool = True) -> None:
    server.set_circular_logging(sg_name, enabled)


def stop_service_mid_backup(server, sg_name: str | None = None) -> int:
    """The server stops running backups (JetStopBackup): later calls fail -801. Returns how many."""
    n = 0
    for sg in server.storage_groups:
        if sg_name is not None and sg.name != sg_name:
            continue
        st = server.instance(sg.name).backup_state
        if st is not None:
            st.aborted_by_server = True
            n += 1
    return n


def fill_log_disk(server, sg_name: str, full: bool = True) -> None:
    """The log volume has no room for another generation: the next roll fails -529."""
    inst = server.instance(sg_name)
    inst.log.disk_full = full
    if not full:
        inst.log_write_failed = False


def crash(server) -> None:
    """Power loss: every instance stops without flushing; reopen with ExchangeServer.open."""
    for inst in server.instances.values():
        inst.crash()
    server.instances.clear()
    server.running = False


__all__ = ["corrupt_page", "corrupt_log", "delete_log", "dismount", "set_circular_logging",
           "stop_service_mid_backup", "fill_log_disk", "crash", "log_path", "errors"]
