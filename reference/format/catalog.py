"""What the MTF reader found: media, data sets, volumes, objects (with their pieces), problems."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import mtf_structs as m


@dataclass
class Problem:
    medium: str
    offset: int
    kind: str
    message: str
    objects: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        obj = f" [{', '.join(self.objects)}]" if self.objects else ""
        return f"{self.medium} at {self.offset}: {self.kind}: {self.message}{obj}"


@dataclass
class Piece:
    medium: int
    offset: int
    length: int


@dataclass
class ObjectEntry:
    set_number: int
    volume: str
    path: list[str]
    name: str
    size: int
    file_id: int
    dir_id: int
    medium: str
    offset: int
    pieces: list[Piece] = field(default_factory=list)
    csum: int | None = None
    sha256: bytes | None = None
    header_ok: bool | None = None
    corrupt_flag: bool = False
    incomplete: bool = False
    damaged: str | None = None
    volume_index: int = -1
    expects_csum: bool = False

    @property
    def received(self) -> int:
        return sum(p.length for p in self.pieces)

    @property
    def display_path(self) -> str:
        return "/".join([self.volume] + self.path + [self.name])


@dataclass
class VolumeEntry:
    device: str
    volume: str
    machine: str
    metadata: bytes | None = None


@dataclass
class SetEntry:
    number: int
    name: str = ""
    description: str = ""
    user: str = ""
    attr: int = 0
    write_date: object = None
    vendor_id: int = 0
    volumes: list[VolumeEntry] = field(default_factory=list)
    objects: list[ObjectEntry] = field(default_factory=list)
    ended: bool = False
    spanned_digests: dict[int, tuple[int, int, bytes]] = field(default_factory=dict)
    dirs: dict[int, list[str]] = field(default_factory=dict)


@dataclass
class MediumEntry:
    name: str
    family_id: int | None = None
    sequence: int | None = None
    flb: int = m.DEFAULT_FLB
    label: str = ""
    media_name: str = ""
    software: str = ""
    vendor_id: int = 0
    continuation: bool = False
    soft_filemark_size: int = 0


@dataclass
class Block:
    """One DBLK as the walk saw it (for ``dump``)."""

    medium: str
    offset: int
    kind: str
    length: int
    fla: int
    cbid: int
    attr: int
    streams: list[tuple[int, str, int, int, bool]]  # (offset in DBLK, id, length, media attr, ok)
    note: str = ""


class Catalog:
    def __init__(self) -> None:
        self.media: list[MediumEntry] = []
        self.sets: list[SetEntry] = []
        self.problems: list[Problem] = []
        self.blocks: list[Block] = []
        self.unknown_blocks: list[Block] = []

    def objects(self):
        for s in self.sets:
            yield from s.objects
