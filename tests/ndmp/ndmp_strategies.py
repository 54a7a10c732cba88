"""Hypothesis strategies derived from the XDR declarations themselves (one schema, also for tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from reference.ndmp import xdr


def for_codec(codec: xdr.XdrType, depth: int = 0) -> st.SearchStrategy:
    if isinstance(codec, xdr.UQuad):
        return st.integers(0, 2**64 - 1)
    if isinstance(codec, xdr.Bool):
        return st.booleans()
    if isinstance(codec, xdr.Enum):
        return st.one_of(st.sampled_from(list(codec.enum_cls)), st.integers(0, 2**32 - 1))
    if isinstance(codec, xdr.UChar):
        return st.integers(0, 0xFF)
    if isinstance(codec, xdr.UShort):
        return st.integers(0, 0xFFFF)
    if isinstance(codec, xdr.Int):
        return st.integers(-2**31, 2**31 - 1)
    if isinstance(codec, xdr.UInt):
        return st.integers(0, 2**32 - 1)
    if isinstance(codec, xdr.String):
        return st.text(max_size=12)
    if isinstance(codec, xdr.Opaque):
        if codec.fixed is not None:
            return st.binary(min_size=codec.fixed, max_size=codec.fixed)
        return st.binary(max_size=20)
    if isinstance(codec, xdr.Array):
        return st.lists(for_codec(codec.element, depth + 1), max_size=3 if depth < 2 else 1)
    if isinstance(codec, xdr.Union):
        options = []
        for tag, arm in codec.arms.items():
            tag_value = codec.discriminant.enum_cls(tag) if isinstance(codec.discriminant, xdr.Enum) else tag
            options.append(st.tuples(st.just(tag_value),
                                     st.none() if arm is None else for_codec(arm, depth + 1)))
        return st.one_of(options)
    if isinstance(codec, xdr.StructCodec):
        return st.builds(codec.cls, **{name: for_codec(f, depth + 1) for name, f in codec.fields})
    raise TypeError(f"no strategy for {codec!r}")


def for_type(t) -> st.SearchStrategy:
    return for_codec(xdr.codec_of(t))
