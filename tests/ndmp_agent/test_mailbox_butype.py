"""The agent's ``mailbox`` butype (brick level) over NDMP on loopback: our DMA (the agent saves its
incremental base only on MAILTAPE_DATA_COMMIT; the set restores through the backup server), a DMA
without the commit extension (no base saved), recover by name list into another mailbox."""

from __future__ import annotations

from pathlib import Path

from agent_helpers import PASSWORD, USER
from raw_dma import M, backup, login, recover
from reference.agent.brick import RestoreOptions, Selection
from reference.agent.ndmp_butypes import ENV_TRAILER, decode_trailer, default_state_dir
from reference.brick_jobs import KIND, restore_mailboxes
from reference.ndmp import constants as c
from reference.ndmp import messages as m
from reference.server.ndmp_dma import ndmp_backup_mailboxes

INBOX = ("Inbox",)


def _inbox(store, mailbox: str) -> list:
    return list(store.list_items(mailbox, INBOX))


def _states(exchange_root: Path) -> list[str]:
    folder = default_state_dir(str(exchange_root))
    return sorted(p.name for p in folder.glob("*.json")) if folder.exists() else []


def test_our_dma_mailbox_full_then_incremental_base_saved_only_after_commit(agent, site, exchange_root):
    """Full then incremental through our DMA: each set is cataloged as kind ``mailbox`` with its
    mailbox per object, the base is saved after MAILTAPE_DATA_COMMIT, and the server's in-process
    brick restore (reference.brick_jobs) reads the NDMP-made chain back."""
    address, butypes, _exchange = agent
    store = butypes.mailbox.store
    url = f"ndmp://{address[0]}:{address[1]}"
    full = site.runtime.run(ndmp_backup_mailboxes(site, url, USER, PASSWORD, "full", mailboxes=["bwilliams"]))
    assert full.status == "ok", full.error
    assert full.level == "full" and full.mailbox_names == ["bwilliams"] and full.items >= 10
    record = site.catalog.data_set(full.receipt.data_set_id)
    assert record.kind == KIND and record.status == "ok" and record.backup_type == "full"
    assert {o.database for o in record.objects if o.path.endswith(".eml")} == {"bwilliams"}
    assert len(_states(exchange_root)) == 2  # incremental base + full base, both after the commit

    victims = _inbox(store, "bwilliams")[:3]
    for item in victims:
        store.delete_item("bwilliams", INBOX, item.uid)
    assert len(_inbox(store, "bwilliams")) == 7
    incremental = site.runtime.run(ndmp_backup_mailboxes(site, url, USER, PASSWORD, "incremental",
                                                         mailboxes=["bwilliams"]))
    assert incremental.status == "ok", incremental.error
    assert incremental.level == "incremental" and incremental.items < full.items
    assert site.catalog.data_set(incremental.receipt.data_set_id).backup_type == "incremental"

    outcome = site.runtime.run(restore_mailboxes(
        site, store, RestoreOptions(selection=Selection(mailboxes=("bwilliams",))), set_id=full.receipt.data_set_id))
    assert outcome.result.ok and outcome.result.plan.counts().get("append") == len(victims)
    assert len(_inbox(store, "bwilliams")) == 10  # the three deleted messages are back


def test_dma_without_commit_saves_no_base_and_recover_restores_into_another_mailbox(agent, exchange_root):
    """A stock DMA: the mailbox backup halts SUCCESSFUL but, never committed, leaves no incremental
    base (an incremental asked for without a base is converted to a full, with a warning). The
    stream is recovered with a name list /Mailboxes/bwilliams → /mdavis."""
    address, butypes, _exchange = agent
    store = butypes.mailbox.store
    cl = login(address)
    stream, reason, env, files = backup(cl, {"MAILBOXES": "bwilliams", "LEVEL": "incremental",
                                             "MTF_SET_NUMBER": "3"}, butype="mailbox")
    assert reason == c.DataHaltReason.SUCCESSFUL
    assert env["BACKUP_LEVEL"] == "full" and env["WARNINGS"] == "1"
    trailer = decode_trailer(env[ENV_TRAILER])
    assert len(files) == len(trailer.objects) == int(env["OBJECTS"])
    assert all(f.names[0][1].startswith("/Mailboxes/") for f in files)
    assert int(env["MTF_BYTES"]) == len(stream)
    cl.call(M.DATA_STOP)
    cl.close()
    assert _states(exchange_root) == []

    before = len(_inbox(store, "mdavis"))
    wanted = len(_inbox(store, "bwilliams"))
    cl = login(address)
    halt, logs, env_after = recover(cl, stream, {"CONFLICT": "skip"},
                                    [m.Name(original_path="/Mailboxes/bwilliams", destination_path="/mdavis")],
                                    butype="mailbox")
    cl.close()
    assert halt == c.DataHaltReason.SUCCESSFUL
    assert [(e.name, e.recovery_status) for e in logs] == [("/Mailboxes/bwilliams", c.RecoveryStatus.SUCCESSFUL)]
    assert env_after["RESTORED_TO"] == "mdavis"
    assert len(_inbox(store, "mdavis")) == before + wanted
    assert int(env_after["RESTORED_ITEMS"]) >= wanted


def test_ndmp_mailbox_set_is_the_set_brick_jobs_writes_in_process(agent, site):
    """One packer for both paths: the same store backed up in-process (reference.brick_jobs) and
    over NDMP gives data sets with the same mailbox objects (names, sizes, SHA-256, mailbox)."""
    from reference.brick_jobs import backup_mailboxes

    address, butypes, exchange = agent
    store = butypes.mailbox.store
    local = site.runtime.run(backup_mailboxes(site, store, Selection(mailboxes=("lwilliams",)), "full",
                                              server_name=exchange.server_name))
    remote = site.runtime.run(ndmp_backup_mailboxes(site, f"{address[0]}:{address[1]}", USER, PASSWORD, "full",
                                                    mailboxes=["lwilliams"]))
    assert local.status == remote.status == "ok", remote.error

    def objects(result):
        record = site.catalog.data_set(result.receipt.data_set_id)
        assert record.kind == KIND and record.server == exchange.server_name
        return sorted((o.path, o.kind, o.size, o.sha256, o.database) for o in record.objects
                      if o.database)  # BackupMetadata.json differs by job (times, set ids)

    assert objects(local) and objects(local) == objects(remote)
    assert local.items == remote.items and local.level == remote.level == "full"
