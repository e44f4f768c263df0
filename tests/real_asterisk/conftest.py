"""Fixtures of the real-Asterisk suite: one Asterisk per release, the emulator as one more.

Every test here takes the ``backend`` fixture and so runs once per release (test IDs end in
``[23.4.1]``, ``[22.10.1]``, ``[20.20.1]``) and once against the embedded emulator
(``[emulator]``) with the same expected outcome. A test the emulator cannot play says so
with ``@pytest.mark.real_only("why")``; it then runs on the releases only.

One Asterisk per release for the whole session, started when a test first needs it and
stopped (``core stop now``) at the end. Tests that stop, kill or restart Asterisk take a
private one from ``own_asterisk`` instead, so the others are not disturbed. Without
``../shared/asterisk`` the release-parametrized tests skip, with one line saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mediastream.app import Endpoints, Gateway
from mediastream.config import Settings
from mediastream.emulator import Emulator, EmulatorConfig
from mediastream_client import MediaStreamClient, Transport
from tests.real_asterisk.asterisk import RELEASES, Asterisk, build, missing_reason
from tests.real_asterisk.platform import Platform

EMULATOR = "emulator"
GATEWAY_CHANNELS = ("UnicastRTP/", "AudioSocket/", "WebSocket/", "Snoop/")
TRANSPORTS = (Transport.RTP, Transport.AUDIOSOCKET, Transport.WEBSOCKET)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything in this directory carries the ``real_asterisk`` marker.

    Under pytest-xdist (``make test`` runs ``--dist loadgroup``), every test of one release
    goes to the same worker: each worker starts an Asterisk for each release it is given,
    so that one release's tests on two workers would start two Asterisks of it.
    """
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real_asterisk)
            callspec = getattr(item, "callspec", None)
            release = callspec.params.get("release") if callspec is not None else None
            if release is not None and release != EMULATOR:
                item.add_marker(pytest.mark.xdist_group(f"asterisk-{release}"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``release`` by every release (and ``emulator`` unless ``real_only``)."""
    if "release" not in metafunc.fixturenames:
        return
    ids = list(RELEASES)
    if metafunc.definition.get_closest_marker("real_only") is None:
        ids.append(EMULATOR)
    metafunc.parametrize("release", ids, ids=ids, scope="session")


class Instances:
    """The session's Asterisk processes: one per release, started on first use."""

    def __init__(self) -> None:
        self.running: dict[str, Asterisk] = {}
        self.prefixes: dict[str, Path] = {}
        self.failed: dict[str, str] = {}

    def prefix(self, release: str) -> Path:
        if release not in self.prefixes:
            self.prefixes[release] = build(release)
        return self.prefixes[release]

    def new(self, release: str, **options: Any) -> Asterisk:
        """A fresh, started Asterisk of ``release`` in a private directory."""
        # Short (/tmp): the control socket's path must fit in sun_path (108 bytes).
        workdir = Path(tempfile.mkdtemp(prefix=f"ast-{release}-"))
        asterisk = Asterisk(release, self.prefix(release), workdir, **options)
        asterisk.start()
        return asterisk

    def shared(self, release: str) -> Asterisk:
        """The release's session-wide Asterisk (restarted if a test left it down)."""
        if release in self.failed:
            pytest.fail(self.failed[release])
        try:
            if release not in self.running:
                self.running[release] = self.new(release)
            asterisk = self.running[release]
            if not asterisk.ping():
                asterisk.restart()
        except Exception as exc:
            self.failed[release] = f"Asterisk {release} unavailable: {exc}"
            raise
        return asterisk

    def close(self) -> None:
        for asterisk in self.running.values():
            asterisk.cleanup()


@pytest.fixture(scope="session")
def instances() -> Iterator[Instances]:
    """Every Asterisk the session started; all stopped at its end."""
    registry = Instances()
    yield registry
    registry.close()


@dataclass
class Backend:
    """What the gateway and the platform talk to: a real Asterisk or the emulator.

    Attributes:
        release: ``23.4.1``... or ``emulator``.
        ari_url: ARI's base URL (``http://127.0.0.1:<port>/ari``).
        asterisk: The real Asterisk, or None on the emulator.
        emulator: The emulator, or None on a real Asterisk.
    """

    release: str
    ari_url: str
    ari_user: str
    ari_password: str
    asterisk: Asterisk | None = None
    emulator: Emulator | None = None

    @property
    def is_emulator(self) -> bool:
        """True on the embedded emulator."""
        return self.emulator is not None

    def supports(self, transport: Transport) -> str | None:
        """Why this backend cannot carry ``transport``, or None when it can."""
        if (
            transport is Transport.WEBSOCKET
            and self.asterisk is not None
            and not self.asterisk.has_module("chan_websocket.so")
        ):
            return f"Asterisk {self.release} has no chan_websocket"
        return None

    async def stop(self) -> None:
        """Stop it: ``core stop now`` (channels soft-hung with cause 4, then ARI closes)."""
        if self.asterisk is not None:
            await asyncio.to_thread(self.asterisk.stop)
        elif self.emulator is not None:
            await self.emulator.stop()

    async def kill(self) -> None:
        """``kill -9``: it vanishes without a word (the emulator: :meth:`Emulator.kill`)."""
        if self.asterisk is not None:
            await asyncio.to_thread(self.asterisk.kill)
        elif self.emulator is not None:
            await self.emulator.kill()

    async def start(self) -> None:
        """Start it again on the same ARI port (a gateway pointed at it reconnects)."""
        if self.asterisk is not None:
            await asyncio.to_thread(self.asterisk.start)
        elif self.emulator is not None:
            old = self.emulator.config
            self.emulator = Emulator(
                EmulatorConfig(
                    port=self.emulator.port,
                    username=old.username,
                    password=old.password,
                    demo=False,
                )
            )
            await self.emulator.start()

    def platform(self) -> Platform:
        """A new platform client (use with ``async with``)."""
        return Platform(self.ari_url, self.ari_user, self.ari_password, emulator=self.is_emulator)


def _skip_without_shared(release: str) -> None:
    reason = missing_reason()
    if reason is not None and release != EMULATOR:
        pytest.skip(reason)


@pytest.fixture
async def backend(release: str, instances: Instances) -> AsyncIterator[Backend]:
    """The session's Asterisk of ``release``, or a fresh emulator for ``emulator``."""
    _skip_without_shared(release)
    if release == EMULATOR:
        emulator = Emulator(EmulatorConfig(port=0, demo=False))
        await emulator.start()
        try:
            yield Backend(
                EMULATOR,
                emulator.ari_url,
                emulator.config.username,
                emulator.config.password,
                emulator=emulator,
            )
        finally:
            await emulator.stop()
        return
    asterisk = instances.shared(release)
    yield Backend(release, asterisk.ari_url, asterisk.ari_user, asterisk.ari_password, asterisk)


@pytest.fixture
def own_asterisk(release: str, instances: Instances) -> Iterator[Callable[..., Backend]]:
    """A factory of private Asterisk instances (for tests that stop, kill or restart one)."""
    _skip_without_shared(release)
    made: list[Asterisk] = []

    def make(**options: Any) -> Backend:
        assert release != EMULATOR, "own_asterisk is for real releases (mark real_only)"
        asterisk = instances.new(release, **options)
        made.append(asterisk)
        return Backend(
            release, asterisk.ari_url, asterisk.ari_user, asterisk.ari_password, asterisk
        )

    yield make
    for asterisk in made:
        asterisk.cleanup()


@pytest.fixture
async def own_backend(
    release: str, own_asterisk: Callable[..., Backend]
) -> AsyncIterator[Callable[..., Awaitable[Backend]]]:
    """A factory of private backends that a test may stop, kill and start again.

    A private Asterisk of the release, or a private emulator (the same scenario, the same
    expected outcome: the emulator stops as ``core stop now`` does and dies as ``kill -9``).
    """
    made: list[Backend] = []

    async def make(**options: Any) -> Backend:
        if release != EMULATOR:
            return own_asterisk(**options)
        emulator = Emulator(EmulatorConfig(port=0, demo=False))
        await emulator.start()
        backend = Backend(
            EMULATOR,
            emulator.ari_url,
            emulator.config.username,
            emulator.config.password,
            emulator=emulator,
        )
        made.append(backend)
        return backend

    yield make
    for backend in made:
        if backend.emulator is not None:
            await backend.emulator.stop()


@dataclass
class RunningGateway:
    """A gateway under test, pointed at a backend."""

    gateway: Gateway
    endpoints: Endpoints
    backend: Backend

    def client(self) -> MediaStreamClient:
        """A gRPC client of this gateway (use with ``async with``)."""
        return MediaStreamClient(self.endpoints.grpc)

    @property
    def ws_url(self) -> str:
        """``ws://host:port`` of the WebSocket endpoints and the page."""
        return self.endpoints.websocket


async def gateway_objects(platform: Platform) -> list[str]:
    """Channels and bridges the gateway made that Asterisk still holds."""
    channels = [
        c["name"] for c in await platform.channels() if c["name"].startswith(GATEWAY_CHANNELS)
    ]
    bridges = [
        b["id"] for b in await platform.bridges() if b.get("name", "").startswith("mediastream")
    ]
    return channels + bridges


@contextlib.asynccontextmanager
async def running_gateway(backend: Backend, **settings: Any) -> AsyncIterator[RunningGateway]:
    """A gateway on free loopback ports pointed at ``backend``, stopped afterwards."""
    values: dict[str, Any] = {
        "ari_url": backend.ari_url,
        "ari_user": backend.ari_user,
        "ari_password": backend.ari_password,
        "media_host": "127.0.0.1",
        "audiosocket_port": 0,
        "grpc_listen": "127.0.0.1:0",
        "ws_listen": "127.0.0.1:0",
        "metrics_listen": "127.0.0.1:0",
        "drain_timeout_s": 0.5,
        "resume_grace_s": 3.0,
        **settings,
    }
    config = Settings(**values)
    config.validate()
    gateway = Gateway(config)
    endpoints = await gateway.start()
    try:
        yield RunningGateway(gateway, endpoints, backend)
    finally:
        await gateway.stop(grace=0.5)


@pytest.fixture
async def gw(backend: Backend, request: pytest.FixtureRequest) -> AsyncIterator[RunningGateway]:
    """A gateway pointed at ``backend``; settings from the test's ``settings`` marker."""
    marker = request.node.get_closest_marker("settings")
    async with running_gateway(backend, **(marker.kwargs if marker else {})) as running:
        yield running


@pytest.fixture
async def platform(backend: Backend) -> AsyncIterator[Platform]:
    """The platform's ARI client (its own Stasis app); hangs up what it made."""
    async with backend.platform() as p:
        yield p
