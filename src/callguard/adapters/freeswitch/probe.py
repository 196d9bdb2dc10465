"""``callguard run freeswitch --check``: really log in to the event socket and ask what callguard relies on.

Like the Asterisk check, it does what the listener does at start-up (TCP,
``auth``), then asks the running FreeSWITCH, because a configuration file
can be right while the PBX is not:

* ``module_exists`` for each required module: on a real 1.10.12 without
  mod_expr every ``${expr(...)}`` is empty, the heartbeat check in
  callguard.xml reads "stale" and every call silently goes on unrecorded;
* ``xml_locate dialplan context name callguard``: the shipped context must
  be loaded, and its ``callguard_agent`` must bind the hotkeys inline
  (``bind_meta_app 6 a si``): with ``a s`` FreeSWITCH holds the other leg
  with hold music, and where that fails it can hold the pause back until
  the call ends (seen: ~10 s late, a recorded payment).
"""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET

from callguard.adapters.asterisk.probe import ProbeFailed
from callguard.adapters.freeswitch.inbound import InboundError, InboundProtocol, open_inbound
from callguard.adapters.freeswitch.wire import encode_command
from callguard.config import FreeswitchConfig

#: modules the shipped dialplan relies on, and what breaks without each
REQUIRED_MODULES = {
    "mod_expr": "callguard.xml's heartbeat check (${expr(...)}) is empty and every call takes the fallback path",
    "mod_dptools": "no play_and_get_digits, record_session, bind_meta_app or socket",
    "mod_commands": "no uuid_record mask/unmask, uuid_getvar or global_setvar",
    "mod_dialplan_xml": "callguard.xml is never read",
}


def binding_problems(context_xml: str) -> list[str]:
    """What is wrong with the hotkey binding of a ``callguard`` context (``xml_locate`` output)."""
    try:
        root = ET.fromstring(context_xml)
    except ET.ParseError as exc:
        return [f"FreeSWITCH returned a callguard context that is not XML ({exc}): check callguard.xml"]
    agent = next((x for x in root.iter("extension") if x.get("name") == "callguard_agent"), None)
    binds = [a.get("data", "") for a in agent.iter("action") if a.get("application") == "bind_meta_app"] \
        if agent is not None else []
    if not binds:
        return ["the callguard context's callguard_agent binds no hotkeys (bind_meta_app): install the shipped "
                "callguard.xml and run reloadxml"]
    return [f"callguard_agent binds the hotkey {data!r} without the inline flag: use 'a si' (FreeSWITCH can "
            f"hold a non-inline feature back until the call ends where hold music fails: a late pause "
            f"records payment audio)"
            for data in binds if len(data.split()) < 3 or not re.fullmatch(r"[a-z]*i[a-z]*", data.split()[2])]


async def _ask(proto: InboundProtocol, command: str, timeout: float) -> str:
    reply = await asyncio.wait_for(proto.send(encode_command(f"api {command}"), "api"), timeout)
    return reply.body.decode("utf-8", "replace").strip()


async def probe_esl(fs: FreeswitchConfig, timeout: float | None = None) -> str:
    """Log in as the listener would, check modules and binding; a description, or :class:`ProbeFailed`."""
    timeout = timeout or max(5.0, 3 * fs.action_timeout_ms / 1000.0)
    try:
        proto = await open_inbound(fs.host, fs.port, fs.password, lambda event, at: None, events=["HEARTBEAT"],
                                   custom=[], timeout=timeout)
    except InboundError as exc:
        raise ProbeFailed(f"{exc} (the modules and the hotkey binding could not be checked)") from None
    problems = []
    try:
        for module, consequence in REQUIRED_MODULES.items():
            if await _ask(proto, f"module_exists {module}", timeout) != "true":
                problems.append(f"{module} is not loaded ({consequence}); load it in modules.conf.xml")
        context = await _ask(proto, "xml_locate dialplan context name callguard", timeout)
        if context.startswith("<"):
            problems += binding_problems(context)
        else:
            problems.append("no 'callguard' dialplan context is loaded: include dialplan/callguard.xml "
                            "(dialplan/README.md) and run reloadxml")
    except (asyncio.TimeoutError, ConnectionError) as exc:
        problems.append(f"FreeSWITCH stopped answering during the check ({exc or 'timed out'})")
    finally:
        proto.close()
    if problems:
        raise ProbeFailed("; ".join(problems))
    return (f"event socket {fs.host}:{fs.port}: logged in, {', '.join(REQUIRED_MODULES)} loaded, "
            f"callguard context loaded with inline hotkeys")


__all__ = ["REQUIRED_MODULES", "binding_problems", "probe_esl"]
