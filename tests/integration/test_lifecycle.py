"""A real gateway process: health, and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mediastream_client import MediaStreamClient, RPCError, StopReason
from tests.conftest import start_gateway, stop_gateway

SERVICES = (
    "",
    "voipbin.mediastream.v1.MediaStreamService",
    "voipbin.mediastream.v1.ExternalMediaService",
)


async def health(target: str, service: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
        return int(reply.status)


async def test_sigterm_drains_streams_then_exits() -> None:
    gw = start_gateway(env={"MEDIASTREAM_DRAIN_TIMEOUT_S": "1.5"})
    try:
        for service in SERVICES:
            assert await health(gw.grpc, service) == health_pb2.HealthCheckResponse.SERVING
        async with (
            MediaStreamClient(gw.grpc) as client,
            client.listen(call_id=gw.demo["tone_call"]) as stream,
        ):
            gw.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            assert await health(gw.grpc, "") == health_pb2.HealthCheckResponse.NOT_SERVING
            try:
                async with client.listen(call_id=gw.demo["tone_call"]):
                    raise AssertionError("a new stream was accepted while draining")
            except RPCError as exc:
                assert (exc.code, exc.reason) == (grpc.StatusCode.UNAVAILABLE, "DRAINING")
            chunks = 0
            async with asyncio.timeout(5):
                async for _ in stream.audio():
                    chunks += 1
            # The stream kept flowing through the drain period, then ended cleanly.
            assert chunks > 50
            assert stream.stopped is not None
            assert stream.stopped.reason is StopReason.SERVER_SHUTDOWN
        assert await asyncio.to_thread(gw.process.wait, 10) == 0
    finally:
        stop_gateway(gw)
