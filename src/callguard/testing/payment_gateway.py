"""A local payment gateway on a real HTTPS port, speaking the connector contract.

:class:`PaymentGateway` is what ``callguard demo`` and the tests charge
cards against: a Starlette app served by uvicorn in a thread of its own
(like aiosmtpd's ``Controller``), over TLS with a throw-away CA made by
``trustme``, so the connector's certificate verification runs for real.
It implements :mod:`callguard.payments.connector`'s contract, including the
part that matters most: an ``Idempotency-Key`` seen before gets the stored
answer and charges nothing (a key with a different body gets ``422``).

Test cards (Luhn-valid numbers, as payment providers document them):

* ``4000000000000002`` - declined, ``card_declined``
* ``4000000000009995`` - declined, ``insufficient_funds``
* any other valid card - approved

Fault knobs, for the tests: ``fail_next`` (statuses to answer first, e.g.
``[503, 503]``), ``delay_s`` (answers are sent this late, after the charge
was made) and ``delay_once`` (only a key's first answer is late: the
connector times out, retries with the same key and must get the stored
answer, not a second charge).

The gateway keeps what a real one would show on its dashboard - brand,
last four, amount - and never writes a card number anywhere: no access
log, no request log, nothing on disk but the TLS key of its throw-away CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import socket
import ssl
import string
import tempfile
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from callguard.payments import card as cards


_ID_ALPHABET = string.ascii_letters + string.digits


def _opaque_id(length: int) -> str:
    """A base62 id like real gateways issue (``tok_1Mx...``).

    Not hex: a hex id is mostly digits, and 24 of them hold a run of 12
    digits about once in a hundred, which the connector rightly redacts as
    possible card data.
    """
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))

DECLINES = {"4000000000000002": "card_declined", "4000000000009995": "insufficient_funds"}


@dataclass
class Charge:
    """One charge or token as the gateway's dashboard would list it (no card number)."""

    id: str
    kind: str  #: charge | token
    key: str
    reference: str
    brand: str
    last4: str
    amount: str
    currency: str
    status: str
    token: str = ""
    at: float = field(default_factory=time.time)


