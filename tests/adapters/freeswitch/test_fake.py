"""FakeFreeSWITCH is faithful to the captured FreeSWITCH 1.10.12 behaviour.

These tests speak raw ESL to the fake (our parser reads the answers), so
they check the fake itself, not the listener.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from callguard.adapters.freeswitch.wire import ESLParser, Frame, encode_command, sendmsg_execute
from callguard.testing.fake_freeswitch import FakeFreeSWITCH

from .streams import FIXTURES, client_commands, server_bytes

PASSWORD = "ClueCon"


class Client:
    """A raw ESL client on a real socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.parser = ESLParser()
        self.frames: list[Frame] = []

    async def next(self, timeout: float = 5.0) -> Frame:
        while not self.frames:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("closed")
            self.frames += self.parser.feed(data)
        return self.frames.pop(0)

    async def until(self, predicate: Any, timeout: float = 5.0) -> Frame:
        while True:
            frame = await self.next(timeout)
            if predicate(frame):
                return frame

    async def send(self, data: bytes) -> Frame:
        self.writer.write(data)
        return await self.until(lambda f: f.content_type in ("command/reply", "api/response"))


@pytest.fixture
async def fake():
    async with FakeFreeSWITCH(password=PASSWORD, clock="real", prompt_duration_s=0.2) as fs:
        yield fs


async def inbound(fs: FakeFreeSWITCH) -> Client:
    client = Client(*await asyncio.open_connection("127.0.0.1", fs.port))
    assert (await client.next()).content_type == "auth/request"
    return client


async def test_login_and_subscription_answer_as_captured(fake) -> None:
    """Same commands as the fixture's inbound connection, same reply bytes."""
    captured = server_bytes(FIXTURES / "freeswitch1_10_consent_pause.inbound.esl")
    commands = client_commands(FIXTURES / "freeswitch1_10_consent_pause.inbound.esl")
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    got = await reader.readexactly(len(b"Content-Type: auth/request\n\n"))
    for command in commands[:2]:
        writer.write(command.encode() + b"\n\n")
        got += await reader.readuntil(b"\n\n")
    assert captured.startswith(got)
    writer.close()


async def test_wrong_password_is_refused_and_disconnected(fake) -> None:
    client = await inbound(fake)
    reply = await client.send(encode_command("auth nope"))
    assert reply.reply_text == "-ERR invalid"
    assert (await client.next()).content_type == "text/disconnect-notice"


async def test_custom_must_be_last_in_a_subscription(fake) -> None:
    """Everything after CUSTOM is a subclass name: RECORD_START placed after it is not subscribed."""
    client = await inbound(fake)
    await client.send(encode_command(f"auth {PASSWORD}"))
    await client.send(encode_command("event plain CUSTOM callguard::pause RECORD_START"))
    ch = fake.new_channel("+14155550123", "José")
    fake._start_recording(ch, "/tmp/x.wav")
    fake.fire_custom(ch, "callguard::pause", {"callguard_action": "pause"})
    frame = await client.next()
    assert frame.event.name == "CUSTOM" and frame.event.subclass == "callguard::pause"
    with pytest.raises(asyncio.TimeoutError):
        await client.next(timeout=0.2)


async def test_api_and_bgapi(fake) -> None:
    client = await inbound(fake)
    await client.send(encode_command(f"auth {PASSWORD}"))
    await client.send(encode_command("event plain BACKGROUND_JOB"))
    ch = fake.new_channel("+14155550123", "José")
    reply = await client.send(encode_command(f"api uuid_record {ch.uuid} mask /tmp/x.wav"))
    assert reply.content_type == "api/response" and reply.text == "-ERR Cannot locate recording!\n"
    fake._start_recording(ch, "/tmp/x.wav")
    assert (await client.send(encode_command(f"api uuid_record {ch.uuid} mask /tmp/x.wav"))).text == "+OK Success\n"
    assert (await client.send(encode_command(f"api uuid_exists {ch.uuid}"))).text == "true"
    reply = await client.send(encode_command(f"bgapi uuid_getvar {ch.uuid} uuid"))
    job = reply.headers["Job-UUID"]
    assert reply.reply_text == f"+OK Job-UUID: {job}"
    done = await client.until(lambda f: f.is_event)
    assert done.event.name == "BACKGROUND_JOB" and done.event.get("Job-UUID") == job
    assert done.event.text == ch.uuid  # an event with a body of its own


