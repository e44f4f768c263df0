"""An in-process gateway with its embedded emulator, one per test, for fine control.

The `harness` fixture is registered for every test directory by tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable

import grpc
import pytest

from mediastream.app import Endpoints, Gateway
from mediastream.config import Settings
from mediastream.emulator import Emulator
from mediastream_client import MediaStreamClient

GATEWAY_CHANNELS = ("UnicastRTP/", "AudioSocket/", "WebSocket/", "Snoop/")

FREE_PORTS: dict[str, object] = {
    "grpc_listen": "127.0.0.1:0",
    "ws_listen": "127.0.0.1:0",
    "metrics_listen": "127.0.0.1:0",
    "audiosocket_port": 0,
}
"""Every listen setting on a free port: a test's gateway never binds a default port.

A gateway someone runs beside the suite (``make run``) holds the defaults; a test
gateway on them would fail to start, or worse, a test would talk to the wrong one.
"""


def free_port_settings(**overrides: object) -> Settings:
    """Gateway settings for a test: :data:`FREE_PORTS` under `overrides`, validated.

    Build every in-process gateway's settings here, never with ``Settings()``,
    whose listen defaults are the well-known ports (see tests/conftest.py's guard).
    """
    return Settings(**{**FREE_PORTS, **overrides}).validate()  # type: ignore[arg-type]


def own_connection(target: str, allowed_instances: Iterable[str] = ()) -> MediaStreamClient:
    """A client on a TCP connection of its own.

    Channels to one target in one process share a connection; a balancer (or the
    kernel, for worker processes) spreads connections, not streams.

    Args:
        target: The gateway's address.
        allowed_instances: Instances a RESUME_WRONG_INSTANCE refusal may send the
            client to (`MediaStreamClient`'s argument).
    """
    channel = grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
    return MediaStreamClient(
        channel=channel,
        instance_channel=grpc.aio.insecure_channel,
        allowed_instances=allowed_instances,
    )


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

    def gateway_objects(self) -> list[str]:
        """Names of the channels and bridges the gateway made that Asterisk still holds."""
        pbx = self.emulator.pbx
        channels = [
            c.name
            for c in pbx.channels.values()
            if not c.hung_up and c.name.startswith(GATEWAY_CHANNELS)
        ]
        bridges = [b.name for b in pbx.bridges.values() if b.name.startswith("mediastream-")]
        return channels + bridges

    async def leftovers(self, wait: float = 3.0) -> list[str]:
        """What the gateway made and still holds once its streams had time to end."""
        for _ in range(int(wait / 0.05)):
            if not self.gateway_objects() and not self.gateway.streams.streams:
                break
            await asyncio.sleep(0.05)
        return self.gateway_objects() + list(self.gateway.streams.streams)


@contextlib.asynccontextmanager
async def running_gateway(
    request: pytest.FixtureRequest, **defaults: object
) -> AsyncIterator[tuple[Gateway, Endpoints]]:
    """A started gateway with the test's `settings` marker over `defaults`.

    Every listener is on a free port unless the test says otherwise (:func:`free_port_settings`).

    On a clean exit, unless the test is marked `leaves_streams`, fails if the
    gateway left anything of its own in Asterisk.
    """
    marker = request.node.get_closest_marker("settings")
    overrides = marker.kwargs if marker else {}
    settings = free_port_settings(**{**defaults, **overrides})
    gateway = Gateway(settings)
    endpoints = await gateway.start()
    try:
        yield gateway, endpoints
        if request.node.get_closest_marker("leaves_streams") is None:
            probe = Harness(gateway, endpoints.grpc, endpoints.ari_url)
            assert await probe.leftovers() == [], "the gateway left objects in Asterisk"
    finally:
        await gateway.stop(grace=0.5)


@pytest.fixture
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with running_gateway(request, drain_timeout_s=0.5) as (gateway, endpoints):
        yield Harness(gateway, endpoints.grpc, endpoints.ari_url)
