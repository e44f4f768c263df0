"""Refusals: HTTP status and JSON body before the upgrade, close code and reason after."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp
import jwt
import pytest

from mediastream.app import Gateway
from mediastream.emulator import CONFERENCE_ID, ECHO_CALL_ID, TONE_CALL_ID
from mediastream.shim.voipbin import VoipbinDialect
from tests.harness import free_port_settings
from tests.shim.conftest import Shim

SECRET = "shim-test-secret-long-enough-for-hs256"


def token(**claims: object) -> str:
    return jwt.encode({"exp": int(time.time()) + 60, **claims}, SECRET, algorithm="HS256")


async def refused(shim: Shim, url: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    """Try to upgrade; return the HTTP status and the JSON error body."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        async with shim.ws(url, **kw):
            pass
    status = err.value.status
    # The handshake error does not keep the body: ask again as a plain GET with
    # the upgrade headers, which gets the same refusal.
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        **kw.get("headers", {}),
    }
    async with shim.http.get(url, headers=headers) as response:
        assert response.status == status
        assert response.content_type == "application/json"
        body: dict[str, Any] = await response.json()
    error = body["error"]
    assert set(error) == {"status", "reason", "message", "request_id"}
    assert error["status"] == status and error["message"]
    uuid.UUID(error["request_id"])
    return status, error


async def closed(ws: Any) -> tuple[int, str]:
    """Read until the server closes; return the close code and reason."""
    while True:
        msg = await ws.receive(timeout=3)
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return int(msg.data), str(msg.extra)
        assert msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), msg


# --- before the upgrade ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query", "reason"),
    [
        ("calls/bad%20id", {"encapsulation": "rtp"}, "INVALID_ID"),
        ("calls/" + "x" * 129, {"encapsulation": "rtp"}, "INVALID_ID"),
        ("conferences/.hidden", {"encapsulation": "rtp"}, "INVALID_ID"),
        (f"calls/{TONE_CALL_ID}", {}, "MISSING_ENCAPSULATION"),
        (f"calls/{TONE_CALL_ID}", {"encapsulation": "mediasocket"}, "INVALID_ENCAPSULATION"),
        (f"calls/{TONE_CALL_ID}", {"encapsulation": "sln", "format": "alaw"}, "INVALID_FORMAT"),
        (f"calls/{TONE_CALL_ID}", {"encapsulation": "sln", "events": "xml"}, "INVALID_EVENTS"),
    ],
)
async def test_bad_request_is_400_with_the_reason(
    shim: Shim, path: str, query: dict[str, str], reason: str
) -> None:
    kind, target = path.split("/")
    status, error = await refused(shim, shim.url(target, kind=kind, **query))
    assert (status, error["reason"]) == (400, reason)


@pytest.mark.parametrize(
    "unknown", [str(uuid.uuid4()), "1795515126.1745"], ids=["uuid", "asterisk-style"]
)
async def test_unknown_call_and_conference_are_404(shim: Shim, unknown: str) -> None:
    status, error = await refused(shim, shim.url(unknown, encapsulation="sln"))
    assert (status, error["reason"]) == (404, "CALL_NOT_FOUND")
    assert unknown in error["message"]
    url = shim.url(unknown, kind="conferences", encapsulation="sln")
    status, error = await refused(shim, url)
    assert (status, error["reason"]) == (404, "CONFERENCE_NOT_FOUND")
    status, error = await refused(shim, shim.url(unknown, "twilio"))
    assert (status, error["reason"]) == (404, "CALL_NOT_FOUND")


async def test_a_plain_get_is_refused_without_touching_asterisk(shim: Shim) -> None:
    async with shim.http.get(shim.url(TONE_CALL_ID, encapsulation="sln")) as response:
        assert response.status == 400
        assert (await response.json())["error"]["reason"] == "WEBSOCKET_REQUIRED"
    assert shim.gateway_objects() == []


