"""A minimal reference client of the emulated API: back a storage group up into a folder and
restore it from there, the way NTBackup / Bacula drive esebcli2. Used by tests, benchmarks and
scenarios that need a backup without the full agent."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field

from reference.protocols.exchange import BackupType, ExchangeError, InstanceEnd, RestoreComplete

from . import errors
from .server import SERVICE_ANNOTATION

KINDS = {"full": (BackupType.FULL, True), "copy": (BackupType.FULL, False),
         "incremental": (BackupType.LOGS_ONLY, True), "differential": (BackupType.LOGS_ONLY, False)}


@dataclass
class SavedDatabase:
    name: str
    guid: uuid.UUID
    streams: tuple[str, ...]  # source paths as the API named them
    files: tuple[str, ...]    # where the streams were saved


@dataclass
class BackupSet:
    kind: str
    sg_name: str
    folder: str
    databases: list[SavedDatabase] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)  # (API path, saved path)
    database_errors: dict[str, ExchangeError] = field(default_factory=dict)


def copy_stream(ctx, path: str, dest: str, buffer_size: int = 65536) -> int:
    handle, size = ctx.open_file(path, buffer_size, 1)
    buf = bytearray(buffer_size)
    total = 0
    try:
        with open(dest, "wb") as out:
            while True:
                n = ctx.read_file(handle, buf)
                if n == 0:
                    break
                out.write(memoryview(buf)[:n])
                total += n
    except ExchangeError:
        raise
    ctx.close_file(handle)
    return total


def run_backup(api, sg_name: str, kind: str, folder: str, buffer_size: int = 65536,
               databases: list[str] | None = None) -> BackupSet:
    btype, truncate = KINDS[kind]
    os.makedirs(folder, exist_ok=True)
    ctx = api.backup_prepare(SERVICE_ANNOTATION)
    try:
        info = next(i for i in ctx.instances if i.name == sg_name)
        ctx.setup(info.instance_id, btype)
        bset = BackupSet(kind, sg_name, folder)
        if btype == BackupType.FULL:
            for db in info.databases:
                if databases is not None and db.display_name not in databases:
                    continue
                saved = []
                try:
                    for s in db.streams:
                        dest = os.path.join(folder, f"{db.guid}-{os.path.basename(s)}")
                        copy_stream(ctx, s, dest, buffer_size)
                        saved.append(dest)
                except ExchangeError as e:
                    bset.database_errors[db.display_name] = e
                    continue
                bset.databases.append(SavedDatabase(db.display_name, db.guid, db.streams, tuple(saved)))
        for path in ctx.get_log_and_patch_files():
            dest = os.path.join(folder, os.path.basename(path))
            copy_stream(ctx, path, dest, buffer_size)
            bset.logs.append((path, dest))
        if truncate:
            ctx.truncate_logs()
        ctx.instance_end(InstanceEnd.SUCCESS)
        return bset
    finally:
        ctx.end()


def run_restore(api, sets: list[BackupSet], roll_forward: bool = True, restore_path: str | None = None,
                flags: RestoreComplete = RestoreComplete.ATTACH_DBS, complete: bool = True) -> int:
    """Restore a full set plus later sets in order; returns Complete's HRESULT (0 or a warning)."""
    sg_name = sets[0].sg_name
    ctx = api.restore_open(SERVICE_ANNOTATION, sg_name, restore_path)
    try:
        env = ctx.get_environment()
        feed_sets(ctx, env.restore_log_path, sets)
        ctx.save_environment()
        if not complete:
            return 0
        return ctx.complete(env.restore_log_path, env.restore_log_path, sg_name if roll_forward else None, flags)
    finally:
        ctx.close()


def feed_sets(ctx, restore_log_path: str, sets: list[BackupSet]) -> None:
    """Hand the saved files of ``sets``, in order, to an open restore: each database's streams to
    the paths AddDatabase returns, each log into ``restore_log_path``, every file announced first."""
    for bset in sets:
        for db in bset.databases:
            dest = ctx.add_database(db.name, db.guid, db.streams)
            for src, saved, d in zip(db.streams, db.files, dest):
                _announce(ctx, src)
                shutil.copyfile(saved, d)
        for api_path, saved in bset.logs:
            _announce(ctx, api_path)
            shutil.copyfile(saved, os.path.join(restore_log_path, os.path.basename(api_path)))


def _announce(ctx, path: str) -> None:
    try:
        ctx.open_file(path, 1)
    except ExchangeError as e:
        if e.hr != errors.HR_RESTORE_AT_FILE_LEVEL:
            raise
