"""An in-process gateway with its WebSocket endpoints on a free port, one per test."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest

from mediastream.core.formats import AudioFormat
from mediastream.core.pcm import Transcoder
from tests.harness import Harness, running_gateway


@dataclasses.dataclass
class Shim(Harness):
    base: str
    http: aiohttp.ClientSession

    def url(
        self, target: str, endpoint: str = "media_stream", kind: str = "calls", **q: str
    ) -> str:
        query = f"?{urlencode(q)}" if q else ""
        return f"{self.base}/v1.0/{kind}/{target}/{endpoint}{query}"

    def ws(self, url: str, **kw: Any) -> Any:
        """A WebSocket client context (aiohttp), no client-side size limit."""
        return self.http.ws_connect(url, max_msg_size=0, **kw)

    def add_call(self, kind: str = "tone", *, asterisk_id: bool = False) -> str:
        """A fresh call: a UUID id, or Asterisk's own uniqueid (``1795515126.1745``)."""
        return self.emulator.add_call(kind, channel_id=None if asterisk_id else str(uuid.uuid4()))


@pytest.fixture
async def shim(request: pytest.FixtureRequest) -> AsyncIterator[Shim]:
    async with (
        running_gateway(
            request,
            grpc_listen="127.0.0.1:0",
            ws_listen="127.0.0.1:0",
            metrics_listen="",
            drain_timeout_s=0.5,
        ) as (gateway, endpoints),
        aiohttp.ClientSession() as http,
    ):
        yield Shim(
            gateway, endpoints.grpc, endpoints.ari_url, f"http://{endpoints.websocket}", http
        )


def pcm(data: bytes, fmt: AudioFormat) -> npt.NDArray[np.float64]:
    """Samples of `data` in `fmt` (little-endian for slin) as floats."""
    if fmt is AudioFormat.ULAW:
        data = Transcoder(AudioFormat.ULAW, AudioFormat.SLIN).convert(data)
    return np.frombuffer(data, "<i2").astype(np.float64)
