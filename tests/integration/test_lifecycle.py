"""A real gateway process: health, and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import grpc
import pytest
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


async def http_status(address: str, path: str) -> int | None:
    """The status of a plain GET, or None when nothing takes the connection."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{address}{path}", timeout=aiohttp.ClientTimeout(total=5)) as r,
        ):
            return r.status
    except aiohttp.ClientConnectionError:
        return None


async def tcp_accepts(address: str) -> bool:
    """Whether something accepts a TCP connection at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.open_connection(host, int(port))
    except OSError:
        return False
    writer.close()
    return True


async def test_sigterm_drains_streams_then_exits() -> None:
    gw = start_gateway(env={"MEDIASTREAM_DRAIN_TIMEOUT_S": "1.5"})
    try:
        for service in SERVICES:
            assert await health(gw.grpc, service) == health_pb2.HealthCheckResponse.SERVING
        for address in (gw.metrics, gw.websocket):
            assert await http_status(address, "/readyz") == 200
            assert await http_status(address, "/livez") == 200
        async with (
            MediaStreamClient(gw.grpc, open_retries=0) as client,
            client.listen(call_id=gw.demo["tone_call"]) as stream,
        ):
            gw.process.send_signal(signal.SIGTERM)
            # The drain takes no new connection, on the WebSocket port as on gRPC's,
            async with asyncio.timeout(5):
                while await http_status(gw.websocket, "/readyz") is not None:
                    await asyncio.sleep(0.05)
            # gRPC's listener is closed by grpc-core's own thread a moment after the
            # stop begins; a probe connecting within that moment is accepted and then
            # cancelled by the shutdown. Wait until the port itself refuses.
            async with asyncio.timeout(5):
                while await tcp_accepts(gw.grpc):
                    await asyncio.sleep(0.05)
            with pytest.raises(grpc.aio.AioRpcError) as probed:
                await health(gw.grpc, "")
            assert probed.value.code() is grpc.StatusCode.UNAVAILABLE
            # and says why on the metrics port, which stays up for the probes.
            assert await http_status(gw.metrics, "/readyz") == 503
            assert await http_status(gw.metrics, "/livez") == 200
            # A new stream on the old connection (GOAWAY'd) is refused before it starts.
            try:
                async with client.listen(call_id=gw.demo["tone_call"]):
                    raise AssertionError("a new stream was accepted while draining")
            except RPCError as exc:
                assert exc.code is grpc.StatusCode.UNAVAILABLE, exc
                assert exc.reason in ("", "DRAINING"), exc
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
