"""A real, small butype: ``tar`` = the files under env FILESYSTEM as a POSIX tar stream.

It exists so the data-service plumbing is exercised by a true producer and consumer (readable by
GNU tar, restorable here), not by a fake of the Exchange agent. Memory stays bounded: headers come
from :class:`tarfile.TarInfo`, file bodies are read and sent in ``CHUNK`` pieces, and restore parses
the stream with ``tarfile`` in streaming mode (``r|``) with the ``data`` extraction filter, which
refuses absolute paths, ``..`` and links leaving the destination.

File history (unless env HIST=n): one FH_ADD_FILE entry per member, path ``/<relative path>``,
``fh_info`` = byte offset of the member's header in the stream. Restore goes to env PREFIX (what
``ndmjob -x -C DIR`` sends) or else FILESYSTEM, or per the name list.
"""

from __future__ import annotations

import io
import os
import stat as stat_mod
import tarfile
from typing import Iterator

from . import constants as c
from .data import Butype, DataJob

CHUNK = 1 << 20
BLOCK = 512


def _walk(root: str) -> Iterator[tuple[str, str]]:
    """(absolute path, archive name) pairs in a stable order, directories before their content."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir != ".":
            yield dirpath, rel_dir
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            yield full, os.path.normpath(os.path.join(rel_dir, name))


def backup(job: DataJob) -> Iterator[bytes]:
    root = job.env.get("FILESYSTEM")
    if not root or not os.path.isdir(root):
        raise FileNotFoundError(f"FILESYSTEM {root!r} is not a directory")
    offset = 0
    count = 0
    history = job.env.get("HIST", "y").lower() not in ("n", "no", "false", "0")
    for full, arcname in _walk(root):
        job.check_abort()
        st = os.lstat(full)
        info = tarfile.TarInfo(arcname)
        info.mtime = int(st.st_mtime)
        info.mode = stat_mod.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        if stat_mod.S_ISDIR(st.st_mode):
            info.type, ftype = tarfile.DIRTYPE, c.FileType.DIR
        elif stat_mod.S_ISLNK(st.st_mode):
            info.type, ftype = tarfile.SYMTYPE, c.FileType.SLINK
            info.linkname = os.readlink(full)
        elif stat_mod.S_ISREG(st.st_mode):
            info.type, ftype = tarfile.REGTYPE, c.FileType.REG
            info.size = st.st_size
        else:
            continue  # sockets, fifos, devices: not data
        header = info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")
        if history:
            job.add_file("/" + arcname, size=info.size, mtime=info.mtime, ftype=ftype, fh_info=offset,
                         mode=info.mode, owner=info.uid, group=info.gid)
        yield header
        offset += len(header)
        if info.type == tarfile.REGTYPE:
            remaining = info.size
            with open(full, "rb") as f:
                while remaining > 0:
                    piece = f.read(min(CHUNK, remaining))
                    if not piece:
                        raise OSError(f"{full} shrank while being backed up")
                    remaining -= len(piece)
                    offset += len(piece)
                    yield piece
            pad = -info.size % BLOCK
            if pad:
                yield bytes(pad)
                offset += pad
        count += 1
    yield bytes(2 * BLOCK)  # end-of-archive marker
    job.env["TAR_FILES"] = str(count)
    job.env["TAR_BYTES"] = str(offset + 2 * BLOCK)


class _ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks (what ``tarfile`` ``r|`` reads from)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _target(member_path: str, names: list) -> tuple[str, str] | None:
    """(destination root, name under it) for a member, per the recover name list."""
    for entry in names:
        orig = "/" + entry.original_path.strip("/") if entry.original_path.strip("/") else "/"
        dest = entry.destination_path
        if member_path == orig:
            return os.path.dirname(dest.rstrip("/")) or "/", os.path.basename(dest.rstrip("/"))
        prefix = orig.rstrip("/") + "/"
        if member_path.startswith(prefix):
            return dest, member_path[len(prefix):]
    return None


def recover(job: DataJob, chunks: Iterator[bytes]) -> None:
    """Restore everything into env PREFIX (or FILESYSTEM), or, with a name list, each original_path to its
    destination_path; one LOG_FILE per name (FAILED_NOT_FOUND when the stream lacks it)."""
    default_root = job.env.get("PREFIX") or job.env.get("FILESYSTEM")
    found = set()
    with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(chunks), CHUNK), mode="r|",
                      encoding="utf-8", errors="surrogateescape") as tar:
        for member in tar:
            job.check_abort()
            path = "/" + os.path.normpath(member.name).lstrip("/")
            if job.nlist:
                target = _target(path, job.nlist)
                if target is None:
                    continue
                found.update(e.original_path for e in job.nlist
                             if path == "/" + e.original_path.strip("/")
                             or path.startswith("/" + e.original_path.strip("/").rstrip("/") + "/"))
                root, name = target
            else:
                if not default_root:
                    raise FileNotFoundError("no PREFIX, FILESYSTEM or name list: nowhere to restore to")
                root, name = default_root, member.name
            os.makedirs(root, exist_ok=True)
            tar.extract(member.replace(name=name, deep=False), root, filter="data")
    for entry in job.nlist:
        status = c.RecoveryStatus.SUCCESSFUL if entry.original_path in found else c.RecoveryStatus.FAILED_NOT_FOUND
        job.log_file(entry.original_path, status)
    for _ in chunks:  # drain what follows the archive (tape record padding) so the mover finishes
        pass


def tar_butype() -> Butype:
    return Butype(name="tar", backup=backup, recover=recover, default_env={"HIST": "y"},
                  attrs=(c.ButypeAttr.BACKUP_FH_FILE | c.ButypeAttr.RECOVER_FILELIST
                         | c.ButypeAttr.BACKUP_UTF8 | c.ButypeAttr.RECOVER_UTF8))
