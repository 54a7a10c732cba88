"""Where an emulated Exchange server keeps its files, named the way Exchange names them.

Exchange 2003 (``C:\\Program Files\\Exchsrvr`` = the server root)::

    mdbdata/                          First Storage Group: E00.log, E00xxxxx.log, E00.chk,
                                      res1.log, res2.log, priv1.edb, priv1.stm
    Second Storage Group/             E01.log ... priv2.edb, priv2.stm
    Recovery Storage Group/           R00.log ... (when created)

Exchange 2007 (``C:\\Program Files\\Microsoft\\Exchange Server`` = the root)::

    Mailbox/First Storage Group/      E00.log, E0000000001.log, E00.chk, E00res00001.jrs,
                                      Mailbox Database.edb
"""

from __future__ import annotations

import os

SG_NAMES = ("First Storage Group", "Second Storage Group", "Third Storage Group", "Fourth Storage Group")
RSG_NAME = "Recovery Storage Group"
RSG_PREFIX = "R00"  # UNVERIFIED (spec §7), see docs/exchange-emulator.md


def sg_folder(profile, index: int, name: str) -> str:
    """Folder (relative to the root) holding a storage group's logs, checkpoint and databases."""
    if profile.db_folder_layout == "2003":
        return "mdbdata" if index == 0 else name
    return os.path.join("Mailbox", name)


def db_display_name(profile, number: int, server_name: str) -> str:
    if profile.db_folder_layout == "2003":
        return f"Mailbox Store ({server_name})" if number == 1 else f"Mailbox Store {number} ({server_name})"
    return "Mailbox Database" if number == 1 else f"Mailbox Database {number}"


def db_file_names(profile, number: int, display_name: str) -> list[str]:
    if profile.db_folder_layout == "2003":
        names = [f"priv{number}.edb"]
        if profile.has_streaming_file:
            names.append(f"priv{number}.stm")
        return names
    return [f"{display_name}.edb"]
