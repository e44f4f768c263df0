"""The running gateway: Asterisk connection, stream manager, gRPC server.

`Gateway.start()` brings up, in order: the embedded emulator (only when no
Asterisk is configured), the ARI client (events first), then the gRPC server
with health and reflection. Health is SERVING only while ARI's events
WebSocket is up, so orchestrators do not send streams to a gateway whose
Asterisk is gone; the same answer is served over plain HTTP (``/readyz``,
``/livez``) on the metrics and WebSocket ports, for proxies and probes that
cannot speak gRPC health.

A drain (`Gateway.stop`) closes the listeners first and sends HTTP/2 GOAWAY,
so that a proxy or client opens its next stream elsewhere instead of being
refused here, while the streams already running keep their drain time.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from dataclasses import dataclass

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import generate_latest

from mediastream import metrics
from mediastream._proto import external_media_pb2_grpc as em_grpc
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from mediastream.api import conventions
from mediastream.api.grpc_external_media import SERVICE_NAME as EXTERNAL_MEDIA_SERVICE
from mediastream.api.grpc_external_media import ExternalMediaServicer
from mediastream.api.grpc_service import SERVICE_NAME, MediaStreamServicer
from mediastream.asterisk.ari import AriClient, AriConfig
from mediastream.asterisk.audiosocket import AudioSocketServer
from mediastream.asterisk.legs import LegFactory
from mediastream.asterisk.pool import AsteriskPool
from mediastream.auth import Authenticator
from mediastream.config import Settings
from mediastream.core.formats import AudioFormat
from mediastream.dialout import DialOutSettings
from mediastream.emulator import Emulator, EmulatorConfig
from mediastream.external_media import ExternalMediaManager, parse_allow_list
from mediastream.play_clock import PlayClock
from mediastream.shim import ShimServer
from mediastream.streams import StreamLimits, StreamManager
from mediastream.target_counts import SharedTargetCounts, TargetCounts

log = logging.getLogger(__name__)

_GRPC_DEFAULT_MAX_RECEIVE = 4 * 1024 * 1024
_MESSAGE_OVERHEAD = 64 * 1024
"""Room in a gRPC message besides its samples (framing, a mark, a config)."""


def _max_receive_bytes(play_buffer_s: int) -> int:
    """The receive limit for gRPC: its default, or room for the play buffer in one chunk."""
    audio = AudioFormat.SLIN16.bytes_for(play_buffer_s * 1000)
    return max(_GRPC_DEFAULT_MAX_RECEIVE, audio + _MESSAGE_OVERHEAD)


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class Endpoints:
    """Where a started gateway can be reached."""

    grpc: str
    ari_url: str
    embedded: bool
    metrics: str
    websocket: str = ""


@dataclass(frozen=True)
class WorkerRole:
    """What makes a gateway process one worker of several (see `mediastream.workers`).

    Attributes:
        index: The worker's number, from 0.
        direct_listen: ``host:port`` of this worker alone, next to the shared port;
            the worker advertises it, so that a resume reaches it.
        counts_path: The table of streams per call that the workers share.
        embedded_asterisk: Whether the supervisor runs the embedded emulator (the
            worker then serves its demo calls on the web page).
    """

    index: int
    direct_listen: str
    counts_path: str
    embedded_asterisk: bool = False


class Gateway:
    """The whole gateway in one process (or one worker process of several)."""

    def __init__(self, settings: Settings, worker: WorkerRole | None = None) -> None:
        self.settings = settings
        self.worker = worker
        self._emulator: Emulator | None = None
        self._aris: list[AriClient] = []
        self._pool: AsteriskPool | None = None
        self._server: grpc.aio.Server | None = None
        self._health = conventions.HealthServicer()
        self._streams: StreamManager | None = None
        self._audiosocket: AudioSocketServer | None = None
        self._external: ExternalMediaManager | None = None
        self._health_tasks: set[asyncio.Task[None]] = set()
        self._metrics_runner: web.AppRunner | None = None
        self._shim: ShimServer | None = None
        self._shared_counts: SharedTargetCounts | None = None
        self._draining = False
        self._grpc_stopped: asyncio.Task[None] | None = None
        self.endpoints: Endpoints | None = None

    async def start(self) -> Endpoints:
        """Bring everything up; return where it listens."""
        s = self.settings
        urls, user, password = s.ari_urls, s.ari_user, s.ari_password
        if s.embedded:
            emulator = Emulator(
                EmulatorConfig(host="127.0.0.1", port=0, username=user, password=password)
            )
            await emulator.start()
            self._emulator = emulator
            urls = [emulator.ari_url]
            log.info("embedded Asterisk emulator at %s", emulator.ari_url)
        # One clock for all the gateway's 20 ms work: pacers, AudioSocket keep-fed
        # checks and bridge keepers share its ticks (one loop wake-up, not three).
        clock = PlayClock()
        self._audiosocket = AudioSocketServer(clock=clock)
        await self._audiosocket.start(s.media_host, s.audiosocket_port)
        for url in urls:
            ari = AriClient(AriConfig(url, user, password, app=s.ari_app))
            ari.on_connection_change(self._on_asterisk)
            self._aris.append(ari)
        # Every Asterisk must be up at start-up: a gateway that cannot see one
        # of its Asterisks should fail loudly rather than serve half the calls.
        await asyncio.gather(*(ari.start() for ari in self._aris))
        factories = [
            LegFactory(ari, s.media_host, audiosocket=self._audiosocket, clock=clock)
            for ari in self._aris
        ]
        for factory in factories:
            await factory.sweep_orphans()
        self._pool = AsteriskPool(factories)
        limits = StreamLimits(
            max_streams=s.max_streams,
            max_streams_per_target=s.max_streams_per_target,
            max_streams_per_client=s.max_streams_per_client,
            resume_grace_s=s.resume_grace_s,
            play_buffer_ms=s.play_buffer_s * 1000,
        )
        counts: TargetCounts | None = None
        if self.worker is not None:
            counts = self._shared_counts = SharedTargetCounts(
                self.worker.counts_path, self.worker.index
            )
        self._streams = StreamManager(
            self._pool,
            limits,
            instance_address=s.advertise_address,
            target_counts=counts,
            clock=clock,
        )
        self._external = ExternalMediaManager(
            self._pool,
            parse_allow_list(s.external_media_allow),
            s.max_streams_per_target,
            streams=self._streams,
            dial_out=DialOutSettings(
                connect_timeout_s=s.dial_out_connect_timeout_s,
                ca_file=s.dial_out_ca_file,
                heartbeat_s=s.keepalive_time_s,
                callback_timeout_s=s.dial_out_callback_timeout_s,
                callback_retries=s.dial_out_callback_retries,
                redials=s.dial_out_redials,
            ),
            transport=s.transport,
        )
        auth = Authenticator(s.api_key_list, s.jwt_verification_key(), s.jwt_audience)
        if not auth.enabled:
            log.warning("authentication is off: set api_keys or jwt_key before exposing this")

        server = grpc.aio.server(
            # A request that does not parse: INVALID_ARGUMENT, not UNKNOWN and a traceback.
            interceptors=[conventions.ClientMistakes()],
            options=[
                # Workers share the port; a lone gateway must fail on a port in use.
                ("grpc.so_reuseport", 1 if self.worker is not None else 0),
                ("grpc.keepalive_time_ms", int(s.keepalive_time_s * 1000)),
                ("grpc.keepalive_timeout_ms", int(s.keepalive_timeout_s * 1000)),
                # gRPC core fails an unanswered keepalive ping after the ping timeout
                # (60 s by default), not after keepalive_timeout_ms: without this a
                # vanished client is held for about keepalive_time_s + 60 s.
                ("grpc.http2.ping_timeout_ms", int(s.keepalive_timeout_s * 1000)),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                # One AudioChunk may carry the whole play buffer (of slin16, the widest).
                ("grpc.max_receive_message_length", _max_receive_bytes(s.play_buffer_s)),
            ],
        )
        pb_grpc.add_MediaStreamServiceServicer_to_server(
            MediaStreamServicer(self._streams, s.transport, auth), server
        )
        em_grpc.add_ExternalMediaServiceServicer_to_server(
            ExternalMediaServicer(self._external, auth), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        conventions.enable_reflection(
            (SERVICE_NAME, EXTERNAL_MEDIA_SERVICE, health.SERVICE_NAME), server
        )
        port = self._bind(server, s.grpc_listen)
        if self.worker is not None:
            self._bind(server, self.worker.direct_listen)
        await server.start()
        self._server = server
        # "" is the process's own liveness: SERVING from here until a drain starts.
        # The service names follow Asterisk (readiness).
        await self._health.set(health.OVERALL_HEALTH, SERVING)
        await self._set_health(self._pool.connected)
        metrics_address = await self._start_metrics()
        embedded = s.embedded or (self.worker is not None and self.worker.embedded_asterisk)
        self._shim = ShimServer(
            self._streams,
            auth,
            s.transport,
            embedded=embedded,
            heartbeat_s=s.keepalive_time_s,
            header_timeout_s=s.ws_header_timeout_s,
            max_pending_per_address=s.ws_max_pending_per_address,
            readiness=self.readiness,
        )
        ws_address = await self._shim.start(
            s.ws_listen, reuse_port=self.worker is not None, ssl_context=self._ws_tls()
        )
        host = s.grpc_listen.rpartition(":")[0]
        self.endpoints = Endpoints(
            f"{host}:{port}", ",".join(urls), s.embedded, metrics_address, websocket=ws_address
        )
        return self.endpoints

    async def _start_metrics(self) -> str:
        s = self.settings
        if not s.metrics_listen:
            return ""

        async def render() -> bytes:
            return generate_latest(metrics.REGISTRY)

        self._metrics_runner, address = await metrics.serve(
            s.metrics_listen, s.metrics_token, render, self.readiness
        )
        return address

    async def readiness(self) -> str:
        """Why this instance should get no new streams now; "" when it should.

        The HTTP form of gRPC health's answer for MediaStreamService (``/readyz``).
        """
        if self._draining:
            return "draining"
        if self._pool is None or not self._pool.connected:
            return "no Asterisk reachable"
        return ""

    @property
    def emulator(self) -> Emulator | None:
        """The embedded Asterisk emulator, when there is one."""
        return self._emulator

    @property
    def shim(self) -> ShimServer:
        """The WebSocket endpoints (for tests)."""
        assert self._shim is not None
        return self._shim

    @property
    def external_media(self) -> ExternalMediaManager:
        """The external media manager (for tests)."""
        assert self._external is not None
        return self._external

    @property
    def streams(self) -> StreamManager:
        """The stream manager (for tests and metrics)."""
        assert self._streams is not None
        return self._streams

    def _bind(self, server: grpc.aio.Server, listen: str) -> int:
        s = self.settings
        if not s.tls_cert:
            return int(server.add_insecure_port(listen))
        with open(s.tls_cert, "rb") as f:
            cert = f.read()
        with open(s.tls_key, "rb") as f:
            key = f.read()
        ca = None
        if s.tls_client_ca:
            with open(s.tls_client_ca, "rb") as f:
                ca = f.read()
        creds = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
        )
        return int(server.add_secure_port(listen, creds))

    def _ws_tls(self) -> ssl.SSLContext | None:
        """TLS for the WebSocket/page port: the gRPC port's certificate and client CA."""
        s = self.settings
        if not s.tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(s.tls_cert, s.tls_key)
        if s.tls_client_ca:
            context.load_verify_locations(s.tls_client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def _on_asterisk(self, up: bool) -> None:
        # Serving while at least one Asterisk is reachable.
        up = self._pool.connected if self._pool is not None else up
        task = asyncio.get_running_loop().create_task(self._set_health(up))
        self._health_tasks.add(task)
        task.add_done_callback(self._health_tasks.discard)

    async def _set_health(self, up: bool) -> None:
        status = SERVING if up else NOT_SERVING
        for service in (SERVICE_NAME, EXTERNAL_MEDIA_SERVICE):
            await self._health.set(service, status)

    async def stop(self, grace: float = 5.0) -> None:
        """Drain: take no new connections, let streams finish, end the rest, stop everything.

        From the first moment: health NOT_SERVING (gRPC and ``/readyz``), the gRPC and
        WebSocket listeners closed, and HTTP/2 GOAWAY on every gRPC connection, so
        that proxies (connection refused: their next upstream) and clients (a new
        connection) put new streams elsewhere instead of being refused here; a
        stream that still arrives on a connection before its GOAWAY is refused with
        ``DRAINING``, which the SDKs retry on a new connection. Streams running get
        ``drain_timeout_s`` to end, then end with SERVER_SHUTDOWN.
        """
        self._draining = True
        await self._health.enter_graceful_shutdown()
        if self._shim is not None:
            self._shim.stop_accepting()
        if self._server is not None and self._grpc_stopped is None:
            # gRPC's graceful stop: listeners closed and GOAWAY now, running calls go
            # on; the grace only bounds calls still running after the drain below.
            self._grpc_stopped = asyncio.create_task(
                self._server.stop(self.settings.drain_timeout_s + grace)
            )
            # Let it close the listeners before the stream manager starts refusing: a
            # connection refused is retried by every proxy, a DRAINING refusal by none.
            await asyncio.sleep(0)
        if self._streams is not None:
            await self._streams.drain(self.settings.drain_timeout_s)
        if self._external is not None:
            await self._external.close_all()
        if self._shim is not None:
            await self._shim.stop()
        if self._grpc_stopped is not None:
            # Returns once the calls the drain ended are over, `grace` after it at most.
            await self._grpc_stopped
        if self._audiosocket is not None:
            await self._audiosocket.close()
        for ari in self._aris:
            await ari.close()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        if self._emulator is not None:
            await self._emulator.stop()
        if self._shared_counts is not None:
            self._shared_counts.close()

    async def run_until_signal(self) -> None:
        """Serve until SIGINT or SIGTERM, then stop gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("signal received: draining")
        await self.stop()
