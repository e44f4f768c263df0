"""An in-process gateway with its WebSocket endpoints on a free port, one per test."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest

from mediastream.app import Gateway
from mediastream.config import Settings
from mediastream.core.formats import AudioFormat
from mediastream.core.pcm import Transcoder
from mediastream.emulator import Emulator
from tests.harness import GATEWAY_CHANNELS


@dataclasses.dataclass
class Shim:
    gateway: Gateway
    base: str
    http: aiohttp.ClientSession

    @property
    def emulator(self) -> Emulator:
        assert self.gateway.emulator is not None
        return self.gateway.emulator

    def url(
        self, target: str, endpoint: str = "media_stream", kind: str = "calls", **q: str
    ) -> str:
        query = f"?{urlencode(q)}" if q else ""
        return f"{self.base}/v1.0/{kind}/{target}/{endpoint}{query}"

    def ws(self, url: str, **kw: Any) -> Any:
        """A WebSocket client context (aiohttp), no client-side size limit."""
        return self.http.ws_connect(url, max_msg_size=0, **kw)

    def add_call(self, kind: str = "tone") -> str:
        """A fresh call with a UUID id (the endpoints take UUIDs only)."""
        return self.emulator.add_call(kind, channel_id=str(uuid.uuid4()))

    def gateway_objects(self) -> list[str]:
        pbx = self.emulator.pbx
        channels = [
            c.name
            for c in pbx.channels.values()
            if not c.hung_up and c.name.startswith(GATEWAY_CHANNELS)
        ]
        bridges = [b.name for b in pbx.bridges.values() if b.name.startswith("mediastream-")]
        return channels + bridges

    async def leftovers(self, wait: float = 3.0) -> list[str]:
        for _ in range(int(wait / 0.05)):
            if not self.gateway_objects() and not self.gateway.streams.streams:
                break
            await asyncio.sleep(0.05)
        return self.gateway_objects() + list(self.gateway.streams.streams)


@pytest.fixture
async def shim(request: pytest.FixtureRequest) -> AsyncIterator[Shim]:
    marker = request.node.get_closest_marker("settings")
    overrides = marker.kwargs if marker else {}
    defaults = {
        "grpc_listen": "127.0.0.1:0",
        "ws_listen": "127.0.0.1:0",
        "metrics_listen": "",
        "drain_timeout_s": 0.5,
    }
    settings = Settings(**{**defaults, **overrides}).validate()
    gateway = Gateway(settings)
    endpoints = await gateway.start()
    try:
        async with aiohttp.ClientSession() as http:
            shim = Shim(gateway, f"http://{endpoints.websocket}", http)
            yield shim
            if request.node.get_closest_marker("leaves_streams") is None:
                assert await shim.leftovers() == [], "the gateway left objects in Asterisk"
    finally:
        await gateway.stop(grace=0.5)


def pcm(data: bytes, fmt: AudioFormat) -> npt.NDArray[np.float64]:
    """Samples of `data` in `fmt` (little-endian for slin) as floats."""
    if fmt is AudioFormat.ULAW:
        data = Transcoder(AudioFormat.ULAW, AudioFormat.SLIN).convert(data)
    return np.frombuffer(data, "<i2").astype(np.float64)
