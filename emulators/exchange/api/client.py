"""``ExchangeBackupApi`` of one emulated server: what ``esebcli2.dll`` would connect to."""

from __future__ import annotations

import os

from reference.protocols.exchange import RestoreEnvironment

from .. import errors
from ..server import SERVICE_ANNOTATION
from . import restore_env
from .backup import BackupContext, instance_infos
from .restore import RestoreContext


ESE_REGISTER_BACKUP = 0x1
ESE_REGISTER_ONLINE_RESTORE = 0x2
BACKUP_NODE_TYPE_MACHINE = 0x1
BACKUP_NODE_TYPE_ANNOTATION = 0x10
BACKUP_NODE_TYPE_DISPLAY = 0x100


class EmulatedBackupApi:
    def __init__(self, server):
        self.server = server
        self.server_name = server.server_name

    def get_registered(self) -> list[tuple[str, str, int]]:
        """``HrESEBackupRestoreGetRegistered``: (display, annotation, fFlags) of the services."""
        return [(SERVICE_ANNOTATION, SERVICE_ANNOTATION, ESE_REGISTER_BACKUP | ESE_REGISTER_ONLINE_RESTORE)]

    def get_nodes(self) -> dict:
        """``HrESEBackupRestoreGetNodes``: machine -> service annotation -> storage groups (display)."""
        return {"name": self.server_name, "flags": BACKUP_NODE_TYPE_MACHINE, "children": [
            {"name": SERVICE_ANNOTATION, "flags": BACKUP_NODE_TYPE_ANNOTATION, "children": [
                {"name": sg.name, "flags": BACKUP_NODE_TYPE_DISPLAY, "children": []}
                for sg in self.server.storage_groups if not sg.recovery]}]}

    def _check_annotation(self, annotation: str) -> None:
        if annotation != SERVICE_ANNOTATION:
            raise errors.library_error(errors.HR_COULD_NOT_CONNECT,
                                       f"service {annotation!r} is not registered for backup on {self.server_name}")
        if not self.server.running:
            raise errors.library_error(errors.HR_COULD_NOT_CONNECT, f"{self.server_name}: Information Store is not running")

    def backup_prepare(self, annotation: str = SERVICE_ANNOTATION) -> BackupContext:
        self._check_annotation(annotation)
        return BackupContext(self, instance_infos(self.server))

    def _target_for(self, src_instance_name: str) -> str:
        rsg = self.server.recovery_storage_group
        if rsg is not None:
            return rsg.name  # Exchange treats the RSG as the only storage group for restores
        for sg in self.server.storage_groups:
            if sg.name.lower() == src_instance_name.lower():
                return sg.name
        raise errors.library_error(errors.HR_CB_INSTANCE_NOT_FOUND,
                                   f"storage group {src_instance_name!r} not found on {self.server_name}")

    def restore_open(self, annotation: str, src_instance_name: str, restore_log_path: str | None = None) -> RestoreContext:
        self._check_annotation(annotation)
        target = self._target_for(src_instance_name)
        if target in self.server.restores_in_progress:
            raise errors.library_error(errors.HR_RESTORE_IN_PROGRESS, f"a restore into {target!r} is already in progress")
        if restore_log_path is None:
            safe = "".join(c if c.isalnum() or c in " -_" else "_" for c in src_instance_name)
            restore_log_path = os.path.join(self.server.root, "RestoreTemp", safe)
        try:
            os.makedirs(restore_log_path, exist_ok=True)
        except OSError as e:
            raise errors.library_error(errors.HR_BAD_RESTORE_LOG_FILE_PATH, f"{restore_log_path}: {e.strerror}") from None
        env = RestoreEnvironment(restore_log_path=os.path.abspath(restore_log_path), src_instance_name=src_instance_name,
                                 annotation=annotation, restore_server_name=self.server_name, status_last_recover=1)
        self.server.restores_in_progress.add(target)
        return RestoreContext(self, env, target)

    def restore_reopen(self, annotation: str, restore_log_path: str) -> RestoreContext:
        self._check_annotation(annotation)
        env = restore_env.load(restore_log_path)
        target = self._target_for(env.src_instance_name)
        if target in self.server.restores_in_progress:
            raise errors.library_error(errors.HR_RESTORE_IN_PROGRESS, f"a restore into {target!r} is already in progress")
        env.restore_log_path = os.path.abspath(restore_log_path)
        self.server.restores_in_progress.add(target)
        return RestoreContext(self, env, target)

    def restore_load_environment(self, restore_log_path: str) -> RestoreEnvironment:
        return restore_env.load(restore_log_path)
