"""/metrics: the counters move when streams run, and the endpoint can require a token."""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mediastream.emulator import TONE_CALL_ID
from mediastream_client import AudioFormat, RPCError
from tests.harness import Harness


async def scrape(harness: Harness, token: str | None = None) -> tuple[int, dict[str, float]]:
    assert harness.gateway.endpoints is not None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{harness.gateway.endpoints.metrics}/metrics", headers=headers) as resp,
    ):
        text = await resp.text()
        if resp.status != 200:
            return resp.status, {}
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return 200, samples


def value(samples: dict[str, float], name: str, **labels: str) -> float:
    key = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return samples.get(f"{name}{{{key}}}", 0.0)


async def test_counters_move_with_a_stream(harness: Harness) -> None:
    _, before = await scrape(harness)
    async with (
        harness.client() as client,
        client.listen(call_id=TONE_CALL_ID, format=AudioFormat.SLIN) as stream,
    ):
        chunks = 0
        async for _ in stream.audio():
            chunks += 1
            if chunks == 25:
                _, during = await scrape(harness)
                break
    with pytest.raises(RPCError):
        async with harness.client() as client, client.listen(call_id="no-such-call"):
            pass
    await harness.leftovers()
    _, after = await scrape(harness)
    active = {"kind": "call", "transport": "rtp", "encapsulation": "sln", "mode": "listen"}
    assert value(during, "mediastream_streams_active", **active) == 1
    assert value(after, "mediastream_streams_active", **active) == 0
    opened = "mediastream_streams_opened_total"
    assert (
        value(after, opened, kind="call", transport="rtp")
        - value(before, opened, kind="call", transport="rtp")
        == 1
    )
    frames = "mediastream_frames_total"
    relayed = {"direction": "from_asterisk", "outcome": "relayed"}
    assert value(after, frames, **relayed) - value(before, frames, **relayed) >= 25
    latency = "mediastream_added_latency_seconds_count"
    assert value(after, latency) - value(before, latency) >= 25
    errors = "mediastream_stream_errors_total"
    assert (
        value(after, errors, reason="CALL_NOT_FOUND")
        - value(before, errors, reason="CALL_NOT_FOUND")
        == 1
    )
    assert value(after, "mediastream_ari_requests_total", method="POST", status="2xx") > 0
    assert value(after, "mediastream_asterisk_connected", asterisk=harness.ari_url) == 1


@pytest.mark.settings(metrics_token="scrape-me")
async def test_metrics_can_require_a_token(harness: Harness) -> None:
    assert (await scrape(harness))[0] == 401
    assert (await scrape(harness, "wrong"))[0] == 401
    status, samples = await scrape(harness, "scrape-me")
    assert status == 200 and "mediastream_resumes_total{}" in samples


@pytest.mark.leaves_streams
async def test_health_follows_asterisk(harness: Harness) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service="voipbin.mediastream.v1.MediaStreamService")
        assert (await stub.Check(check)).status == health_pb2.HealthCheckResponse.SERVING
        await harness.emulator.stop()
        for _ in range(100):
            if (await stub.Check(check)).status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0.05)
        assert (await stub.Check(check)).status == health_pb2.HealthCheckResponse.NOT_SERVING
