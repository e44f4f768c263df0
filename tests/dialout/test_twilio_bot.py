"""The check we keep for dial-out: a Twilio-style bot server written from Twilio's
"Media Streams - WebSocket Messages" reference (field names, nesting, counters as
strings), dialled by the gateway for the demo tone and echo calls."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid

import grpc
import numpy as np

from mediastream._proto import external_media_pb2 as em
from mediastream._proto import mediastream_pb2 as pb
from mediastream.core.formats import AudioFormat
from mediastream.core.pcm import Transcoder
from mediastream.emulator import CONFERENCE_ID, DTMF_CALL_ID, TONE_CALL_ID
from tests.audio_checks import dominant_hz, sine
from tests.dialout.conftest import (
    Bot,
    BotConnection,
    api,
    get,
    http_server,
    metric,
    start_dial_out,
    terminated,
)
from tests.harness import Harness
from tests.shim.conftest import pcm
from tests.timing import LOADED_SLACK

TWILIO = em.EXTERNAL_MEDIA_ENCAPSULATION_TWILIO_WEBSOCKET


def hung_up(harness: Harness, call_id: str) -> bool:
    channel = harness.emulator.pbx.channels.get(call_id)
    return channel is None or channel.hung_up


class TwilioApp:
    """What an application behind Twilio's <Stream> checks of every message it gets."""

    def __init__(self, conn: BotConnection) -> None:
        self.conn = conn
        self.stream_sid = ""
        self.last_sequence = 0

    async def receive(self, timeout: float = 3.0) -> dict[str, object]:
        message = await self.conn.next(timeout)
        assert isinstance(message, dict), f"Twilio sends JSON text only, got {message!r}"
        if message["event"] != "connected":
            # "sequenceNumber: Number used to keep track of message sending order" (a string).
            assert message["sequenceNumber"] == str(self.last_sequence + 1)
            self.last_sequence += 1
            assert message["streamSid"] == self.stream_sid or message["event"] == "start"
        return message

    async def handshake(self) -> dict[str, object]:
        connected = await self.receive()
        assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        start = await self.receive()
        assert start["event"] == "start" and start["sequenceNumber"] == "1"
        assert set(start) == {"event", "sequenceNumber", "start", "streamSid"}
        self.stream_sid = str(start["streamSid"])
        meta = start["start"]
        assert isinstance(meta, dict)
        assert set(meta) == {
            "accountSid",
            "streamSid",
            "callSid",
            "tracks",
            "customParameters",
            "mediaFormat",
        }
        assert meta["streamSid"] == self.stream_sid
        assert re.fullmatch(r"MZ[0-9a-f]{32}", self.stream_sid)
        assert re.fullmatch(r"AC[0-9a-f]{32}", meta["accountSid"])
        assert meta["mediaFormat"] == {
            "encoding": "audio/x-mulaw",
            "sampleRate": 8000,
            "channels": 1,
        }
        return start

    async def next(self, event: str, timeout: float = 3.0) -> dict[str, object]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.receive()
                if message["event"] == event:
                    return message

    async def send(self, event: str, **body: object) -> None:
        await self.conn.send({"event": event, "streamSid": self.stream_sid, **body})


