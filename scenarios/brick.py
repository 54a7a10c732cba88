"""Mailbox-level (brick) steps of a scenario, through the product's brick-level jobs.

``reference.brick_jobs`` runs the brick engine's pass as one data set through the backup server
(the same session as database backups) and restores from the chain the catalog picks, reading
records and bodies back from tape. Here each pass also records the ground truth: the mailbox view
at the pass, keyed by the data set it became.
"""

from __future__ import annotations

from reference.agent.brick import RestoreOptions, Selection
from reference.brick_jobs import backup_mailboxes, restore_mailboxes


async def mailbox_backup(sim, mailboxes: str = "*", folders: str = "*", level: str = "full"):
    """One brick pass of the selection; returns (data set id, level done, warnings)."""
    store = sim.store()
    selection = Selection(mailboxes=(mailboxes,), folders=(folders,))
    result = await backup_mailboxes(sim.site, store, selection, level)
    set_id = result.receipt.data_set_id
    sim.brick_sets.append((set_id, result.level, sim.mailbox_truth(), selection))
    sim.stats.bytes += result.summary.bytes_stored
    return set_id, result.level, list(result.warnings)


def brick_truth(sim, set_id: int) -> dict:
    for entry in sim.brick_sets:
        if entry[0] == set_id:
            return entry[2]
    raise KeyError(f"data set {set_id} is no mailbox pass of this scenario")


def mailbox_restore(sim, mailbox: str, folder: str | None, to: str | None, conflict: str):
    """Restore ``mailbox`` (or one folder) from the chain; returns (result, truth at the point)."""
    store = sim.store()
    target = to or mailbox
    if target not in store.list_mailboxes():
        storage_group, database = store.locate(mailbox)
        store.create_mailbox(target, storage_group, database)
    options = RestoreOptions(selection=Selection(mailboxes=(mailbox,), folders=(folder or "*",)),
                             target_mailbox=to, conflict=conflict)
    restored = sim.run(restore_mailboxes(sim.site, store, options))
    return restored.result, brick_truth(sim, restored.chain[-1].id)
