"""``callguard run asterisk --check``: really connect and log in to AMI, then log off.

A configuration can look right and still fail at the first call: a wrong
secret, a ``permit=`` line that refuses this host, a firewall.  The check
does what the listener does at start-up (TCP, banner, MD5 challenge, login)
with the listener's own :class:`AmiManager`, and stops there.
"""

from __future__ import annotations

import asyncio

from callguard.adapters.asterisk.manager import AmiManager, AuthenticationFailed, tls_context
from callguard.config import AsteriskConfig


class ProbeFailed(Exception):
    """The PBX could not be reached or refused us; the message says which and what to do."""


async def probe_ami(a: AsteriskConfig, timeout: float | None = None) -> str:
    """Log in as the listener would and log off; a one-line description, or :class:`ProbeFailed`.

    ``timeout`` (default: three action timeouts, at least 5 s) bounds the
    whole attempt, retries against a PBX that refuses connections included.
    """
    timeout = timeout or max(5.0, 3 * a.action_timeout_ms / 1000.0)
    manager = AmiManager(host=a.host, port=a.port, username=a.username, secret=a.secret,
                         ssl=tls_context(a.ca_file) if a.tls else None, server_hostname=a.host if a.tls else None,
                         action_timeout=a.action_timeout_ms / 1000.0, reconnect_min=0.2, reconnect_max=1.0,
                         events="off")
    try:
        await asyncio.wait_for(manager.connect(), timeout)
    except AuthenticationFailed as exc:
        raise ProbeFailed(str(exc)) from None
    except asyncio.TimeoutError:
        raise ProbeFailed(f"cannot log in to AMI at {a.host}:{a.port} within {timeout:g} s "
                          f"({manager.last_error or 'no answer'}); is Asterisk running with manager.conf "
                          f"enabled and bound there, and does a firewall let this host in?") from None
    finally:
        if not manager.connected:
            manager.close()
    banner = manager.banner or "no banner"
    await manager.aclose(logoff=True)
    return f"AMI {a.host}:{a.port}: logged in as {a.username!r} ({banner.strip()})"


__all__ = ["ProbeFailed", "probe_ami"]
