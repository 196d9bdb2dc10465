"""Who is asking: API tokens and browser sessions, roles from the vault's RBAC, CSRF.

Two ways in, one :class:`Principal` out:

* ``Authorization: Bearer cgt_...`` - an API token (CRM integrations, the
  CLI, Prometheus).  No cookie is involved, so no CSRF check either.
* the ``callguard_session`` cookie a login sets - signed (itsdangerous via
  Starlette's ``SessionMiddleware``), ``SameSite=Strict``, ``HttpOnly``, and
  bound to the password: changing the password or removing the user ends
  every session at the next request.  Unsafe methods must echo the
  session's CSRF token (``X-CSRF-Token`` header, or a ``csrf_token`` form
  field on plain HTML forms).

The role is looked up in ``[users]`` at every request and its permissions in
``[roles]`` (see :mod:`callguard.vault.permissions`), so the console and the
vault enforce one table.  Nothing but ``/healthz`` and ``/readyz`` answers
without a principal.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Callable

from fastapi import HTTPException, Request, status

from callguard.config import Config
from callguard.web.users import ConsoleUser, Credentials

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Principal:
    """An authenticated user and what their role lets them do."""

    name: str
    role: str | None
    permissions: frozenset[str]
    endpoints: tuple[str, ...]
    via: str  #: "token" or "session"

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def sees_all_calls(self) -> bool:
        return self.may("live") or self.may("control")


class LoginRequired(Exception):
    """A browser page without a session: the page handler turns this into a redirect to /login."""


def principal_of(user: ConsoleUser, config: Config, via: str) -> Principal:
    role = config.users.get(user.name)
    permissions = frozenset(config.roles.get(role, ())) if role else frozenset()
    return Principal(user.name, role, permissions, tuple(user.endpoints), via)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use (login form included)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    expected = request.session.get("csrf")
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "missing or wrong CSRF token: reload the page and try again "
                            f"(API clients: send the {CSRF_HEADER} header, or use a bearer token)")


def authenticate(request: Request, config: Config, credentials: Credentials) -> Principal | None:
    """The principal behind this request, or None; a bad bearer token is None too."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        user = credentials.user_for_token(token)
        return principal_of(user, config, "token") if user else None
    name = request.session.get("user") if "session" in request.scope else None
    if not name:
        return None
    user = credentials.get(name)
    if user is None or not user.password_hash or request.session.get("pwv") != user.password_version:
        request.session.clear()
        return None
    return principal_of(user, config, "session")


def start_session(request: Request, user: ConsoleUser) -> None:
    """Log ``user`` in: a fresh session (new CSRF token: no fixation)."""
    request.session.clear()
    request.session.update({"user": user.name, "pwv": user.password_version, "csrf": secrets.token_urlsafe(24)})


def requirer(config: Config, credentials: Credentials) -> Callable[..., Callable[[Request], Principal]]:
    """``require(*permissions)``: a FastAPI dependency that admits a principal holding any of them."""

    def require(*permissions: str, page: bool = False) -> Callable[[Request], Principal]:
        async def dependency(request: Request) -> Principal:
            principal = authenticate(request, config, credentials)
            if principal is None:
                if page:
                    raise LoginRequired()
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, "log in, or send an API token as "
                                    "'Authorization: Bearer ...' (callguard console token create NAME)",
                                    headers={"WWW-Authenticate": 'Bearer realm="callguard"'})
            if principal.via == "session" and request.method not in SAFE_METHODS:
                submitted = request.headers.get(CSRF_HEADER)
                if submitted is None and request.headers.get("content-type", "").startswith(
                        ("application/x-www-form-urlencoded", "multipart/form-data")):
                    submitted = str((await request.form()).get(CSRF_FIELD, ""))  # plain HTML forms
                check_csrf(request, submitted)
            if permissions and not any(principal.may(p) for p in permissions):
                raise HTTPException(status.HTTP_403_FORBIDDEN,
                                    f"{principal.name!r} (role {principal.role or 'none'}) may not do this; "
                                    f"it needs one of: {', '.join(permissions)} (see [users] and [roles])")
            request.state.principal = principal
            return principal

        return dependency

    return require


__all__ = ["CSRF_FIELD", "CSRF_HEADER", "LoginRequired", "Principal", "authenticate", "check_csrf", "csrf_token",
           "principal_of", "requirer", "start_session"]