async def test_tone_call_as_twilio_sends_it_then_stop(harness: Harness) -> None:
    bot = Bot()
    async with http_server({"/media": bot.handle}) as where:
        connected_before = metric(
            "mediastream_dial_outs_total", dialect="twilio", outcome="connected"
        )
        channel, stub, media = await start_dial_out(
            harness,
            call_id=TONE_CALL_ID,
            encapsulation=TWILIO,
            url=f"ws://{where}/media?room=1",
            custom_parameters={"Customer": "jane", "token": "bot-secret"},
        )
        async with channel:
            assert media.status == em.EXTERNAL_MEDIA_STATUS_RUNNING
            assert media.url == f"ws://{where}/media?room=1"
            assert media.external_host == where
            assert media.on_bot_close == em.EXTERNAL_MEDIA_ON_BOT_CLOSE_HANGUP  # two-way default
            conn = await bot.accepted()
            assert conn.request.path_qs == "/media?room=1"
            app = TwilioApp(conn)
            start = await app.handshake()
            meta = start["start"]
            assert isinstance(meta, dict)
            assert meta["callSid"] == TONE_CALL_ID
            assert meta["tracks"] == ["inbound"]
            # Every custom parameter, a "token" too: it is the bot's, not the gateway's.
            assert meta["customParameters"] == {"Customer": "jane", "token": "bot-secret"}
            assert app.stream_sid == media.stream_sid
            loop = asyncio.get_running_loop()
            audio, arrivals = bytearray(), []
            for chunk in range(1, 51):
                message = await app.receive()
                arrivals.append(loop.time())
                assert set(message) == {"event", "sequenceNumber", "media", "streamSid"}
                body = message["media"]
                assert isinstance(body, dict)
                assert set(body) == {"track", "chunk", "timestamp", "payload"}
                assert body["track"] == "inbound"
                assert body["chunk"] == str(chunk)
                assert body["timestamp"] == str((chunk - 1) * 20)
                payload = base64.b64decode(body["payload"])
                assert len(payload) == 160
                audio += payload
            # 20 ms apiece, paced by the call (the replay ring may hand over a few at once).
            assert arrivals[-1] - arrivals[10] >= 39 * 0.02 - 0.1
            assert abs(dominant_hz(pcm(bytes(audio), AudioFormat.ULAW), 8000) - 440) < 10

            got = await get(stub, media.id)
            assert got.status == em.EXTERNAL_MEDIA_STATUS_RUNNING
            assert got.stream_sid == app.stream_sid
            listed = await stub.ListExternalMedia(em.ListExternalMediaRequest(call_id=TONE_CALL_ID))
            assert [m.id for m in listed.external_media] == [media.id]

            stopped = await stub.StopExternalMedia(em.StopExternalMediaRequest(id=media.id))
            assert [m.status for m in stopped.external_media] == [
                em.EXTERNAL_MEDIA_STATUS_TERMINATED
            ]
            stop = await app.next("stop")
            assert set(stop) == {"event", "sequenceNumber", "stop", "streamSid"}
            assert stop["stop"] == {"accountSid": meta["accountSid"], "callSid": TONE_CALL_ID}
            assert await conn.next() == ("close", 1000)
            got = await get(stub, media.id)
            assert got.status == em.EXTERNAL_MEDIA_STATUS_TERMINATED
            assert got.end_reason == "stopped by request"
            # Stopping the stream does not hang up the call.
            assert not hung_up(harness, TONE_CALL_ID)
        assert (
            metric("mediastream_dial_outs_total", dialect="twilio", outcome="connected")
            == connected_before + 1
        )
    assert await harness.leftovers() == []


async def test_echo_call_hears_the_bot_marks_at_play_time_clear_and_bot_hangs_up(
    harness: Harness,
) -> None:
    call_id = harness.emulator.add_call("echo", channel_id=str(uuid.uuid4()))
    ulaw = Transcoder(AudioFormat.SLIN, AudioFormat.ULAW).convert(sine(1000, 1.0, 8000))
    loop = asyncio.get_running_loop()
    bot = Bot()
    async with http_server({"/media": bot.handle}) as where:
        channel, stub, media = await start_dial_out(
            harness, call_id=call_id, encapsulation=TWILIO, url=f"ws://{where}/media"
        )
        async with channel:
            app = TwilioApp(await bot.accepted())
            await app.handshake()
            # Twilio takes payloads of any length: one second in one message, then a mark.
            await app.send("media", media={"payload": base64.b64encode(ulaw).decode()})
            await app.send("mark", mark={"name": "my label"})
            sent_at = loop.time()
            heard = bytearray()
            while True:
                message = await app.receive()
                if message["event"] != "media":
                    break
                body = message["media"]
                assert isinstance(body, dict)
                heard += base64.b64decode(body["payload"])
            assert message == {
                "event": "mark",
                "sequenceNumber": message["sequenceNumber"],
                "streamSid": app.stream_sid,
                "mark": {"name": "my label"},
            }
            # The mark comes once its second of audio has played: not when it was sent.
            assert 0.9 < loop.time() - sent_at < 1.0 + LOADED_SLACK
            # The call heard the bot: the echo call sends it back.
            samples = pcm(bytes(heard), AudioFormat.ULAW)
            first = int(np.argmax(np.abs(samples) > 2000))
            assert abs(dominant_hz(samples[first : first + 4000], 8000) - 1000) < 10

            # clear: the buffered audio goes at once, and its mark comes back with it.
            await app.send("media", media={"payload": base64.b64encode(ulaw * 3).decode()})
            await app.send("mark", mark={"name": "interrupted"})
            await asyncio.sleep(0.2)
            await app.send("clear")
            cleared_at = loop.time()
            mark = await app.next("mark")
            assert mark["mark"] == {"name": "interrupted"}
            assert loop.time() - cleared_at < 0.05 + LOADED_SLACK

            # The bot ends its pipeline: it closes the socket, and the call is hung up.
            await app.conn.ws.close()
            got = await terminated(stub, media.id)
            assert got.end_reason == "bot closed the WebSocket (1000); call hung up"
            assert hung_up(harness, call_id)
    assert await harness.leftovers() == []


