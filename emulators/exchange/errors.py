"""ESE error numbers and Exchange backup-library HRESULTs, as the real API reports them (spec §1.5).

Engine errors surface as ``0xC8000000 | -jet`` (warnings ``0x88000000 | jet``); library (facility
0x7FF) and server-callback (facility 0x7FE) errors have their own HRESULTs and no JET number.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference.protocols.exchange import ExchangeError, hresult_for_jet


@dataclass(frozen=True)
class JetCode:
    number: int
    symbol: str

    @property
    def hr(self) -> int:
        return hresult_for_jet(self.number)

    @property
    def is_warning(self) -> bool:
        return self.number > 0


def _j(number: int, symbol: str) -> JetCode:
    return JetCode(number, symbol)


# Engine errors (ESE-hdr names and numbers)
BackupInProgress = _j(-505, "JET_errBackupInProgress")
LogWriteFail = _j(-510, "JET_errLogWriteFail")
LogGenerationMismatch = _j(-513, "JET_errLogGenerationMismatch")
LoggingDisabled = _j(-516, "JET_errLoggingDisabled")
NoBackup = _j(-520, "JET_errNoBackup")
InvalidBackupSequence = _j(-521, "JET_errInvalidBackupSequence")
BackupNotAllowedYet = _j(-523, "JET_errBackupNotAllowedYet")
InvalidBackup = _j(-526, "JET_errInvalidBackup")
MissingLogFile = _j(-528, "JET_errMissingLogFile")
LogDiskFull = _j(-529, "JET_errLogDiskFull")
BadLogSignature = _j(-530, "JET_errBadLogSignature")
BadCheckpointSignature = _j(-532, "JET_errBadCheckpointSignature")
CheckpointCorrupt = _j(-533, "JET_errCheckpointCorrupt")
LogFileCorrupt = _j(-501, "JET_errLogFileCorrupt")
ConsistentTimeMismatch = _j(-551, "JET_errConsistentTimeMismatch")
DatabasePatchFileMismatch = _j(-552, "JET_errDatabasePatchFileMismatch")
EndingRestoreLogTooLow = _j(-553, "JET_errEndingRestoreLogTooLow")
StartingRestoreLogTooHigh = _j(-554, "JET_errStartingRestoreLogTooHigh")
GivenLogFileHasBadSignature = _j(-555, "JET_errGivenLogFileHasBadSignature")
GivenLogFileIsNotContiguous = _j(-556, "JET_errGivenLogFileIsNotContiguous")
MissingRestoreLogFiles = _j(-557, "JET_errMissingRestoreLogFiles")
MissingFullBackup = _j(-560, "JET_errMissingFullBackup")
MissingCurrentLogFiles = _j(-565, "JET_errMissingCurrentLogFiles")
BadRestoreTargetInstance = _j(-577, "JET_errBadRestoreTargetInstance")
ExistingLogFileHasBadSignature = _j(-610, "JET_errExistingLogFileHasBadSignature")
ExistingLogFileIsNotContiguous = _j(-611, "JET_errExistingLogFileIsNotContiguous")
LogReadVerifyFailure = _j(-612, "JET_errLogReadVerifyFailure")
RestoreOfNonBackupDatabase = _j(-615, "JET_errRestoreOfNonBackupDatabase")
LogFileNotCopied = _j(-616, "JET_errLogFileNotCopied")
BackupAbortByServer = _j(-801, "JET_errBackupAbortByServer")
InvalidGrbit = _j(-900, "JET_errInvalidGrbit")
InvalidParameter = _j(-1003, "JET_errInvalidParameter")
ReadVerifyFailure = _j(-1018, "JET_errReadVerifyFailure")
PageNotInitialized = _j(-1019, "JET_errPageNotInitialized")
DiskIO = _j(-1022, "JET_errDiskIO")
FileNotFound = _j(-1811, "JET_errFileNotFound")
DatabaseNotFound = _j(-1203, "JET_errDatabaseNotFound")
DatabaseCorrupted = _j(-1206, "JET_errDatabaseCorrupted")
DatabaseInUse = _j(-1202, "JET_errDatabaseInUse")
DatabaseDirtyShutdown = _j(-550, "JET_errDatabaseDirtyShutdown")
# Warnings
TargetInstanceRunning = _j(578, "JET_wrnTargetInstanceRunning")

# Library (facility 0x7FF) and server callback (0x7FE) HRESULTs, BKMSG.H
HR_INVALID_PARAM = 0xC7FF07D1
HR_ERROR = 0xC7FF07D2
HR_INVALID_HANDLE = 0xC7FF07D3
HR_COULD_NOT_CONNECT = 0xC7FF07D7
HR_RESTORE_IN_PROGRESS = 0xC7FF07D4
HR_OPEN_RESTORE_ENV_FAILED = 0xC7FF0BB9
HR_RESTORE_ENV_WRITE_FAILED = 0xC7FF0BBC
HR_BAD_RESTORE_LOG_FILE_PATH = 0xC7FF0BBD
HR_RESTORE_ENV_CORRUPTED = 0xC7FF0BC3
HR_BAD_CSECTION_PARAMETER = 0xC7FF0BC4
HR_BAD_FILE_NAME_TO_BACKUP = 0xC7FF0BC5
HR_LOG_BASE_NAME_MISMATCH = 0xC7FF0BCC
HR_INVALID_CALL_SEQUENCE = 0xC7FF0FA4
HR_RESTORE_AT_FILE_LEVEL = 0xC7FF0FA5
HR_ERROR_FROM_ESE_CALL = 0xC7FF1004
HR_CB_DATABASE_IN_USE = 0xC7FE1F41
HR_CB_DATABASE_NOT_FOUND = 0xC7FE1F42
HR_CB_DATABASE_DISPLAY_NAME_NOT_FOUND = 0xC7FE1F43
HR_CB_RESTORE_PATH_NOT_PROVIDED = 0xC7FE1F44
HR_CB_INSTANCE_NOT_FOUND = 0xC7FE1F45
HR_CB_DATABASE_CANT_BE_OVERWRITTEN = 0xC7FE1F46

LIBRARY_SYMBOLS = {
    HR_INVALID_PARAM: "hrInvalidParam",
    HR_ERROR: "hrError",
    HR_INVALID_HANDLE: "hrInvalidHandle",
    HR_COULD_NOT_CONNECT: "hrCouldNotConnect",
    HR_RESTORE_IN_PROGRESS: "hrRestoreInProgress",
    HR_OPEN_RESTORE_ENV_FAILED: "hrOpenRestoreEnvFailed",
    HR_RESTORE_ENV_WRITE_FAILED: "hrRestoreEnvWriteFailed",
    HR_BAD_RESTORE_LOG_FILE_PATH: "hrBadRestoreLogFilePath",
    HR_RESTORE_ENV_CORRUPTED: "hrRestoreEnvCorrupted",
    HR_BAD_CSECTION_PARAMETER: "hrBadCSectionParameter",
    HR_BAD_FILE_NAME_TO_BACKUP: "hrBadFileNameToBackup",
    HR_LOG_BASE_NAME_MISMATCH: "hrLogBaseNameMismatch",
    HR_INVALID_CALL_SEQUENCE: "hrInvalidCallSequence",
    HR_RESTORE_AT_FILE_LEVEL: "hrRestoreAtFileLevel",
    HR_ERROR_FROM_ESE_CALL: "hrErrorFromESECall",
    HR_CB_DATABASE_IN_USE: "hrCBDatabaseInUse",
    HR_CB_DATABASE_NOT_FOUND: "hrCBDatabaseNotFound",
    HR_CB_DATABASE_DISPLAY_NAME_NOT_FOUND: "hrCBDatabaseDisplayNameNotFound",
    HR_CB_RESTORE_PATH_NOT_PROVIDED: "hrCBRestorePathNotProvided",
    HR_CB_INSTANCE_NOT_FOUND: "hrCBInstanceNotFound",
    HR_CB_DATABASE_CANT_BE_OVERWRITTEN: "hrCBDatabaseCantBeOverwritten",
}


def jet_error(code: JetCode, message: str) -> ExchangeError:
    """An ExchangeError for an engine error surfaced directly (hr = 0xC8000000 | -N)."""
    return ExchangeError(code.hr, message, jet=code.number, symbol=code.symbol)


def library_error(hr: int, message: str, jet: JetCode | None = None) -> ExchangeError:
    """An ExchangeError for a library/callback HRESULT; ``jet`` is the GetLastError() detail if any."""
    return ExchangeError(
        hr,
        message,
        jet=jet.number if jet else None,
        symbol=LIBRARY_SYMBOLS.get(hr & 0xFFFFFFFF) if jet is None else f"{LIBRARY_SYMBOLS.get(hr, 'hr')}/{jet.symbol}",
    )


__all__ = ["ExchangeError", "JetCode", "jet_error", "library_error", "hresult_for_jet"]

LogCorruptDuringHardRestore = _j(-573, "JET_errLogCorruptDuringHardRestore")
