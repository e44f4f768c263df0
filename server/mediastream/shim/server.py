"""The HTTP server of the WebSocket endpoints, the stream list and the web page.

Routes:

* ``GET /v1.0/{calls|conferences}/{id}/media_stream``: VoIPBIN's media stream.
* ``GET /v1.0/{calls|conferences}/{id}/twilio``: the Twilio Media Streams dialect.
* ``GET /v1.0/streams``: the gateway's active streams (any adapter), as JSON.
* ``GET /v1.0/demo``: the embedded emulator's demo calls, as JSON.
* ``GET /ui/`` (and ``/``): a page to listen to and talk into any call.

Every refusal before the upgrade goes through `mediastream.shim.errors`.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import logging
import socket
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, web

from mediastream import logs, metrics
from mediastream.auth import Authenticator, Principal, client_id
from mediastream.core.stream import StopReason, Target, Transport
from mediastream.errors import InvalidArgument, MediaStreamError, PermissionDenied
from mediastream.shim import twilio, voipbin
from mediastream.shim.errors import error_response
from mediastream.shim.params import credentials, parse_media_stream, parse_target
from mediastream.shim.session import Dialect, ShimWebSocket, run_session
from mediastream.streams import Stream, StreamManager

log = logging.getLogger(__name__)

HEARTBEAT_S = 20.0
"""Default: ping a client quiet this long; one that does not answer within half of it is dropped."""

_PAGE = importlib.resources.files("mediastream.shim").joinpath("page.html")

SEND_BUFFER_BYTES = 16 * 1024
"""What a stream's connection may hold on its way out, besides the replay ring: the socket's
kernel send buffer (Linux doubles it), and half of it each in the event loop's transport and
in aiohttp's writer. Left to autotuning, the kernel's grows to tcp_wmem's maximum (4 MiB by
default): minutes of audio queued for a client that reads slower than real time before its
writer is held back and the oldest audio dropped. This still carries a stream's at most
33 kB/s at round trips up to about half a second."""


def _limit_send_buffer(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    transport.set_write_buffer_limits(high=SEND_BUFFER_BYTES // 2)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _demo_targets() -> dict[str, object]:
    # Imported only when the emulator is embedded, as cli.py does.
    from mediastream.emulator import demo

    return {
        "embedded": True,
        "calls": [
            {"name": "tone_call", "id": demo.TONE_CALL_ID, "description": "plays 440 Hz"},
            {"name": "echo_call", "id": demo.ECHO_CALL_ID, "description": "echoes what it hears"},
            {
                "name": "dtmf_call",
                "id": demo.DTMF_CALL_ID,
                "description": "440 Hz, and DTMF 1 2 # every 2 s",
            },
        ],
        "conferences": [
            {
                "name": "conference",
                "id": demo.CONFERENCE_ID,
                "description": "a 440 Hz and an 880 Hz participant",
            }
        ],
    }


def _stream_summary(stream: Stream) -> dict[str, object]:
    spec = stream.spec
    return {
        "stream_id": stream.id,
        "kind": spec.target.kind.value,
        "id": spec.target.id,
        "format": spec.format.value,
        "uplink_format": spec.input_format.value,
        "encapsulation": spec.encapsulation.value,
        "transport": spec.transport.value,
        "bidirectional": spec.bidirectional,
        "attached": stream.attached,
    }


class ShimServer:
    """WebSocket endpoints over the stream core, VoIPBIN- and Twilio-compatible.

    Args:
        streams: The gateway's stream manager.
        auth: The gateway's authenticator.
        transport: externalMedia transport for the streams it opens.
        embedded: Whether the gateway runs the emulator (the page lists its demo calls).
        heartbeat_s: Ping a client after this long without a message from it; drop it
            when no pong comes within half of it.
    """

    def __init__(
        self,
        streams: StreamManager,
        auth: Authenticator,
        transport: Transport,
        *,
        embedded: bool = False,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self._streams = streams
        self._auth = auth
        self._transport = transport
        self._embedded = embedded
        self._runner: web.AppRunner | None = None
        self._sockets: set[ShimWebSocket] = set()
        self.heartbeat_s = heartbeat_s
        self.address = ""

    def _app(self) -> web.Application:
        app = web.Application()
        kinds = "{kind:calls|conferences}"
        app.router.add_get(f"/v1.0/{kinds}/{{id}}/media_stream", self._media_stream)
        app.router.add_get(f"/v1.0/{kinds}/{{id}}/twilio", self._twilio)
        app.router.add_get("/v1.0/streams", self._list_streams)
        app.router.add_get("/v1.0/demo", self._demo)
        app.router.add_get("/ui/", self._page)
        app.router.add_get("/", self._root)
        return app

    async def start(self, listen: str, *, reuse_port: bool = False) -> str:
        """Listen on ``host:port`` (port 0: any free port); return the bound ``host:port``.

        Args:
            listen: ``host:port``.
            reuse_port: Share the port with the other worker processes (SO_REUSEPORT).
        """
        # A short shutdown: open sockets are closed by stop() before the runner's cleanup.
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        host, _, port = listen.rpartition(":")
        site = web.TCPSite(self._runner, host.strip("[]"), int(port), reuse_port=reuse_port)
        await site.start()
        bound = self._runner.addresses[0]
        self.address = f"{host}:{bound[1]}"
        log.info("WebSocket endpoints on http://%s", self.address)
        return self.address

    async def stop(self) -> None:
        """Close every open WebSocket (1001) and stop listening."""
        for ws in list(self._sockets):
            with contextlib.suppress(ConnectionError):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server_shutdown")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- handlers -----------------------------------------------------------------------

    def _principal(self, request: web.Request) -> Principal:
        token = credentials(request.cookies, request.query, request.headers.get("Authorization"))
        if token is not None and token in (
            request.cookies.get("token"),
            request.cookies.get("accesskey"),
        ):
            # A browser sends cookies to any site's WebSocket: without this check
            # another page could open a stream with the user's credentials.
            origin = request.headers.get("Origin")
            if origin and urlsplit(origin).netloc != request.host:
                raise PermissionDenied(
                    "cookie credentials are only accepted from this server's own pages",
                    reason="CROSS_ORIGIN",
                )
        return self._auth.authenticate(token)

    def _target(self, request: web.Request) -> Target:
        target = parse_target(request.match_info["kind"], request.match_info["id"])
        logs.target.set(f"{target.kind.value}:{target.id}")
        return target

    def _websocket(self, request: web.Request, max_msg_size: int) -> ShimWebSocket:
        ws = ShimWebSocket(
            heartbeat=self.heartbeat_s,
            max_msg_size=max_msg_size,
            writer_limit=SEND_BUFFER_BYTES // 2,
        )
        # Checked before the stream opens: a plain GET must not create a leg in Asterisk.
        if not ws.can_prepare(request):
            raise InvalidArgument(
                "upgrade",
                "this endpoint is a WebSocket: send a GET with Upgrade: websocket",
                reason="WEBSOCKET_REQUIRED",
            )
        return ws

    @staticmethod
    def _refuse(error: MediaStreamError) -> web.Response:
        metrics.STREAM_ERRORS.labels(error.reason).inc()
        log.info("WebSocket stream refused: %s (%s)", error.message, error.reason)
        return error_response(error)

    async def _media_stream(self, request: web.Request) -> web.StreamResponse:
        try:
            # Credentials first, as VoIPBIN's middleware checks them first.
            principal = self._principal(request)
            target = self._target(request)
            parsed = parse_media_stream(target, request.query, self._transport)
            principal.check(target)
            ws = self._websocket(
                request,
                voipbin.max_message_bytes(parsed.spec, self._streams.limits.play_buffer_ms),
            )
            stream = await self._streams.open(
                parsed.spec, client_id(principal, request.remote or "")
            )
        except MediaStreamError as exc:
            return self._refuse(exc)
        dialect = voipbin.VoipbinDialect(ws, stream, self._streams, events=parsed.events)
        return await self._serve(request, ws, stream, dialect)

    async def _twilio(self, request: web.Request) -> web.StreamResponse:
        try:
            principal = self._principal(request)
            target = self._target(request)
            principal.check(target)
            ws = self._websocket(
                request, twilio.max_message_bytes(self._streams.limits.play_buffer_ms)
            )
            stream = await self._streams.open(
                twilio.twilio_spec(target, self._transport),
                client_id(principal, request.remote or ""),
            )
        except MediaStreamError as exc:
            return self._refuse(exc)
        dialect = twilio.TwilioDialect(
            ws, stream, self._streams, account=principal.subject, parameters=request.query
        )
        return await self._serve(request, ws, stream, dialect)

    async def _serve(
        self, request: web.Request, ws: ShimWebSocket, stream: Stream, dialect: Dialect
    ) -> web.StreamResponse:
        self._sockets.add(ws)
        try:
            await ws.prepare(request)
            _limit_send_buffer(request)
            await run_session(dialect)
        finally:
            self._sockets.discard(ws)
            # Also when the upgrade itself failed; closing twice is harmless.
            await self._streams.close(stream, StopReason.CLIENT_DONE, "WebSocket client went away")
        return ws

    async def _list_streams(self, request: web.Request) -> web.Response:
        try:
            principal = self._principal(request)
        except MediaStreamError as exc:
            return error_response(exc)
        # A token scoped to one call sees only that call's streams.
        visible = [
            s
            for s in list(self._streams.streams.values())
            if principal.scope is None or principal.scope == s.spec.target
        ]
        return _json({"streams": [_stream_summary(s) for s in visible]})

    async def _demo(self, request: web.Request) -> web.Response:
        try:
            self._principal(request)
        except MediaStreamError as exc:
            return error_response(exc)
        if not self._embedded:
            return _json({"embedded": False, "calls": [], "conferences": []})
        return _json(_demo_targets())

    async def _page(self, request: web.Request) -> web.Response:
        # With credentials configured, only their holders see the page (?token= or a cookie).
        try:
            self._principal(request)
        except MediaStreamError as exc:
            return error_response(exc)
        return web.Response(
            text=_PAGE.read_text(encoding="utf-8"),
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    async def _root(self, request: web.Request) -> web.StreamResponse:
        # Keep the query: the page reads ?token= from its own address.
        raise web.HTTPFound(request.rel_url.with_path("/ui/").with_query(request.query))
