"""WebSocket upgrade requests with bad headers, sent as raw bytes on a TCP connection.

tests/shim/test_errors.py covers bad query parameters, credentials and a plain GET. Here the
HTTP request itself is wrong. Every one is refused before the upgrade, with a 4xx status and
no stream opened (nothing created in Asterisk), and a live WebSocket stream is unharmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest

from mediastream.emulator import ECHO_CALL_ID, TONE_CALL_ID
from tests.harness import Harness

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
PATH = f"/v1.0/calls/{TONE_CALL_ID}/media_stream?encapsulation=sln"


def request(
    *,
    method: str = "GET",
    path: str = PATH,
    headers: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
) -> bytes:
    base = {
        "Host": "gateway",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": KEY,
    }
    base.update(headers or {})
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in base.items() if k not in drop]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


CASES: dict[str, tuple[bytes, set[int], str | None]] = {
    # name: (request bytes, acceptable statuses, JSON reason when the gateway answers itself)
    "unsupported version": (
        request(headers={"Sec-WebSocket-Version": "99"}),
        {400},
        "WEBSOCKET_REQUIRED",
    ),
    "no version": (request(drop=("Sec-WebSocket-Version",)), {400}, "WEBSOCKET_REQUIRED"),
    "no key": (request(drop=("Sec-WebSocket-Key",)), {400}, "WEBSOCKET_REQUIRED"),
    "key not 16 bytes": (
        request(headers={"Sec-WebSocket-Key": "c2hvcnQ="}),
        {400},
        "WEBSOCKET_REQUIRED",
    ),
    "key not base64": (request(headers={"Sec-WebSocket-Key": "!!!!"}), {400}, "WEBSOCKET_REQUIRED"),
    "upgrade to h2c": (request(headers={"Upgrade": "h2c"}), {400}, "WEBSOCKET_REQUIRED"),
    "no connection upgrade": (
        request(headers={"Connection": "keep-alive"}),
        {400},
        "WEBSOCKET_REQUIRED",
    ),
    "POST": (request(method="POST"), {405}, None),
    "header over 8 KiB": (request(headers={"X-Big": "a" * 9000}), {400, 431}, None),
    "control character in a header": (request(headers={"X-Bad": "a\x00b"}), {400}, None),
    "header without a colon": (
        request().replace(b"\r\n\r\n", b"\r\nno-colon-here\r\n\r\n"),
        {400},
        None,
    ),
    "garbage request line": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", {400}, None),
    "bad percent-encoding in the path": (
        request(path="/v1.0/calls/%ZZ/media_stream?encapsulation=sln"),
        {400, 404},
        None,
    ),
    "extension with bad parameters": (
        request(
            headers={"Sec-WebSocket-Extensions": "permessage-deflate; server_max_window_bits=99"}
        ),
        {101},
        None,
    ),
}


async def send_raw(address: str, data: bytes) -> tuple[int, bytes]:
    """Send `data`, return the status code and the body (up to 64 KiB) of the answer."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            body = b""
            if status != 101:
                with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                    length = next(
                        (
                            int(line.split(b":", 1)[1])
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length:")
                        ),
                        0,
                    )
                    body = await reader.readexactly(length)
        return status, body
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_bad_upgrade_request_is_refused_before_any_stream(
    harness: Harness, case: str
) -> None:
    data, statuses, reason = CASES[case]
    assert harness.gateway.endpoints is not None
    address = harness.gateway.endpoints.websocket
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"http://{address}{PATH}") as bystander,
    ):
        before = await bystander.receive_bytes(timeout=2)
        assert before
        streams = len(harness.gateway.streams.streams)
        status, body = await send_raw(address, data)
        assert status in statuses, (status, body[:200])
        if reason is not None:
            assert json.loads(body)["error"]["reason"] == reason
        if status != 101:
            await asyncio.sleep(0.1)
            assert len(harness.gateway.streams.streams) == streams  # nothing was opened
        # The bystander's audio keeps coming, 20 ms apart.
        for _ in range(10):
            frame = await bystander.receive(timeout=2)
            assert frame.type is aiohttp.WSMsgType.BINARY and len(frame.data) == 160


async def closed(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
    while True:
        msg = await ws.receive(timeout=3)
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return int(msg.data), str(msg.extra)
        assert msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), msg


@pytest.mark.parametrize(
    ("endpoint", "query", "message", "reason"),
    [
        # Nesting past the recursion limit once escaped json.loads as RecursionError: 1011.
        ("twilio", "", "[" * 20_000, "MALFORMED_MESSAGE"),
        ("media_stream", "encapsulation=sln&events=json", "[" * 16_000, "MALFORMED_MESSAGE"),
        # A non-ASCII character in base64 once escaped as ValueError: 1011.
        ("twilio", "", '{"event":"media","media":{"payload":"\u00e9"}}', "MALFORMED_MEDIA"),
    ],
)
async def test_json_the_decoder_chokes_on_is_a_broken_contract(
    harness: Harness, endpoint: str, query: str, message: str, reason: str
) -> None:
    assert harness.gateway.endpoints is not None
    address = harness.gateway.endpoints.websocket
    url = f"http://{address}/v1.0/calls/{ECHO_CALL_ID}/{endpoint}?{query}"
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, max_msg_size=0) as ws,
        http.ws_connect(f"http://{address}{PATH}") as bystander,
    ):
        await bystander.receive_bytes(timeout=2)
        await ws.send_str(message)
        code, text = await closed(ws)
        assert (code, text.split(":")[0]) == (1008, reason)
        for _ in range(10):
            frame = await bystander.receive(timeout=2)
            assert frame.type is aiohttp.WSMsgType.BINARY
