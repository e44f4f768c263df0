"""Every dial-out connection fault has one defined outcome: the status and reason of
StartExternalMedia (or the record's end), end_reason, a metric and one log line.
Real sockets on loopback, free ports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from aiohttp import web

from mediastream._proto import external_media_pb2 as em
from tests.dialout.conftest import (
    Bot,
    api,
    get,
    http_server,
    metric,
    start_dial_out,
    terminated,
)
from tests.harness import Harness, running_gateway
from tests.integration.test_security import self_signed
from tests.timing import LOADED_SLACK

TWILIO = em.EXTERNAL_MEDIA_ENCAPSULATION_TWILIO_WEBSOCKET


def outcomes(outcome: str) -> float:
    return metric("mediastream_dial_outs_total", dialect="twilio", outcome=outcome)


async def refused_start(
    harness: Harness, url: str, code: grpc.StatusCode, reason: str
) -> em.ExternalMedia:
    """Start a dial-out that must fail; return its record (kept TERMINATED with why)."""
    call_id = harness.emulator.add_call("tone", channel_id=str(uuid.uuid4()))
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        stub = api(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.StartExternalMedia(
                em.StartExternalMediaRequest(call_id=call_id, encapsulation=TWILIO, url=url)
            )
        assert raised.value.code() == code
        metadata = str(raised.value.trailing_metadata())
        assert reason in metadata
        listed = (
            await stub.ListExternalMedia(em.ListExternalMediaRequest(call_id=call_id))
        ).external_media
        assert len(listed) == 1 and listed[0].id in metadata
        record = listed[0]
        assert record.status == em.EXTERNAL_MEDIA_STATUS_TERMINATED
        assert record.end_reason.startswith(reason + ": ")
    # Nothing left in Asterisk: the stream opened for it was closed.
    assert await harness.leftovers() == []
    return record


@contextlib.contextmanager
def bound_not_listening() -> AsyncIterator[int]:  # type: ignore[misc]
    """A loopback port held by a socket that never listens: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


