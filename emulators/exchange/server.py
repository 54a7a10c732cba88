"""The emulated Exchange server: storage groups, databases, its JSON configuration, and the
factory the rest of mailtape uses (``ExchangeServer.create`` / ``ExchangeServer.open``).

State model only; the backup/restore API surface lives in ``api/`` and fault injection in
``faults.py``.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import dataclass, field

from reference.errors import NotFoundError, MailtapeError

from emulators.clock import Clock, SeedSequence, VirtualClock

from . import errors
from .engine.database import MountedDatabase
from .engine.instance import Instance
from .engine.pagefile import PageFile
from .events import EventLog
from .layout import RSG_NAME, RSG_PREFIX, SG_NAMES, db_display_name, db_file_names, sg_folder
from .ondisk.structs import (
    DBSTATE_JUST_CREATED,
    FILETYPE_DATABASE,
    FILETYPE_STREAMING,
    DbHeader,
    LogTime,
    Signature,
)
from .profiles import Profile, get_profile

CONFIG_NAME = "server.json"
SERVICE_ANNOTATION = "Microsoft Information Store"


@dataclass
class DatabaseConfig:
    dbid: int
    name: str
    guid: str
    files: list[str]  # relative to the root
    number: int
    mounted: bool = True
    allow_restore_overwrite: bool = False


@dataclass
class StorageGroupConfig:
    name: str
    index: int
    prefix: str
    folder: str
    circular_logging: bool = False
    recovery: bool = False
    databases: list[DatabaseConfig] = field(default_factory=list)

    @property
    def instance_id(self) -> int:
        return 5 if self.recovery else self.index + 1


class ExchangeServer:
    """One emulated Exchange server rooted at a folder of real files."""

    def __init__(self, root: str, config: dict, clock: Clock):
        self.root = os.path.abspath(root)
        self.clock = clock
        self.server_name: str = config["server_name"]
        self.seed: int = config["seed"]
        self.profile: Profile = get_profile(config["profile"]).with_log_size(config.get("log_file_size"))
        self._rng_counter: int = config.get("rng_counter", 0)
        self._db_counter: int = config.get("db_counter", 0)
        self.storage_groups: list[StorageGroupConfig] = [
            StorageGroupConfig(**{**sg, "databases": [DatabaseConfig(**d) for d in sg["databases"]]})
            for sg in config["storage_groups"]
        ]
        self.instances: dict[str, Instance] = {}
        self.lock = threading.RLock()
        self.restores_in_progress: set[str] = set()
        self.events = EventLog(clock)
        self.running = False

    # -- factory ----------------------------------------------------------------------------

    @classmethod
    def create(cls, root, profile="2003", storage_groups: int = 1, databases: int = 1, server_name: str = "EXCH01",
               clock: Clock | None = None, seed: int = 0, log_file_size: int | None = None,
               circular_logging: bool = False) -> "ExchangeServer":
        """A new server with ``storage_groups`` groups of ``databases`` stores each, all mounted."""
        prof = get_profile(profile)
        if not 1 <= storage_groups <= prof.max_storage_groups:
            raise MailtapeError(f"storage_groups must be 1..{prof.max_storage_groups}, not {storage_groups}")
        if not 1 <= databases <= prof.max_databases_per_group:
            raise MailtapeError(f"databases must be 1..{prof.max_databases_per_group}, not {databases}")
        root = os.path.abspath(str(root))
        if os.path.exists(os.path.join(root, CONFIG_NAME)):
            raise MailtapeError(f"{root}: an Exchange server already exists here")
        os.makedirs(root, exist_ok=True)
        config = {"format": 1, "server_name": server_name, "seed": int(seed), "profile": prof.name,
                  "log_file_size": log_file_size, "rng_counter": 0, "db_counter": 0, "storage_groups": []}
        server = cls(root, config, clock or VirtualClock())
        for i in range(storage_groups):
            server._new_storage_group(SG_NAMES[i], i, f"E0{i}", sg_folder(server.profile, i, SG_NAMES[i]),
                                      circular_logging, recovery=False)
            for _ in range(databases):
                server.add_database(SG_NAMES[i])
        server.running = True
        server.save_config()
        return server

    @classmethod
    def open(cls, root, clock: Clock | None = None) -> "ExchangeServer":
        """Start the server found at ``root``: open the log streams, mount (with soft recovery)."""
        root = os.path.abspath(str(root))
        path = os.path.join(root, CONFIG_NAME)
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except FileNotFoundError:
            raise NotFoundError(f"{root}: no Exchange server here ({CONFIG_NAME} missing)") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise MailtapeError(f"{path}: unreadable server configuration ({e})") from None
        server = cls(root, config, clock or VirtualClock())
        server.start()
        return server

    def start(self) -> None:
        for sg in self.storage_groups:
            inst = self._instance_for(sg)
            inst.start(sg.circular_logging)
            for db in sg.databases:
                if db.mounted and all(os.path.exists(self.abspath(p)) for p in db.files):
                    inst.mount(db.dbid, db.name, [self.abspath(p) for p in db.files])
        self.running = True

    def shutdown(self) -> None:
        """Stop the Information Store cleanly: flush, databases clean-shutdown, logs closed."""
        with self.lock:
            for inst in self.instances.values():
                inst.shutdown()
            self.instances.clear()
            self.running = False

    close = shutdown

    def __enter__(self) -> "ExchangeServer":
        return self

    def __exit__(self, *exc) -> None:
        if self.running:
            self.shutdown()

    # -- configuration ----------------------------------------------------------------------

    def abspath(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def save_config(self) -> None:
        data = {
            "format": 1, "server_name": self.server_name, "seed": self.seed, "profile": self.profile.name,
            "log_file_size": self.profile.log_file_size, "rng_counter": self._rng_counter,
            "db_counter": self._db_counter,
            "storage_groups": [
                {**{k: v for k, v in sg.__dict__.items() if k != "databases"},
                 "databases": [dict(d.__dict__) for d in sg.databases]}
                for sg in self.storage_groups
            ],
        }
        path = os.path.join(self.root, CONFIG_NAME)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)

    # -- randomness -------------------------------------------------------------------------

    def _random_bytes(self, purpose: str, n: int) -> bytes:
        self._rng_counter += 1
        rng = SeedSequence(self.seed).rng(f"exchange/{purpose}/{self._rng_counter}")
        return rng.integers(0, 256, size=n, dtype="u1").tobytes()

    def new_signature(self) -> Signature:
        rnd = int.from_bytes(self._random_bytes("signature", 4), "little") or 1
        return Signature(rnd, LogTime.from_seconds(self.clock.now()), self.server_name)

    def new_guid(self) -> uuid.UUID:
        return uuid.UUID(bytes=self._random_bytes("guid", 16), version=4)

    # -- storage groups ---------------------------------------------------------------------

    def _instance_for(self, sg: StorageGroupConfig) -> Instance:
        inst = self.instances.get(sg.name)
        if inst is None:
            folder = self.abspath(sg.folder)
            inst = Instance(sg.name, sg.prefix, folder, folder, self.profile, self.profile.log_file_size,
                            self.clock, self.server_name, self.new_signature)
            self.instances[sg.name] = inst
        return inst

    def _new_storage_group(self, name, index, prefix, folder, circular, recovery) -> StorageGroupConfig:
        sg = StorageGroupConfig(name=name, index=index, prefix=prefix, folder=folder,
                                circular_logging=circular, recovery=recovery)
        self.storage_groups.append(sg)
        self._instance_for(sg).create(circular)
        return sg

    def storage_group(self, name: str) -> StorageGroupConfig:
        for sg in self.storage_groups:
            if sg.name.lower() == str(name).lower():
                return sg
        raise NotFoundError(f"no storage group {name!r} on {self.server_name}")

    def instance(self, sg_name: str) -> Instance:
        sg = self.storage_group(sg_name)
        return self._instance_for(sg)

    @property
    def recovery_storage_group(self) -> StorageGroupConfig | None:
        for sg in self.storage_groups:
            if sg.recovery:
                return sg
        return None

    def database_config(self, sg_name: str, db_name: str) -> DatabaseConfig:
        sg = self.storage_group(sg_name)
        for db in sg.databases:
            if db.name.lower() == str(db_name).lower():
                return db
        raise NotFoundError(f"no database {db_name!r} in storage group {sg.name!r}")

    def add_database(self, sg_name: str, name: str | None = None, mount: bool = True,
                     guid: uuid.UUID | None = None, files: list[str] | None = None) -> DatabaseConfig:
        """Create a store in a storage group (``name`` defaults to Exchange's default name)."""
        with self.lock:
            sg = self.storage_group(sg_name)
            if len(sg.databases) >= self.profile.max_databases_per_group:
                raise MailtapeError(f"storage group {sg.name!r} already has {len(sg.databases)} databases")
            self._db_counter += 1
            number = self._db_counter
            name = name or db_display_name(self.profile, number, self.server_name)
            dbid = 1 + max((d.dbid for d in sg.databases), default=0)
            guid = guid or self.new_guid()
            rel = [os.path.join(sg.folder, n) for n in (files or db_file_names(self.profile, number, name))]
            cfg = DatabaseConfig(dbid=dbid, name=name, guid=str(guid), files=rel, number=number, mounted=False)
            sg.databases.append(cfg)
            if not sg.recovery:
                sign_db = self.new_signature()
                os.makedirs(self.abspath(sg.folder), exist_ok=True)
                for i, p in enumerate(rel):
                    hdr = DbHeader(version=self.profile.format_version, update=self.profile.format_update,
                                   sign_db=sign_db, dbstate=DBSTATE_JUST_CREATED, dbid=dbid,
                                   file_index=i, guid=guid.bytes,
                                   filetype=FILETYPE_DATABASE if i == 0 else FILETYPE_STREAMING)
                    PageFile.create(self.abspath(p), self.profile.page_size, hdr,
                                    self.profile.header_has_copy_diff).close()
                if mount:
                    self.mount(sg.name, name)
            self.save_config()
            return cfg

    # -- databases --------------------------------------------------------------------------

    def database(self, sg_name: str, db_name: str) -> MountedDatabase:
        """The mounted database as a ``RecordDatabase`` (ExchangeError -1203 when dismounted)."""
        cfg = self.database_config(sg_name, db_name)
        inst = self.instance(sg_name)
        db = inst.databases.get(cfg.dbid)
        if db is None:
            raise errors.jet_error(errors.DatabaseNotFound, f"database {cfg.name!r} is not mounted")
        return db

    def mount(self, sg_name: str, db_name: str) -> MountedDatabase:
        with self.lock:
            cfg = self.database_config(sg_name, db_name)
            inst = self.instance(sg_name)
            if not inst.running:
                raise errors.jet_error(errors.LogWriteFail, f"storage group {sg_name!r} is not running")
            db = inst.mount(cfg.dbid, cfg.name, [self.abspath(p) for p in cfg.files])
            if not cfg.mounted:
                cfg.mounted = True
                self.save_config()
            return db

    def dismount(self, sg_name: str, db_name: str) -> None:
        with self.lock:
            cfg = self.database_config(sg_name, db_name)
            self.instance(sg_name).dismount(cfg.dbid)
            cfg.mounted = False
            self.save_config()

    def is_mounted(self, sg_name: str, db_name: str) -> bool:
        cfg = self.database_config(sg_name, db_name)
        return cfg.dbid in self.instance(sg_name).databases

    def set_allow_restore_overwrite(self, sg_name: str, db_name: str, allowed: bool = True) -> None:
        """The "This database can be overwritten by a restore" check box."""
        cfg = self.database_config(sg_name, db_name)
        cfg.allow_restore_overwrite = bool(allowed)
        self.save_config()

    def set_circular_logging(self, sg_name: str, enabled: bool) -> None:
        with self.lock:
            sg = self.storage_group(sg_name)
            sg.circular_logging = bool(enabled)
            inst = self._instance_for(sg)
            with inst.lock:
                inst.log.circular = bool(enabled)
                inst.write_checkpoint()
            self.save_config()

    def flush(self) -> None:
        """Write every dirty page and advance every checkpoint."""
        for inst in self.instances.values():
            if inst.running:
                inst.flush_all()

    # -- recovery storage group -------------------------------------------------------------

    def create_recovery_storage_group(self, databases: list[tuple[str, str]] = ()) -> StorageGroupConfig:
        """Exchange 2003's Recovery Storage Group, with the given (storage group, database) stores
        added (same display name and GUID, no files until a restore brings them)."""
        with self.lock:
            if self.recovery_storage_group is not None:
                raise MailtapeError("a Recovery Storage Group already exists")
            folder = RSG_NAME if self.profile.db_folder_layout == "2003" else os.path.join("Mailbox", RSG_NAME)
            sg = self._new_storage_group(RSG_NAME, len(self.storage_groups), RSG_PREFIX, folder, False, True)
            for sg_name, db_name in databases:
                self.add_database_to_rsg(sg_name, db_name)
            self.save_config()
            return sg

    def add_database_to_rsg(self, sg_name: str, db_name: str) -> DatabaseConfig:
        rsg = self.recovery_storage_group
        if rsg is None:
            raise NotFoundError("no Recovery Storage Group exists")
        src = self.database_config(sg_name, db_name)
        names = [os.path.basename(p) for p in src.files]
        cfg = self.add_database(rsg.name, name=src.name, mount=False, guid=uuid.UUID(src.guid), files=names)
        cfg.allow_restore_overwrite = True
        self.save_config()
        return cfg

    def remove_recovery_storage_group(self) -> None:
        with self.lock:
            rsg = self.recovery_storage_group
            if rsg is None:
                return
            inst = self.instances.pop(rsg.name, None)
            if inst is not None:
                inst.shutdown()
            self.storage_groups.remove(rsg)
            self.save_config()

    # -- API --------------------------------------------------------------------------------

    def backup_api(self):
        """This server's ``ExchangeBackupApi`` (what esebcli2.dll would connect to)."""
        from .api.client import EmulatedBackupApi

        return EmulatedBackupApi(self)

    def __repr__(self) -> str:
        return f"<ExchangeServer {self.server_name} {self.profile.name} at {self.root}>"
