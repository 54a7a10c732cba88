"""Check that an implementation really provides a protocol: every member, callable, same parameters.

``typing.runtime_checkable`` only checks that names exist. A driver whose ``read`` lost its ``size``
argument would still pass that check and fail at 2 a.m. on a real drive, so emulators and real
drivers assert :func:`conformance_problems` is empty in their test suites.
"""

from __future__ import annotations

import inspect
from typing import Any


def _protocol_members(protocol: type) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for klass in reversed(protocol.__mro__):
        if klass is object or klass.__name__ in ("Protocol", "Generic"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            members[name] = value
        for name in getattr(klass, "__annotations__", {}):
            if not name.startswith("_"):
                members.setdefault(name, None)
    return members


def _parameters(function) -> list[inspect.Parameter]:
    params = list(inspect.signature(function).parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    return params


def conformance_problems(implementation: Any, protocol: type) -> list[str]:
    """Every way ``implementation`` (a class or an instance) falls short of ``protocol``.

    Checks: each protocol member exists; each protocol method is callable on the implementation;
    the implementation accepts every parameter the protocol declares, by the same name and in
    the same position, and has no extra *required* parameter.
    """
    problems = []
    owner = implementation if isinstance(implementation, type) else type(implementation)
    for name, declared in _protocol_members(protocol).items():
        if not hasattr(implementation, name):
            problems.append(f"{owner.__name__} lacks {protocol.__name__}.{name}")
            continue
        if not callable(declared):
            continue  # a data attribute: presence is what we can check
        provided = getattr(implementation, name)
        if not callable(provided):
            problems.append(f"{owner.__name__}.{name} is not callable")
            continue
        try:
            wanted = _parameters(declared)
            given = _parameters(inspect.unwrap(provided))
        except (TypeError, ValueError):
            continue  # builtins without signatures: nothing more to compare
        if isinstance(implementation, type) is False and given and given[0].name == "self":
            given = given[1:]
        accepts_any = any(p.kind is p.VAR_POSITIONAL for p in given) and any(p.kind is p.VAR_KEYWORD for p in given)
        if accepts_any:
            continue
        for index, param in enumerate(wanted):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if index >= len(given) or given[index].name != param.name:
                names = [p.name for p in given]
                problems.append(
                    f"{owner.__name__}.{name}{tuple(names)} does not take parameter "
                    f"{param.name!r} at position {index} like {protocol.__name__}.{name}"
                )
                break
        for param in given[len(wanted):]:
            if param.default is param.empty and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                problems.append(f"{owner.__name__}.{name} requires extra parameter {param.name!r}")
    return problems


def assert_conforms(implementation: Any, protocol: type) -> None:
    """Raise AssertionError listing every problem :func:`conformance_problems` finds."""
    problems = conformance_problems(implementation, protocol)
    if problems:
        raise AssertionError("; ".join(problems))
