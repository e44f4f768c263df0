"""Barge-in after a burst on the WebSocket dialects (VoIPBIN ``events=json`` and Twilio).

A bot sends 30-60 s of synthesized speech at once, then the caller interrupts. The
gateway keeps reading whatever is queued (up to its play buffer), so the clear behind
the burst takes effect as soon as it arrives; before this, the gateway stopped reading
at 9.8 s of queued audio and nothing came back within 30 s.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import aiohttp
import pytest

from mediastream import metrics
from mediastream.emulator import ECHO_CALL_ID
from tests.audio_checks import sine
from tests.integration.test_burst import ACK_WITHIN_S, CUT_BEFORE_MS
from tests.shim.conftest import Shim
from tests.shim.test_twilio import TwilioClient

SLIN_FRAME = 320  # 20 ms of slin
ULAW_FRAME = 160  # 20 ms of mu-law


async def control(ws: Any, kind: str, timeout: float) -> tuple[dict[str, Any], float]:
    """The next ``events=json`` control message of `kind` (audio skipped), and when it came."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            assert msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), msg
            if msg.type is aiohttp.WSMsgType.TEXT:
                message: dict[str, Any] = json.loads(msg.data)
                if message["type"] == kind:
                    return message, time.monotonic()


@pytest.mark.parametrize("messages", [3000, 1], ids=["3000-messages", "one-message"])
async def test_voipbin_clear_after_a_60_s_burst_is_acknowledged_at_once(
    shim: Shim, messages: int
) -> None:
    burst = bytes(SLIN_FRAME * 3000)  # 60 s of slin
    size = len(burst) // messages
    url = shim.url(ECHO_CALL_ID, encapsulation="sln", events="json")
    async with shim.ws(url) as ws:
        await control(ws, "started", 5)
        for start in range(0, len(burst), size):
            await ws.send_bytes(burst[start : start + size])
        await ws.send_str(json.dumps({"type": "mark", "name": "end-of-speech"}))
        await ws.send_str(json.dumps({"type": "clear"}))
        sent = time.monotonic()
        cleared, acked = await control(ws, "cleared", 10)
    assert cleared["dropped_marks"] == ["end-of-speech"]
    assert acked - sent < ACK_WITHIN_S
    assert 0 <= cleared["position_ms"] < CUT_BEFORE_MS


async def test_voipbin_one_message_of_1_s_plays_and_its_mark_comes_at_1000_ms(
    shim: Shim,
) -> None:
    url = shim.url(ECHO_CALL_ID, encapsulation="sln", events="json")
    async with shim.ws(url) as ws:
        await control(ws, "started", 5)
        await ws.send_bytes(sine(440, 1.0, 8000))  # 16 000 bytes: VoIPBIN's IVR examples
        await ws.send_str(json.dumps({"type": "mark", "name": "one-second"}))
        mark, _ = await control(ws, "mark", 5)
    assert mark["name"] == "one-second" and mark["position_ms"] >= 980


async def test_twilio_clear_after_a_60_s_burst_is_acknowledged_at_once(shim: Shim) -> None:
    async with shim.ws(shim.url(ECHO_CALL_ID, "twilio")) as ws:
        client = TwilioClient(ws)
        await client.handshake()
        payload = base64.b64encode(b"\xff" * ULAW_FRAME).decode()
        for _ in range(3000):  # 60 s of mu-law, 20 ms a message, as Twilio sends it
            await client.send("media", media={"payload": payload})
        await client.send("mark", mark={"name": "end-of-speech"})
        await client.send("clear")
        sent = time.monotonic()
        # Twilio acknowledges a clear by sending back the marks it dropped.
        mark = await client.next("mark", timeout=10)
        acked = time.monotonic()
    assert mark["mark"] == {"name": "end-of-speech"}
    assert acked - sent < ACK_WITHIN_S


def buffer_full() -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "mediastream_stream_errors_total", {"reason": "BUFFER_FULL"}
        )
        or 0.0
    )


@pytest.mark.settings(play_buffer_s=2)
async def test_voipbin_past_the_play_buffer_closes_with_buffer_full_and_counts_it(
    shim: Shim,
) -> None:
    before = buffer_full()
    url = shim.url(ECHO_CALL_ID, encapsulation="sln", events="json")
    async with shim.ws(url) as ws:
        await control(ws, "started", 5)
        await ws.send_bytes(bytes(16_000 * 3 // 2))  # 1.5 s
        await ws.send_bytes(bytes(16_000))  # 1 s more: past 2 s (unless 0.5 s played)
        error, _ = await control(ws, "error", 5)
        closing = await ws.receive(timeout=3)
    assert error["reason"] == "BUFFER_FULL"
    assert closing.type is aiohttp.WSMsgType.CLOSE
    assert str(closing.extra).startswith("BUFFER_FULL: at most 2 s of audio may wait to play")
    assert buffer_full() - before == 1
