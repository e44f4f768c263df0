"""The security checklist, end to end, where other files do not already show it.

* Every entry point refuses a caller without credentials when keys are configured: both gRPC
  services (before looking at the request), every WebSocket route (the web page and the
  JSON endpoints included) and /metrics (its own token). Health stays open for probes.
* A token scoped to one call reaches no other call's external media either (its streams:
  tests/integration/test_errors.py::test_authentication_and_scopes and
  tests/shim/test_errors.py::test_token_scoped_to_another_call_is_403).
* gRPC over TLS and mutual TLS carries streams; plaintext to a TLS port fails.
* Five streams per call by default, shared by gRPC and WebSocket (a setting:
  max_streams_per_target, shown in test_errors.py); streams per client (API key, JWT subject),
  max_streams_per_client, also shared by both APIs.
* No secret (API key, JWT, its key, ARI password, metrics token) and no audio in the logs, at
  DEBUG, as text and as JSON.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import os
import secrets
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mediastream._proto import external_media_pb2 as em
from mediastream._proto import external_media_pb2_grpc as em_grpc
from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from mediastream.emulator import ECHO_CALL_ID, TONE_CALL_ID
from mediastream_client import AudioFormat, MediaStreamClient, RPCError
from tests.harness import Harness, running_gateway

SECRET = "security-test-secret-long-enough-for-hs256"
KEY = "key-security-1"
METRICS_TOKEN = "scrape-security-1"
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def token(**claims: object) -> str:
    return jwt.encode({"exp": int(time.time()) + 60, **claims}, SECRET, algorithm="HS256")


def bearer(credential: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {credential}"),)


async def grpc_refusal(call: Any) -> RPCError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return RPCError.from_aio(err.value)


async def listen_refusal(channel: grpc.aio.Channel, metadata: Any = ()) -> RPCError:
    stub = pb_grpc.MediaStreamServiceStub(channel)
    call = stub.ListenMedia(
        pb.ListenMediaRequest(config=pb.StreamConfig(call_id=TONE_CALL_ID)), metadata=metadata
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    return RPCError.from_aio(err.value)


async def stream_refusal(channel: grpc.aio.Channel) -> RPCError:
    call = pb_grpc.MediaStreamServiceStub(channel).StreamMedia()
    await call.write(pb.StreamMediaRequest(config=pb.StreamConfig(call_id=TONE_CALL_ID)))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    return RPCError.from_aio(err.value)


def shim_paths(harness: Harness) -> list[str]:
    """Every GET route of the WebSocket server, with a call's ID filled in."""
    runner = harness.gateway.shim._runner
    assert runner is not None
    paths: list[str] = []
    for route in runner.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        assert route.method in ("GET", "HEAD") and isinstance(path, str), route
        path = path.replace("{kind}", "calls").replace("{id}", TONE_CALL_ID)
        if path not in paths:
            paths.append(path)
    return paths


PROBES = {"/livez": "live\n", "/readyz": "ready\n"}
"""The HTTP probes on the WebSocket port, open to anyone, and their answers when ready."""