class PaymentGateway:
    """The contract's reference server on ``https://127.0.0.1:<port>/v1``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None):
        self.host = host
        self.port = port
        self.api_key = api_key if api_key is not None else secrets.token_hex(16)
        self.charges: list[Charge] = []
        self.requests = 0  #: POSTs received (retries included)
        self.replays = 0  #: POSTs answered from the idempotency store
        self.fail_next: list[int] = []
        self.delay_s = 0.0
        self.delay_once = False
        self._answers: dict[str, tuple[str, int, dict[str, Any]]] = {}  #: key -> (body hash, status, answer)
        self._inflight: set[str] = set()
        self._lock = threading.Lock()
        self._ca = trustme.CA()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # -- what clients need -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}/v1"

    def client_context(self) -> ssl.SSLContext:
        """A verifying TLS context that trusts this gateway's CA (and nothing else)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.load_verify_locations(cadata=self._ca.cert_pem.bytes().decode("ascii"))
        return context

    def write_ca(self, path: str | Path) -> Path:
        """Write the CA certificate as PEM (for ``[payments] ca_file``)."""
        target = Path(path)
        target.write_bytes(self._ca.cert_pem.bytes())
        return target

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> "PaymentGateway":
        self._tmp = tempfile.TemporaryDirectory(prefix="callguard-gateway-")
        cert = self._ca.issue_cert(self.host, "localhost")
        key_file = Path(self._tmp.name) / "key.pem"
        cert_file = Path(self._tmp.name) / "cert.pem"
        cert.private_key_pem.write_to_path(str(key_file))
        cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="warning", access_log=False, ssl_keyfile=str(key_file),
                                ssl_certfile=str(cert_file), lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        started = threading.Event()

        def run() -> None:
            assert self._server is not None
            loop = asyncio.new_event_loop()
            task = loop.create_task(self._server.serve(sockets=[sock]))

            async def announce() -> None:
                while not self._server.started and not task.done():
                    await asyncio.sleep(0.01)
                started.set()

            loop.create_task(announce())
            try:
                loop.run_until_complete(task)
            finally:
                started.set()
                loop.close()

        self._thread = threading.Thread(target=run, name="callguard-payment-gateway", daemon=True)
        self._thread.start()
        started.wait(30)
        if not self._server.started:
            self.stop()
            raise RuntimeError("the local payment gateway did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._tmp is not None:
            self._tmp.cleanup()
        self._server = self._thread = self._tmp = None

    def __enter__(self) -> "PaymentGateway":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> "PaymentGateway":
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    # -- the app ---------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/charges", self._charges, methods=["POST"]),
            Route("/v1/tokens", self._tokens, methods=["POST"]),
            Route("/v1/health", self._health, methods=["GET"]),
        ])

    async def _health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def _charges(self, request: Request) -> JSONResponse:
        return await self._handle(request, "charge")

    async def _tokens(self, request: Request) -> JSONResponse:
        return await self._handle(request, "token")

    async def _handle(self, request: Request, kind: str) -> JSONResponse:
        with self._lock:
            self.requests += 1
            forced = self.fail_next.pop(0) if self.fail_next else None
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": "unauthorized"}, 401)
        key = request.headers.get("idempotency-key", "")
        if not key or len(key) > 255:
            return JSONResponse({"error": "idempotency_key_required"}, 400)
        raw = await request.body()
        if forced is not None:
            return JSONResponse({"error": "forced by the test"}, forced)
        digest = hashlib.sha256(raw).hexdigest()
        with self._lock:
            stored = self._answers.get(key)
            if stored is not None:
                if stored[0] != digest:
                    return JSONResponse({"error": "idempotency_key_reused"}, 422)
                self.replays += 1
                replay = stored
            elif key in self._inflight:
                return JSONResponse({"error": "request_in_progress"}, 409)
            else:
                replay = None
                self._inflight.add(key)
        if replay is not None:
            if self.delay_s and not self.delay_once:
                await asyncio.sleep(self.delay_s)
            return JSONResponse(replay[2], replay[1])
        try:
            try:
                status, answer = self._decide(kind, key, json.loads(raw))
            except (ValueError, TypeError, KeyError, InvalidOperation) as exc:
                status, answer = 400, {"error": f"invalid_request: {type(exc).__name__}"}
            raw = b""
            with self._lock:
                self._answers[key] = (digest, status, answer)
        finally:
            with self._lock:
                self._inflight.discard(key)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return JSONResponse(answer, status)

    def _decide(self, kind: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        card = body["card"]
        number = str(card["number"])
        month, year = int(card["exp_month"]), int(card["exp_year"])
        cvc = str(card["cvc"])
        problem = cards.number_problem(number)
        brand = cards.brand_of(number)
        if problem is not None or brand is None:
            return 402, {"status": "declined", "decline_code": "invalid_number"}
        if not 1 <= month <= 12 or (year, month) < time.gmtime()[:2]:
            return 402, {"status": "declined", "decline_code": "expired_card"}
        if len(cvc) != brand.cvv_length or not cvc.isdigit():
            return 402, {"status": "declined", "decline_code": "incorrect_cvc"}
        amount, currency = "", ""
        if kind == "charge":
            value = Decimal(str(body["amount"]))
            currency = str(body["currency"])
            if value <= 0 or len(currency) != 3 or not currency.isalpha():
                return 400, {"error": "invalid_amount"}
            amount = str(value)
        decline = DECLINES.get(number)
        item = Charge(id=("ch_" if kind == "charge" else "tok_") + _opaque_id(16), kind=kind, key=key,
                      reference=str(body.get("reference", ""))[:64], brand=brand.key, last4=number[-4:],
                      amount=amount, currency=currency, status="declined" if decline else "approved")
        number = cvc = ""
        with self._lock:
            self.charges.append(item)
        if decline:
            return 402, {"status": "declined", "decline_code": decline, "id": item.id}
        item.token = "tok_" + _opaque_id(24)
        answer = {"status": "approved", "id": item.id, "token": item.token, "brand": item.brand, "last4": item.last4}
        return (201 if kind == "charge" else 200), answer

    def approved(self) -> list[Charge]:
        return [c for c in self.charges if c.status == "approved"]


@contextlib.contextmanager
def running_gateway(**kwargs: Any):
    """``with running_gateway() as gw:`` for synchronous callers."""
    gateway = PaymentGateway(**kwargs).start()
    try:
        yield gateway
    finally:
        gateway.stop()


__all__ = ["Charge", "DECLINES", "PaymentGateway", "running_gateway"]
