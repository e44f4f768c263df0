"""Two gateway instances on one (emulated) Asterisk behind a real nginx or HAProxy.

Every test here carries the ``real_proxy`` marker and takes the ``cluster`` fixture, so it
runs once per proxy (test IDs end in ``[nginx]`` and ``[haproxy]``). The proxies are
Debian's packages (``make proxies``: scripts/proxies/install.sh); without one, its tests
skip with one line saying why.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mediastream.emulator import Emulator, EmulatorConfig
from tests.conftest import RunningGateway, start_gateway, stop_gateway
from tests.harness import GATEWAY_CHANNELS
from tests.real_proxy.proxies import KINDS, Backend, Proxy, free_port, missing_reason

DRAIN_TIMEOUT_S = 3.0
"""The gateways' drain time: long enough for a drain under load to be measured."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything in this directory carries the ``real_proxy`` marker."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real_proxy)


@pytest.fixture(params=KINDS)
def proxy_kind(request: pytest.FixtureRequest) -> str:
    kind = str(request.param)
    why = missing_reason(kind)
    if why:
        pytest.skip(why)
    return kind


@dataclass
class Cluster:
    """Two gateways, their Asterisk and the proxy in front of them."""

    emulator: Emulator
    gateways: list[RunningGateway]
    proxy: Proxy

    @property
    def addresses(self) -> list[str]:
        return [g.grpc for g in self.gateways]

    def objects_of(self, app: str) -> list[str]:
        return [
            c.name
            for c in self.emulator.pbx.channels.values()
            if not c.hung_up and c.name.startswith(GATEWAY_CHANNELS) and c.stasis_app == app
        ]


async def _start_instance(name: str, ari_url: str) -> RunningGateway:
    # The advertised address must be known before the gateway starts, so the port is
    # picked, let go, then bound by the gateway: another process may take it in between;
    # the gateway then exits before its ready line, and a fresh port is tried.
    for attempt in range(3):
        address = f"127.0.0.1:{free_port()}"
        try:
            return await asyncio.to_thread(
                start_gateway,
                "--grpc-listen",
                address,
                "--advertise-address",
                address,
                "--ari-app",
                f"mediastream-{name}",
                "--drain-timeout-s",
                str(DRAIN_TIMEOUT_S),
                env={"MEDIASTREAM_ARI_URL": ari_url},
            )
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture
async def cluster(proxy_kind: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    emulator = Emulator(EmulatorConfig(demo=True))
    await emulator.start()
    gateways: list[RunningGateway] = []
    proxy: Proxy | None = None
    try:
        for name in ("a", "b"):
            gateways.append(await _start_instance(name, emulator.ari_url))
        backends = [Backend(g.grpc, g.websocket, g.metrics) for g in gateways]
        proxy = Proxy(proxy_kind, backends, tmp_path / proxy_kind)
        await asyncio.to_thread(proxy.start)
        yield Cluster(emulator, gateways, proxy)
    finally:
        if proxy is not None:
            await asyncio.to_thread(proxy.stop)
        for gw in gateways:
            await asyncio.to_thread(stop_gateway, gw)
        await emulator.stop()
