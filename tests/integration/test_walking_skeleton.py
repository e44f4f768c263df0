"""One call's audio end to end: SDK -> gRPC -> gateway -> ARI/RTP -> emulated Asterisk."""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mediastream_client import AudioFormat, MediaStreamClient, RPCError, StopReason
from tests.audio_checks import dominant_hz, pcm16, sine, tone_level
from tests.conftest import RunningGateway


async def ari_objects(gw: RunningGateway) -> tuple[list[dict], list[dict]]:
    auth = aiohttp.encode_basic_auth("asterisk", "asterisk")
    async with aiohttp.ClientSession(headers={"Authorization": auth}) as http:
        async with http.get(f"{gw.ari_url}/channels") as r:
            channels = await r.json()
        async with http.get(f"{gw.ari_url}/bridges") as r:
            bridges = await r.json()
    return channels, bridges


async def gateway_made(gw: RunningGateway) -> tuple[list[str], list[str]]:
    """Names of externalMedia/snoop channels and bridges the gateway created."""
    channels, bridges = await ari_objects(gw)
    ours = [
        c["name"]
        for c in channels
        if c["name"].startswith(("UnicastRTP/", "AudioSocket/", "WebSocket/", "Snoop/"))
    ]
    return ours, [b["name"] for b in bridges if b.get("name", "").startswith("mediastream-")]


async def wait_clean(gw: RunningGateway) -> tuple[list[str], list[str]]:
    for _ in range(50):
        made = await gateway_made(gw)
        if made == ([], []):
            break
        await asyncio.sleep(0.05)
    return made


async def test_tone_call_is_heard_at_440_hz(gateway: RunningGateway) -> None:
    pcm = bytearray()
    async with (
        MediaStreamClient(gateway.grpc) as client,
        client.listen(call_id=gateway.demo["tone_call"], format=AudioFormat.SLIN) as stream,
    ):
        assert stream.info is not None
        assert (stream.info.sample_rate, stream.info.frame_bytes) == (8000, 320)
        async for chunk in stream.audio():
            assert len(chunk.data) == 320
            pcm += chunk.data
            if len(pcm) >= 8000 * 2 * 1.2:
                break
    samples = pcm16(bytes(pcm))
    assert abs(dominant_hz(samples, 8000) - 440) < 3
    assert tone_level(samples, 8000, 440) > 5000
    assert await wait_clean(gateway) == ([], [])


async def test_tone_call_in_ulaw_has_sequence_and_timestamps(gateway: RunningGateway) -> None:
    chunks = []
    async with (
        MediaStreamClient(gateway.grpc) as client,
        client.listen(
            call_id=gateway.demo["tone_call"], format=AudioFormat.ULAW, chunk_ms=100
        ) as stream,
    ):
        async for chunk in stream.audio():
            chunks.append(chunk)
            if len(chunks) == 5:
                break
    assert [len(c.data) for c in chunks] == [800] * 5
    assert [c.sequence_number for c in chunks] == [0, 1, 2, 3, 4]
    assert [c.timestamp for c in chunks] == [0, 800, 1600, 2400, 3200]


async def test_echo_call_returns_what_is_sent(gateway: RunningGateway) -> None:
    sent = sine(1000, 1.0, 8000)
    received = bytearray()
    async with (
        MediaStreamClient(gateway.grpc) as client,
        client.stream(call_id=gateway.demo["echo_call"], format=AudioFormat.SLIN) as stream,
    ):

        async def collect() -> None:
            async for chunk in stream.audio():
                received.extend(chunk.data)

        collector = asyncio.create_task(collect())
        for i in range(0, len(sent), 320):
            await stream.send(sent[i : i + 320])
        await stream.done_sending()
        await asyncio.wait_for(collector, 10)
        assert stream.stopped is not None
        assert stream.stopped.reason is StopReason.CLIENT_DONE
    back = pcm16(bytes(received))
    assert abs(dominant_hz(back, 8000) - 1000) < 3
    # The echo gives back the same level (the emulator's echo is full level).
    assert tone_level(back, 8000, 1000) > 0.3 * 8000 * len(sent) / 2 / max(len(back), 1)
    assert await wait_clean(gateway) == ([], [])


async def test_unknown_call_is_not_found(gateway: RunningGateway) -> None:
    async with MediaStreamClient(gateway.grpc) as client:
        with pytest.raises(RPCError) as err:
            async with client.listen(call_id="no-such-call"):
                pass
    assert err.value.code is grpc.StatusCode.NOT_FOUND
    assert err.value.reason == "CALL_NOT_FOUND"
    assert err.value.metadata == {"call_id": "no-such-call"}
    assert await wait_clean(gateway) == ([], [])


async def test_bad_chunk_ms_names_the_field(gateway: RunningGateway) -> None:
    async with MediaStreamClient(gateway.grpc) as client:
        with pytest.raises(RPCError) as err:
            async with client.listen(call_id=gateway.demo["tone_call"], chunk_ms=30):
                pass
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.value.field_violations] == ["config.chunk_ms"]


async def test_health_is_serving(gateway: RunningGateway) -> None:
    async with grpc.aio.insecure_channel(gateway.grpc) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "voipbin.mediastream.v1.MediaStreamService"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
