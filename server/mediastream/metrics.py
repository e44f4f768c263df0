"""Prometheus metrics: one registry for the process, served over HTTP.

Counters are incremented where the event happens; nothing here reads a clock.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

STREAMS_ACTIVE = Gauge(
    "mediastream_streams_active",
    "Streams open now.",
    ["kind", "transport", "encapsulation", "mode"],
    registry=REGISTRY,
)
STREAMS_OPENED = Counter(
    "mediastream_streams_opened_total",
    "Streams opened.",
    ["kind", "transport"],
    registry=REGISTRY,
)
STREAMS_ENDED = Counter(
    "mediastream_streams_ended_total",
    "Streams ended, by reason.",
    ["reason"],
    registry=REGISTRY,
)
STREAMS_STARVED = Counter(
    "mediastream_streams_starved_total",
    "Streams that received no frame from Asterisk for 2 s while their channel was up"
    " (each counted once).",
    ["transport"],
    registry=REGISTRY,
)
STREAM_ERRORS = Counter(
    "mediastream_stream_errors_total",
    "Requests refused or streams failed, by gRPC/HTTP-independent reason.",
    ["reason"],
    registry=REGISTRY,
)
STREAM_CONTROLS = Counter(
    "mediastream_stream_controls_total",
    "Commands carried out by the ControlStream side channel, by command (clear, dtmf, hangup).",
    ["command"],
    registry=REGISTRY,
)
FRAMES = Counter(
    "mediastream_frames_total",
    "Audio frames (20 ms) by direction and outcome.",
    ["direction", "outcome"],
    registry=REGISTRY,
)
"""direction: from_asterisk (to the client) or to_asterisk; outcome: relayed, dropped,
concealed, refused, cleared (chunks a ControlStream clear overtook, dropped as read)."""
ADDED_LATENCY = Histogram(
    "mediastream_added_latency_seconds",
    "Time from a chunk's last frame arriving from Asterisk to its hand-over to the client.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
ARI_REQUESTS = Counter(
    "mediastream_ari_requests_total",
    "ARI REST requests, by method and status class (2xx, 4xx, 5xx, error).",
    ["method", "status"],
    registry=REGISTRY,
)
ASTERISK_CONNECTED = Gauge(
    "mediastream_asterisk_connected",
    "1 while the ARI events WebSocket of an Asterisk is up.",
    ["asterisk"],
    registry=REGISTRY,
)
EXTERNAL_MEDIA = Gauge(
    "mediastream_external_media",
    "External media by status.",
    ["status"],
    registry=REGISTRY,
)
DIAL_OUTS = Counter(
    "mediastream_dial_outs_total",
    "Dial-out streams by protocol and outcome: connected, then how each ended (stopped, "
    "call_hangup, bot_closed, bot_lost, bot_garbage, bot_not_reading, bot_backlog) or "
    "why it never started (dns_failed, refused, timeout, tls_failed, http_error, connect_failed).",
    ["dialect", "outcome"],
    registry=REGISTRY,
)
STATUS_CALLBACKS = Counter(
    "mediastream_status_callbacks_total",
    "Dial-out status callbacks by event and outcome (delivered, retried, failed).",
    ["event", "outcome"],
    registry=REGISTRY,
)
RESUMES = Counter(
    "mediastream_resumes_total",
    "Streams resumed after a dropped connection.",
    registry=REGISTRY,
)
SNOOPS_NUDGED = Counter(
    "mediastream_snoops_nudged_total",
    "Deleted snoop channels that did not go within 1 s (nothing passed their call), after"
    " the silence generator ran on the call: gone, or still stuck.",
    ["outcome"],
    registry=REGISTRY,
)
WS_PENDING = Gauge(
    "mediastream_ws_connections_pending",
    "Connections to the WebSocket/page port not (yet) upgraded to a WebSocket.",
    registry=REGISTRY,
)
MALFORMED_INPUT = Counter(
    "mediastream_malformed_input_total",
    "Input dropped or refused as malformed, by where it came in.",
    ["ingress"],
    registry=REGISTRY,
)

CLIENT_MESSAGES_IGNORED = Counter(
    "mediastream_client_messages_ignored_total",
    "Client messages ignored because the dialect ignores them (e.g. a Twilio client's stop).",
    ["dialect", "event"],
    registry=REGISTRY,
)
"""event: a name the dialect defines, or ``other``."""
CLIENT_MESSAGES_TOLERATED = Counter(
    "mediastream_client_messages_tolerated_total",
    "Client messages carried out although they break a rule of their dialect, by rule.",
    ["dialect", "rule"],
    registry=REGISTRY,
)


Readiness = Callable[[], Awaitable[str]]
"""Why the gateway should get no new streams now ("" : it should): see `add_probes`."""


def add_probes(app: web.Application, readiness: Readiness) -> None:
    """Add ``GET /livez`` and ``GET /readyz``: health for probes that speak only HTTP.

    gRPC health is the same answer for gRPC-aware probes; nginx OSS cannot send a gRPC
    check, HAProxy 2.6 cannot put the gRPC frame in its check body, and a kubelet
    ``httpGet`` probe is the common default. No credentials, as for gRPC health: the
    answers say nothing but up or not.

    * ``/livez``: 200 while the process serves HTTP at all (a restart would not help
      with anything else).
    * ``/readyz``: 200 ``ready`` when new streams are welcome; 503 with the reason
      (``draining``, no Asterisk reachable) otherwise, as gRPC health's NOT_SERVING.
    """

    async def livez(request: web.Request) -> web.Response:
        return web.Response(text="live\n", headers={"Cache-Control": "no-store"})

    async def readyz(request: web.Request) -> web.Response:
        why = await readiness()
        if why:
            return web.Response(
                status=503, text=f"not ready: {why}\n", headers={"Cache-Control": "no-store"}
            )
        return web.Response(text="ready\n", headers={"Cache-Control": "no-store"})

    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)


async def serve(
    listen: str,
    token: str,
    render: Callable[[], Awaitable[bytes]],
    readiness: Readiness | None = None,
) -> tuple[web.AppRunner, str]:
    """Serve ``GET /metrics`` on `listen` (``host:port``, port 0: any free port).

    Args:
        listen: Where to listen.
        token: Bearer token a scrape must present; empty: none.
        render: Produces the exposition text of one scrape.
        readiness: When given, ``/livez`` and ``/readyz`` too (`add_probes`).

    Returns:
        The runner (clean it up to stop) and the bound ``host:port``.
    """

    async def scrape(request: web.Request) -> web.Response:
        if token and not hmac.compare_digest(
            request.headers.get("Authorization", ""), f"Bearer {token}"
        ):
            return web.Response(status=401, text="metrics need a bearer token\n")
        return web.Response(body=await render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    if readiness is not None:
        add_probes(app, readiness)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    return runner, f"{host}:{runner.addresses[0][1]}"
