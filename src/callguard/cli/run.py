"""``callguard run <pbx>``: start a listener for one PBX.

Each adapter owns its command (``callguard.adapters.<pbx>.cli``); this group
only mounts the ones that are installed, so a site without FreeSWITCH
support (or without gevent) still gets ``callguard run asterisk``.
"""

from __future__ import annotations

import importlib

import click

#: (module, attribute) of each PBX's listener command.
LISTENERS = (
    ("callguard.adapters.asterisk.cli", "asterisk"),
    ("callguard.adapters.freeswitch.cli", "freeswitch"),
)


@click.group("run")
def run() -> None:
    """Run a listener that makes the PBX's call recording lawful."""


for _module, _name in LISTENERS:
    try:
        run.add_command(getattr(importlib.import_module(_module), _name))
    except (ImportError, AttributeError):  # that adapter is not available here
        pass
