"""The AMI client over real TCP: login, deadlines, AGI matching, ping, reconnect, TLS."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import random
import ssl

import pytest

from callguard.adapters.asterisk.manager import AmiManager, AuthenticationFailed, backoff_delays, tls_context
from callguard.adapters.asterisk.protocol import ActionTimeout, NotConnected
from callguard.adapters.asterisk.wire import UnsafeHeaderValue
from callguard.testing.fake_asterisk import FakeAsterisk

from .conftest import SECRET


def _manager(pbx: FakeAsterisk, **options) -> AmiManager:
    settings = dict(host="127.0.0.1", port=pbx.port, username="callguard", secret=SECRET, action_timeout=0.5,
                    ping_interval=0.1, ping_delay=0.1, reconnect_min=0.01, reconnect_max=0.05)
    settings.update(options)
    return AmiManager(**settings)


@pytest.fixture
async def manager(pbx: FakeAsterisk):
    m = _manager(pbx)
    yield m
    await m.aclose()


@pytest.mark.parametrize("auth", ["md5", "plain"])
async def test_login_both_ways(pbx: FakeAsterisk, auth: str):
    m = _manager(pbx, auth=auth)
    await m.connect()
    assert m.banner == "Asterisk Call Manager/11.0.0" and m.connected
    login = [a for _, a in pbx.actions if a["action"] == "Login"][-1]
    if auth == "md5":
        assert "secret" not in login and len(login["key"]) == 32  # the secret never crosses the wire
    else:
        assert login["secret"] == SECRET
    await m.aclose()


async def test_wrong_secret_fails_fast_with_a_clear_message(pbx: FakeAsterisk):
    m = _manager(pbx, secret="wrong")
    with pytest.raises(AuthenticationFailed, match="refused.*Authentication failed.*manager.conf"):
        await asyncio.wait_for(m.connect(), 5)
    m.close()


async def test_unreachable_pbx_is_retried_until_it_appears(pbx: FakeAsterisk):
    port = pbx.port
    await pbx.stop()
    m = _manager(pbx)
    first = m.connect()
    await asyncio.sleep(0.2)
    assert not first.done() and "unreachable" not in m.last_error.lower() and m.last_error
    revived = FakeAsterisk(port=port, secret=SECRET)
    await revived.start()
    try:
        await asyncio.wait_for(first, 5)
        assert m.connected
    finally:
        await m.aclose()
        await revived.stop()


async def test_action_without_answer_times_out(pbx: FakeAsterisk, manager: AmiManager):
    await manager.connect()
    pbx.lose = lambda kind, name, data: kind == "response" and name == "Getvar"
    with pytest.raises(ActionTimeout, match="Getvar within 0.5 s"):
        await manager.send_action({"Action": "Getvar", "Variable": "X"})
    pbx.lose = None
    assert (await manager.send_action({"Action": "Getvar", "Variable": "X"})).ok


async def test_agi_result_is_matched_by_command_id(pbx: FakeAsterisk, manager: AmiManager):
    await manager.connect()
    await manager.send_action({"Action": "Setvar", "Variable": "CALLGUARD_HEARTBEAT", "Value": str(int(pbx.now()))})
    call = pbx.place_call("+14155550123", "José Cust", agent=False)
    await call.wait_answered()
    channel = call.channel.name
    set_var = manager.send_agi_command(channel, "SET VARIABLE A 1")
    gather = manager.send_agi_command(channel, "GET DATA callguard/en/notice 2000 1")
    assert (await set_var).result == "1"
    await call.answer_prompt("7")
    result = await gather
    assert result.ok and result.digits() == "7"
    timeout = await manager.send_agi_command(channel, "GET DATA callguard/en/notice 10 1")
    assert timeout.timed_out and timeout.digits() == ""
    unknown = await manager.send_agi_command(channel, "NOT A COMMAND")
    assert unknown.code == 510 and unknown.error
    # A channel that leaves AsyncAGI resolves what is still queued for it.
    pbx.prompt_durations["long"] = 5.0
    playing = manager.send_agi_command(channel, "STREAM FILE long \"\"")
    queued = manager.send_agi_command(channel, "SET VARIABLE B 2")
    await asyncio.sleep(0.05)
    await call.hangup()
    assert (await playing).hangup
    left = await queued
    assert left.code == 0 and left.error == "channel left AsyncAGI"
    refused = await manager.send_agi_command(channel, "ASYNCAGI BREAK")
    assert refused.code == 0 and "does not exist" in refused.error


async def test_a_channel_leaving_asyncagi_resolves_only_its_own_commands(pbx: FakeAsterisk, manager: AmiManager):
    """AsyncAGIEnd is looked up by channel: other calls' queued commands stay pending, nothing is left behind."""
    await manager.connect()
    await manager.send_action({"Action": "Setvar", "Variable": "CALLGUARD_HEARTBEAT", "Value": str(int(pbx.now()))})
    pbx.prompt_durations["long"] = 5.0
    calls = [pbx.place_call(f"+1415555012{i}", "Cust", agent=False) for i in range(3)]
    for call in calls:
        await call.wait_answered()
    queued = {call.channel.name: [manager.send_agi_command(call.channel.name, 'STREAM FILE long ""'),
                                  manager.send_agi_command(call.channel.name, "SET VARIABLE B 2")]
              for call in calls}
    await asyncio.sleep(0.05)
    await calls[0].hangup()
    first = queued[calls[0].channel.name]
    await asyncio.wait_for(asyncio.gather(*first), 5)
    assert first[1].result().error == "channel left AsyncAGI"
    assert not any(f.done() for name, fs in queued.items() if name != calls[0].channel.name for f in fs)
    for call in calls[1:]:
        await call.hangup()
    await asyncio.wait_for(asyncio.gather(*(f for fs in queued.values() for f in fs)), 5)
    protocol = manager.protocol
    assert protocol is not None and protocol.pending_actions == 0 and not protocol._agi_channels


