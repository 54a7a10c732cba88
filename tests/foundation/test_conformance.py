"""The protocol conformance helper that every emulator and real driver's suite relies on."""

from __future__ import annotations

import pytest

from reference.protocols.changer import MediaChanger
from reference.protocols.conformance import assert_conforms, conformance_problems
from reference.protocols.exchange import BackupContext, ExchangeBackupApi, RestoreContext
from reference.protocols.mailbox import MailboxStore
from reference.protocols.tape import TapeDevice


class GoodTape:
    name = "good"

    def read(self, size): ...
    def readinto(self, buffer): ...
    def write(self, block): ...
    def mtop(self, op, count=1): ...
    def status(self): ...
    def tell(self): ...
    def close(self): ...


class TapeMissingTell(GoodTape):
    tell = None  # type: ignore[assignment]


class TapeWithRenamedArgument(GoodTape):
    def read(self, nbytes): ...


class TapeWithExtraRequiredArgument(GoodTape):
    def mtop(self, op, count, flags): ...


class TapeWithoutName:
    def read(self, size): ...


def test_a_complete_implementation_conforms():
    assert conformance_problems(GoodTape, TapeDevice) == []
    assert_conforms(GoodTape(), TapeDevice)


def test_a_non_callable_member_is_reported():
    assert any("tell is not callable" in p for p in conformance_problems(TapeMissingTell, TapeDevice))


def test_a_renamed_parameter_is_reported():
    problems = conformance_problems(TapeWithRenamedArgument, TapeDevice)
    assert any("'size'" in p for p in problems), problems


def test_an_extra_required_parameter_is_reported():
    problems = conformance_problems(TapeWithExtraRequiredArgument, TapeDevice)
    assert any("extra parameter 'flags'" in p for p in problems), problems


def test_missing_members_are_all_listed():
    problems = conformance_problems(TapeWithoutName, TapeDevice)
    for member in ("name", "write", "mtop", "status", "tell", "close"):
        assert any(f"TapeDevice.{member}" in p for p in problems), member
    with pytest.raises(AssertionError, match="lacks TapeDevice.write"):
        assert_conforms(TapeWithoutName, TapeDevice)


@pytest.mark.parametrize(
    "protocol", [TapeDevice, MediaChanger, ExchangeBackupApi, BackupContext, RestoreContext, MailboxStore]
)
def test_every_protocol_documents_what_it_mirrors(protocol):
    assert protocol.__doc__ and len(protocol.__doc__) > 20
    module_doc = __import__(protocol.__module__, fromlist=["_"]).__doc__
    assert "Mirrors" in module_doc or "mirror" in module_doc
