"""``[web]``: the console and API's own settings (no ASGI imports: config.py imports this)."""

from __future__ import annotations

from typing import Annotated

from callguard.config_schema import rule, section

_ENV_NAME = rule(str.isidentifier, "{value!r} is not an environment variable name")


@section
class WebConfig:
    """The console and HTTP API the listener serves (``callguard run``).

    Off by default, and on loopback when on: put a TLS reverse proxy in
    front of it for anything else (README, "The web console").  Passwords
    and API tokens live in ``credentials`` (argon2 hashes, SHA-256 of the
    tokens), managed with ``callguard console user|token``; roles come from
    ``[users]``/``[roles]``, the same ones the vault enforces.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, rule(lambda v: 0 < v <= 65535, "{value} is not a TCP port (1-65535)")] = 8480
    credentials: str = "callguard-console-users.json"  #: users' password hashes, endpoints and tokens
    #: environment variable with the key that signs browser sessions; unset: a new
    #: random key at every start (everyone logs in again after a restart)
    session_secret_env: Annotated[str, _ENV_NAME] = "CALLGUARD_WEB_SECRET"
    session_max_age_s: Annotated[int, rule(lambda v: v >= 60, "must be at least 60 seconds")] = 8 * 3600
    cookie_secure: bool = False  #: true behind an HTTPS reverse proxy (the cookie then never travels in clear)
    forwarded_allow_ips: str = "127.0.0.1"  #: proxies whose X-Forwarded-* headers are believed
    #: where CLI commands reach the API (`callguard call pause`); empty: http://host:port
    url: Annotated[str, rule(lambda v: not v or v.startswith(("http://", "https://")),
                             "{value!r} must start with http:// or https://")] = ""
    token_env: Annotated[str, _ENV_NAME] = "CALLGUARD_API_TOKEN"  #: environment variable the CLI reads its token from

    def api_url(self) -> str:
        """The base URL the CLI uses to reach this console's API."""
        if self.url:
            return self.url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '[::]') else host}:{self.port}"


__all__ = ["WebConfig"]
