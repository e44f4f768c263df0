"""The JSON endpoints, the page, the setting and the ready line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import jwt
import pytest

from mediastream import config
from mediastream.emulator import CONFERENCE_ID, ECHO_CALL_ID, TONE_CALL_ID
from tests.shim.conftest import Shim


async def test_streams_lists_every_active_stream(shim: Shim) -> None:
    url = shim.url(TONE_CALL_ID, encapsulation="rtp")
    async with shim.ws(url) as ws:
        await ws.receive(timeout=2)
        async with shim.http.get(f"{shim.base}/v1.0/streams") as response:
            assert response.status == 200
            body = await response.json()
    [stream] = body["streams"]
    assert stream.pop("stream_id") in shim.gateway.streams.streams
    assert stream == {
        "kind": "call",
        "id": TONE_CALL_ID,
        "format": "ulaw",
        "uplink_format": "slin",
        "encapsulation": "rtp",
        "transport": "rtp",
        "bidirectional": True,
        "attached": True,
    }
    await shim.leftovers()
    async with shim.http.get(f"{shim.base}/v1.0/streams") as response:
        assert (await response.json()) == {"streams": []}


SECRET = "shim-test-secret-long-enough-for-hs256"


@pytest.mark.settings(jwt_key=SECRET)
async def test_streams_needs_credentials_and_honours_scope(shim: Shim) -> None:
    async with shim.http.get(f"{shim.base}/v1.0/streams") as response:
        assert response.status == 401
        assert (await response.json())["error"]["reason"] == "TOKEN_MISSING"
    full = jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    scoped = jwt.encode(
        {"exp": int(time.time()) + 60, "call_id": ECHO_CALL_ID}, SECRET, algorithm="HS256"
    )
    async with shim.ws(shim.url(TONE_CALL_ID, encapsulation="sln", token=full)) as ws:
        await ws.receive(timeout=2)
        headers = {"Authorization": f"Bearer {scoped}"}
        async with shim.http.get(f"{shim.base}/v1.0/streams", headers=headers) as response:
            assert (await response.json()) == {"streams": []}
        async with shim.http.get(f"{shim.base}/v1.0/streams?token={full}") as response:
            assert len((await response.json())["streams"]) == 1


async def test_demo_lists_the_emulators_calls(shim: Shim) -> None:
    async with shim.http.get(f"{shim.base}/v1.0/demo") as response:
        demo = await response.json()
    assert demo["embedded"] is True
    assert {c["name"]: c["id"] for c in demo["calls"]}["tone_call"] == TONE_CALL_ID
    assert [c["id"] for c in demo["conferences"]] == [CONFERENCE_ID]


async def test_the_page_is_served_and_root_redirects_to_it(shim: Shim) -> None:
    async with shim.http.get(f"{shim.base}/?token=abc", allow_redirects=False) as response:
        # The credential is not echoed into the page's address (it becomes a cookie).
        assert response.status == 303
        assert response.headers["Location"] == "/ui/"
    async with shim.http.get(f"{shim.base}/ui/") as response:
        assert response.status == 200 and response.content_type == "text/html"
        page = await response.text()
    assert "/media_stream?encapsulation=sln&events=json" in page
    assert "window.mediastream" in page


def test_ws_listen_is_validated() -> None:
    assert config.parse([]).ws_listen == "127.0.0.1:8080"
    assert config.parse(["--ws-listen", "0.0.0.0:0"]).ws_listen == "0.0.0.0:0"
    assert config.parse([], {"MEDIASTREAM_WS_LISTEN": "127.0.0.1:9"}).ws_listen == "127.0.0.1:9"
    with pytest.raises(config.ConfigError, match="ws_listen must be host:port"):
        config.parse(["--ws-listen", "8080"])


def test_ready_line_names_the_websocket_address() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mediastream.cli",
            "serve",
            "--grpc-listen",
            "127.0.0.1:0",
            "--ws-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "",
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        host, _, port = ready["websocket"].rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0
        with urllib.request.urlopen(f"http://{ready['websocket']}/v1.0/demo", timeout=5) as r:
            assert json.load(r)["embedded"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
