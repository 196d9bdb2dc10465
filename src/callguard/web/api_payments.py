"""``/api/v1/calls/{call}/card-payment``: card payments the agent never hears, started and watched over the API.

What the agent may see is the masked progress the payments desk publishes
(:class:`~callguard.payments.capture.Progress`: counts, brand, states -
never a digit), so nothing here can leak what it never receives.  Starting
a payment takes the same path as the agent's hotkey (the desk, the engine,
the PBX-confirmed mute and guard); the response comes once the call is
protected and the caller is being asked for the card, or the payment ended.

``current`` in place of a call id means the live call on the user's
endpoint, as for pause/resume.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Callable

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse

from callguard.control import CallControl, CallNotFound, CardPaymentRefused
from callguard.web.api_calls import PING_S, resolve_call
from callguard.web.auth import Principal
from callguard.web.context import Console


class CardPaymentRequest(BaseModel):
    """What to charge; no amount: the card is only tokenized (stored with the gateway for later)."""

    amount: str | None = Field(None, examples=["49.90"], max_length=20)
    currency: str = Field("", examples=["GBP"], max_length=3)


def _refused(exc: Exception) -> HTTPException:
    code = status.HTTP_404_NOT_FOUND if isinstance(exc, CallNotFound) else status.HTTP_409_CONFLICT
    return HTTPException(code, str(exc))


def payments_router(console: Console, require: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["card payments"])
    control = console.control
    viewer = require("live", "control", "control-own")
    controller = require("control", "control-own")

    @router.post("/calls/{call_id}/card-payment", summary="Take a card from the caller's keypad (the agent never "
                 "hears it); returns once the call is protected", status_code=status.HTTP_201_CREATED)
    async def start(call_id: str, body: CardPaymentRequest | None = None,
                    principal: Principal = Depends(controller)) -> dict[str, Any]:
        call_id = resolve_call(control, principal, call_id)
        body = body or CardPaymentRequest()
        try:
            return await control.start_card_payment(call_id, principal.name, amount=body.amount,
                                                    currency=body.currency)
        except (CallNotFound, CardPaymentRefused) as exc:
            raise _refused(exc) from None

    @router.post("/calls/{call_id}/card-payment/cancel", summary="Cancel the card payment running on a call")
    async def cancel(call_id: str, principal: Principal = Depends(controller)) -> dict[str, Any]:
        call_id = resolve_call(control, principal, call_id)
        try:
            return control.cancel_card_payment(call_id, principal.name)
        except CardPaymentRefused as exc:
            raise _refused(exc) from None

    @router.get("/calls/{call_id}/card-payment", summary="The masked progress (or the result) of a call's "
                "latest card payment")
    async def show(call_id: str, principal: Principal = Depends(viewer)) -> dict[str, Any]:
        if call_id == "current" or control.engine.session(call_id) is not None:
            call_id = resolve_call(control, principal, call_id)
        elif not principal.sees_all_calls:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no live call {call_id!r} of yours")
        try:
            return control.card_payment(call_id)
        except CardPaymentRefused as exc:
            raise _refused(exc) from None

    @router.get("/card-payments/events", summary="Masked card payment progress (Server-Sent Events), one "
                "'progress' event per change; ?call= for one call", response_class=EventSourceResponse)
    async def events(request: Request, call: str | None = None,
                     principal: Principal = Depends(viewer)) -> EventSourceResponse:
        if call is not None:
            call = resolve_call(control, principal, call)
        try:
            queue, stop = control.subscribe_card_progress()
        except CardPaymentRefused as exc:
            raise _refused(exc) from None
        return EventSourceResponse(_stream(control, principal, call, queue, stop), ping=PING_S)

    return router


async def _stream(control: CallControl, principal: Principal, call: str | None, queue: asyncio.Queue,
                  stop: Callable[[], None]) -> AsyncIterator[dict[str, str]]:
    """The current view of every visible payment first (a late watcher sees where things are), then changes."""
    seen: dict[str, bool] = {}  #: call id -> visible to this principal (decided while the call is live)

    def visible(call_id: str) -> bool:
        if call is not None:
            return call_id == call
        if principal.sees_all_calls:
            return True
        if call_id not in seen:
            seen[call_id] = control.owns(call_id, principal.endpoints)
        return seen[call_id]

    def event(progress: Any) -> dict[str, str]:
        return {"event": "progress", "id": f"{progress.payment_id}:{progress.seq}",
                "data": json.dumps(progress.as_dict(), default=str)}

    try:
        for progress in control.card_views():
            if visible(progress.call_id) and (call is not None or progress.phase != "ended"):
                yield event(progress)
        while True:
            progress = await queue.get()
            if progress is None:  # fell behind
                yield {"event": "resync", "data": "{}"}
                return
            if visible(progress.call_id):
                yield event(progress)
    finally:
        stop()


__all__ = ["CardPaymentRequest", "payments_router"]
