"""``/api/v1/calls``: live calls, their timeline, pause/resume/payment, and the live-update stream.

Control requests go through :class:`~callguard.control.CallControl` on the
event loop (the engine's thread): no worker thread sits between an API
pause and the mute leaving for the PBX.  A request returns once the PBX
confirmed the change (or the engine failed safe), with the call's new state.

``current`` in place of a call id means "the live call on my endpoint",
for agents whose desktop does not know the PBX's call id.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Callable

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from callguard.control import CallControl, CallNotFound, CallView, Change
from callguard.web.auth import Principal
from callguard.web.context import Console

#: How often an idle live-update stream sends a keep-alive comment.
PING_S = 15.0


def resolve_call(control: CallControl, principal: Principal, call_id: str) -> str:
    """The call id to act on: ``current`` resolved, and agents kept to their own calls."""
    try:
        if call_id == "current":
            return control.current_call(principal.endpoints)
        control.call(call_id)
    except CallNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    if not principal.sees_all_calls and not control.owns(call_id, principal.endpoints):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"call {call_id!r} is not on your endpoint(s) "
                            f"({', '.join(principal.endpoints) or 'none configured'}); agents act on their own calls")
    return call_id


def may_control(principal: Principal) -> bool:
    return principal.may("control") or principal.may("control-own")


def call_json(view: CallView, now: float) -> dict[str, Any]:
    """A call as the API returns it: the view plus the server's PBX-clock ``now`` (for live timers)."""
    return {**view.as_dict(), "now": now}


def calls_router(console: Console, require: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["live calls"])
    control = console.control
    viewer = require("live", "control", "control-own")
    controller = require("control", "control-own")

    @router.get("/calls", summary="Live calls (agents: only their own)")
    async def list_calls(principal: Principal = Depends(viewer)) -> dict[str, Any]:
        views = control.calls(None if principal.sees_all_calls else principal.endpoints)
        now = control.engine.pbx_now()
        return {"now": now, "calls": [call_json(v, now) for v in views]}

    @router.get("/calls/{call_id}", summary="One live call: parties, rule, consent, recording state")
    async def get_call(call_id: str, principal: Principal = Depends(viewer)) -> dict[str, Any]:
        call_id = resolve_call(control, principal, call_id)
        return call_json(control.call(call_id), control.engine.pbx_now())

    @router.get("/calls/{call_id}/timeline", summary="A live call's ledger entries so far")
    async def live_timeline(call_id: str, principal: Principal = Depends(viewer)) -> dict[str, Any]:
        call_id = resolve_call(control, principal, call_id)
        view = control.call(call_id)
        return {"call_id": call_id, "answered_at": view.answered_at, "now": control.engine.pbx_now(),
                "entries": [{"kind": e.kind, "at": e.at, "data": dict(e.data)}
                            for e in control.recent_entries(call_id)]}

    def action(name: str, run: Callable[[CallControl], Callable[..., Any]], summary: str) -> None:
        @router.post(f"/calls/{{call_id}}/{name}", summary=summary, name=name.replace("/", "-"))
        async def act(call_id: str, principal: Principal = Depends(controller)) -> JSONResponse:
            call_id = resolve_call(control, principal, call_id)
            try:
                view = await run(control)(call_id, principal.name)
            except CallNotFound as exc:
                raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
            # A ready response: the view is plain JSON already, and jsonable_encoder
            # would double the time this request spends on the engine's loop.
            return JSONResponse(call_json(view, control.engine.pbx_now()))

    action("pause", lambda c: c.pause, "Pause the recording (as the agent hotkey does); waits for the PBX")
    action("resume", lambda c: c.resume, "Resume the recording; waits for the PBX")
    action("payment/start", lambda c: c.start_payment, "Start a payment segment (recording muted until it ends)")
    action("payment/cancel", lambda c: c.cancel_payment, "End or cancel the payment segment")

    @router.get("/events", summary="Live updates (Server-Sent Events): one 'call' event per change",
                response_class=EventSourceResponse)
    async def events(request: Request, principal: Principal = Depends(viewer)) -> EventSourceResponse:
        return EventSourceResponse(_stream(request, control, principal), ping=PING_S)

    return router


async def _stream(request: Request, control: CallControl, principal: Principal) -> AsyncIterator[dict[str, str]]:
    queue = control.subscribe()
    try:
        while True:
            change = await queue.get()
            if change is None:  # fell behind: tell the page to re-read the list
                yield {"event": "resync", "data": "{}"}
                return
            if not _visible(control, principal, change):
                continue
            yield {"event": "call", "id": f"{change.call_id}:{change.view.version}",
                   "data": json.dumps({"kind": change.kind, "call": call_json(change.view, control.engine.pbx_now())},
                                      default=str)}
    except asyncio.CancelledError:
        raise
    finally:
        control.unsubscribe(queue)


def _visible(control: CallControl, principal: Principal, change: Change) -> bool:
    if principal.sees_all_calls:
        return True
    mine = set(principal.endpoints)
    return any(p.endpoint in mine for p in change.view.parties if p.present)


__all__ = ["calls_router", "resolve_call"]