async def test_originate_without_async_does_not_break_the_connection(pbx: FakeAsterisk, manager: AmiManager):
    """panoramisk 1.4 raised KeyError('async') in data_received and dropped the link here."""
    await manager.connect()
    response = await manager.send_action({"Action": "Originate", "Channel": "Local/100@callguard-inbound",
                                          "Context": "caller-sim", "Exten": "consent", "Priority": "1",
                                          "CallerID": '"Probe" <+442079460000>'}, timeout=3)
    assert response.ok and response.message == "Originate successfully queued"
    assert (await manager.send_action({"Action": "Ping"})).get("Ping") == "Pong"


async def test_list_action_collects_until_complete(pbx: FakeAsterisk, manager: AmiManager):
    await manager.connect()
    pbx.place_call("+14155550123", "José Cust", agent=False)
    await asyncio.sleep(0.05)
    items = await manager.send_action({"Action": "CoreShowChannels"})
    assert items[0].get("EventList") == "start"
    assert [m.name for m in items[1:]].count("CoreShowChannel") == 2
    assert items[-1].name == "CoreShowChannelsComplete" and items[-1]["ListItems"] == "2"


async def test_silent_peer_is_detected_by_the_pong_check(pbx: FakeAsterisk, manager: AmiManager):
    await manager.connect()
    logins = pbx.logins
    pbx.lose = lambda kind, name, data: name == "Ping"  # half-open: the socket stays up, nothing answers
    await asyncio.wait_for(_until(lambda: pbx.logins > logins), 5)
    pbx.lose = None
    assert manager.connects >= 2


async def test_reconnects_after_a_drop_and_calls_on_login_each_time(pbx: FakeAsterisk, manager: AmiManager):
    logins: list[int] = []
    manager.on_login = lambda m: logins.append(m.connects)
    await manager.connect()
    await asyncio.wait_for(_until(lambda: logins), 5)
    for n in range(2, 5):
        pbx.drop_connections()
        await asyncio.wait_for(_until(lambda: len(logins) == n), 5)
    assert logins == [1, 2, 3, 4]


async def test_actions_while_disconnected_fail_at_once(pbx: FakeAsterisk, manager: AmiManager):
    with pytest.raises(NotConnected):
        await manager.send_action({"Action": "Ping"})
    await manager.connect()
    with pytest.raises(UnsafeHeaderValue):
        manager.send_action({"Action": "Setvar", "Variable": "X", "Value": "a\r\nAction: Hangup"})


async def test_events_are_dispatched_by_name_and_pattern(pbx: FakeAsterisk, manager: AmiManager):
    seen: list[str] = []
    manager.register_event("UserEvent", lambda m, e: seen.append("exact:" + e.name))
    manager.register_event("Bridge*", lambda m, e: seen.append("pattern:" + e.name))
    await manager.connect()
    await manager.send_action({"Action": "UserEvent", "UserEvent": "Hello", "Greeting": "Olá"})
    await asyncio.wait_for(_until(lambda: seen), 2)
    assert seen == ["exact:UserEvent"]
    parser = manager.protocol.parser
    await manager.send_action({"Action": "Setvar", "Variable": "X", "Value": "1"})  # emits VarSet
    await asyncio.sleep(0.05)
    assert parser.skipped >= 1  # VarSet: nobody registered, dropped unparsed


def test_backoff_grows_with_jitter():
    delays = backoff_delays(0.5, 30.0, random.Random(7))
    got = [next(delays) for _ in range(10)]
    caps = [min(30.0, 0.5 * 2**i) for i in range(10)]
    assert all(cap / 2 <= d <= cap for d, cap in zip(got, caps))
    assert len({round(d, 6) for d in got}) == len(got)


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-asterisk")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "ami.crt", tmp_path / "ami.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


async def test_tls_with_a_ca_file(tmp_path):
    cert_file, key_file = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    async with FakeAsterisk(secret=SECRET, ssl=server_ctx) as pbx:
        m = _manager(pbx, ssl=tls_context(str(cert_file)), server_hostname="127.0.0.1")
        await m.connect()
        assert (await m.send_action({"Action": "Ping"})).get("Ping") == "Pong"
        await m.aclose()
        # Without our CA the certificate is refused: no silent downgrade.
        untrusting = _manager(pbx, ssl=tls_context(None), server_hostname="127.0.0.1", connect_timeout=1)
        first = untrusting.connect()
        await asyncio.wait_for(_until(lambda: untrusting.last_error), 30)
        assert "CERTIFICATE_VERIFY_FAILED" in untrusting.last_error
        assert not first.done()  # still retrying: it never connected without verification
        untrusting.close()


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.005)
