"""Refusals leave an audit trail (finding 12): a WARNING line with the peer, the
identity once known, and the reason on every entry point (gRPC streaming and unary
RPCs, WebSocket, page), each counted once in mediastream_stream_errors_total, and
never the credential."""

from __future__ import annotations

import hashlib
import logging

import aiohttp
import grpc
import pytest

from mediastream import metrics
from mediastream._proto import external_media_pb2 as em_pb
from mediastream._proto import external_media_pb2_grpc as em_grpc
from mediastream.emulator import ECHO_CALL_ID, TONE_CALL_ID
from tests.harness import Harness
from tests.security.conftest import KEY, PROBE_SETTINGS, UPGRADE, bearer, listen, refusal, token

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


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_a_refusal_after_authentication_names_the_identity(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    assert harness.gateway.endpoints is not None
    base = f"http://{harness.gateway.endpoints.websocket}"
    scoped = token(sub="agent-7\nFORGED refused line", call_id=ECHO_CALL_ID)
    key_name = "api-key:" + hashlib.sha256(KEY.encode()).hexdigest()[:8]
    caplog.set_level(logging.WARNING)
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        await refusal(listen(channel, scoped, call_id=TONE_CALL_ID))
        external = em_grpc.ExternalMediaServiceStub(channel)
        await refusal(
            external.GetExternalMedia(
                em_pb.GetExternalMediaRequest(id="nope"), metadata=bearer(KEY)
            )
        )
    path = f"/v1.0/calls/{TONE_CALL_ID}/media_stream?encapsulation=sln"
    async with aiohttp.ClientSession() as http:
        async with http.get(
            base + path, headers={**UPGRADE, "Authorization": f"Bearer {scoped}"}
        ) as r:
            assert r.status == 403
        # One kept-alive connection: who the first request was is not the second's.
        async with http.get(f"{base}/v1.0/streams", headers=bearer_header(KEY)) as r:
            assert r.status == 200
        async with http.get(f"{base}/v1.0/streams", headers=bearer_header(GUESSED)) as r:
            assert r.status == 401
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    scope_lines = [line for line in lines if "(TOKEN_SCOPE)" in line]
    assert len(scope_lines) == 2, lines
    assert all(" as jwt:agent-7?FORGED refused line:" in line for line in scope_lines)
    assert any(f"as {key_name}:" in line and "EXTERNAL_MEDIA_NOT_FOUND" in line for line in lines)
    invalid = [line for line in lines if "TOKEN_INVALID" in line]
    assert len(invalid) == 1 and " as " not in invalid[0], invalid


def bearer_header(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}
