"""Import a helper module of another test directory by path.

Test directories have no ``__init__.py``; pytest imports their modules by basename, so a helper of
tests/imap is not importable from tests/brick. Loading it here, once per process and under a fixed
name, also keeps one module object (one Dovecot singleton, one ``mailbox_suite``) for everyone.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parents[1]


def load_test_module(name: str, relative_path: str) -> ModuleType:
    """``tests/<relative_path>`` imported once under ``name`` (the cached module on later calls)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / relative_path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
