"""What the console's routes work with: the config, the live calls, credentials, the vault, health.

One :class:`Console` per listener process, built by :mod:`callguard.web.server`
and reachable from every route as ``request.app.state.console``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from callguard.config import Config
from callguard.control import CallControl
from callguard.web.users import Credentials

if TYPE_CHECKING:
    from callguard.vault.service import Vault

#: name -> (ok, detail); what /readyz reports (PBX logged in, ledger writable, heartbeat fresh)
ReadinessCheck = Callable[[], dict[str, tuple[bool, str]]]


@dataclass
class Console:
    config: Config
    control: CallControl
    credentials: Credentials
    readiness: ReadinessCheck = field(default=lambda: {})
    #: the PBX this listener serves ("asterisk", "freeswitch"), shown on the pages
    pbx: str = ""
    _vault: "Vault | None" = field(default=None, init=False, repr=False)
    _vault_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def vault(self) -> "Vault":
        """The vault over the ledger database, opened on first use (from a worker thread).

        Users are vouched for by the console's own login, not by the OS
        account (every access-log line says ``authenticated_by: web``).
        """
        with self._vault_lock:
            if self._vault is None:
                from callguard.vault.service import Vault

                self._vault = Vault.open(self.config, vouched_by="web")
            return self._vault

    def close(self) -> None:
        with self._vault_lock:
            if self._vault is not None:
                self._vault.close()
                self._vault = None


__all__ = ["Console", "ReadinessCheck"]
