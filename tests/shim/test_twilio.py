"""The Twilio dialect, driven by a client written from Twilio's "Media Streams -
WebSocket Messages" reference: field names, nesting and string-typed counters
exactly as documented there."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any

import aiohttp
import numpy as np
import pytest

from mediastream import metrics
from mediastream.core.formats import AudioFormat
from mediastream.core.pcm import Transcoder
from mediastream.emulator import DTMF_CALL_ID, ECHO_CALL_ID, TONE_CALL_ID
from tests.audio_checks import dominant_hz, sine
from tests.shim.conftest import Shim, pcm
from tests.timing import LOADED_SLACK


class TwilioClient:
    """What a Twilio Media Streams server application sees and sends."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.stream_sid = ""
        self.last_sequence = 0

    async def receive(self, timeout: float = 3.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type is aiohttp.WSMsgType.TEXT, f"Twilio sends JSON text only, got {msg}"
        message: dict[str, Any] = json.loads(msg.data)
        if message["event"] != "connected":
            # "Number used to keep track of message sending order": strings "1", "2", ...
            assert message["sequenceNumber"] == str(self.last_sequence + 1)
            self.last_sequence += 1
            assert message["streamSid"] == self.stream_sid or message["event"] == "start"
        return message

    async def next(self, event: str, timeout: float = 3.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.receive()
                if message["event"] == event:
                    return message

    async def handshake(self) -> dict[str, Any]:
        connected = await self.receive()
        assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        start = await self.receive()
        assert start["event"] == "start" and start["sequenceNumber"] == "1"
        self.stream_sid = start["streamSid"]
        assert start["start"]["streamSid"] == self.stream_sid
        return start

    async def send(self, event: str, **body: Any) -> None:
        await self.ws.send_str(json.dumps({"event": event, "streamSid": self.stream_sid, **body}))


async def test_connected_start_and_media_as_twilio_documents_them(shim: Shim) -> None:
    async with shim.ws(shim.url(TONE_CALL_ID, "twilio", Customer="jane")) as ws:
        client = TwilioClient(ws)
        start = await client.handshake()
        assert set(start) == {"event", "sequenceNumber", "start", "streamSid"}
        meta = start["start"]
        assert set(meta) == {
            "accountSid",
            "streamSid",
            "callSid",
            "tracks",
            "customParameters",
            "mediaFormat",
        }
        assert re.fullmatch(r"MZ[0-9a-f]{32}", meta["streamSid"])
        assert re.fullmatch(r"AC[0-9a-f]{32}", meta["accountSid"])
        assert meta["callSid"] == TONE_CALL_ID
        assert meta["tracks"] == ["inbound"]
        assert meta["customParameters"] == {"Customer": "jane"}
        assert meta["mediaFormat"] == {
            "encoding": "audio/x-mulaw",
            "sampleRate": 8000,
            "channels": 1,
        }
        audio = bytearray()
        for chunk in range(1, 26):
            media = await client.receive()
            assert set(media) == {"event", "sequenceNumber", "media", "streamSid"}
            assert media["event"] == "media"
            assert set(media["media"]) == {"track", "chunk", "timestamp", "payload"}
            assert media["media"]["track"] == "inbound"
            assert media["media"]["chunk"] == str(chunk)
            assert media["media"]["timestamp"] == str((chunk - 1) * 20)
            payload = base64.b64decode(media["media"]["payload"])
            assert len(payload) == 160
            audio += payload
    samples = pcm(bytes(audio), AudioFormat.ULAW)
    assert abs(dominant_hz(samples, 8000) - 440) < 10


async def test_media_mark_and_clear_back_to_the_call(shim: Shim) -> None:
    loop = asyncio.get_running_loop()
    ulaw = Transcoder(AudioFormat.SLIN, AudioFormat.ULAW).convert(sine(1000, 1.0, 8000))
    async with shim.ws(shim.url(ECHO_CALL_ID, "twilio")) as ws:
        client = TwilioClient(ws)
        await client.handshake()
        # One media message with a whole second: Twilio takes any length.
        await client.send("media", media={"payload": base64.b64encode(ulaw).decode()})
        await client.send("mark", mark={"name": "my label"})
        sent_at = loop.time()
        heard = bytearray()
        while True:
            message = await client.receive()
            if message["event"] == "media":
                heard += base64.b64decode(message["media"]["payload"])
            else:
                break
        assert message == {
            "event": "mark",
            "sequenceNumber": message["sequenceNumber"],
            "streamSid": client.stream_sid,
            "mark": {"name": "my label"},
        }
        # After its second of audio played, late by at most a loaded loop's slack.
        assert 0.9 < loop.time() - sent_at < 1.0 + LOADED_SLACK
        samples = pcm(bytes(heard), AudioFormat.ULAW)
        first = int(np.argmax(np.abs(samples) > 2000))
        assert abs(dominant_hz(samples[first : first + 4000], 8000) - 1000) < 10

        # "clear ... empties all buffered audio and causes any mark messages to be sent back"
        await client.send("media", media={"payload": base64.b64encode(ulaw * 3).decode()})
        await client.send("mark", mark={"name": "interrupted"})
        await asyncio.sleep(0.2)
        await client.send("clear")
        cleared_at = loop.time()
        mark = await client.next("mark")
        assert mark["mark"] == {"name": "interrupted"}
        # At once (not after the audio still buffered, nor never), but a loaded loop may lag.
        assert loop.time() - cleared_at < 0.05 + LOADED_SLACK


async def test_dtmf_and_stop(shim: Shim) -> None:
    async with shim.ws(shim.url(DTMF_CALL_ID, "twilio")) as ws:
        client = TwilioClient(ws)
        start = await client.handshake()
        dtmf = await client.next("dtmf", timeout=4)
        assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "1"}
        assert set(dtmf) == {"event", "streamSid", "sequenceNumber", "dtmf"}
    call_id = shim.add_call("tone")
    async with shim.ws(shim.url(call_id, "twilio")) as ws:
        client = TwilioClient(ws)
        start = await client.handshake()
        shim.emulator.hangup(call_id)
        stop = await client.next("stop")
        assert stop["stop"] == {
            "accountSid": start["start"]["accountSid"],
            "callSid": call_id,
        }
        closing = await ws.receive(timeout=2)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1000


async def test_what_twilio_would_reject_closes_the_stream(shim: Shim) -> None:
    cases = [
        (b"\x00" * 160, 1003, "UNSUPPORTED_DATA"),
        ('{"event":"media","media":{"payload":"***"}}', 1008, "MALFORMED_MEDIA"),
        ('{"event":"mark","mark":"my label"}', 1008, "MALFORMED_MARK"),
        ('{"event":"clear","streamSid":"MZ0"}', 1008, "WRONG_STREAM_SID"),
    ]
    for data, code, reason in cases:
        async with shim.ws(shim.url(ECHO_CALL_ID, "twilio")) as ws:
            await TwilioClient(ws).handshake()
            if isinstance(data, bytes):
                await ws.send_bytes(data)
            else:
                await ws.send_str(data)
            while (msg := await ws.receive(timeout=3)).type is aiohttp.WSMsgType.TEXT:
                last = json.loads(msg.data)
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert (msg.data, str(msg.extra).split(":")[0]) == (code, reason)
            assert last["event"] == "stop"


def ignored(event: str) -> float:
    labels = {"dialect": "twilio", "event": event}
    return (
        metrics.REGISTRY.get_sample_value("mediastream_client_messages_ignored_total", labels)
        or 0.0
    )


async def test_a_client_stop_or_unknown_event_is_ignored_logged_and_counted(
    shim: Shim, caplog: pytest.LogCaptureFixture
) -> None:
    before = {e: ignored(e) for e in ("stop", "other")}
    async with shim.ws(shim.url(ECHO_CALL_ID, "twilio")) as ws:
        client = TwilioClient(ws)
        await client.handshake()
        # Twilio ignores what it does not expect from the application: the stream goes on.
        await client.send("stop")
        await client.send("stop")
        await client.send("mute")
        await client.send("mark", mark={"name": "still-here"})
        mark = await client.next("mark", timeout=3)
        assert mark["mark"] == {"name": "still-here"}
    assert ignored("stop") - before["stop"] == 2
    assert ignored("other") - before["other"] == 1
    warnings = [r for r in caplog.records if "ignored a Twilio" in r.getMessage()]
    assert [r.levelname for r in warnings] == ["WARNING", "WARNING"]  # once per event kind