@pytest.mark.settings(api_keys=KEY, jwt_key=SECRET, metrics_token=METRICS_TOKEN)
async def test_every_entry_point_refuses_a_caller_without_credentials(harness: Harness) -> None:
    unauthenticated = (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        # MediaStreamService, both RPCs.
        err = await listen_refusal(channel)
        assert (err.code, err.reason) == unauthenticated
        err = await listen_refusal(channel, bearer("key-guessed"))
        assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
        err = await stream_refusal(channel)
        assert (err.code, err.reason) == unauthenticated
        # ExternalMediaService, every RPC, before it looks at the request: a bad target or
        # an unknown ID says nothing to a caller without credentials.
        api = em_grpc.ExternalMediaServiceStub(channel)
        for call in (
            api.StartExternalMedia(em.StartExternalMediaRequest(call_id="x", external_host="y")),
            api.StopExternalMedia(em.StopExternalMediaRequest(id="no-such-id")),
            api.StopExternalMedia(em.StopExternalMediaRequest(call_id=TONE_CALL_ID)),
            api.GetExternalMedia(em.GetExternalMediaRequest(id="no-such-id")),
            api.ListExternalMedia(em.ListExternalMediaRequest()),
        ):
            err = await grpc_refusal(call)
            assert (err.code, err.reason) == unauthenticated
        # Health answers anyone: load balancers and kubelet probes carry no token.
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        # With credentials: a stream, and the external media list.
        async with (
            MediaStreamClient(harness.grpc, token=KEY) as client,
            client.listen(call_id=TONE_CALL_ID) as stream,
        ):
            assert stream.info is not None
        listed = await api.ListExternalMedia(em.ListExternalMediaRequest(), metadata=bearer(KEY))
        assert list(listed.external_media) == []

    assert harness.gateway.endpoints is not None
    base = f"http://{harness.gateway.endpoints.websocket}"
    paths = shim_paths(harness)
    assert {"/ui/", "/v1.0/streams", "/v1.0/demo", *PROBES} <= set(paths), paths
    async with aiohttp.ClientSession() as http:
        for path in paths:
            async with http.get(base + path, headers=UPGRADE, allow_redirects=False) as r:
                if path in ("/", "/ui"):
                    assert r.status == 302  # to /ui/, which asks for credentials itself
                    assert r.headers["Location"].split("?")[0] == "/ui/", path
                    continue
                if path in PROBES:
                    # Open, as gRPC health is (SERVING above): HTTP probes carry no
                    # token. The answer says up or ready, and nothing else.
                    assert r.status == 200, path
                    assert await r.text() == PROBES[path], path
                    continue
                assert r.status == 401, path
                assert (await r.json())["error"]["reason"] == "TOKEN_MISSING", path
        for path in ("/ui/", "/v1.0/demo", "/v1.0/streams"):
            async with http.get(
                f"{base}{path}?token={token(sub='agent')}", allow_redirects=False
            ) as r:
                # The page moves a credential from its address into a cookie.
                assert r.status == (303 if path == "/ui/" else 200), path
            async with http.get(base + path, headers={"Cookie": f"accesskey={KEY}"}) as r:
                assert r.status == 200, path
        metrics = f"http://{harness.gateway.endpoints.metrics}/metrics"
        for headers, status in (
            ({}, 401),
            ({"Authorization": f"Bearer {KEY}"}, 401),  # an API key is not the metrics token
            ({"Authorization": f"Bearer {METRICS_TOKEN}"}, 200),
        ):
            async with http.get(metrics, headers=headers) as r:
                assert r.status == status, headers
    assert await harness.leftovers() == []


@pytest.mark.settings(api_keys=KEY, jwt_key=SECRET)
async def test_a_scoped_token_reaches_no_other_calls_external_media(harness: Harness) -> None:
    mine, theirs = ECHO_CALL_ID, TONE_CALL_ID
    scoped = bearer(token(call_id=mine))
    denied = (grpc.StatusCode.PERMISSION_DENIED, "TOKEN_SCOPE")
    sink = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    host = f"127.0.0.1:{sink[0].get_extra_info('sockname')[1]}"
    try:
        async with grpc.aio.insecure_channel(harness.grpc) as channel:
            api = em_grpc.ExternalMediaServiceStub(channel)
            other = await api.StartExternalMedia(
                em.StartExternalMediaRequest(call_id=theirs, external_host=host),
                metadata=bearer(KEY),
            )
            other_id = other.external_media.id
            for call in (
                api.StartExternalMedia(
                    em.StartExternalMediaRequest(call_id=theirs, external_host=host),
                    metadata=scoped,
                ),
                api.GetExternalMedia(em.GetExternalMediaRequest(id=other_id), metadata=scoped),
                api.StopExternalMedia(em.StopExternalMediaRequest(id=other_id), metadata=scoped),
                api.StopExternalMedia(em.StopExternalMediaRequest(call_id=theirs), metadata=scoped),
                api.ListExternalMedia(em.ListExternalMediaRequest(call_id=theirs), metadata=scoped),
                api.ListExternalMedia(em.ListExternalMediaRequest(), metadata=scoped),
            ):
                err = await grpc_refusal(call)
                assert (err.code, err.reason) == denied
            # Its own call is fine; the other call's external media is untouched.
            own = await api.StartExternalMedia(
                em.StartExternalMediaRequest(call_id=mine, external_host=host), metadata=scoped
            )
            listed = await api.ListExternalMedia(
                em.ListExternalMediaRequest(call_id=mine), metadata=scoped
            )
            assert [m.id for m in listed.external_media] == [own.external_media.id]
            got = await api.GetExternalMedia(
                em.GetExternalMediaRequest(id=other_id), metadata=bearer(KEY)
            )
            assert got.external_media.id == other_id
            for target in (mine, theirs):
                await api.StopExternalMedia(
                    em.StopExternalMediaRequest(call_id=target), metadata=bearer(KEY)
                )
    finally:
        sink[0].close()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mediastream-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
async def test_streams_over_tls_and_mutual_tls(
    request: pytest.FixtureRequest, tmp_path: Path, mutual: bool
) -> None:
    cert, key = self_signed(tmp_path)
    tls: dict[str, object] = {"tls_cert": str(cert), "tls_key": str(key)}
    if mutual:
        tls["tls_client_ca"] = str(cert)
    async with running_gateway(
        request, grpc_listen="127.0.0.1:0", ws_listen="127.0.0.1:0", metrics_listen="", **tls
    ) as (_, endpoints):
        pem = cert.read_bytes()
        async with grpc.aio.insecure_channel(endpoints.grpc) as plain:
            err = await listen_refusal(plain)
            assert err.code is grpc.StatusCode.UNAVAILABLE, "plaintext to a TLS port"
        if mutual:
            async with MediaStreamClient(endpoints.grpc, root_certificates=pem) as anonymous:
                with pytest.raises(RPCError) as refused:
                    async with anonymous.listen(call_id=TONE_CALL_ID):
                        pass
                assert refused.value.code is grpc.StatusCode.UNAVAILABLE, "no client certificate"
        async with (
            MediaStreamClient(
                endpoints.grpc,
                root_certificates=pem,
                private_key=key.read_bytes() if mutual else None,
                certificate_chain=pem if mutual else None,
            ) as client,
            client.listen(call_id=TONE_CALL_ID, format=AudioFormat.SLIN) as stream,
        ):
            got = 0
            async for chunk in stream.audio():
                assert len(chunk.data) == 320
                got += 1
                if got == 10:
                    break


async def test_five_streams_per_call_by_default_across_both_apis(harness: Harness) -> None:
    call_id = harness.emulator.add_call("tone", channel_id="00000000-0000-4000-8000-00000000f1fe")
    async with harness.client() as client:
        streams = [client.listen(call_id=call_id) for _ in range(4)]
        for s in streams:
            await s.__aenter__()
        try:
            assert harness.gateway.endpoints is not None
            url = (
                f"http://{harness.gateway.endpoints.websocket}/v1.0/calls/{call_id}"
                "/media_stream?encapsulation=sln"
            )
            async with aiohttp.ClientSession() as http, http.ws_connect(url) as fifth:
                assert (await fifth.receive(timeout=2)).type is aiohttp.WSMsgType.BINARY
                with pytest.raises(RPCError) as err:
                    async with client.listen(call_id=call_id):
                        pass
                assert (err.value.code, err.value.reason) == (
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "TOO_MANY_STREAMS_FOR_TARGET",
                )
                assert err.value.metadata == {"limit": "5"}
                async with http.get(url, headers=UPGRADE) as r:
                    assert r.status == 429
            # Another call is not affected.
            async with client.listen(call_id=TONE_CALL_ID) as other:
                assert other.info is not None
        finally:
            for s in streams:
                await s.__aexit__(None, None, None)
    assert await harness.leftovers() == []


KEY_2 = "key-security-2"


@pytest.mark.settings(api_keys=f"{KEY},{KEY_2}", jwt_key=SECRET, max_streams_per_client=2)
async def test_streams_per_client_are_limited_per_key_and_token_subject(harness: Harness) -> None:
    calls = [
        harness.emulator.add_call("tone", channel_id=f"00000000-0000-4000-8000-0000000c1e{i:02x}")
        for i in range(3)
    ]
    assert harness.gateway.endpoints is not None
    ws = f"http://{harness.gateway.endpoints.websocket}/v1.0/calls"

    async def refused(client: MediaStreamClient, call_id: str) -> RPCError:
        with pytest.raises(RPCError) as err:
            async with client.listen(call_id=call_id):
                pass
        return err.value

    async with harness.client(KEY) as first, harness.client(KEY_2) as second:
        held = [first.listen(call_id=calls[0]), first.listen(call_id=calls[1])]
        for s in held:
            await s.__aenter__()
        try:
            # A third stream of the same key is refused, on any call, over either API.
            error = await refused(first, calls[2])
            assert (error.code, error.reason, error.metadata) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "TOO_MANY_STREAMS_FOR_CLIENT",
                {"limit": "2"},
            )
            async with (
                aiohttp.ClientSession() as http,
                http.get(
                    f"{ws}/{calls[2]}/media_stream?encapsulation=sln&token={KEY}", headers=UPGRADE
                ) as r,
            ):
                assert r.status == 429
                assert "TOO_MANY_STREAMS_FOR_CLIENT" in await r.text()
            # Another key is another client.
            async with second.listen(call_id=calls[2]) as other:
                assert other.info is not None
            # A stream that ends gives its place back.
            await held.pop().__aexit__(None, None, None)
            await asyncio.sleep(0.2)
            async with first.listen(call_id=calls[2]) as again:
                assert again.info is not None
        finally:
            for s in held:
                await s.__aexit__(None, None, None)

    # Two tokens with one subject are one client; another subject is another.
    one, same, other_sub = token(sub="tenant-a"), token(sub="tenant-a"), token(sub="tenant-b")
    async with harness.client(one) as a1, harness.client(same) as a2:
        s1 = a1.listen(call_id=calls[0])
        s2 = a2.listen(call_id=calls[1])
        await s1.__aenter__()
        await s2.__aenter__()
        try:
            assert (await refused(a2, calls[2])).reason == "TOO_MANY_STREAMS_FOR_CLIENT"
            async with harness.client(other_sub) as b, b.listen(call_id=calls[2]) as s3:
                assert s3.info is not None
        finally:
            await s1.__aexit__(None, None, None)
            await s2.__aexit__(None, None, None)
    assert await harness.leftovers() == []


