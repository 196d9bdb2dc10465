"""``callguard run freeswitch --check``: really log in to the event socket, check required modules.

Like the Asterisk check, it does what the listener does at start-up (TCP,
``auth``) and then asks FreeSWITCH for the modules the shipped dialplan
needs: without mod_expr the heartbeat expression in callguard.xml is empty
and every call silently takes the "listener stale" path.
"""

from __future__ import annotations

import asyncio

from callguard.adapters.asterisk.probe import ProbeFailed
from callguard.adapters.freeswitch.inbound import InboundError, open_inbound
from callguard.adapters.freeswitch.wire import encode_command
from callguard.config import FreeswitchConfig

#: modules the shipped dialplan relies on, and what breaks without each
REQUIRED_MODULES = {
    "mod_expr": "callguard.xml's heartbeat check (${expr(...)}) is empty and every call takes the fallback path",
}


async def probe_esl(fs: FreeswitchConfig, timeout: float | None = None) -> str:
    """Log in as the listener would, check :data:`REQUIRED_MODULES`; a description, or :class:`ProbeFailed`."""
    timeout = timeout or max(5.0, 3 * fs.action_timeout_ms / 1000.0)
    try:
        proto = await open_inbound(fs.host, fs.port, fs.password, lambda event, at: None, events=["HEARTBEAT"],
                                   custom=[], timeout=timeout)
    except InboundError as exc:
        raise ProbeFailed(str(exc)) from None
    try:
        missing = []
        for module, consequence in REQUIRED_MODULES.items():
            reply = await asyncio.wait_for(proto.send(encode_command(f"api module_exists {module}"), "api"), timeout)
            if reply.body.strip() != b"true":
                missing.append(f"{module} is not loaded ({consequence}); load it in modules.conf.xml")
    finally:
        proto.close()
    if missing:
        raise ProbeFailed("; ".join(missing))
    return f"event socket {fs.host}:{fs.port}: logged in, {', '.join(REQUIRED_MODULES)} loaded"


__all__ = ["REQUIRED_MODULES", "probe_esl"]