async def test_a_plain_get_after_a_refused_upgrade_says_why(shim: Shim) -> None:
    # What the page does: a browser cannot read a refused upgrade's body.
    unknown = str(uuid.uuid4())
    url = shim.url(unknown, encapsulation="sln")
    with pytest.raises(aiohttp.WSServerHandshakeError):
        async with shim.ws(url):
            pass
    async with shim.http.get(url) as response:
        assert response.status == 404
        assert (await response.json())["error"]["reason"] == "CALL_NOT_FOUND"
    # Asked once: the next plain GET is a plain GET again.
    async with shim.http.get(url) as response:
        assert (await response.json())["error"]["reason"] == "WEBSOCKET_REQUIRED"
    assert shim.gateway_objects() == []


@pytest.mark.settings(max_streams_per_target=1)
async def test_too_many_streams_on_a_call_is_429(shim: Shim) -> None:
    async with shim.ws(shim.url(TONE_CALL_ID, encapsulation="sln")):
        status, error = await refused(shim, shim.url(TONE_CALL_ID, encapsulation="sln"))
    assert (status, error["reason"]) == (429, "TOO_MANY_STREAMS_FOR_TARGET")


@pytest.mark.settings(api_keys="key-1", jwt_key=SECRET)
async def test_credentials_missing_or_wrong_are_401(shim: Shim) -> None:
    url = shim.url(TONE_CALL_ID, encapsulation="sln")
    status, error = await refused(shim, url)
    assert (status, error["reason"]) == (401, "TOKEN_MISSING")
    status, error = await refused(shim, shim.url(TONE_CALL_ID, encapsulation="sln", token="nope"))
    assert (status, error["reason"]) == (401, "TOKEN_INVALID")
    # Credentials come before the ID: VoIPBIN's middleware checks them first.
    status, error = await refused(shim, shim.url("bad-id", encapsulation="sln"))
    assert (status, error["reason"]) == (401, "TOKEN_MISSING")
    async with shim.http.get(url) as response:
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.settings(api_keys="key-1", jwt_key=SECRET)
@pytest.mark.parametrize(
    "where", ["token-cookie", "token-query", "bearer", "accesskey-cookie", "accesskey-query"]
)
async def test_credentials_are_taken_where_voipbin_takes_them(shim: Shim, where: str) -> None:
    credential = token(sub="agent") if where.startswith("token") or where == "bearer" else "key-1"
    query = {"encapsulation": "sln"}
    kw: dict[str, Any] = {}
    if where.endswith("query"):
        query[where.split("-")[0]] = credential
    elif where.endswith("cookie"):
        kw["headers"] = {"Cookie": f"{where.split('-')[0]}={credential}"}
    else:
        kw["headers"] = {"Authorization": f"Bearer {credential}"}
    async with shim.ws(shim.url(TONE_CALL_ID, **query), **kw) as ws:
        assert (await ws.receive(timeout=2)).type is aiohttp.WSMsgType.BINARY


@pytest.mark.settings(api_keys="key-1")
async def test_cookie_credentials_from_another_site_are_403(shim: Shim) -> None:
    url = shim.url(TONE_CALL_ID, encapsulation="sln")
    cookie = {"Cookie": "accesskey=key-1"}
    status, error = await refused(shim, url, headers={**cookie, "Origin": "https://evil.example"})
    assert (status, error["reason"]) == (403, "CROSS_ORIGIN")
    # The same cookie from the shim's own page, or a query token from anywhere, is fine.
    own = shim.base.replace("ws://", "http://")
    for headers, query in (
        ({**cookie, "Origin": own}, {}),
        ({"Origin": "https://evil.example"}, {"accesskey": "key-1"}),
    ):
        async with shim.ws(
            shim.url(TONE_CALL_ID, encapsulation="sln", **query), headers=headers
        ) as ws:
            assert (await ws.receive(timeout=2)).type is aiohttp.WSMsgType.BINARY


