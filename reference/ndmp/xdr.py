"""A tiny XDR (RFC 4506) combinator set: each type packs and unpacks, so one declaration serves both.

Only what NDMP v4 needs: 32-bit unsigned/signed/enum/bool, the ``ndmp4_u_quad`` hyper, strings and
opaques (fixed and variable, padded to 4), variable arrays, structs (declared as classes) and
discriminated unions. Decoding never trusts a length: every count is checked against the bytes that
remain before anything is allocated, so a hostile 4 GiB length costs nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from typing import Any, Callable, Iterable

_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")


class XdrError(ValueError):
    """Bytes that do not decode as the declared XDR type (names the type and the offset)."""


def _pad(n: int) -> int:
    return (4 - n % 4) % 4


class XdrType:
    """One XDR type: ``pack`` appends to a bytearray, ``unpack`` reads at an offset."""

    name = "?"
    min_size = 4

    def pack(self, value: Any, out: bytearray) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def unpack(self, buf: memoryview, pos: int) -> tuple[Any, int]:  # pragma: no cover
        raise NotImplementedError

    def default(self) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def _need(self, buf: memoryview, pos: int, n: int) -> None:
        if pos + n > len(buf):
            raise XdrError(f"{self.name}: needs {n} bytes at offset {pos}, only {len(buf) - pos} left")


class UInt(XdrType):
    name = "u_long"

    def pack(self, value: int, out: bytearray) -> None:
        try:
            out += _U32.pack(value)
        except struct.error as exc:
            raise XdrError(f"{self.name}: {value!r} does not fit in 32 unsigned bits") from exc

    def unpack(self, buf: memoryview, pos: int) -> tuple[int, int]:
        self._need(buf, pos, 4)
        return _U32.unpack_from(buf, pos)[0], pos + 4

    def default(self) -> int:
        return 0


class Int(UInt):
    name = "long"

    def pack(self, value: int, out: bytearray) -> None:
        try:
            out += _I32.pack(value)
        except struct.error as exc:
            raise XdrError(f"{self.name}: {value!r} does not fit in 32 signed bits") from exc

    def unpack(self, buf: memoryview, pos: int) -> tuple[int, int]:
        self._need(buf, pos, 4)
        return _I32.unpack_from(buf, pos)[0], pos + 4


class UShort(UInt):
    """``u_short`` travels as 4 bytes; values above 0xFFFF are refused both ways."""

    name = "u_short"

    def pack(self, value: int, out: bytearray) -> None:
        if not 0 <= value <= 0xFFFF:
            raise XdrError(f"{self.name}: {value!r} does not fit in 16 unsigned bits")
        out += _U32.pack(value)

    def unpack(self, buf: memoryview, pos: int) -> tuple[int, int]:
        value, end = super().unpack(buf, pos)
        if value > 0xFFFF:
            raise XdrError(f"{self.name}: {value} at offset {pos} exceeds 16 bits")
        return value, end


class Short(Int):
    name = "short"


class UChar(UShort):
    name = "u_char"

    def pack(self, value: int, out: bytearray) -> None:
        if not 0 <= value <= 0xFF:
            raise XdrError(f"{self.name}: {value!r} does not fit in 8 bits")
        out += _U32.pack(value)


class Bool(UInt):
    name = "bool"

    def pack(self, value: bool, out: bytearray) -> None:
        out += _U32.pack(1 if value else 0)

    def unpack(self, buf: memoryview, pos: int) -> tuple[bool, int]:
        value, end = super().unpack(buf, pos)
        if value > 1:
            raise XdrError(f"{self.name}: {value} at offset {pos} is neither 0 nor 1")
        return bool(value), end

    def default(self) -> bool:
        return False


class UQuad(XdrType):
    """``ndmp4_u_quad`` = {high, low}, i.e. a big-endian unsigned 64-bit integer."""

    name = "u_quad"
    min_size = 8

    def pack(self, value: int, out: bytearray) -> None:
        try:
            out += _U64.pack(value)
        except struct.error as exc:
            raise XdrError(f"{self.name}: {value!r} does not fit in 64 unsigned bits") from exc

    def unpack(self, buf: memoryview, pos: int) -> tuple[int, int]:
        self._need(buf, pos, 8)
        return _U64.unpack_from(buf, pos)[0], pos + 8

    def default(self) -> int:
        return 0


class Enum(UInt):
    """An enum decodes to its IntEnum member when known and to a plain int otherwise.

    NDMP enums are open ("not a complete list" for errors and messages), so an unknown value is not
    a decode error; the handler decides.
    """

    def __init__(self, enum_cls: type[enum.IntEnum]):
        self.enum_cls = enum_cls
        self.name = enum_cls.__name__

    def pack(self, value: int, out: bytearray) -> None:
        super().pack(int(value), out)

    def unpack(self, buf: memoryview, pos: int) -> tuple[int, int]:
        value, end = super().unpack(buf, pos)
        try:
            return self.enum_cls(value), end
        except ValueError:
            return value, end

    def default(self) -> int:
        return next(iter(self.enum_cls))


class Opaque(XdrType):
    """``opaque name<max>`` (variable, ``fixed=None``) or ``opaque name[n]`` (fixed)."""

    def __init__(self, fixed: int | None = None, maximum: int | None = None):
        self.fixed = fixed
        self.maximum = maximum
        self.name = f"opaque[{fixed}]" if fixed is not None else "opaque<>"
        self.min_size = fixed + _pad(fixed) if fixed is not None else 4

    def pack(self, value: bytes, out: bytearray) -> None:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise XdrError(f"{self.name}: expected bytes, got {type(value).__name__}")
        n = len(value)
        if self.fixed is not None:
            if n != self.fixed:
                raise XdrError(f"{self.name}: expected exactly {self.fixed} bytes, got {n}")
        else:
            if self.maximum is not None and n > self.maximum:
                raise XdrError(f"{self.name}: {n} bytes exceeds maximum {self.maximum}")
            out += _U32.pack(n)
        out += value
        out += b"\0" * _pad(n)

    def unpack(self, buf: memoryview, pos: int) -> tuple[bytes, int]:
        if self.fixed is not None:
            n = self.fixed
        else:
            self._need(buf, pos, 4)
            n = _U32.unpack_from(buf, pos)[0]
            if self.maximum is not None and n > self.maximum:
                raise XdrError(f"{self.name}: length {n} at offset {pos} exceeds maximum {self.maximum}")
            pos += 4
        total = n + _pad(n)
        self._need(buf, pos, total)
        return bytes(buf[pos:pos + n]), pos + total

    def default(self) -> bytes:
        return b"\0" * self.fixed if self.fixed is not None else b""


class String(Opaque):
    """``string name<>``: bytes on the wire; str in Python (UTF-8, undecodable bytes kept as
    surrogate escapes so any byte string round-trips)."""

    def __init__(self, maximum: int | None = None):
        super().__init__(None, maximum)
        self.name = "string<>"

    def pack(self, value: str, out: bytearray) -> None:
        if not isinstance(value, str):
            raise XdrError(f"{self.name}: expected str, got {type(value).__name__}")
        super().pack(value.encode("utf-8", "surrogateescape"), out)

    def unpack(self, buf: memoryview, pos: int) -> tuple[str, int]:
        raw, end = super().unpack(buf, pos)
        return raw.decode("utf-8", "surrogateescape"), end

    def default(self) -> str:
        return ""


class Array(XdrType):
    """``T name<max>``: a count then the elements; a list in Python."""

    def __init__(self, element: XdrType | type, maximum: int | None = None):
        self.element = codec_of(element)
        self.maximum = maximum
        self.name = f"{self.element.name}<>"

    def pack(self, value: Iterable[Any], out: bytearray) -> None:
        items = list(value)
        if self.maximum is not None and len(items) > self.maximum:
            raise XdrError(f"{self.name}: {len(items)} elements exceeds maximum {self.maximum}")
        out += _U32.pack(len(items))
        for item in items:
            self.element.pack(item, out)

    def unpack(self, buf: memoryview, pos: int) -> tuple[list[Any], int]:
        self._need(buf, pos, 4)
        count = _U32.unpack_from(buf, pos)[0]
        if self.maximum is not None and count > self.maximum:
            raise XdrError(f"{self.name}: count {count} at offset {pos} exceeds maximum {self.maximum}")
        pos += 4
        if count * self.element.min_size > len(buf) - pos:
            raise XdrError(f"{self.name}: count {count} at offset {pos - 4} cannot fit in "
                           f"the {len(buf) - pos} bytes left")
        items = []
        for _ in range(count):
            item, pos = self.element.unpack(buf, pos)
            items.append(item)
        return items, pos

    def default(self) -> list[Any]:
        return []


VOID = None  # a union arm with no data


class Union(XdrType):
    """``union switch (enum d) { case ...: T; default: T }``; a ``(discriminant, arm_value)``
    tuple in Python, with ``arm_value`` None for void arms."""

    def __init__(self, name: str, discriminant: XdrType, arms: dict[int, Any], default_arm: Any = "reject"):
        self.name = name
        self.discriminant = discriminant
        self.arms = {int(k): (codec_of(v) if v is not None else None) for k, v in arms.items()}
        self.default_arm = default_arm if default_arm in ("reject", None) else codec_of(default_arm)

    def _arm(self, tag: int, pos: int) -> XdrType | None:
        if int(tag) in self.arms:
            return self.arms[int(tag)]
        if self.default_arm == "reject":
            raise XdrError(f"{self.name}: discriminant {int(tag)} at offset {pos} has no arm")
        return self.default_arm

    def pack(self, value: tuple[int, Any], out: bytearray) -> None:
        try:
            tag, arm_value = value
        except (TypeError, ValueError) as exc:
            raise XdrError(f"{self.name}: expected a (discriminant, value) pair, got {value!r}") from exc
        arm = self._arm(tag, len(out))
        self.discriminant.pack(tag, out)
        if arm is not None:
            arm.pack(arm_value, out)

    def unpack(self, buf: memoryview, pos: int) -> tuple[tuple[int, Any], int]:
        tag, end = self.discriminant.unpack(buf, pos)
        arm = self._arm(tag, pos)
        if arm is None:
            return (tag, None), end
        value, end = arm.unpack(buf, end)
        return (tag, value), end

    def default(self) -> tuple[int, Any]:
        tag = self.discriminant.default()
        arm = self._arm(tag, 0)
        return (tag, arm.default() if arm is not None else None)


class StructCodec(XdrType):
    """Packs and unpacks a dataclass declared with :func:`xdr_struct`."""

    def __init__(self, cls: type, fields: list[tuple[str, XdrType]]):
        self.cls = cls
        self.fields = fields
        self.name = cls.__name__
        self.min_size = sum(f.min_size for _, f in fields)

    def pack(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, self.cls):
            raise XdrError(f"{self.name}: expected {self.name}, got {type(value).__name__}")
        for fname, ftype in self.fields:
            try:
                ftype.pack(getattr(value, fname), out)
            except XdrError as exc:
                raise XdrError(f"{self.name}.{fname}: {exc}") from None

    def unpack(self, buf: memoryview, pos: int) -> tuple[Any, int]:
        values = {}
        for fname, ftype in self.fields:
            try:
                values[fname], pos = ftype.unpack(buf, pos)
            except XdrError as exc:
                raise XdrError(f"{self.name}.{fname}: {exc}") from None
        return self.cls(**values), pos

    def default(self) -> Any:
        return self.cls()


def xdr_struct(**fields: Any) -> Callable[[type], type]:
    """Class decorator: ``@xdr_struct(a=UInt(), b=String())`` makes a dataclass with those fields
    (in that order, each defaulting to the XDR zero value) and attaches its codec as ``_xdr``."""

    def wrap(cls: type) -> type:
        codecs = [(name, codec_of(t)) for name, t in fields.items()]
        annotations = {name: Any for name, _ in codecs}
        cls.__annotations__ = annotations
        for name, codec in codecs:
            setattr(cls, name, dataclasses.field(default_factory=codec.default))
        data_cls = dataclasses.dataclass(cls)
        data_cls._xdr = StructCodec(data_cls, codecs)
        return data_cls

    return wrap


def codec_of(t: Any) -> XdrType:
    """A declared struct class stands for its codec; an IntEnum class for an Enum codec."""
    if isinstance(t, XdrType):
        return t
    if isinstance(t, type) and hasattr(t, "_xdr"):
        return t._xdr
    if isinstance(t, type) and issubclass(t, enum.IntEnum):
        return Enum(t)
    raise TypeError(f"not an XDR type: {t!r}")


def encode(t: Any, value: Any) -> bytes:
    out = bytearray()
    codec_of(t).pack(value, out)
    return bytes(out)


def decode(t: Any, data: bytes | memoryview, pos: int = 0, *, exact: bool = True) -> Any:
    """Decode one value; with ``exact`` any bytes left over are an error (names how many)."""
    buf = memoryview(data)
    value, end = codec_of(t).unpack(buf, pos)
    if exact and end != len(buf):
        raise XdrError(f"{codec_of(t).name}: {len(buf) - end} unexpected bytes after offset {end}")
    return value
