"""Switching the wire parsers between their C loops and pure Python, for tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType

from callguard.adapters import speedups

CWIRE: ModuleType | None
try:  # imported directly: CALLGUARD_NO_EXTENSIONS must not hide it from the tests
    from callguard.adapters import _cwire as CWIRE
except ImportError:  # pragma: no cover - only where no compiler built it
    CWIRE = None


@contextlib.contextmanager
def using(impl: str) -> Iterator[None]:
    """Parsers created inside run on ``"c"`` or ``"python"``."""
    saved = speedups.cwire
    speedups.cwire = CWIRE if impl == "c" else None
    try:
        yield
    finally:
        speedups.cwire = saved
