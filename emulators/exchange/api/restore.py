"""``HrESERestore*``: the restore context (spec §2.1) and ``HrESERestoreComplete``'s hard recovery."""

from __future__ import annotations

import copy
import os
import uuid

from reference.protocols.exchange import RestoreClose, RestoreComplete, RestoreEnvironment

from .. import errors
from ..engine import hardrecovery, timeline
from ..engine.logstream import log_generation_from_name
from . import restore_env

RECOVER_NOT_STARTED, RECOVER_STARTED, RECOVER_ENDED = 1, 2, 3


class RestoreContext:
    def __init__(self, api, env: RestoreEnvironment, target_sg: str):
        self.api = api
        self.server = api.server
        self.env = env
        self.target_sg = target_sg
        self._closed = False

    def _live(self) -> None:
        if self._closed:
            raise errors.library_error(errors.HR_INVALID_HANDLE, "restore context already closed")

    @property
    def redirected(self) -> bool:
        sg = self.server.storage_group(self.target_sg)
        return sg.recovery

    def get_environment(self) -> RestoreEnvironment:
        self._live()
        return copy.deepcopy(self.env)

    def add_database(self, display_name: str, guid: uuid.UUID, streams: tuple[str, ...]) -> tuple[str, ...]:
        self._live()
        sg = self.server.storage_group(self.target_sg)
        target = _target_config(sg, display_name, uuid.UUID(str(guid)))
        if target is None:
            raise errors.library_error(
                errors.HR_CB_DATABASE_NOT_FOUND,
                f"database {display_name!r} ({guid}) does not exist in storage group {sg.name!r}",
            )
        if target.dbid in self.server.instance(sg.name).databases:
            raise errors.library_error(errors.HR_CB_DATABASE_IN_USE,
                                       f"Database in use. Make sure database {target.name!r} is dismounted.")
        if not target.allow_restore_overwrite:
            raise errors.library_error(errors.HR_CB_DATABASE_CANT_BE_OVERWRITTEN,
                                       f"database {target.name!r} cannot be overwritten by a restore")
        dest_files = [self.server.abspath(p) for p in target.files]
        if len(streams) != len(dest_files):
            raise errors.library_error(errors.HR_INVALID_PARAM,
                                       f"{len(streams)} source streams for a database with {len(dest_files)} files")
        dest = []
        for s in streams:
            ext = os.path.splitext(s.replace("\\", "/"))[1].lower()
            match = [p for p in dest_files if os.path.splitext(p)[1].lower() == ext]
            dest.append(match[0] if match else dest_files[len(dest)])
        entry = (display_name, uuid.UUID(str(guid)), tuple(streams), tuple(dest))
        self.env.databases = [e for e in self.env.databases if e[1] != entry[1]] + [entry]
        return tuple(dest)

    def open_file(self, path: str, sections: int = 1) -> None:
        """Always answers hrRestoreAtFileLevel: the caller writes the file itself (logs into the
        restore log path). Log names announced here define the restored generation range."""
        self._live()
        if sections != 1:
            raise errors.library_error(errors.HR_BAD_CSECTION_PARAMETER, f"cSections must be 1, not {sections}")
        parsed = log_generation_from_name(path)
        if parsed is not None:
            prefix, gen = parsed
            if self.env.log_base_name and self.env.log_base_name.upper() != prefix.upper():
                raise errors.library_error(errors.HR_LOG_BASE_NAME_MISMATCH,
                                           f"{path}: log base name {prefix} differs from {self.env.log_base_name}")
            self.env.log_base_name = prefix
            self.env.gen_low = gen if not self.env.gen_low else min(self.env.gen_low, gen)
            self.env.gen_high = max(self.env.gen_high, gen)
        raise errors.library_error(errors.HR_RESTORE_AT_FILE_LEVEL, f"{path}: restore must be done by restoring the file")

    def save_environment(self) -> None:
        self._live()
        restore_env.save(self.env, self.env.restore_log_path)

    def complete(self, system_path, log_path, target_instance, flags=RestoreComplete.ATTACH_DBS) -> int:
        self._live()
        server = self.server
        env = self.env
        flags = RestoreComplete(int(flags))
        sg = server.storage_group(self.target_sg)
        inst = server.instance(sg.name)
        roll_forward = target_instance is not None and not sg.recovery
        if roll_forward and str(target_instance).lower() not in (sg.name.lower(), env.src_instance_name.lower()):
            try:
                server.storage_group(target_instance)
            except Exception:
                raise errors.jet_error(errors.BadRestoreTargetInstance,
                                       f"restore target instance {target_instance!r} not found") from None
        env.restore_instance_system_path = system_path
        env.restore_instance_log_path = log_path
        env.target_instance_name = target_instance
        env.status_last_recover = RECOVER_STARTED
        env.time_last_restore = server.clock.now()
        restore_env.save(env, env.restore_log_path)
        try:
            hr = self._recover(sg, inst, roll_forward, flags)
        except errors.ExchangeError as e:
            env.status_last_recover = RECOVER_ENDED
            env.hr_last_recover = e.hr
            env.time_last_recover = server.clock.now()
            restore_env.save(env, env.restore_log_path)
            if server.profile.complete_errors_via_ese_call and e.jet is not None:
                raise errors.ExchangeError(errors.HR_ERROR_FROM_ESE_CALL, e.detail, jet=e.jet, symbol=e.symbol) from None
            raise
        env.status_last_recover = RECOVER_ENDED
        env.hr_last_recover = hr
        env.time_last_recover = server.clock.now()
        restore_env.save(env, env.restore_log_path)
        return hr

    def _recover(self, sg, inst, roll_forward: bool, flags: RestoreComplete) -> int:
        server, env, profile = self.server, self.env, self.server.profile
        if not env.databases:
            raise errors.library_error(errors.HR_INVALID_CALL_SEQUENCE, "no database was added to this restore")
        for name, guid, _s, _d in env.databases:
            cfg = _target_config(sg, name, guid)
            if cfg is not None and cfg.dbid in inst.databases:
                raise errors.library_error(errors.HR_CB_DATABASE_IN_USE, f"database {cfg.name!r} is mounted")
        with inst.lock:
            gens = hardrecovery.restored_log_set(env.restore_log_path, env.log_base_name, env.gen_low, env.gen_high)
            env.gen_low, env.gen_high = gens[0].header.generation, gens[-1].header.generation
            env.log_base_name = env.log_base_name or os.path.basename(gens[0].path)[:3]
            warning, forward = None, []
            if roll_forward:
                warning, forward = hardrecovery.check_existing_logs(profile, gens, inst)
            for _n, _g, _s, dest in env.databases:
                for p in dest:
                    hardrecovery.check_database(p, profile, gens)
            db_files = [list(d) for _n, _g, _s, d in env.databases]
            consistent = (timeline.check_timeline(db_files, profile, gens + forward)
                          if profile.refuse_other_timeline else None)
            hardrecovery.replay(db_files, profile, gens + forward, server.clock, consistent)
            if not (flags & RestoreComplete.KEEP_LOG_FILES):
                for g in gens:
                    try:
                        os.remove(g.path)
                    except FileNotFoundError:
                        pass
        if flags & RestoreComplete.ATTACH_DBS:
            for name, guid, _s, _d in env.databases:
                cfg = _target_config(sg, name, guid)
                if cfg is not None:
                    server.mount(sg.name, cfg.name)
        if warning is not None:
            return warning.hr
        if roll_forward and inst.running:
            return errors.TargetInstanceRunning.hr
        return 0

    def close(self, flags: RestoreClose = RestoreClose.NORMAL) -> None:
        if self._closed:
            return
        self._closed = True
        self.server.restores_in_progress.discard(self.target_sg)


def _target_config(sg, name: str, guid: uuid.UUID):
    """The target store of a restored database: same GUID, else (restore to an alternate server)
    a store of the same display name."""
    for d in sg.databases:
        if uuid.UUID(d.guid) == guid:
            return d
    return next((d for d in sg.databases if d.name.lower() == name.lower()), None)
