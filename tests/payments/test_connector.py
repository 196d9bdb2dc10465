"""The connector against the local gateway over real HTTPS: contract, retries, idempotency, TLS."""

from __future__ import annotations

import asyncio
import ssl
from decimal import Decimal

import httpx
import pytest

from callguard.payments.connector import ConnectorConfigError, ConnectorSettings, HttpsConnector
from callguard.payments.secret import CardData
from callguard.testing.payment_gateway import PaymentGateway

TEST_CARD = "4111111111111111"


def card(number: str = TEST_CARD) -> CardData:
    return CardData(number, "1230", "123", "", brand="visa", exp_year=2030)


@pytest.fixture(scope="module")
def gateway():
    with PaymentGateway() as gw:
        yield gw


@pytest.fixture
def fresh(gateway):
    gateway.fail_next, gateway.delay_s, gateway.delay_once = [], 0.0, False
    yield gateway
    gateway.fail_next, gateway.delay_s, gateway.delay_once = [], 0.0, False


def connector(gw: PaymentGateway, **kwargs) -> HttpsConnector:
    # generous connect timeouts: a loaded 2-core CI machine can take seconds for a TLS handshake
    settings = ConnectorSettings(gw.url, gw.api_key, **{"backoff_s": 0.05, "connect_timeout_s": 20.0, **kwargs})
    return HttpsConnector(settings, verify=gw.client_context())


async def test_charge_is_approved_and_the_card_is_kept_from_everything_stored(fresh) -> None:
    conn = connector(fresh)
    try:
        answer = await conn.charge(card(), Decimal("49.90"), "GBP", "key-ok", "pay-ok")
    finally:
        await conn.aclose()
    assert answer.status == "approved" and answer.token.startswith("tok_") and answer.reference.startswith("ch_")
    [charge] = [c for c in fresh.charges if c.key == "key-ok"]
    assert (charge.brand, charge.last4, charge.amount, charge.currency) == ("visa", "1111", "49.90", "GBP")


async def test_a_repeated_key_is_answered_from_the_store_not_charged_again(fresh) -> None:
    conn = connector(fresh)
    try:
        first = await conn.charge(card(), Decimal("10"), "GBP", "key-twice", "p")
        second = await conn.charge(card(), Decimal("10"), "GBP", "key-twice", "p")
        other = await conn.charge(card(), Decimal("11"), "GBP", "key-twice", "p")
    finally:
        await conn.aclose()
    assert first == second
    assert len([c for c in fresh.charges if c.key == "key-twice"]) == 1
    assert other.status == "failed" and other.detail == "idempotency_key_reused"


async def test_a_slow_gateway_times_out_and_the_retry_gets_the_first_answer(fresh) -> None:
    fresh.delay_s, fresh.delay_once = 1.0, True
    conn = connector(fresh, read_timeout_s=0.4, attempts=4)
    try:
        answer = await conn.charge(card(), Decimal("5"), "GBP", "key-slow", "p")
    finally:
        await conn.aclose()
    assert answer.status == "approved" and answer.attempts >= 2
    assert len([c for c in fresh.charges if c.key == "key-slow"]) == 1  # charged once, answered twice


async def test_gateway_errors_are_retried_with_the_same_key(fresh) -> None:
    fresh.fail_next = [503, 502]
    before = fresh.requests
    conn = connector(fresh)
    try:
        answer = await conn.charge(card(), Decimal("5"), "GBP", "key-503", "p")
    finally:
        await conn.aclose()
    assert answer.status == "approved" and answer.attempts == 3 and fresh.requests - before == 3


async def test_a_gateway_that_never_answers_in_time_leaves_the_result_unknown(fresh) -> None:
    fresh.delay_s = 1.0
    conn = connector(fresh, read_timeout_s=0.2, attempts=2)
    try:
        answer = await conn.charge(card(), Decimal("5"), "GBP", "key-unknown", "p")
    finally:
        await conn.aclose()
    assert answer.status == "unknown" and "no answer within" in answer.detail  # it may have charged


