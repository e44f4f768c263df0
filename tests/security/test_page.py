"""The web page (finding 11): the credential leaves the URL, and the page's headers
forbid framing, foreign scripts and Referer; refusals are logged with the peer (12)."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from mediastream.emulator import TONE_CALL_ID
from tests.harness import Harness
from tests.security.conftest import KEY, PROBE_SETTINGS, UPGRADE


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_a_credential_in_the_page_address_becomes_a_cookie(harness: Harness) -> None:
    assert harness.gateway.endpoints is not None
    base = f"http://{harness.gateway.endpoints.websocket}"
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/ui/"):
            async with http.get(f"{base}{path}?token={KEY}&x=1", allow_redirects=False) as r:
                assert r.status == 303, path
                assert KEY not in r.headers["Location"]
                assert r.headers["Location"].startswith("/ui/")
                cookie = r.cookies["token"]
                assert cookie.value == KEY
                assert cookie["httponly"] and cookie["samesite"] == "Strict"
        async with http.get(f"{base}/?token=wrong", allow_redirects=False) as r:
            assert r.status == 401
            assert "wrong" not in r.headers.get("Location", "")
        # The cookie (same origin) opens the page, which carries its headers.
        async with http.get(f"{base}/ui/", headers={"Cookie": f"token={KEY}"}) as r:
            assert r.status == 200
            csp = r.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in csp
            assert "'unsafe-inline'" not in csp and "script-src 'self' 'sha256-" in csp
            assert r.headers["X-Frame-Options"] == "DENY"
            assert r.headers["Referrer-Policy"] == "no-referrer"
        async with http.get(f"{base}/v1.0/streams") as r:
            assert r.status == 401
            assert r.headers["X-Frame-Options"] == "DENY"


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_refusals_are_logged_with_the_peer_never_the_secret(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    assert harness.gateway.endpoints is not None
    base = f"http://{harness.gateway.endpoints.websocket}"
    with caplog.at_level(logging.WARNING):
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{base}/v1.0/streams?token=guessed-secret-1") as r,
        ):
            assert r.status == 401
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    refused = [line for line in lines if "TOKEN_INVALID" in line]
    assert refused and "127.0.0.1" in refused[0], lines
    assert all("guessed-secret-1" not in line for line in caplog.messages)


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_a_cross_site_websocket_with_a_cookie_is_refused(harness: Harness) -> None:
    """Held up in the probe: another site's page cannot use the user's cookie."""
    assert harness.gateway.endpoints is not None
    base = f"http://{harness.gateway.endpoints.websocket}"
    path = f"/v1.0/calls/{TONE_CALL_ID}/media_stream?encapsulation=sln"
    async with aiohttp.ClientSession() as http:
        for cookie in (f"token={KEY}", f"accesskey={KEY}"):
            headers = {**UPGRADE, "Cookie": cookie, "Origin": "https://evil.example"}
            async with http.get(base + path, headers=headers) as r:
                assert r.status == 403
                assert (await r.json())["error"]["reason"] == "CROSS_ORIGIN"
        # From the server's own page the same cookie opens the stream.
        async with http.ws_connect(
            base.replace("http", "ws") + path,
            headers={"Cookie": f"token={KEY}", "Origin": base},
        ) as ws:
            assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.BINARY
