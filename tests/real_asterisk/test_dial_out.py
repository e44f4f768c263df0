"""Dial-out on real Asterisk: the gateway connects to a Twilio-style bot for a platform's call.

The same bot server as tests/dialout (written from Twilio's "Media Streams - WebSocket
Messages" reference), but the call is a real Asterisk channel in the platform's own Stasis
app: the bot must hear the call's 440 Hz, the call must hear the bot (an echo call sends the
bot's 1 kHz back), a mark must come back once its audio has played, and the bot ending the
session must hang up a two-way stream's call, as a pipecat bot ends a call by ending its
pipeline.
"""

from __future__ import annotations

import asyncio
import base64

import grpc

from mediastream._proto import external_media_pb2 as em
from mediastream._proto import external_media_pb2_grpc as em_grpc
from mediastream._proto import mediastream_pb2 as pb
from mediastream.core.formats import AudioFormat
from mediastream.core.pcm import Transcoder
from tests.audio_checks import dominant_hz, sine, tone_level
from tests.dialout.conftest import Bot, http_server
from tests.dialout.test_twilio_bot import TwilioApp
from tests.real_asterisk.conftest import Backend, RunningGateway
from tests.real_asterisk.media import HEARD, TALK_HZ
from tests.real_asterisk.platform import Platform
from tests.shim.conftest import pcm

TWILIO = em.EXTERNAL_MEDIA_ENCAPSULATION_TWILIO_WEBSOCKET


async def _media(app: TwilioApp, count: int) -> bytes:
    """The µ-law of the next `count` media messages, other events skipped."""
    audio = bytearray()
    while count:
        message = await app.receive(timeout=5.0)
        if message["event"] == "media":
            body = message["media"]
            assert isinstance(body, dict)
            audio += base64.b64decode(str(body["payload"]))
            count -= 1
    return bytes(audio)


async def _gone(platform: Platform, channel_id: str, timeout: float = 5.0) -> bool:
    async with asyncio.timeout(timeout):
        while channel_id in {c["id"] for c in await platform.channels()}:
            await asyncio.sleep(0.05)
    return True


async def test_the_bot_hears_a_real_call(
    backend: Backend, gw: RunningGateway, platform: Platform
) -> None:
    # Listen-only, like Twilio's <Start><Stream>: a two-way stream on this test call would
    # hear nothing of it, a limit of Local channels (see test_lifecycle,
    # test_a_tone_call_alone_is_not_heard_two_way), not of dial-out.
    call = await platform.stasis_call("tone")
    bot = Bot()
    async with (
        http_server({"/media": bot.handle}) as where,
        grpc.aio.insecure_channel(gw.endpoints.grpc) as channel,
    ):
        api = em_grpc.ExternalMediaServiceStub(channel)
        started = await api.StartExternalMedia(
            em.StartExternalMediaRequest(
                call_id=call,
                encapsulation=TWILIO,
                url=f"ws://{where}/media",
                direction=pb.DIRECTION_IN,
            )
        )
        app = TwilioApp(await bot.accepted(timeout=5.0))
        start = await app.handshake()
        meta = start["start"]
        assert isinstance(meta, dict) and meta["callSid"] == call
        # 100 frames: the first 50 may be the path's silent start (Answer() waits).
        audio = (await _media(app, 100))[50 * 160 :]
        assert abs(dominant_hz(pcm(audio, AudioFormat.ULAW), 8000) - 440) < 5
        await api.StopExternalMedia(em.StopExternalMediaRequest(id=started.external_media.id))
        assert (await app.next("stop", timeout=5.0))["event"] == "stop"
    # Stopping the stream leaves the call up.
    assert call in {c["id"] for c in await platform.channels()}


async def test_a_real_call_hears_the_bot_marks_come_at_play_time_and_the_bot_hangs_up(
    backend: Backend, gw: RunningGateway, platform: Platform
) -> None:
    call = await platform.stasis_call("echo")
    ulaw = Transcoder(AudioFormat.SLIN, AudioFormat.ULAW).convert(sine(TALK_HZ, 1.0, 8000))
    bot = Bot()
    loop = asyncio.get_running_loop()
    async with (
        http_server({"/media": bot.handle}) as where,
        grpc.aio.insecure_channel(gw.endpoints.grpc) as channel,
    ):
        api = em_grpc.ExternalMediaServiceStub(channel)
        await api.StartExternalMedia(
            em.StartExternalMediaRequest(
                call_id=call, encapsulation=TWILIO, url=f"ws://{where}/media"
            )
        )
        conn = await bot.accepted(timeout=5.0)
        app = TwilioApp(conn)
        await app.handshake()
        # One second in one message, as Twilio takes it, then a mark.
        await app.send("media", media={"payload": base64.b64encode(ulaw).decode()})
        await app.send("mark", mark={"name": "end of prompt"})
        sent_at = loop.time()
        heard = bytearray()
        while True:
            message = await app.receive(timeout=5.0)
            if message["event"] == "mark":
                break
            body = message["media"]
            assert isinstance(body, dict)
            heard += base64.b64decode(str(body["payload"]))
        assert message["mark"] == {"name": "end of prompt"}
        # Not before its second has played (the play clock may start it one 20 ms tick
        # early; the echo's delay is on the way back, not in the mark).
        assert loop.time() - sent_at > 0.96
        # What the echo call sent back while the prompt played, and a little after.
        heard += await _media(app, 25)
        level = tone_level(pcm(bytes(heard), AudioFormat.ULAW), 8000, TALK_HZ)
        assert level > HEARD, f"the call heard the bot at {level:.0f}"
        # The bot ends its session: the two-way stream's call is hung up (the default).
        await conn.ws.close()
    assert await _gone(platform, call)
