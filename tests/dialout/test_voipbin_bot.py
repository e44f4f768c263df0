"""Dial-out in VoIPBIN's media_stream forms: binary audio framed as asked, and the JSON
control channel (docs/websocket.md), over the gateway's own connection to the bot."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np

from mediastream._proto import external_media_pb2 as em
from mediastream.core.formats import AudioFormat
from mediastream.core.rtp import parse_rtp
from tests.audio_checks import dominant_hz, sine
from tests.dialout.conftest import Bot, get, http_server, start_dial_out, terminated
from tests.harness import Harness
from tests.shim.conftest import pcm
from tests.timing import LOADED_SLACK

VOIPBIN = em.EXTERNAL_MEDIA_ENCAPSULATION_VOIPBIN_WEBSOCKET


async def test_sln_frames_control_channel_marks_and_stop(harness: Harness) -> None:
    call_id = harness.emulator.add_call("echo", channel_id=str(uuid.uuid4()))
    loop = asyncio.get_running_loop()
    bot = Bot()
    async with http_server({"/bot": bot.handle}) as where:
        channel, stub, media = await start_dial_out(
            harness,
            call_id=call_id,
            encapsulation=VOIPBIN,
            url=f"ws://{where}/bot",
            websocket_framing=em.EXTERNAL_MEDIA_ENCAPSULATION_SLN,
            custom_parameters={"campaign": "7"},
        )
        async with channel:
            assert media.websocket_framing == em.EXTERNAL_MEDIA_ENCAPSULATION_SLN
            conn = await bot.accepted()
            started = await conn.next()
            assert started["type"] == "started"
            assert started["id"] == call_id and started["kind"] == "call"
            assert started["encapsulation"] == "sln"
            # VoIPBIN's media_stream: mu-law down, 16-bit slin up.
            assert (started["format"], started["uplink_format"]) == ("ulaw", "slin")
            assert started["custom_parameters"] == {"campaign": "7"}
            frame = await conn.next()
            assert isinstance(frame, bytes) and len(frame) == 160
            # One second of 1000 Hz up, 20 ms a message, then a mark.
            tone = sine(1000, 1.0, 8000)
            for i in range(0, len(tone), 320):
                await conn.ws.send_bytes(tone[i : i + 320])
            await conn.send({"type": "mark", "name": "said"})
            sent_at = loop.time()
            heard = bytearray()
            while True:
                message = await conn.next()
                if isinstance(message, bytes):
                    heard += message
                else:
                    break
            assert message["type"] == "mark" and message["name"] == "said"
            assert 0.9 < loop.time() - sent_at < 1.0 + LOADED_SLACK
            samples = pcm(bytes(heard), AudioFormat.ULAW)
            first = int(np.argmax(np.abs(samples) > 2000))
            assert abs(dominant_hz(samples[first : first + 4000], 8000) - 1000) < 10

            await stub.StopExternalMedia(em.StopExternalMediaRequest(id=media.id))
            while isinstance(message := await conn.next(), bytes):
                pass
            assert message["type"] == "stopped"
            assert await conn.next() == ("close", 1000)
            assert (await terminated(stub, media.id)).end_reason == "stopped by request"
    assert await harness.leftovers() == []


async def test_rtp_framing_is_voipbins(harness: Harness) -> None:
    call_id = harness.emulator.add_call("tone", channel_id=str(uuid.uuid4()))
    bot = Bot()
    async with http_server({"/bot": bot.handle}) as where:
        channel, stub, media = await start_dial_out(
            harness, call_id=call_id, encapsulation=VOIPBIN, url=f"ws://{where}/bot"
        )
        async with channel:
            assert media.websocket_framing == em.EXTERNAL_MEDIA_ENCAPSULATION_RTP
            conn = await bot.accepted()
            assert (await conn.next())["encapsulation"] == "rtp"
            packets = [parse_rtp(await conn.next()) for _ in range(10)]
            assert {p.payload_type for p in packets} == {96}
            assert {len(p.payload) for p in packets} == {160}
            assert (await get(stub, media.id)).status == em.EXTERNAL_MEDIA_STATUS_RUNNING
