"""Brick-level (mailbox/folder/item) backup and restore over any MailboxStore.

Python API (what the CLI wires up; see docs/brick-level.md):

* :class:`BrickBackup` (``backup.py``) - one full/incremental/differential pass yielding
  :class:`BrickObject` values (``model.py``: the packaging interface) and the next :class:`BackupState`.
* :class:`BrickCatalog` (``catalog.py``) - the point-in-time view of a chain of data sets.
* :func:`plan_restore` / :func:`run_restore` (``restore.py``) - restore with conflict policy and dry run.
* :class:`Selection` (``selection.py``) - include/exclude patterns and date filters.
"""

from .backup import BackupSummary, BrickBackup
from .catalog import BrickCatalog, CatalogItem
from .model import BrickObject
from .restore import RestoreOptions, RestorePlan, RestoreResult, plan_restore, run_restore
from .selection import Selection
from .state import BackupState

__all__ = ["BackupState", "BackupSummary", "BrickBackup", "BrickCatalog", "BrickObject", "CatalogItem",
           "RestoreOptions", "RestorePlan", "RestoreResult", "Selection", "plan_restore", "run_restore"]