async def outbound_call(fake: FakeFreeSWITCH, *, name: str = "José Cust"):
    """Run the socket application against a raw listener; yield (channel, listener-side client)."""
    accepted: asyncio.Queue[Client] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(Client(reader, writer))

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    fake.socket_address = ("127.0.0.1", server.sockets[0].getsockname()[1])
    ch = fake.new_channel("+14155550123", name)
    task = asyncio.ensure_future(fake.run_socket(ch))
    client = await asyncio.wait_for(accepted.get(), 5)
    return ch, client, task, server


async def test_connect_reply_has_the_channel_data_as_captured(fake) -> None:
    ch, client, task, server = await outbound_call(fake)
    reply = await client.send(encode_command("connect"))
    captured = ESLParser().feed(server_bytes(FIXTURES / "freeswitch1_10_consent_pause.outbound.esl"))[0]
    # the same header names in the same places
    assert reply.headers.raw_text.split("\n")[0] == "Event-Name: CHANNEL_DATA"
    assert [line.split(":")[0] for line in reply.headers.raw_text.split("\n")[-4:]] == \
        [line.split(":")[0] for line in captured.headers.raw_text.split("\n")[-4:]]
    assert reply.headers.raw("Reply-Text") == captured.headers.raw("Reply-Text") == "%2BOK%0A"
    assert reply.headers["Caller-Caller-ID-Name"] == "José Cust"
    assert reply.headers.raw("Caller-Caller-ID-Name") == "Jos%C3%A9%20Cust"
    assert reply.headers["Unique-ID"] == ch.uuid
    assert (await client.send(encode_command("myevents"))).reply_text == "+OK Events Enabled"
    assert (await client.send(encode_command("linger"))).reply_text == "+OK will linger"
    assert (await client.send(encode_command("exit"))).reply_text == "+OK bye"
    notice = await client.next()
    assert notice.content_type == "text/disconnect-notice" and notice.text.startswith("Disconnected, goodbye.")
    assert await task == "connected"
    server.close()


async def pagd(fake: FakeFreeSWITCH, arg: str, press: str | None) -> tuple[Any, list[Frame]]:
    ch, client, task, server = await outbound_call(fake)
    for command in ("connect", "myevents", "linger"):
        await client.send(encode_command(command))
    await client.send(sendmsg_execute("play_and_get_digits", arg))
    await client.until(lambda f: f.is_event and f.event.name == "CHANNEL_EXECUTE")
    if press:
        fake.press(ch, press)
    events = []
    while True:
        frame = await client.next(10)
        events.append(frame)
        if frame.is_event and frame.event.name == "CHANNEL_EXECUTE_COMPLETE":
            break
    client.writer.write(encode_command("exit"))
    await asyncio.wait_for(task, 5)
    server.close()
    return ch, events


OURS = "1 1 1 1000 # /s/notice.wav silence_stream://250 callguard_digit ^[12]+$ 1000"


async def test_pagd_digit_in_the_execute_complete(fake) -> None:
    ch, events = await pagd(fake, OURS, "1")
    complete = events[-1].event
    assert complete.get("variable_callguard_digit") == "1" and complete.get("Application") == "play_and_get_digits"
    assert [e.event.name for e in events if e.is_event][:1] == ["DTMF"]


async def test_pagd_key_outside_the_regex_is_reported_as_invalid(fake) -> None:
    ch, events = await pagd(fake, OURS, "7")
    complete = events[-1].event
    assert complete.get("variable_callguard_digit") is None
    assert complete.get("variable_callguard_digit_invalid") == "7"


async def test_pagd_lone_terminator_counts_as_no_input(fake) -> None:
    ch, events = await pagd(fake, OURS.replace("^[12]+$", "^[12#]+$"), "#")
    assert events[-1].event.get("variable_callguard_digit") is None


async def test_pagd_no_input_with_ten_arguments_continues_the_call(fake) -> None:
    ch, events = await pagd(fake, OURS, None)
    assert not ch.hung_up and ch.transferred_to == ""


async def test_greenswitch_none_none_arguments_drop_the_caller(fake) -> None:
    """greenswitch 0.0.19 formats omitted arguments as 'None': a transfer target that does not exist."""
    args = "%s %s %s %s %s %s %s %s %s %s %s" % (1, 1, 1, 1000, "#", "/s/notice.wav", "silence_stream://250",
                                                 "callguard_digit", "\\d", None, None)
    ch, events = await pagd(fake, args, None)
    assert ch.hung_up and ch.hangup_cause == "NO_ROUTE_DESTINATION"
    assert any("PAGD failure! Transfer to: None" in t for _, t in ch.trace)
