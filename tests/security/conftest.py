"""Helpers of the security probe: two credential kinds, raw stubs, refusals."""

from __future__ import annotations

import time
from typing import Any

import grpc
import jwt
import pytest

from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from mediastream_client import RPCError

SECRET = "security-probe-secret-long-enough-for-hs256"
KEY = "probe-key-1"
KEY_2 = "probe-key-2"
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}
PROBE_SETTINGS = {"api_keys": f"{KEY},{KEY_2}", "jwt_key": SECRET}
"""The probe's gateway: HS256 tokens and two API keys."""


def token(key: object = SECRET, algorithm: str = "HS256", **claims: object) -> str:
    """A JWT valid for a minute, with `claims`."""
    return jwt.encode({"exp": int(time.time()) + 60, **claims}, key, algorithm=algorithm)  # type: ignore[arg-type]


def bearer(credential: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying `credential`."""
    return (("authorization", f"Bearer {credential}"),)


async def refusal(call: Any) -> RPCError:
    """The rich error a unary call or a stream's first read ends with."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await (call.read() if hasattr(call, "read") else call)
    return RPCError.from_aio(err.value)


def listen(channel: grpc.aio.Channel, credential: str, **config: Any) -> Any:
    """A ListenMedia call (not yet read)."""
    stub = pb_grpc.MediaStreamServiceStub(channel)
    return stub.ListenMedia(
        pb.ListenMediaRequest(config=pb.StreamConfig(**config)), metadata=bearer(credential)
    )


def assert_plain(text: str) -> None:
    """Error text a client sees holds no Python repr (class, object address)."""
    for leak in ("<class", "<generator", " object at 0x", "Traceback"):
        assert leak not in text, text
