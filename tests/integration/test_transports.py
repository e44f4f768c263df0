"""Each Asterisk transport x (call, conference): the audio that should arrive, arrives."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from mediastream.asterisk import ari
from mediastream.emulator import CONFERENCE_ID, DTMF_CALL_ID, ECHO_CALL_ID, TONE_CALL_ID
from mediastream.emulator.demo import CONFERENCE_440_ID
from mediastream_client import AudioFormat, Direction, DtmfReceived, Transport
from tests.audio_checks import dominant_hz, pcm16, sine, tone_level
from tests.harness import Harness, running_gateway

TRANSPORTS = [Transport.RTP, Transport.AUDIOSOCKET, Transport.WEBSOCKET]


async def record(harness: Harness, seconds: float, **kw: object) -> bytes:
    got = bytearray()
    async with harness.client() as client, client.listen(**kw) as stream:  # type: ignore[arg-type]
        assert stream.info is not None
        want = int(seconds * stream.info.sample_rate) * 2
        async with asyncio.timeout(seconds + 5):
            async for chunk in stream.audio():
                got += chunk.data
                if len(got) >= want:
                    break
    return bytes(got)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fmt", [AudioFormat.SLIN, AudioFormat.SLIN16])
async def test_call_tone_arrives(harness: Harness, transport: Transport, fmt: AudioFormat) -> None:
    samples = pcm16(
        await record(harness, 1.0, call_id=TONE_CALL_ID, format=fmt, transport=transport)
    )
    assert abs(dominant_hz(samples, fmt.sample_rate) - 440) < 3
    assert tone_level(samples, fmt.sample_rate, 440) > 4000


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_conference_mix_arrives(harness: Harness, transport: Transport) -> None:
    samples = pcm16(
        await record(
            harness, 1.0, conference_id=CONFERENCE_ID, format=AudioFormat.SLIN, transport=transport
        )
    )
    # Both participants, each at full level: softmix does not attenuate.
    assert tone_level(samples, 8000, 440) > 4000
    assert tone_level(samples, 8000, 880) > 4000


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_call_echo_round_trip(harness: Harness, transport: Transport) -> None:
    sent = sine(1200, 1.0, 8000)
    got = bytearray()
    async with (
        harness.client() as client,
        client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN, transport=transport) as stream,
    ):
        for i in range(0, len(sent), 320):
            await stream.send(sent[i : i + 320])
        await stream.done_sending()
        async with asyncio.timeout(10):
            async for chunk in stream.audio():
                got += chunk.data
    back = pcm16(bytes(got))
    assert abs(dominant_hz(back, 8000) - 1200) < 3
    assert tone_level(back, 8000, 1200) > 2000


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("direction", "hears_tone"), [(Direction.IN, True), (Direction.OUT, False)]
)
async def test_direction_selects_whose_audio_is_heard(
    harness: Harness, transport: Transport, direction: Direction, hears_tone: bool
) -> None:
    samples = pcm16(
        await record(
            harness,
            0.6,
            call_id=TONE_CALL_ID,
            format=AudioFormat.SLIN,
            direction=direction,
            transport=transport,
        )
    )
    assert (tone_level(samples, 8000, 440) > 4000) is hears_tone


async def collect_digits(harness: Harness, count: int, **kw: object) -> list[str]:
    digits: list[str] = []
    async with harness.client() as client, client.listen(**kw) as stream:  # type: ignore[arg-type]
        async with asyncio.timeout(6):
            async for event in stream:
                if isinstance(event, DtmfReceived):
                    digits.append(event.digit)
                    if len(digits) == count:
                        break
    return digits


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_call_dtmf_on_every_transport(harness: Harness, transport: Transport) -> None:
    # For calls DTMF comes from ARI (ChannelDtmfReceived), so every transport has it once.
    assert await collect_digits(harness, 3, call_id=DTMF_CALL_ID, transport=transport) == [
        "1",
        "2",
        "#",
    ]


@pytest.mark.parametrize("transport", [Transport.AUDIOSOCKET, Transport.WEBSOCKET])
async def test_conference_dtmf_arrives_over_the_media_connection(
    harness: Harness, transport: Transport
) -> None:
    async def press() -> None:
        await asyncio.sleep(0.5)
        harness.emulator.send_dtmf(CONFERENCE_440_ID, "73")

    presser = asyncio.create_task(press())
    digits = await collect_digits(harness, 2, conference_id=CONFERENCE_ID, transport=transport)
    await presser
    assert digits == ["7", "3"]


async def test_websocket_channel_streams_do_not_take_the_ari_rest_pool(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each WebSocket-channel stream holds a media connection for its whole life.
    # Sharing ARI's REST pool, 99 streams starved the 100th stream's requests
    # (seen in the load benchmark); a pool of 2 shows the same with 4 streams.
    monkeypatch.setattr(ari, "REST_CONNECTIONS", 2)
    async with (
        running_gateway(request, drain_timeout_s=0.5) as (
            gateway,
            endpoints,
        ),
        contextlib.AsyncExitStack() as stack,
    ):
        harness = Harness(gateway, endpoints.grpc, endpoints.ari_url)
        client = await stack.enter_async_context(harness.client())
        async with asyncio.timeout(8):
            for _ in range(4):
                stream = await stack.enter_async_context(
                    client.listen(call_id=TONE_CALL_ID, transport=Transport.WEBSOCKET)
                )
                async for _chunk in stream.audio():
                    break
        assert len(gateway.streams.streams) == 4
