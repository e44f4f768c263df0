"""Faults survived: Asterisk restarted mid-stream, slow and vanished clients."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mediastream.emulator import TONE_CALL_ID, Emulator, EmulatorConfig
from mediastream_client import AudioFormat, RPCError, Transport
from tests.audio_checks import dominant_hz, pcm16
from tests.harness import GATEWAY_CHANNELS, Harness

SERVICE = "voipbin.mediastream.v1.MediaStreamService"


async def serving(harness: Harness) -> bool:
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE)
        )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def wait_health(harness: Harness, want: bool, timeout: float) -> float:
    start = time.monotonic()
    while await serving(harness) != want:
        assert time.monotonic() - start < timeout, f"health did not become {want}"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.leaves_streams
async def test_asterisk_restart_ends_streams_unavailable_and_recovers(harness: Harness) -> None:
    old = harness.emulator
    port = old.port
    async with harness.client() as client:
        streams = [client.listen(call_id=TONE_CALL_ID, transport=t) for t in Transport]
        for s in streams:
            await s.__aenter__()

        async def outcome(stream) -> RPCError | None:  # type: ignore[no-untyped-def]
            try:
                async for _ in stream.events():
                    pass
            except RPCError as exc:
                return exc
            return None

        outcomes = [asyncio.create_task(outcome(s)) for s in streams]
        await asyncio.sleep(0.3)
        await old.stop()
        await wait_health(harness, False, 3)
        fresh = Emulator(EmulatorConfig(port=port))
        await fresh.start()
        try:
            recovered_in = await wait_health(harness, True, 8)
            errors = await asyncio.wait_for(asyncio.gather(*outcomes), 10)
            for error in errors:
                assert error is not None
                assert (error.code, error.reason) == (
                    grpc.StatusCode.UNAVAILABLE,
                    "ASTERISK_FAILURE",
                )
            # The gateway serves again, through the restarted Asterisk.
            got = bytearray()
            async with client.listen(call_id=TONE_CALL_ID, format=AudioFormat.SLIN) as stream:
                async for chunk in stream.audio():
                    got += chunk.data
                    if len(got) >= 8000:
                        break
            assert abs(dominant_hz(pcm16(bytes(got)), 8000) - 440) < 5
            await asyncio.sleep(0.5)
            left = [
                c.name
                for c in fresh.pbx.channels.values()
                if not c.hung_up and c.name.startswith(GATEWAY_CHANNELS)
            ]
            assert left == []
            assert recovered_in < 8
        finally:
            await fresh.stop()


async def test_streams_survive_a_drop_of_the_ari_events_connection(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="mediastream.asterisk.legs")
    async with harness.client() as client, client.listen(
        call_id=TONE_CALL_ID, format=AudioFormat.SLIN
    ) as stream:
        seqs: list[int] = []
        got = bytearray()
        dropped = False
        async with asyncio.timeout(10):
            async for chunk in stream.audio():
                seqs.append(chunk.sequence_number)
                if len(seqs) == 25 and not dropped:
                    dropped = True
                    await harness.emulator.drop_event_connections()
                if len(seqs) > 50:
                    got += chunk.data
                if len(seqs) == 200:
                    break
        assert seqs == list(range(200))
        assert abs(dominant_hz(pcm16(bytes(got)), 8000) - 440) < 3
    assert await serving(harness)
    assert "survived an ARI events reconnect" in caplog.text