# --- logs --------------------------------------------------------------------------------


def needles(data: bytes) -> list[str]:
    """How bytes could show in a log line: repr, hex, base64 (16 bytes from the start)."""
    head = data[:16]
    return [repr(head)[2:-1], head.hex(), base64.b64encode(data).decode()[:20]]


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_secret_and_no_audio_in_debug_logs(tmp_path: Path, log_format: str) -> None:
    key, wrong_key = f"key-{secrets.token_hex(8)}", f"key-{secrets.token_hex(8)}"
    jwt_key = secrets.token_hex(24)
    ari_password = f"ari-{secrets.token_hex(8)}"
    metrics_token = f"metrics-{secrets.token_hex(8)}"
    # The tokens must outlive the whole test, however loaded the machine: the test's own
    # bound is pytest's timeout (120 s, pyproject.toml), so an hour is never what ends
    # it (an expiry 60 s out made the test fail once under load).
    # (bad_jwt must fail on its signature, not on its expiry.)
    exp = int(time.time()) + 3600
    jwt_token = jwt.encode({"exp": exp, "sub": "log-test"}, jwt_key, algorithm="HS256")
    bad_jwt = jwt.encode({"exp": exp}, "another-key-" * 3, algorithm="HS256")
    secret_texts = [key, wrong_key, jwt_key, ari_password, metrics_token, jwt_token, bad_jwt]
    # ARI's basic auth, as it would show if a header were logged.
    secret_texts.append(base64.b64encode(f"asterisk:{ari_password}".encode()).decode())
    stderr_path = tmp_path / "gateway.log"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "MEDIASTREAM_API_KEYS": key,
        "MEDIASTREAM_JWT_KEY": jwt_key,
        "MEDIASTREAM_ARI_PASSWORD": ari_password,
        "MEDIASTREAM_METRICS_TOKEN": metrics_token,
        "MEDIASTREAM_LOG_LEVEL": "DEBUG",
        "MEDIASTREAM_LOG_FORMAT": log_format,
    }
    args = ["--grpc-listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0"]
    args += ["--metrics-listen", "127.0.0.1:0"]
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "mediastream.cli", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
    audio: list[bytes] = []
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        # Audio both ways: the tone call down, a marked pattern up into the echo call.
        async with (
            MediaStreamClient(ready["grpc"], token=key) as client,
            client.listen(call_id=TONE_CALL_ID, format=AudioFormat.SLIN) as listen,
        ):
            async for chunk in listen.audio():
                audio.append(chunk.data)
                if len(audio) == 25:
                    break
        sent = struct.pack("<160h", *[(i * 997) % 20000 - 10000 for i in range(160)])
        audio.append(sent)
        async with (
            MediaStreamClient(ready["grpc"], token=jwt_token) as client,
            client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as duplex,
        ):
            for _ in range(25):
                await duplex.send(sent)
            got = 0
            async for chunk in duplex.audio():
                audio.append(chunk.data)
                got += 1
                if got == 25:
                    break
        for wrong in (wrong_key, bad_jwt):
            async with MediaStreamClient(ready["grpc"], token=wrong) as client:
                with pytest.raises(RPCError):
                    async with client.listen(call_id=TONE_CALL_ID):
                        pass
        # WebSocket: the token in the query string, then an API key as a cookie.
        base = f"http://{ready['websocket']}/v1.0/calls/{TONE_CALL_ID}/media_stream"
        async with aiohttp.ClientSession() as http:
            for url, headers in (
                (f"{base}?encapsulation=sln&token={jwt_token}", {}),
                (f"{base}?encapsulation=rtp", {"Cookie": f"accesskey={key}"}),
            ):
                async with http.ws_connect(url, headers=headers) as ws:
                    for _ in range(10):
                        audio.append((await ws.receive(timeout=3)).data)
            async with http.get(f"{base}?encapsulation=sln&token={wrong_key}") as r:
                assert r.status == 401
            for scrape_token in (metrics_token, wrong_key):
                headers = {"Authorization": f"Bearer {scrape_token}"}
                async with http.get(f"http://{ready['metrics']}/metrics", headers=headers):
                    pass
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
    logged = stderr_path.read_text()
    assert process.returncode == 0, logged[-2000:]
    assert "DEBUG" in logged or '"level":"DEBUG"' in logged, "no DEBUG lines: the test is void"
    assert "stream" in logged and "opened" in logged
    for text in secret_texts:
        assert text not in logged, f"a secret is in the log: {text[:6]}…"
    for data in audio:
        for needle in needles(data):
            assert needle not in logged, f"audio in the log: {needle}"