async def test_listen_only_uses_twilios_track_names_and_leaves_the_call_up(
    harness: Harness,
) -> None:
    call_id = harness.emulator.add_call("tone", channel_id=str(uuid.uuid4()))
    bot = Bot()
    async with http_server({"/media": bot.handle}) as where:
        channel, stub, media = await start_dial_out(
            harness,
            call_id=call_id,
            encapsulation=TWILIO,
            url=f"ws://{where}/media",
            direction=pb.DIRECTION_OUT,
        )
        async with channel:
            assert media.on_bot_close == em.EXTERNAL_MEDIA_ON_BOT_CLOSE_NOTHING
            app = TwilioApp(await bot.accepted())
            start = await app.handshake()
            meta = start["start"]
            assert isinstance(meta, dict) and meta["tracks"] == ["outbound"]
            message = await app.next("media")
            body = message["media"]
            assert isinstance(body, dict) and body["track"] == "outbound"
            # Like <Start><Stream>: what the app sends goes nowhere and breaks nothing.
            await app.send("media", media={"payload": base64.b64encode(b"\xff" * 160).decode()})
            await app.send("mark", mark={"name": "ignored"})
            await app.next("media")
            await app.conn.ws.close()
            got = await terminated(stub, media.id)
            assert got.end_reason == "bot closed the WebSocket (1000)"
            assert not hung_up(harness, call_id)


async def test_the_allow_list_applies_to_the_url_host(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        stub = api(channel)
        for url, code, reason in [
            ("ws://192.0.2.1:9/media", grpc.StatusCode.PERMISSION_DENIED, "HOST_NOT_ALLOWED"),
            ("http://127.0.0.1:9/media", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_URL"),
            ("ws://user:pw@127.0.0.1:9/", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_URL"),
            ("", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_URL"),
        ]:
            try:
                await stub.StartExternalMedia(
                    em.StartExternalMediaRequest(
                        call_id=TONE_CALL_ID, encapsulation=TWILIO, url=url
                    )
                )
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == code, url
                assert reason in str(exc.trailing_metadata()), url
            else:
                raise AssertionError(f"{url} was accepted")
        listed = await stub.ListExternalMedia(em.ListExternalMediaRequest())
        assert list(listed.external_media) == []


async def test_dtmf_as_twilio_sends_it(harness: Harness) -> None:
    bot = Bot()
    async with http_server({"/media": bot.handle}) as where:
        channel, stub, media = await start_dial_out(
            harness, call_id=DTMF_CALL_ID, encapsulation=TWILIO, url=f"ws://{where}/media"
        )
        async with channel:
            app = TwilioApp(await bot.accepted())
            await app.handshake()
            # The demo call presses 1, 2, # every 2 s.
            dtmf = await app.next("dtmf", timeout=4)
            assert set(dtmf) == {"event", "streamSid", "sequenceNumber", "dtmf"}
            assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "1"}
            await stub.StopExternalMedia(em.StopExternalMediaRequest(id=media.id))


async def test_a_conference_is_dialled_out_and_never_hung_up(harness: Harness) -> None:
    bot = Bot()
    async with http_server({"/media": bot.handle}) as where:
        channel, stub, media = await start_dial_out(
            harness, conference_id=CONFERENCE_ID, encapsulation=TWILIO, url=f"ws://{where}/media"
        )
        async with channel:
            app = TwilioApp(await bot.accepted())
            start = await app.handshake()
            meta = start["start"]
            assert isinstance(meta, dict) and meta["callSid"] == CONFERENCE_ID
            body = (await app.next("media"))["media"]
            assert isinstance(body, dict) and len(base64.b64decode(body["payload"])) == 160
            await app.conn.ws.close()
            got = await terminated(stub, media.id)
            # HANGUP (the two-way default) cannot apply to a conference: it is left alone.
            assert got.end_reason == "bot closed the WebSocket (1000)"
