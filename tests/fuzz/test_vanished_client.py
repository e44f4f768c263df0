"""A client whose network goes silent without closing anything: a frozen TCP relay.

The gateway must notice by itself, within a stated bound, and release the stream:

* gRPC: HTTP/2 keepalive. The gateway pings a connection `keepalive_time_s` after the last
  bytes it received on it, and drops it when the ping is not answered within
  `keepalive_timeout_s`. Bound: `keepalive_time_s + keepalive_timeout_s` after the client's
  last bytes. gRPC core fails an unanswered ping after ``grpc.http2.ping_timeout_ms`` (60 s
  unless set), not after ``grpc.keepalive_timeout_ms``, so the gateway sets both (app.py).
* WebSocket: the shim's heartbeat pings after `keepalive_time_s` of silence and drops a
  client that does not answer within half of it. Bound: 1.5 x `keepalive_time_s`.

SLACK covers a loaded CI machine.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import grpc
import pytest

from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from mediastream.emulator import TONE_CALL_ID
from mediastream_client import AudioFormat, MediaStreamClient
from tests.fuzz.bystander import listening
from tests.fuzz.relay import FreezableRelay
from tests.harness import Harness

KEEPALIVE_TIME_S = 1.0
KEEPALIVE_TIMEOUT_S = 1.0
SLACK_S = 2.5


async def relayed(harness: Harness) -> tuple[FreezableRelay, str]:
    host, port = harness.grpc.rsplit(":", 1)
    relay = FreezableRelay(host, int(port))
    return relay, await relay.start()


async def gone(harness: Harness, stream_id: str, within: float) -> float:
    """Seconds until the gateway no longer holds `stream_id`; fails after `within`."""
    start = time.monotonic()
    while stream_id in harness.gateway.streams.streams:
        assert time.monotonic() - start < within, f"stream still held after {within:.1f} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.settings(keepalive_time_s=KEEPALIVE_TIME_S, keepalive_timeout_s=KEEPALIVE_TIMEOUT_S)
async def test_a_silent_grpc_client_is_dropped_within_the_keepalive_bound(harness: Harness) -> None:
    relay, address = await relayed(harness)
    call_id = harness.emulator.add_call("tone")
    try:
        async with (
            harness.client() as direct,
            listening(direct, TONE_CALL_ID) as bystander,
            MediaStreamClient(address) as client,
            client.listen(call_id=call_id, format=AudioFormat.ULAW) as stream,
        ):
            got = 0
            async for _ in stream.audio():
                got += 1
                if got == 10:
                    break
            assert stream.info is not None
            relay.freeze()
            took = await gone(
                harness, stream.info.stream_id, KEEPALIVE_TIME_S + KEEPALIVE_TIMEOUT_S + SLACK_S
            )
            assert took > 0.5  # it was the keepalive, not something that closed at once
            bystander.assert_unharmed()
    finally:
        await relay.close()
    assert await harness.leftovers() == []


@pytest.mark.settings(
    keepalive_time_s=KEEPALIVE_TIME_S, keepalive_timeout_s=KEEPALIVE_TIMEOUT_S, resume_grace_s=1.0
)
async def test_a_client_that_resumes_before_its_old_connection_is_dropped_keeps_the_stream(
    harness: Harness,
) -> None:
    """The old connection's drop, noticed later, must not end the stream it lost."""
    relay, address = await relayed(harness)
    call_id = harness.emulator.add_call("tone")
    config = pb.StreamConfig(call_id=call_id, format=pb.AUDIO_FORMAT_ULAW, resumable=True)
    try:
        async with (
            grpc.aio.insecure_channel(address) as old,
            grpc.aio.insecure_channel(harness.grpc) as new,
        ):
            call = pb_grpc.MediaStreamServiceStub(old).ListenMedia(
                pb.ListenMediaRequest(config=config)
            )
            started = (await call.read()).started
            seq = [(await call.read()).audio.sequence_number for _ in range(5)]
            relay.freeze()
            # The client gives up on the silent connection and resumes on a new one at once,
            # before the gateway could notice anything.
            config.resume.token = started.resume_token
            config.resume.last_sequence_number = seq[-1]
            call2 = pb_grpc.MediaStreamServiceStub(new).ListenMedia(
                pb.ListenMediaRequest(config=config)
            )
            assert (await call2.read()).started.resumed
            # Past the old connection's keepalive drop and a whole grace period after it.
            end = time.monotonic() + KEEPALIVE_TIME_S + KEEPALIVE_TIMEOUT_S + SLACK_S + 1.5
            while time.monotonic() < end:
                msg = await asyncio.wait_for(call2.read(), 2)
                assert msg.WhichOneof("payload") == "audio", msg
                seq.append(msg.audio.sequence_number)
            assert seq == list(range(seq[0], seq[0] + len(seq)))
            assert started.stream_id in harness.gateway.streams.streams
            call2.cancel()
    finally:
        await relay.close()
    assert await harness.leftovers(wait=4.0) == []


@pytest.mark.settings(keepalive_time_s=KEEPALIVE_TIME_S)
async def test_a_silent_websocket_client_is_dropped_within_the_heartbeat_bound(
    harness: Harness,
) -> None:
    assert harness.gateway.endpoints is not None
    host, port = harness.gateway.endpoints.websocket.rsplit(":", 1)
    relay = FreezableRelay(host, int(port))
    address = await relay.start()
    call_id = harness.emulator.add_call(
        "tone", channel_id=str(uuid.uuid4())
    )  # the shim takes UUIDs
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                f"http://{address}/v1.0/calls/{call_id}/media_stream?encapsulation=sln"
            ) as ws,
        ):
            for _ in range(5):
                await ws.receive_bytes(timeout=2)
            (stream_id,) = [
                s.id
                for s in harness.gateway.streams.streams.values()
                if s.spec.target.id == call_id
            ]
            relay.freeze()
            await gone(harness, stream_id, 1.5 * KEEPALIVE_TIME_S + SLACK_S)
            await relay.close()  # or the client would wait for a close handshake
    finally:
        await relay.close()
    assert await harness.leftovers() == []