async def test_dns_failure(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    before = outcomes("dns_failed")
    # .invalid never resolves (RFC 6761).
    record = await refused_start(
        harness,
        "ws://no-such-bot.invalid/media",
        grpc.StatusCode.UNAVAILABLE,
        "DIAL_OUT_DNS_FAILED",
    )
    assert "no-such-bot.invalid" in record.end_reason
    assert outcomes("dns_failed") == before + 1
    assert any(
        "DIAL_OUT_DNS_FAILED" in r.getMessage() and r.levelno == logging.WARNING
        for r in caplog.records
    )


async def test_refused(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    before = outcomes("refused")
    with bound_not_listening() as port:
        record = await refused_start(
            harness,
            f"ws://127.0.0.1:{port}/media",
            grpc.StatusCode.UNAVAILABLE,
            "DIAL_OUT_REFUSED",
        )
    assert record.end_reason == f"DIAL_OUT_REFUSED: 127.0.0.1:{port} refused the connection"
    assert outcomes("refused") == before + 1
    assert any("DIAL_OUT_REFUSED" in r.getMessage() for r in caplog.records)


@pytest.mark.settings(dial_out_connect_timeout_s=0.5)
async def test_connect_timeout(harness: Harness) -> None:
    # Accepts TCP (the backlog) and never answers the upgrade.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    before = outcomes("timeout")
    loop = asyncio.get_running_loop()
    try:
        began = loop.time()
        record = await refused_start(
            harness,
            f"ws://127.0.0.1:{silent.getsockname()[1]}/media",
            grpc.StatusCode.UNAVAILABLE,
            "DIAL_OUT_TIMEOUT",
        )
        assert 0.5 <= loop.time() - began < 0.5 + 1.0 + LOADED_SLACK
    finally:
        silent.close()
    assert "within 0.5 s" in record.end_reason
    assert outcomes("timeout") == before + 1


async def test_http_error_on_the_upgrade(harness: Harness) -> None:
    async def forbidden(request: web.Request) -> web.Response:
        return web.Response(status=403, text="go away")

    before = outcomes("http_error")
    async with http_server({"/media": forbidden}) as where:
        record = await refused_start(
            harness, f"ws://{where}/media", grpc.StatusCode.UNAVAILABLE, "DIAL_OUT_HTTP_ERROR"
        )
    assert record.end_reason.endswith("answered the WebSocket upgrade with HTTP 403")
    assert outcomes("http_error") == before + 1


async def test_tls_failure_then_a_private_ca(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    bot = Bot()
    async with http_server({"/media": bot.handle}, ssl_context=context) as where:
        # The gateway does not trust the bot's certificate: a TLS failure.
        async with running_gateway(request) as (gateway, endpoints):
            harness = Harness(gateway, endpoints.grpc, endpoints.ari_url)
            before = outcomes("tls_failed")
            record = await refused_start(
                harness, f"wss://{where}/media", grpc.StatusCode.UNAVAILABLE, "DIAL_OUT_TLS_FAILED"
            )
            assert "certificate" in record.end_reason
            assert outcomes("tls_failed") == before + 1
        # With the private CA set (dial_out_ca_file), the same bot is reached.
        async with running_gateway(request, dial_out_ca_file=str(cert)) as (gateway, endpoints):
            harness = Harness(gateway, endpoints.grpc, endpoints.ari_url)
            call_id = harness.emulator.add_call("tone", channel_id=str(uuid.uuid4()))
            channel, stub, media = await start_dial_out(
                harness, call_id=call_id, encapsulation=TWILIO, url=f"wss://{where}/media"
            )
            async with channel:
                conn = await bot.accepted()
                assert (await conn.next())["event"] == "connected"
                assert media.status == em.EXTERNAL_MEDIA_STATUS_RUNNING
                await stub.StopExternalMedia(em.StopExternalMediaRequest(id=media.id))


async def test_bot_drops_the_connection_mid_call(harness: Harness) -> None:
    call_id = harness.emulator.add_call("tone", channel_id=str(uuid.uuid4()))
    bot = Bot()
    before = outcomes("bot_lost")
    async with http_server({"/media": bot.handle}) as where:
        channel, stub, media = await start_dial_out(
            harness,
            call_id=call_id,
            encapsulation=TWILIO,
            url=f"ws://{where}/media",
            on_bot_close=em.EXTERNAL_MEDIA_ON_BOT_CLOSE_NOTHING,
        )
        async with channel:
            conn = await bot.accepted()
            await conn.next_event("media")
            # No close frame: the TCP connection just goes (a crashed bot).
            assert conn.request.transport is not None
            conn.request.transport.abort()
            record = await terminated(stub, media.id)
            assert record.end_reason == "bot connection lost without a close frame"
    assert outcomes("bot_lost") == before + 1
    # on_bot_close NOTHING: the call stays up.
    assert not harness.emulator.pbx.channels[call_id].hung_up
    assert await harness.leftovers() == []


async def test_bot_sends_garbage(harness: Harness) -> None:
    call_id = harness.emulator.add_call("tone", channel_id=str(uuid.uuid4()))
    bot = Bot()
    before = outcomes("bot_garbage")
    async with http_server({"/media": bot.handle}) as where:
        channel, stub, media = await start_dial_out(
            harness, call_id=call_id, encapsulation=TWILIO, url=f"ws://{where}/media"
        )
        async with channel:
            conn = await bot.accepted()
            await conn.next_event("start")
            await conn.ws.send_str("this is not JSON")
            stop = await conn.next_event("stop")
            assert set(stop["stop"]) == {"accountSid", "callSid"}
            while (message := await conn.next()) and isinstance(message, dict):
                pass
            assert message == ("close", 1008)
            record = await terminated(stub, media.id)
            assert record.end_reason.startswith("bot broke the protocol: MALFORMED_MESSAGE")
            # Two-way by default: the bot is gone, so is the call.
            assert record.end_reason.endswith("; call hung up")
    assert outcomes("bot_garbage") == before + 1


@pytest.mark.settings(keepalive_time_s=0.6)
async def test_bot_stops_reading(harness: Harness) -> None:
    call_id = harness.emulator.add_call("tone", channel_id=str(uuid.uuid4()))
    bot = Bot(read=False)
    before = outcomes("bot_not_reading")
    loop = asyncio.get_running_loop()
    async with http_server({"/media": bot.handle}) as where:
        channel, stub, media = await start_dial_out(
            harness, call_id=call_id, encapsulation=TWILIO, url=f"ws://{where}/media"
        )
        began = loop.time()
        async with channel:
            await bot.accepted()
            # The inbound endpoints' heartbeat: a ping after 0.6 s, dropped 0.3 s later.
            record = await terminated(stub, media.id, timeout=0.9 + 1.0 + LOADED_SLACK)
            assert loop.time() - began >= 0.9
            assert record.end_reason.startswith("bot stopped reading: no answer to a ping")
    assert outcomes("bot_not_reading") == before + 1


@pytest.mark.settings(dial_out_redials=1)
async def test_a_lost_bot_is_redialled_when_asked(harness: Harness) -> None:
    call_id = harness.emulator.add_call("tone", channel_id=str(uuid.uuid4()))
    bot = Bot()
    redialled = outcomes("redialled")
    async with http_server({"/media": bot.handle}) as where:
        channel, stub, media = await start_dial_out(
            harness,
            call_id=call_id,
            encapsulation=TWILIO,
            url=f"ws://{where}/media",
            custom_parameters={"attempt": "any"},
        )
        async with channel:
            first = await bot.accepted()
            start = await first.next_event("start")
            await first.next_event("media")
            assert first.request.transport is not None
            first.request.transport.abort()  # lost, no close frame
            # A new connection: a fresh connected and start, the same streamSid.
            second = await bot.accepted()
            assert (await second.next()) == {
                "event": "connected",
                "protocol": "Call",
                "version": "1.0.0",
            }
            again = await second.next()
            assert again["event"] == "start" and again["sequenceNumber"] == "1"
            assert again["streamSid"] == start["streamSid"] == media.stream_sid
            assert again["start"]["customParameters"] == {"attempt": "any"}
            await second.next_event("media")
            assert (await get(stub, media.id)).status == em.EXTERNAL_MEDIA_STATUS_RUNNING
            # The second loss uses up the one redial: the stream ends, the call stays up
            # only if on_bot_close says so (two-way default: hung up).
            assert second.request.transport is not None
            second.request.transport.abort()
            record = await terminated(stub, media.id)
            assert record.end_reason == "bot connection lost without a close frame; call hung up"
    assert outcomes("redialled") == redialled + 1
    assert await harness.leftovers() == []