@pytest.mark.settings(jwt_key=SECRET)
async def test_token_scoped_to_another_call_is_403(shim: Shim) -> None:
    scoped = token(call_id=ECHO_CALL_ID)
    status, error = await refused(shim, shim.url(TONE_CALL_ID, encapsulation="sln", token=scoped))
    assert (status, error["reason"]) == (403, "TOKEN_SCOPE")
    url = shim.url(CONFERENCE_ID, "twilio", kind="conferences", token=scoped)
    status, error = await refused(shim, url)
    assert (status, error["reason"]) == (403, "TOKEN_SCOPE")
    async with shim.ws(shim.url(ECHO_CALL_ID, encapsulation="sln", token=scoped)):
        pass


# --- after the upgrade -----------------------------------------------------------------


@pytest.mark.settings(play_buffer_s=1)
async def test_message_over_the_cap_is_1009_with_a_reason(shim: Shim) -> None:
    # 1 s of slin (16 000 bytes) plus 64 KiB for headers and control messages.
    async with shim.ws(shim.url(ECHO_CALL_ID, encapsulation="sln")) as ws:
        await ws.send_bytes(b"\x00" * 90_000)
        code, reason = await closed(ws)
    assert code == 1009 and "81536 bytes" in reason and "split the audio" in reason


@pytest.mark.settings(play_buffer_s=1)
async def test_chunk_over_the_play_buffer_is_1009_and_names_the_fix(shim: Shim) -> None:
    async with shim.ws(shim.url(ECHO_CALL_ID, encapsulation="sln")) as ws:
        await ws.send_bytes(b"\x00" * 16_002)  # 1 s of slin is 16 000 bytes
        code, reason = await closed(ws)
    assert code == 1009 and reason.startswith("CHUNK_TOO_LARGE: ")
    assert "split the audio into messages of at most 16000 bytes" in reason


@pytest.mark.parametrize(
    ("encapsulation", "data", "reason"),
    [
        ("rtp", b"\x80\x60\x00", "MALFORMED_CHUNK"),
        # audiosocket up must be whole AudioSocket messages, not bare samples.
        ("audiosocket", b"\x00\x01" * 160, "MALFORMED_CHUNK"),
        ("sln", b"\x00" * 321, "PARTIAL_SAMPLE"),
    ],
)
async def test_malformed_audio_is_1008(
    shim: Shim, encapsulation: str, data: bytes, reason: str
) -> None:
    async with shim.ws(shim.url(ECHO_CALL_ID, encapsulation=encapsulation)) as ws:
        await ws.send_bytes(data)
        code, text = await closed(ws)
    assert code == 1008 and text.startswith(f"{reason}: ")


async def test_text_without_the_control_channel_is_1003(shim: Shim) -> None:
    async with shim.ws(shim.url(ECHO_CALL_ID, encapsulation="sln")) as ws:
        await ws.send_str('{"type":"clear"}')
        code, reason = await closed(ws)
    assert code == 1003 and reason.startswith("UNSUPPORTED_DATA: ")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("not json", "MALFORMED_MESSAGE"),
        ('["clear"]', "MALFORMED_MESSAGE"),
        ('{"type":"pause"}', "UNKNOWN_MESSAGE"),
        ('{"type":"mark"}', "INVALID_MARK"),
        ('{"type":"dtmf","digits":"x"}', "INVALID_DTMF"),
    ],
)
async def test_bad_control_message_is_1008_with_an_error_event(
    shim: Shim, message: str, reason: str
) -> None:
    async with shim.ws(shim.url(ECHO_CALL_ID, encapsulation="sln", events="json")) as ws:
        await ws.send_str(message)
        events = []
        while (msg := await ws.receive(timeout=3)).type is not aiohttp.WSMsgType.CLOSE:
            if msg.type is aiohttp.WSMsgType.TEXT:
                events.append(json.loads(msg.data))
        assert int(msg.data) == 1008 and str(msg.extra).startswith(f"{reason}: ")
    assert events[-1]["type"] == "error" and events[-1]["reason"] == reason
    assert events[-1]["close_code"] == 1008


