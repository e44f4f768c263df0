"""Refusals leave an audit trail (finding 12): a WARNING line with the peer and the
reason on every entry point (gRPC streaming and unary RPCs, WebSocket, page), each
counted once in mediastream_stream_errors_total, and never the credential."""

from __future__ import annotations

import logging

import aiohttp
import grpc
import pytest

from mediastream import metrics
from mediastream._proto import external_media_pb2 as em_pb
from mediastream._proto import external_media_pb2_grpc as em_grpc
from mediastream.emulator import TONE_CALL_ID
from tests.harness import Harness
from tests.security.conftest import PROBE_SETTINGS, UPGRADE, bearer, listen, refusal, token

GUESSED = "guessed-secret-4711"


def refused_count() -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "mediastream_stream_errors_total", {"reason": "TOKEN_INVALID"}
        )
        or 0.0
    )


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_every_refusal_is_logged_with_the_peer_and_counted_once(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    assert harness.gateway.endpoints is not None
    base = f"http://{harness.gateway.endpoints.websocket}"
    wrong_key_jwt = token(key="another-secret-of-sufficient-length-xx", sub="mallory")
    before = refused_count()
    caplog.set_level(logging.DEBUG)
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        await refusal(listen(channel, GUESSED, call_id=TONE_CALL_ID))
        await refusal(listen(channel, wrong_key_jwt, call_id=TONE_CALL_ID))
        external = em_grpc.ExternalMediaServiceStub(channel)
        await refusal(
            external.ListExternalMedia(em_pb.ListExternalMediaRequest(), metadata=bearer(GUESSED))
        )
        await refusal(
            external.GetExternalMedia(
                em_pb.GetExternalMediaRequest(id="x"), metadata=bearer(GUESSED)
            )
        )
    path = f"/v1.0/calls/{TONE_CALL_ID}/media_stream?encapsulation=sln"
    async with aiohttp.ClientSession() as http:
        headers = {**UPGRADE, "Authorization": f"Bearer {GUESSED}"}
        async with http.get(base + path, headers=headers) as r:
            assert r.status == 401
        # The page's plain GET asking why: answered, not counted or logged again.
        async with http.get(base + path, headers={"Authorization": f"Bearer {GUESSED}"}) as r:
            assert r.status == 401
        async with http.get(f"{base}/ui/?token={GUESSED}", allow_redirects=False) as r:
            assert r.status == 401
    assert refused_count() - before == 7
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "TOKEN_INVALID" in r.getMessage()
    ]
    assert len(warnings) == 7, warnings
    grpc_lines = [w for w in warnings if "ipv4:127.0.0.1:" in w]
    assert {w.split(" refused")[0] for w in grpc_lines} == {
        "ListenMedia",
        "ListExternalMedia",
        "GetExternalMedia",
    }, grpc_lines
    assert all("127.0.0.1" in w for w in warnings)
    for record in caplog.records:
        text = record.getMessage()
        assert GUESSED not in text and wrong_key_jwt not in text, text