async def test_declines_and_refusals(fresh) -> None:
    conn = connector(fresh)
    try:
        declined = await conn.charge(card("4000000000000002"), Decimal("5"), "GBP", "key-decl", "p")
        funds = await conn.charge(card("4000000000009995"), Decimal("5"), "GBP", "key-funds", "p")
        token = await conn.tokenize(card(), "key-token", "p")
    finally:
        await conn.aclose()
    assert (declined.status, declined.detail) == ("declined", "card_declined")
    assert (funds.status, funds.detail) == ("declined", "insufficient_funds")
    assert token.status == "approved" and token.token.startswith("tok_")
    bad = HttpsConnector(ConnectorSettings(fresh.url, "wrong-key", attempts=1, connect_timeout_s=20.0),
                         verify=fresh.client_context())
    try:
        refused = await bad.charge(card(), Decimal("5"), "GBP", "key-auth", "p")
    finally:
        await bad.aclose()
    assert (refused.status, refused.http_status) == ("failed", 401)


async def test_an_unreachable_gateway_is_a_clean_failure_not_unknown() -> None:
    gw = PaymentGateway()
    await asyncio.to_thread(gw.start)
    url, context = gw.url, gw.client_context()
    await asyncio.to_thread(gw.stop)
    conn = HttpsConnector(ConnectorSettings(url, "k", attempts=2, backoff_s=0.01), verify=context)
    try:
        answer = await conn.charge(card(), Decimal("5"), "GBP", "key-down", "p")
    finally:
        await conn.aclose()
    assert answer.status == "failed" and "cannot connect" in answer.detail


async def test_certificates_are_verified(fresh) -> None:
    conn = HttpsConnector(ConnectorSettings(fresh.url, fresh.api_key, attempts=1))  # system trust store only
    try:
        answer = await conn.charge(card(), Decimal("5"), "GBP", "key-tls", "p")
    finally:
        await conn.aclose()
    assert answer.status == "failed" and "CERTIFICATE_VERIFY_FAILED" in answer.detail
    assert not [c for c in fresh.charges if c.key == "key-tls"]


def test_plain_http_and_unverified_tls_are_refused(tmp_path) -> None:
    with pytest.raises(ConnectorConfigError, match="https://"):
        HttpsConnector(ConnectorSettings("http://127.0.0.1:9/v1"))
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    with pytest.raises(ConnectorConfigError, match="verify"):
        HttpsConnector(ConnectorSettings("https://127.0.0.1:9/v1"), verify=lax)
    with pytest.raises(ConnectorConfigError, match="ca_file"):
        HttpsConnector(ConnectorSettings("https://127.0.0.1:9/v1", ca_file=str(tmp_path / "missing.pem")))


async def test_a_gateway_echoing_the_card_number_never_gets_it_stored() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"status": "approved", "id": "ch_" + TEST_CARD,
                                         "token": "tok ok", "decline_code": "x" * 500})

    conn = HttpsConnector(ConnectorSettings("https://gateway.invalid/v1"), transport=httpx.MockTransport(echo))
    try:
        answer = await conn.charge(card(), Decimal("5"), "GBP", "k", "p")
    finally:
        await conn.aclose()
    assert answer.reference == "[redacted]" and answer.token == "tok ok"
    assert TEST_CARD not in repr(answer)


def test_card_data_never_prints_or_pickles() -> None:
    import copy
    import pickle

    data = card()
    assert TEST_CARD not in repr(data) and TEST_CARD not in str(data) and "1111" in repr(data)
    with pytest.raises(TypeError):
        pickle.dumps(data)
    with pytest.raises(TypeError):
        copy.deepcopy(data)
    data.wipe()
    assert data.wiped and "wiped" in repr(data)
    with pytest.raises(ValueError, match="wiped"):
        data.fields()
