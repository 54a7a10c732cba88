"""Version profiles: what differs between the emulated Exchange 2003 and Exchange 2007 servers.

Every point the spec marks UNVERIFIED is a field here, so a test or scenario can flip it; the
choices are documented in docs/exchange-emulator.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import JetCode


@dataclass(frozen=True)
class Profile:
    name: str
    page_size: int
    has_streaming_file: bool
    """Exchange 2000/2003 keep each store as ``.edb`` + ``.stm``; 2007 has only the ``.edb``."""
    log_file_size: int
    log_hex_digits: int
    """Archived log names: ``E0n`` + 5 hex digits (2003) or 8 (2007)."""
    reserve_log_names: tuple[str, ...]
    """Reserve logs; ``{prefix}`` is replaced by the storage group's log prefix."""
    checksum: str
    """Page checksum: ``"xor"`` (old format, seed 0x89ABCDEF, pgno in DWORD1). UNVERIFIED for 2007."""
    header_has_copy_diff: bool
    """Whether the DB header has bkinfoCopyPrev/bkinfoDiffPrev (+420/+444). UNVERIFIED for 2003."""
    trailer_page: bool
    """Whether the backup stream ends with the PATCHHDR trailer page (spec §7: likely yes for 2003)."""
    missing_file_to_backup: JetCode
    existing_log_bad_signature: JetCode
    existing_log_not_contiguous: JetCode
    checkpoint_depth_generations: int
    """Generations the checkpoint may lag behind the log tip before dirty pages are flushed
    (Exchange's 20 MB checkpoint depth: 4 logs of 5 MB, 20 logs of 1 MB)."""
    complete_errors_via_ese_call: bool = False
    """Whether HrESERestoreComplete reports engine errors as hrErrorFromESECall (0xC7FF1004) with the
    JET error as GetLastError(), instead of the engine HRESULT itself (spec §1.5: both are seen)."""
    refuse_other_timeline: bool = True
    """Hard recovery refuses to replay, into a restored database, logs of another timeline: a
    re-attach logged from another consistent point than the replay reaches (the logs left after a
    point-in-time restore) -> -551 JET_errConsistentTimeMismatch (ESE ErrLGRICheckRedoAttachDb;
    UNVERIFIED on a real Exchange 2003/2007). False: replay them (the emulator before the fix)."""
    one_database_stream_at_a_time: bool = True
    """Opening a second database file of the storage group while one is open -> -521 (UNVERIFIED)."""
    max_storage_groups: int = 4
    max_databases_per_group: int = 5
    format_version: int = 0x620
    format_update: int = 0x0B
    log_version: tuple[int, int, int] = (7, 3704, 8)
    db_folder_layout: str = "2003"

    def archive_log_name(self, prefix: str, generation: int) -> str:
        """``E00001B.log`` style name (``E0n`` + 5 or 8 upper-case hex digits)."""
        digits = self.log_hex_digits
        if digits == 5 and generation > 0xFFFFF:
            digits = 8  # ESE switches to 8 digits past 0xFFFFF (spec §3.1)
        return f"{prefix}{generation:0{digits}X}.log"

    def with_log_size(self, size: int | None) -> "Profile":
        if size is None:
            return self
        if size < 2 * 4096 or size % 512:
            raise ValueError(f"log file size must be a multiple of 512 and >= 8192 bytes, not {size}")
        return replace(self, log_file_size=size)


EXCHANGE_2003 = Profile(
    name="2003",
    page_size=4096,
    has_streaming_file=True,
    log_file_size=5 * 1024 * 1024,
    log_hex_digits=5,
    reserve_log_names=("res1.log", "res2.log"),
    checksum="xor",
    header_has_copy_diff=False,
    trailer_page=True,
    missing_file_to_backup=JetCode(-562, "hrMissingBackupFiles"),
    existing_log_bad_signature=JetCode(558, "JET_wrnExistingLogFileHasBadSignature"),
    existing_log_not_contiguous=JetCode(559, "JET_wrnExistingLogFileIsNotContiguous"),
    checkpoint_depth_generations=4,
    format_update=0x0B,
    log_version=(7, 3704, 8),
    db_folder_layout="2003",
)

EXCHANGE_2007 = Profile(
    name="2007",
    page_size=8192,
    has_streaming_file=False,
    log_file_size=1024 * 1024,
    log_hex_digits=8,
    reserve_log_names=("{prefix}res00001.jrs", "{prefix}res00002.jrs"),
    checksum="xor",
    header_has_copy_diff=True,
    trailer_page=True,
    missing_file_to_backup=JetCode(-569, "JET_errMissingFileToBackup"),
    existing_log_bad_signature=JetCode(-610, "JET_errExistingLogFileHasBadSignature"),
    existing_log_not_contiguous=JetCode(-611, "JET_errExistingLogFileIsNotContiguous"),
    checkpoint_depth_generations=20,
    format_update=0x0C,
    log_version=(7, 3704, 12),
    db_folder_layout="2007",
)

PROFILES = {"2003": EXCHANGE_2003, "2007": EXCHANGE_2007}


def get_profile(name: str | Profile) -> Profile:
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[str(name)]
    except KeyError:
        raise ValueError(f"unknown Exchange profile {name!r} (known: {', '.join(PROFILES)})") from None
