"""The opt-in JSON control channel (events=json): same semantics as the gRPC API."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import numpy as np

from mediastream.core.formats import AudioFormat
from mediastream.emulator import CONFERENCE_ID, DTMF_CALL_ID, ECHO_CALL_ID, TONE_CALL_ID
from tests.audio_checks import sine, tone_level
from tests.shim.conftest import Shim, pcm
from tests.timing import LOADED_SLACK

FRAME = 320  # 20 ms of 8 kHz slin: the default uplink


async def next_event(ws: Any, timeout: float = 3.0) -> dict[str, Any]:
    """The next text message, skipping audio."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                event: dict[str, Any] = json.loads(msg.data)
                return event
            assert msg.type is aiohttp.WSMsgType.BINARY, f"unexpected {msg.type}: {msg.data}"


async def until_closed(ws: Any) -> list[dict[str, Any]]:
    """Every event until the server closes; the close code is then ws.close_code."""
    events = []
    async with asyncio.timeout(5):
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                events.append(json.loads(msg.data))
            elif msg.type is not aiohttp.WSMsgType.BINARY:
                return events


async def test_started_comes_first_and_describes_the_frames(shim: Shim) -> None:
    url = shim.url(TONE_CALL_ID, encapsulation="rtp", events="json")
    async with shim.ws(url) as ws:
        first = await ws.receive(timeout=3)
        assert first.type is aiohttp.WSMsgType.TEXT
        started = json.loads(first.data)
        stream_id = started.pop("stream_id")
        assert started == {
            "type": "started",
            "kind": "call",
            "id": TONE_CALL_ID,
            "encapsulation": "rtp",
            "transport": "rtp",
            "format": "ulaw",
            "sample_rate": 8000,
            "frame_bytes": 160,
            "uplink_format": "slin",
            "uplink_sample_rate": 8000,
            "uplink_frame_bytes": 320,
            "chunk_ms": 20,
        }
        assert stream_id in shim.gateway.streams.streams
        assert len((await ws.receive(timeout=2)).data) == 172


async def test_mark_is_reported_once_its_audio_played_then_done_stops(shim: Shim) -> None:
    tone = sine(1000, 1.0, 8000)
    loop = asyncio.get_running_loop()
    async with shim.ws(shim.url(ECHO_CALL_ID, encapsulation="sln", events="json")) as ws:
        assert (await next_event(ws))["type"] == "started"
        for i in range(0, len(tone), FRAME):
            await ws.send_bytes(tone[i : i + FRAME])
        await ws.send_str(json.dumps({"type": "mark", "name": "end-of-tone"}))
        sent_at = loop.time()
        mark = await next_event(ws)
        assert mark == {"type": "mark", "name": "end-of-tone", "position_ms": 1000}
        # After its second of audio played, late by at most a loaded loop's slack.
        assert 0.9 < loop.time() - sent_at < 1.0 + LOADED_SLACK
        await ws.send_str(json.dumps({"type": "done"}))
        events = await until_closed(ws)
    assert events[-1]["type"] == "stopped" and events[-1]["reason"] == "client_done"
    assert ws.close_code == 1000


async def test_clear_drops_queued_audio_and_pending_marks(shim: Shim) -> None:
    tone = sine(1000, 3.0, 8000)
    async with shim.ws(shim.url(ECHO_CALL_ID, encapsulation="sln", events="json")) as ws:
        await next_event(ws)
        for i in range(0, len(tone), FRAME):
            await ws.send_bytes(tone[i : i + FRAME])
        await ws.send_str(json.dumps({"type": "mark", "name": "never"}))
        await asyncio.sleep(0.3)
        await ws.send_str(json.dumps({"type": "clear"}))
        cleared = await next_event(ws)
        assert cleared["type"] == "cleared" and cleared["dropped_marks"] == ["never"]
        assert 200 <= cleared["position_ms"] < 3000
        # Skip 400 ms of audio after the clear (the echo of what was already
        # played still comes back), then the call must be quiet.
        frames = []
        while len(frames) < 30:
            msg = await ws.receive(timeout=2)
            if msg.type is aiohttp.WSMsgType.BINARY:
                frames.append(msg.data)
        tail = b"".join(frames[20:])
    assert np.abs(pcm(bytes(tail), AudioFormat.ULAW)).max() < 1000, "audio went on after clear"


async def test_flow_pauses_a_client_ahead_of_real_time_and_resumes_it(shim: Shim) -> None:
    tone = sine(1000, 8.2, 8000)
    async with shim.ws(shim.url(ECHO_CALL_ID, encapsulation="sln", events="json")) as ws:
        await next_event(ws)
        for i in range(0, len(tone), FRAME):
            await ws.send_bytes(tone[i : i + FRAME])
        pause = await next_event(ws)
        assert pause["type"] == "flow" and pause["state"] == "pause"
        assert pause["buffered_ms"] >= 8000
        await ws.send_str(json.dumps({"type": "clear"}))
        kinds = [(await next_event(ws))["type"] for _ in range(2)]
        assert sorted(kinds) == ["cleared", "flow"]


async def test_dtmf_both_ways(shim: Shim) -> None:
    digits = []
    async with shim.ws(shim.url(DTMF_CALL_ID, encapsulation="sln", events="json")) as ws:
        await next_event(ws)
        while len(digits) < 3:
            event = await next_event(ws, timeout=4)
            assert event["type"] == "dtmf" and event["duration_ms"] > 0
            digits.append(event["digit"])
    assert digits == ["1", "2", "#"]

    heard = bytearray()
    url = shim.url(ECHO_CALL_ID, encapsulation="sln", format="slin", events="json")
    async with shim.ws(url) as ws:
        await next_event(ws)
        await ws.send_str(json.dumps({"type": "dtmf", "digits": "5", "duration_ms": 200}))
        for _ in range(25):
            msg = await ws.receive(timeout=2)
            if msg.type is aiohttp.WSMsgType.BINARY:
                heard += msg.data
    samples = pcm(bytes(heard), AudioFormat.SLIN)
    # Digit 5 is 770 Hz + 1336 Hz.
    assert tone_level(samples, 8000, 770) > 500 and tone_level(samples, 8000, 1336) > 500


async def test_hangup_ends_the_call_and_the_stream(shim: Shim) -> None:
    call_id = shim.add_call("tone")
    async with shim.ws(shim.url(call_id, encapsulation="sln", events="json")) as ws:
        await next_event(ws)
        await ws.send_str(json.dumps({"type": "hangup"}))
        events = await until_closed(ws)
    assert events[-1]["type"] == "stopped" and events[-1]["reason"] == "client_hangup"
    assert ws.close_code == 1000
    assert call_id not in shim.emulator.channel_ids()


async def test_a_conference_cannot_be_hung_up(shim: Shim) -> None:
    url = shim.url(CONFERENCE_ID, kind="conferences", encapsulation="sln", events="json")
    async with shim.ws(url) as ws:
        await next_event(ws)
        await ws.send_str(json.dumps({"type": "hangup"}))
        events = await until_closed(ws)
    assert events[-1] == {
        "type": "error",
        "reason": "NOT_A_CALL",
        "message": "only a call can be hung up",
        "close_code": 1008,
    }
    assert ws.close_code == 1008
