"""The ASGI application: FastAPI routes over one :class:`~callguard.web.context.Console`.

Why FastAPI on uvicorn: the listener is one asyncio process (AMI and ESL
clients, engine, timers), and uvicorn's ``Server.serve()`` runs as one more
task on that same loop, so an API pause reaches the engine with a plain
function call, no thread hop or IPC.  FastAPI (on Starlette, both well
kept and widely deployed) gives the versioned API its OpenAPI schema
(``/api/v1/openapi.json``, browsable at ``/api/docs``) and request
validation for free; Starlette brings the signed-cookie sessions, Jinja2
templates and static files the console pages need, without a JS build step.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from callguard.web.api_calls import calls_router
from callguard.web.auth import LoginRequired, Principal, requirer
from callguard.web.context import Console
from callguard.web.metrics import ConsoleMetrics

log = logging.getLogger("callguard.web")
API_VERSION = "v1"
SESSION_COOKIE = "callguard_session"


def session_secret(env: str) -> str:
    """The session-signing key from the environment, or a random one (sessions end at restart)."""
    value = os.environ.get(env, "")
    if len(value) >= 32:
        return value
    if value:
        log.warning("%s is shorter than 32 characters; using a random session key instead", env)
    return secrets.token_urlsafe(48)


def create_app(console: Console, metrics: ConsoleMetrics | None = None) -> FastAPI:
    """The console's ASGI app: API, pages, /metrics, /healthz, /readyz."""
    from callguard import __version__

    web = console.config.web
    app = FastAPI(title="callguard console API", version=__version__,
                  description="Live calls, recording control and evidence for callguard. Authenticate with "
                              "'Authorization: Bearer <token>' (callguard console token create NAME).",
                  openapi_url=f"/api/{API_VERSION}/openapi.json", docs_url="/api/docs", redoc_url=None)
    app.state.console = console
    app.add_middleware(SessionMiddleware, secret_key=session_secret(web.session_secret_env),
                       session_cookie=SESSION_COOKIE, max_age=web.session_max_age_s, same_site="strict",
                       https_only=web.cookie_secure)
    require = requirer(console.config, console.credentials)
    app.include_router(calls_router(console, require))
    from callguard.web.api_payments import payments_router

    app.include_router(payments_router(console, require))
    from callguard.web.api_evidence import evidence_router
    from callguard.web.pages import pages_router, static_files

    app.include_router(evidence_router(console, require))
    app.include_router(pages_router(console, require))
    app.mount("/static", static_files(), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Pages get a readable error page; the API keeps FastAPI's JSON ``{"detail": ...}``."""
        if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
            return await http_exception_handler(request, exc)
        from callguard.web.pages import render_error

        return render_error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        """The process is up and serving (no auth: for load balancers and systemd checks)."""
        return PlainTextResponse("ok\n")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Ready to protect calls: PBX logged in, ledger writable, heartbeat fresh (no auth: for probes)."""
        checks = console.readiness()
        ok = all(good for good, _ in checks.values())
        return JSONResponse({"ready": ok, "checks": {k: {"ok": good, "detail": why} for k, (good, why) in checks.items()}},
                            status_code=200 if ok else 503)

    if metrics is not None:
        @app.get("/metrics", include_in_schema=False)
        def prometheus(principal: Principal = Depends(require("live", "audit"))) -> Response:
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(f"/api/{API_VERSION}/me", tags=["auth"], summary="Who am I: name, role, permissions, endpoints")
    async def me(principal: Principal = Depends(require())) -> dict[str, Any]:
        return {"name": principal.name, "role": principal.role, "permissions": sorted(principal.permissions),
                "endpoints": list(principal.endpoints), "via": principal.via}

    return app


__all__ = ["API_VERSION", "SESSION_COOKIE", "create_app", "session_secret"]