async def test_the_call_ending_closes_with_1000(shim: Shim) -> None:
    call_id = shim.add_call("tone")
    async with shim.ws(shim.url(call_id, encapsulation="rtp")) as ws:
        await ws.receive(timeout=2)
        shim.emulator.hangup(call_id)
        code, reason = await closed(ws)
    assert code == 1000 and reason.startswith("call_hangup")


async def test_shutdown_closes_with_1001() -> None:
    gateway = Gateway(free_port_settings(metrics_listen="", drain_timeout_s=0.1))
    endpoints = await gateway.start()
    url = f"http://{endpoints.websocket}/v1.0/calls/{TONE_CALL_ID}/media_stream?encapsulation=sln"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.receive(timeout=2)
        await gateway.stop(grace=0.5)
        code, reason = await closed(ws)
    assert code == 1001 and reason.startswith("server_shutdown")


async def test_a_bug_in_the_session_is_1011(shim: Shim, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: VoipbinDialect, item: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(VoipbinDialect, "send", broken)
    async with shim.ws(shim.url(TONE_CALL_ID, encapsulation="sln")) as ws:
        code, reason = await closed(ws)
    assert code == 1011 and reason.startswith("INTERNAL")


@pytest.mark.settings(keepalive_time_s=0.3)
async def test_keepalive_ping_and_pong(shim: Shim) -> None:
    url = shim.url(TONE_CALL_ID, encapsulation="sln")
    async with shim.ws(url, autoping=False) as ws:
        await ws.ping(b"are-you-there")
        seen = set()
        async with asyncio.timeout(3):
            while seen != {aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG}:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.PONG:
                    assert msg.data == b"are-you-there"
                    seen.add(msg.type)
                elif msg.type is aiohttp.WSMsgType.PING:
                    # The server's heartbeat: a client that answers stays connected.
                    await ws.pong(msg.data)
                    seen.add(msg.type)
        assert not ws.closed


@pytest.mark.settings(keepalive_time_s=0.3)
async def test_a_client_that_does_not_answer_pings_is_dropped_and_its_stream_released(
    shim: Shim,
) -> None:
    async with shim.ws(shim.url(TONE_CALL_ID, encapsulation="sln"), autoping=False) as ws:
        async with asyncio.timeout(3):
            while (msg := await ws.receive()).type in (
                aiohttp.WSMsgType.BINARY,
                aiohttp.WSMsgType.PING,
            ):
                pass
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE)
    assert await shim.leftovers() == []


def test_the_one_mapping() -> None:
    from mediastream import errors
    from mediastream.core.stream import StopReason
    from mediastream.shim.errors import close_for_error, close_for_stop, close_reason, http_status
    from mediastream.streams import StreamStopped

    assert [
        http_status(e)
        for e in (
            errors.InvalidArgument("f", "m"),
            errors.FailedPrecondition("m"),
            errors.Unauthenticated("m"),
            errors.PermissionDenied("m"),
            errors.NotFound("m"),
            errors.ResourceExhausted("m"),
            errors.InternalError("m"),
            errors.Unavailable("m"),
        )
    ] == [400, 400, 401, 403, 404, 429, 500, 503]
    assert close_for_error(errors.Unavailable("gone"))[0] == 1011
    assert close_for_error(errors.InvalidArgument("f", "m", reason="CHUNK_TOO_LARGE"))[0] == 1009
    assert close_for_error(errors.FailedPrecondition("m", reason="INPUT_ENDED")) == (
        1008,
        "INPUT_ENDED: m",
    )
    stops = {r: close_for_stop(StreamStopped(r, ""))[0] for r in StopReason}
    assert stops == {
        StopReason.CLIENT_DONE: 1000,
        StopReason.CALL_HANGUP: 1000,
        StopReason.CONFERENCE_ENDED: 1000,
        StopReason.CLIENT_HANGUP: 1000,
        StopReason.SERVER_SHUTDOWN: 1001,
        StopReason.ASTERISK_FAILURE: 1011,
    }
    long = close_reason("é" * 100)
    assert len(long) <= 123 and long.endswith(b"...")
    long.decode()  # cut on a character boundary
