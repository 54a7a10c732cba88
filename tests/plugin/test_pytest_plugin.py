"""The pytest plugin other projects use: its fixtures give working emulators (issue 9)."""

from __future__ import annotations

from reference.protocols.changer import MediaChanger
from reference.protocols.conformance import assert_conforms
from reference.protocols.exchange import BackupType

pytest_plugins = ["pytester"]


def test_exchange_server_fixture_backs_up(exchange_server):
    api = exchange_server.backup_api()
    context = api.backup_prepare("Microsoft Information Store")
    try:
        group = context.instances[0]
        context.setup(group.instance_id, BackupType.FULL)
        handle, size = context.open_file(group.databases[0].streams[0])
        buffer = bytearray(1 << 16)
        total = 0
        while count := context.read_file(handle, buffer):
            total += count
        context.close_file(handle)
        assert total == size > 0
        assert context.get_log_and_patch_files()
    finally:
        context.end()


def test_exchange_server_fixture_has_mail(exchange_server):
    from emulators.exchange.mailbox_store import ServerMailboxStore

    store = ServerMailboxStore.for_server(exchange_server)
    assert len(store.list_mailboxes()) >= 4


def test_tape_library_fixture(tape_library):
    assert_conforms(tape_library, MediaChanger)
    status = tape_library.status()
    assert len(status.drives) == 2
    assert [s.barcode for s in status.slots if s.full] == ["000001L9", "000002L9", "000003L9", "000004L9"]


def test_plugin_is_registered_for_other_projects(pytester):
    """A project that installs mailtape gets the fixtures without any conftest."""
    pytester.makepyfile(
        """
        def test_uses_fixtures(mailtape_seed, mailtape_clock, tape_library):
            assert mailtape_seed == 5
            tape_library.load(1, 0)
            assert tape_library.status().drives[0].full
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--mailtape-seed", "5")
    result.assert_outcomes(passed=1)
