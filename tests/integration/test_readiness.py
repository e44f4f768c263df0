"""Readiness over plain HTTP: the same answer as gRPC health, for probes that speak only HTTP."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from grpc_health.v1 import health_pb2

from tests.harness import Harness
from tests.integration.test_lifecycle import health


async def get(address: str, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{address}{path}", timeout=aiohttp.ClientTimeout(total=5)) as r,
    ):
        return r.status, await r.text()


@pytest.mark.leaves_streams
async def test_readyz_follows_asterisk_as_grpc_health_does(harness: Harness) -> None:
    endpoints = harness.gateway.endpoints
    assert endpoints is not None
    for address in (endpoints.metrics, endpoints.websocket):
        assert await get(address, "/readyz") == (200, "ready\n")
        assert await get(address, "/livez") == (200, "live\n")
    await harness.emulator.stop()
    service = "voipbin.mediastream.v1.MediaStreamService"
    async with asyncio.timeout(10):
        while await health(harness.grpc, service) == health_pb2.HealthCheckResponse.SERVING:
            await asyncio.sleep(0.05)
    for address in (endpoints.metrics, endpoints.websocket):
        assert await get(address, "/readyz") == (503, "not ready: no Asterisk reachable\n")
        assert await get(address, "/livez") == (200, "live\n")  # a restart would not help
