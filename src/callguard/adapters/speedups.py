"""Whether the wire parsers run their C loops or pure Python.

``callguard.adapters._cwire`` (``_cwire.c``) is an optional C extension:
``setup.py`` builds it where a compiler and the Python headers exist and
installs callguard without it elsewhere.  The AMI and ESL parsers read
:data:`cwire` at call time and fall back to their pure-Python paths when
it is None; both give the same results (the property tests in
tests/adapters hold each path to the plain reference readers), the C one
several times faster when every header is read.

Set ``CALLGUARD_NO_EXTENSIONS=1`` to run pure Python anyway (as aiohttp's
``AIOHTTP_NO_EXTENSIONS`` or multidict's ``MULTIDICT_NO_EXTENSIONS``), for
instance to rule the extension out while chasing a parsing problem.
"""

from __future__ import annotations

import os
from types import ModuleType

ENV_SWITCH = "CALLGUARD_NO_EXTENSIONS"


def load() -> ModuleType | None:
    """The C extension, or None when it is not built or switched off by :data:`ENV_SWITCH`."""
    if os.environ.get(ENV_SWITCH, "") not in ("", "0"):
        return None
    try:
        from callguard.adapters import _cwire
    except ImportError:
        return None
    return _cwire


#: The loaded extension or None; tests swap it to run both paths in one process.
cwire: ModuleType | None = load()

__all__ = ["ENV_SWITCH", "cwire", "load"]
