"""The payment connector: one generic JSON-over-HTTPS contract, spoken with httpx.

callguard does not speak any gateway's own API.  A site points it at a
small service (its payment provider's, or an adapter it runs) that
implements this contract; ``callguard.testing.PaymentGateway`` implements
it on a local port for the demo and the tests.

The contract
============

Every request::

    POST {url}/charges          (or {url}/tokens for a card-on-file token)
    Authorization: Bearer {api_key}
    Idempotency-Key: {key}      (one per payment; every retry of it sends the same key)
    Content-Type: application/json

    {"reference": "<callguard payment id>",
     "amount": "49.90", "currency": "GBP",          (charges only; amount as a decimal string)
     "card": {"number": "4111111111111111", "exp_month": 12, "exp_year": 2030,
              "cvc": "123", "postcode": "12345"}}   (postcode only when collected)

Answers the connector understands:

* ``200``/``201`` with ``{"status": "approved", "id": "...", "token": "..."}``
  (a token request answers ``{"status": "approved", "token": "..."}``) or
  ``{"status": "declined", "decline_code": "..."}``;
* ``402`` with ``{"status": "declined", "decline_code": "..."}``;
* ``409``: a request with this key is still being processed - retried;
* ``422`` with ``{"error": "idempotency_key_reused"}``: the key came with a
  different body - never retried;
* ``429``, ``500``, ``502``, ``503``, ``504``: retried;
* any other ``4xx``: the request is wrong - never retried, the payment fails.

Duplicate charges: the gateway MUST answer a repeated key with the stored
answer of the first request, without charging again.  callguard retries a
request whenever it might not have arrived (connection reset, timeout, the
retryable statuses), always with the same key, so a retry can never be a
second charge.  When every attempt failed and at least one may have reached
the gateway, the result is ``unknown``, not ``failed``: the ledger keeps the
key so the payment can be reconciled, and the caller is not told "you were
not charged".

TLS: the URL must be ``https://``; certificates are always verified (the
system's trust store, or ``ca_file`` for a private CA).  There is no switch
to turn verification off.

What comes back is checked before anything is stored: ids, tokens and codes
must be short printable words, and a field that carries the card number (a
gateway echoing it back) or any run of 12 or more digits is replaced by
``[redacted]`` - the ledger never holds card data, whatever the gateway says.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import httpx

from callguard.payments.secret import CardData

log = logging.getLogger("callguard.payments")

RETRYABLE = frozenset({409, 429, 500, 502, 503, 504})
_SAFE_TEXT = re.compile(r"[A-Za-z0-9._:\-/ ]{0,120}")
_LONG_DIGITS = re.compile(r"\d{12,}")


class ConnectorConfigError(ValueError):
    """The connector settings cannot work (wrong scheme, unreadable CA file)."""


@dataclass(frozen=True)
class ConnectorSettings:
    """``[payments]`` connector keys."""

    url: str
    api_key: str = ""
    ca_file: str = ""  #: PEM bundle of a private CA; empty: the system's trust store
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    attempts: int = 3  #: tries of one request, all with the same idempotency key
    backoff_s: float = 0.5  #: first wait between tries; doubles each time


@dataclass(frozen=True)
class GatewayAnswer:
    """What the connector learnt; every field is safe to store."""

    status: str  #: approved | declined | failed | unknown
    reference: str = ""
    token: str = ""
    detail: str = ""
    attempts: int = 1
    http_status: int | None = None


class HttpsConnector:
    """Charges and tokenizes over the contract above (one pooled ``httpx.AsyncClient``)."""

    def __init__(self, settings: ConnectorSettings, *, verify: ssl.SSLContext | None = None,
                 transport: httpx.AsyncBaseTransport | None = None):
        parts = urlsplit(settings.url)
        if parts.scheme != "https" or not parts.hostname:
            raise ConnectorConfigError(
                f"[payments] url: {settings.url!r} must be an https:// URL (card data never travels unencrypted)")
        if verify is None:
            try:
                verify = ssl.create_default_context(cafile=settings.ca_file or None)
            except (OSError, ssl.SSLError) as exc:
                raise ConnectorConfigError(f"[payments] ca_file: cannot load {settings.ca_file!r}: {exc}") from None
        if verify.verify_mode != ssl.CERT_REQUIRED or not verify.check_hostname:
            raise ConnectorConfigError("the connector's TLS context must verify certificates and host names")
        self.settings = settings
        self._base = settings.url.rstrip("/")
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        # Imported here, not at the top: httpx (with the CLI packages it pulls in) costs every
        # listener ~20 MiB of RSS, and only a site with [payments] url needs it.
        import httpx

        timeout = httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s)
        self._client = httpx.AsyncClient(verify=verify, timeout=timeout, headers=headers, transport=transport,
                                         follow_redirects=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def charge(self, card: CardData, amount: Decimal, currency: str, key: str, reference: str) -> GatewayAnswer:
        body = {"reference": reference, "amount": str(amount), "currency": currency, "card": card.fields()}
        return await self._send("/charges", body, key, card)

    async def tokenize(self, card: CardData, key: str, reference: str) -> GatewayAnswer:
        return await self._send("/tokens", {"reference": reference, "card": card.fields()}, key, card)

    async def _send(self, path: str, body: dict[str, Any], key: str, card: CardData) -> GatewayAnswer:
        """POST with retries under one key; ``body`` is dropped before returning."""
        import httpx

        maybe_arrived = False
        last = ""
        delay = self.settings.backoff_s
        attempts = max(1, self.settings.attempts)
        try:
            for attempt in range(1, attempts + 1):
                try:
                    response = await self._client.post(self._base + path, json=body,
                                                        headers={"Idempotency-Key": key})
                except httpx.ConnectError as exc:
                    last = f"cannot connect: {_short(exc)}"
                except httpx.ConnectTimeout:
                    last = f"no connection within {self.settings.connect_timeout_s:g} s"
                except httpx.TimeoutException:
                    maybe_arrived = True
                    last = f"no answer within {self.settings.read_timeout_s:g} s"
                except httpx.TransportError as exc:
                    maybe_arrived = True
                    last = f"connection failed: {_short(exc)}"
                else:
                    maybe_arrived = True
                    if response.status_code not in RETRYABLE:
                        return _answer(response, attempt, card)
                    last = f"gateway answered {response.status_code}"
                    retry_after = _retry_after(response)
                    delay = max(delay, retry_after) if retry_after is not None else delay
                log.warning("payment connector attempt %d/%d failed: %s", attempt, attempts, last)
                if attempt < attempts:
                    await asyncio.sleep(min(delay, 10.0))
                    delay *= 2
        finally:
            body.clear()
        status = "unknown" if maybe_arrived else "failed"
        return GatewayAnswer(status, detail=f"{last} after {attempts} attempts", attempts=attempts)


def _answer(response: httpx.Response, attempt: int, card: CardData) -> GatewayAnswer:
    """Turn a final HTTP answer into a :class:`GatewayAnswer`, scrubbing what it says."""
    try:
        data = response.json()
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    code = response.status_code
    status = str(data.get("status", ""))
    if code in (200, 201) and status in ("approved", "declined"):
        pass
    elif code == 402:
        status = "declined"
    else:
        status = "failed"
    detail = data.get("decline_code") or data.get("error") or ("" if code in (200, 201) else f"HTTP {code}")
    return GatewayAnswer(status, reference=_safe(data.get("id"), card), token=_safe(data.get("token"), card),
                         detail=_safe(detail, card), attempts=attempt, http_status=code)


def _safe(value: Any, card: CardData) -> str:
    """A gateway string fit for the ledger, or ``[redacted]``/``[invalid]``."""
    if value is None:
        return ""
    text = str(value)
    if card.last4 and not card.wiped and card.fields()["number"] in text:  # type: ignore[operator]
        return "[redacted]"
    if _LONG_DIGITS.search(text):
        return "[redacted]"
    if not _SAFE_TEXT.fullmatch(text):
        return "[invalid]"
    return text


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:120]


__all__ = ["ConnectorConfigError", "ConnectorSettings", "GatewayAnswer", "HttpsConnector", "RETRYABLE"]
