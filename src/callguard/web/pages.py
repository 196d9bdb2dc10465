"""The console's HTML pages: server-rendered Jinja2, progressively enhanced by one small script.

Every page renders complete, readable HTML from the server (a screen
reader or a browser without JavaScript sees the state as of the request);
``static/console.js`` then subscribes to ``/api/v1/events`` and updates the
live board, the pause timers and the buttons in place.  No build step, no
framework: templates in ``templates/``, CSS and the script in ``static/``.

Forms that change something (log in, log out) carry the session's CSRF
token; the buttons on the board send it as ``X-CSRF-Token`` with fetch.
"""

from __future__ import annotations

import datetime as dt
import time
from importlib import resources
from typing import Any, Callable
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from callguard.web.api_evidence import check_reason, vault_call
from callguard.web.auth import CSRF_FIELD, Principal, check_csrf, csrf_token, start_session
from callguard.web.context import Console

_HERE = resources.files("callguard.web")


def static_files() -> StaticFiles:
    return StaticFiles(directory=str(_HERE / "static"))


def _when(t: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if t is None:
        return ""
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime(fmt + " UTC")


def templates() -> Jinja2Templates:
    env = Jinja2Templates(directory=str(_HERE / "templates"))
    env.env.filters["when"] = _when
    env.env.filters["day"] = lambda t: _when(t, "%Y-%m-%d")
    return env


def render_error(request: Request, code: int, message: str) -> HTMLResponse:
    """An error as a page (403: what permission is missing; 404: what was not found)."""
    principal = getattr(request.state, "principal", None)
    response = templates().TemplateResponse(request, "error.html", {
        "principal": principal, "csrf": csrf_token(request), "pbx": request.app.state.console.pbx, "page": "error",
        "code": code, "message": message})
    response.status_code = code
    return response


def _safe_next(target: str | None) -> str:
    """Only local paths after login (no open redirect to another site)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def pages_router(console: Console, require: Callable[..., Any]) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    tpl = templates()

    def render(request: Request, name: str, principal: Principal | None, **context: Any) -> HTMLResponse:
        return tpl.TemplateResponse(request, name, {"principal": principal, "csrf": csrf_token(request),
                                                    "pbx": console.pbx, "page": name.removesuffix(".html"),
                                                    **context})

    @router.get("/login")
    async def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return render(request, "login.html", None, next=_safe_next(next), error="")

    @router.post("/login")
    async def login(request: Request, username: str = Form(...), password: str = Form(...),
                    next: str = Form("/"), csrf_token_field: str = Form("", alias=CSRF_FIELD)) -> Response:
        check_csrf(request, csrf_token_field)
        # argon2 is slow on purpose: keep it off the event loop the engine runs on.
        user = await run_in_threadpool(console.credentials.verify_password, username, password)
        if user is None:
            response = render(request, "login.html", None, next=_safe_next(next),
                              error="Wrong user name or password.")
            response.status_code = status.HTTP_401_UNAUTHORIZED
            return response
        start_session(request, user)
        return RedirectResponse(_safe_next(next), status_code=303)

    @router.post("/logout")
    async def logout(request: Request, csrf_token_field: str = Form("", alias=CSRF_FIELD)) -> Response:
        check_csrf(request, csrf_token_field)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @router.get("/")
    async def board(request: Request, principal: Principal = Depends(require(page=True))) -> HTMLResponse:
        control = console.control
        live = principal.sees_all_calls or principal.may("control-own")
        calls = (control.calls(None if principal.sees_all_calls else principal.endpoints) if live else [])
        return render(request, "board.html", principal, calls=calls, now=control.engine.pbx_now(), live=live,
                      can_control=principal.may("control") or principal.may("control-own"))

    @router.get("/calls/{call_id}")
    async def call_page(request: Request, call_id: str,
                        principal: Principal = Depends(require(page=True))) -> HTMLResponse:
        from callguard.web.api_calls import resolve_call
        from callguard.web.timeline_view import build_timeline

        control = console.control
        live_view = None
        if control.engine.session(call_id) is not None:
            resolve_call(control, principal, call_id)
            live_view = control.call(call_id)
            entries = [(e.kind, e.at, dict(e.data)) for e in control.recent_entries(call_id)]
        elif principal.may("evidence"):
            from callguard.ledger.queries import timeline

            rows = await run_in_threadpool(lambda: timeline(console.vault().engine, call_id))
            entries = [(r.kind, r.pbx_time, dict(r.data)) for r in rows]
        else:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "reading ended calls' evidence needs the "
                                "'evidence' permission")
        if not entries:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no evidence for call {call_id!r}")
        view = build_timeline(entries, now=control.engine.pbx_now() if live_view else None)
        return render(request, "call.html", principal, call_id=call_id, live=live_view, timeline=view)

    # -- evidence pages (vault calls on worker threads, refusals as HTTP errors) -------------

    @router.get("/recordings")
    def recordings_page(request: Request, call_id: str | None = None,
                        principal: Principal = Depends(require("list", page=True))) -> HTMLResponse:
        from callguard.vault import recordings

        views = vault_call(lambda: recordings.list_recordings(console.vault(), principal.name, call_id=call_id or None,
                                                              limit=200))
        return render(request, "recordings.html", principal, recordings=views, call_id=call_id)

    @router.get("/recordings/{recording_id}")
    def recording_page(request: Request, recording_id: str,
                       principal: Principal = Depends(require("list", page=True))) -> HTMLResponse:
        from callguard.vault import recordings
        from callguard.vault.permissions import MIN_REASON_LEN

        detail = vault_call(lambda: recordings.show(console.vault(), principal.name, recording_id))
        return render(request, "recording.html", principal, rec=detail.recording, holds=detail.holds,
                      min_reason=MIN_REASON_LEN)

    @router.get("/dsar")
    def dsar_page(request: Request, principal: Principal = Depends(require("dsar", page=True))) -> HTMLResponse:
        from callguard.vault import dsar
        from callguard.vault.permissions import MIN_REASON_LEN

        views = vault_call(lambda: dsar.list_requests(console.vault(), principal.name))
        now = time.time()
        views.sort(key=lambda r: (r.closed_at is not None, r.due_at))
        return render(request, "dsar.html", principal, requests=views, now=now, kinds=dsar.KINDS,
                      min_reason=MIN_REASON_LEN)

    @router.post("/dsar")
    def dsar_open(request: Request, number: str = Form(...), kind: str = Form("access"), reason: str = Form(...),
                  csrf_token_field: str = Form("", alias=CSRF_FIELD),
                  principal: Principal = Depends(require("dsar", page=True))) -> Response:
        from callguard.vault import dsar

        check_csrf(request, csrf_token_field)
        vault_call(lambda: dsar.open_request(console.vault(), principal.name, number, kind=kind,
                                             reason=check_reason(reason)))
        return RedirectResponse("/dsar", status_code=303)

    @router.post("/dsar/{request_id}/answer")
    def dsar_answer(request: Request, request_id: int, action: str = Form(...), reason: str = Form(...),
                    csrf_token_field: str = Form("", alias=CSRF_FIELD),
                    principal: Principal = Depends(require("dsar", page=True))) -> Response:
        """The queue's Export (a zip download) and Erase (back to the queue with what was done) buttons."""
        from callguard.vault import dsar
        from callguard.web.api_evidence import dsar_zip

        check_csrf(request, csrf_token_field)
        if action == "export":
            return dsar_zip(console, principal.name, request_id, check_reason(reason))
        if action != "erase":
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"unknown action {action!r}: export or erase")
        vault_call(lambda: dsar.erase(console.vault(), principal.name, request_id, check_reason(reason)))
        return RedirectResponse("/dsar", status_code=303)

    @router.get("/audit")
    def audit_page(request: Request, month: str = "",
                   principal: Principal = Depends(require("audit", page=True))) -> HTMLResponse:
        from callguard.vault import audit
        from callguard.web.charts import bars, columns

        month = month or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m")
        vault_call(lambda: audit.month_bounds(month))
        report = vault_call(lambda: audit.run_audit(console.vault(), principal.name, month))
        per_day = report.stats["per_day"]
        grouped = report.by_check()
        return render(
            request, "audit.html", principal, month=month, report=report,
            per_day=columns("Calls per day (recorded and not recorded)", [str(i + 1) for i in range(len(per_day))],
                            [("recorded", [d["recorded"] for d in per_day]),
                             ("not recorded", [d["calls"] - d["recorded"] for d in per_day])], every=2),
            by_check=bars("Findings by check", [(check, len(found)) for check, found in grouped.items()]),
            checklist=[(check, *audit.CHECKS[check], found) for check, found in grouped.items()])

    return router


__all__ = ["pages_router", "render_error", "static_files", "templates"]
