"""An in-process gateway with its embedded emulator, one per test, for fine control."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from mediastream.app import Gateway
from mediastream.config import Settings
from mediastream.emulator import Emulator
from mediastream_client import MediaStreamClient


@dataclasses.dataclass
class Harness:
    gateway: Gateway
    grpc: str
    ari_url: str

    @property
    def emulator(self) -> Emulator:
        assert self.gateway.emulator is not None
        return self.gateway.emulator

    def client(self, token: str | None = None) -> MediaStreamClient:
        return MediaStreamClient(self.grpc, token=token)


@pytest.fixture
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    marker = request.node.get_closest_marker("settings")
    overrides = marker.kwargs if marker else {}
    settings = Settings(**{"grpc_listen": "127.0.0.1:0", "drain_timeout_s": 0.5, **overrides})
    settings.validate()
    gateway = Gateway(settings)
    endpoints = await gateway.start()
    try:
        yield Harness(gateway, endpoints.grpc, endpoints.ari_url)
    finally:
        await gateway.stop(grace=0.5)
