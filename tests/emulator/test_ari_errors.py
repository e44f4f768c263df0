"""Every recorded ARI mistake (ari_errors.json) gets Asterisk's exact answer."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from mediastream.emulator import Emulator
from tests.asterisk_fixtures import case
from tests.emulator.conftest import APP, Ari, AudioSocketPeer, free_tcp_port

CASES: list[dict[str, Any]] = case("ari_errors.json")
REST = [c for c in CASES if "status_line" not in c]
HANDSHAKES = [c for c in CASES if "status_line" in c]

# Recorded ids, and what they stood for in the recording.
CALLER, LOCAL_2, WS_CHANNEL = "1795515178.1819", "1795515178.1820", "1795515178.1821"
BRIDGE = "700cdec9-e61a-44d5-9bb8-46a0467496ce"


async def _scene(ari: Ari) -> dict[str, str]:
    """A Stasis call (and its ;2 half), an unconnected websocket channel and a bridge."""
    call = await ari.originate("tone")
    two = next(
        c for c in await ari.ok("GET", "/channels") if c["name"] == call["name"].replace(";1", ";2")
    )
    ws = await ari.ok(
        "POST",
        "/channels/externalMedia",
        app=APP,
        external_host="INCOMING",
        encapsulation="none",
        transport="websocket",
        connection_type="server",
        format="slin16",
    )
    bridge = await ari.ok("POST", "/bridges", type="mixing")
    return {CALLER: call["id"], LOCAL_2: two["id"], WS_CHANNEL: ws["id"], BRIDGE: bridge["id"]}


def _substitute(text: str, ids: dict[str, str]) -> str:
    for recorded, live in ids.items():
        text = text.replace(recorded, live)
    return text


@pytest.mark.parametrize("recorded", REST, ids=[c["name"] for c in REST])
async def test_rest_error_matches_recording(
    emulator: Emulator, ari: Ari, recorded: dict[str, Any]
) -> None:
    ids = await _scene(ari)
    method, path = recorded["request"].split(" ", 1)
    path = _substitute(path.removeprefix("/ari"), ids)
    params = {k: _substitute(v, ids) for k, v in recorded["params"].items()}
    listener: AudioSocketPeer | None = None
    if "listener_tcp_connections_so_far" in recorded:
        listener = await AudioSocketPeer.open()
        params["external_host"] = listener.address
    if recorded["name"] == "audiosocket to a port nobody listens on":
        params["external_host"] = f"127.0.0.1:{free_tcp_port()}"

    headers = {}
    auth = recorded["auth"]
    if auth.startswith("Basic "):
        headers["Authorization"] = "Basic " + base64.b64encode(auth[6:].encode()).decode()
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, emulator.ari_url + path, params=params, headers=headers) as r,
    ):
        body = await r.text()
        status, reason, got_headers = r.status, r.reason, r.headers

    assert status == recorded["status"]
    assert reason == recorded["reason"]
    for name in ("Cache-Control", "Content-Type", "WWW-Authenticate", "Allow"):
        assert got_headers.get(name) == recorded["headers"].get(name), name
    if recorded["name"] == "play unknown media scheme":
        # The playback id is new on every run; everything else is as recorded.
        playback = recorded["body"]
        live = _substitute(playback, ids)
        pattern = re.escape(live).replace(
            re.escape("180ba987-057b-4a97-9cf4-d4e3ebae0ecd"), "[0-9a-f-]{36}"
        )
        assert re.fullmatch(pattern, body)
        assert got_headers["Location"].startswith("/ari/playbacks/")
        started = await ari.wait_event(lambda e: e["type"] == "PlaybackStarted")
        expected = recorded["then_events"][0]
        assert list(started) == list(expected)
        assert started["playback"]["state"] == "playing"
        assert started["playback"]["target_uri"] == f"channel:{ids[CALLER]}"
    elif recorded["name"] == "api_key query parameter instead of Basic auth":
        assert list(json.loads(body)) == ["ping", "timestamp", "asterisk_id"]
        assert re.fullmatch(
            r'\{"ping":"pong","timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000",'
            r'"asterisk_id":"[0-9a-f:]{17}"\}',
            body,
        )
    else:
        assert body == recorded["body"]
        assert got_headers.get("Content-Length") == recorded["headers"]["Content-Length"]
    if listener is not None:
        await asyncio.sleep(0.05)
        assert not listener.connected.is_set(), "Asterisk never connects for a bad request"
        await listener.close()


async def _raw_upgrade(port: int, target: str) -> tuple[str, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip()] = v.strip()
    rest = b""
    if not lines[0].startswith("HTTP/1.1 101"):
        try:
            while True:
                chunk = await asyncio.wait_for(reader.read(4096), 0.3)
                if not chunk:
                    break
                rest += chunk
        except TimeoutError:
            pass
    writer.close()
    return lines[0], headers, rest


@pytest.mark.parametrize("recorded", HANDSHAKES, ids=[c["name"] for c in HANDSHAKES])
async def test_websocket_handshake_matches_recording(
    emulator: Emulator, recorded: dict[str, Any]
) -> None:
    target = recorded["request"].split(" ")[1]
    status_line, headers, rest = await _raw_upgrade(emulator.port, target)
    assert status_line == recorded["status_line"]
    for name, value in recorded["headers"].items():
        if name == "Sec-WebSocket-Accept":
            assert headers[name] == value  # the key is fixed, so the accept value is too
        elif name not in ("Connection",):
            assert headers.get(name) == value, name
    body = recorded["body"].encode()
    assert rest.startswith(body)
    after = recorded.get("bytes_after_body")
    if after is not None:
        tail = rest[len(body) :].decode()
        assert tail.startswith("HTTP/1.1 400 Bad Request\r\n")
        assert "Sec-WebSocket-Version: 7, 8, 13\r\n" in tail
        assert tail.endswith("Content-Length: 0\r\n\r\n")


async def test_events_for_an_unused_app_are_accepted_and_silent(emulator: Emulator) -> None:
    query = urlencode({"app": "fixture_probe_app", "api_key": "asterisk:asterisk"})
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://127.0.0.1:{emulator.port}/ari/events?{query}") as ws,
    ):
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.3)
        assert emulator.pbx.bus.registered("fixture_probe_app")
    await asyncio.sleep(0.05)
    assert not emulator.pbx.bus.registered("fixture_probe_app")


async def test_wrong_method_lists_allowed_methods_of_the_resource(ari: Ari) -> None:
    r = await ari.request("PUT", "/bridges/abc")
    assert (r.status, r.json) == (405, {"message": "Invalid method"})
    assert r.headers["Allow"] == "OPTIONS,GET,POST,DELETE"
    r = await ari.request("GET", "/channels/externalMedia")
    assert (r.status, r.headers["Allow"]) == (405, "OPTIONS,POST")
