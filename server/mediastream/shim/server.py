"""The HTTP server of the WebSocket endpoints, the stream list and the web page.

Routes:

* ``GET /v1.0/{calls|conferences}/{id}/media_stream``: VoIPBIN's media stream.
* ``GET /v1.0/{calls|conferences}/{id}/twilio``: the Twilio Media Streams dialect.
* ``GET /v1.0/streams``: the gateway's active streams (any adapter), as JSON.
* ``GET /v1.0/demo``: the embedded emulator's demo calls, as JSON.
* ``GET /ui/`` (and ``/``): a page to listen to and talk into any call.
* ``GET /readyz``, ``GET /livez``: the gateway's readiness and liveness over plain HTTP
  (`mediastream.metrics.add_probes`), for proxies that check the port they send to.

Every refusal before the upgrade goes through `mediastream.shim.errors`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.resources
import json
import logging
import re
import socket
import ssl
import time
from collections import OrderedDict
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, web

from mediastream import logs, metrics
from mediastream.auth import Authenticator, Principal, client_id
from mediastream.core.stream import StopReason, Target, Transport
from mediastream.errors import InvalidArgument, MediaStreamError, PermissionDenied
from mediastream.shim import twilio, voipbin
from mediastream.shim.errors import error_response
from mediastream.shim.gate import (
    HEADER_TIMEOUT_S,
    MAX_PENDING_PER_ADDRESS,
    ConnectionGate,
    GatedSite,
)
from mediastream.shim.params import credentials, parse_media_stream, parse_target
from mediastream.shim.session import Dialect, ShimWebSocket, run_session
from mediastream.streams import Stream, StreamManager

log = logging.getLogger(__name__)

HEARTBEAT_S = 20.0
"""Default: ping a client quiet this long; one that does not answer within half of it is dropped."""

_PAGE = importlib.resources.files("mediastream.shim").joinpath("page.html")
_WORKLET = importlib.resources.files("mediastream.shim").joinpath("mic-worklet.js")

REFUSALS_KEPT = 256
"""Refused upgrades remembered for the plain GET that asks why (see `_websocket`)."""
REFUSAL_TTL_S = 30.0
"""How long a refused upgrade's reason can be asked for."""

SEND_BUFFER_BYTES = 16 * 1024
"""What a stream's connection may hold on its way out, besides the replay ring: the socket's
kernel send buffer (Linux doubles it), and half of it each in the event loop's transport and
in aiohttp's writer. Left to autotuning, the kernel's grows to tcp_wmem's maximum (4 MiB by
default): minutes of audio queued for a client that reads slower than real time before its
writer is held back and the oldest audio dropped. This still carries a stream's at most
33 kB/s at round trips up to about half a second."""


_CREDENTIAL_PARAMETERS = ("token", "accesskey")

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
"""Sent with every HTTP answer (not the upgrade): no framing, no Referer, no sniffing."""


def _inline_hashes(html: str, tag: str) -> str:
    """CSP source expressions allowing exactly the page's own inline `tag` blocks."""
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in found
    )


def page_csp(html: str, host: str) -> str:
    """The page's Content-Security-Policy: its own inline code only, its own server only."""
    return (
        "default-src 'none'; "
        # 'self' for the AudioWorklet module (/ui/mic-worklet.js): a worklet is a script.
        f"script-src 'self' {_inline_hashes(html, 'script')}; "
        f"style-src {_inline_hashes(html, 'style')}; "
        f"connect-src 'self' ws://{host} wss://{host}; "
        "img-src 'self' data:; media-src 'self' blob:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if isinstance(response, web.WebSocketResponse):
        return
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


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
        header_timeout_s: Seconds a connection has to send a complete request head
            (`mediastream.shim.gate`).
        max_pending_per_address: Connections one address may hold before their upgrade
            (0: no limit).
        readiness: The gateway's readiness (`mediastream.metrics.Readiness`): serves
            ``/readyz`` and ``/livez`` when given.
    """

    def __init__(
        self,
        streams: StreamManager,
        auth: Authenticator,
        transport: Transport,
        *,
        embedded: bool = False,
        heartbeat_s: float = HEARTBEAT_S,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        max_pending_per_address: int = MAX_PENDING_PER_ADDRESS,
        readiness: metrics.Readiness | None = None,
    ) -> None:
        self._streams = streams
        self._auth = auth
        self._transport = transport
        self._embedded = embedded
        self._runner: web.AppRunner | None = None
        self._sockets: set[ShimWebSocket] = set()
        # (peer, path) -> (when, error) of refused upgrades, oldest first, bounded.
        self._refusals: OrderedDict[tuple[str, str], tuple[float, MediaStreamError]] = OrderedDict()
        self.heartbeat_s = heartbeat_s
        self.gate = ConnectionGate(header_timeout_s, max_pending_per_address)
        self._readiness = readiness
        self._site: web.BaseSite | None = None
        self.address = ""

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self.gate.middleware])
        app.on_response_prepare.append(_security_headers)
        kinds = "{kind:calls|conferences}"
        app.router.add_get(f"/v1.0/{kinds}/{{id}}/media_stream", self._media_stream)
        app.router.add_get(f"/v1.0/{kinds}/{{id}}/twilio", self._twilio)
        app.router.add_get("/v1.0/streams", self._list_streams)
        app.router.add_get("/v1.0/demo", self._demo)
        app.router.add_get("/ui/", self._page)
        app.router.add_get("/ui/mic-worklet.js", self._worklet)
        app.router.add_get("/ui", self._root)
        app.router.add_get("/", self._root)
        if self._readiness is not None:
            metrics.add_probes(app, self._readiness)
        return app

    async def start(
        self, listen: str, *, reuse_port: bool = False, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        """Listen on ``host:port`` (port 0: any free port); return the bound ``host:port``.

        Args:
            listen: ``host:port``.
            reuse_port: Share the port with the other worker processes (SO_REUSEPORT).
            ssl_context: Serve HTTPS/WSS with it (the gateway's tls_cert, and
                tls_client_ca when clients must present a certificate).
        """
        # A short shutdown: open sockets are closed by stop() before the runner's cleanup.
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        host, _, port = listen.rpartition(":")
        site = GatedSite(
            self._runner,
            host.strip("[]"),
            int(port),
            gate=self.gate,
            reuse_port=reuse_port,
            ssl_context=ssl_context,
        )
        await site.start()
        self._site = site
        bound = self._runner.addresses[0]
        self.address = f"{host}:{bound[1]}"
        log.info("WebSocket endpoints on %s://%s", "https" if ssl_context else "http", self.address)
        return self.address

    def stop_accepting(self) -> None:
        """Close the listener (a drain); open WebSockets and their streams go on.

        New connections are refused, so that a proxy tries its next server.
        """
        if self._site is not None and self._site._server is not None:
            # The site's own stop() also unregisters it, which cleanup() then skips;
            # closing the asyncio server alone keeps the open connections.
            self._site._server.close()

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
            # A browser cannot read a refused upgrade's answer (it sees only 1006), so
            # the page asks again with a plain GET: answer with the refusal this peer
            # just got on this path, if any (a missing call is known only on opening).
            kept = self._refusals.pop((request.remote or "", request.path), None)
            if kept is not None and time.monotonic() - kept[0] < REFUSAL_TTL_S:
                request["refusal_replay"] = True  # counted and logged when it happened
                raise kept[1]
            raise InvalidArgument(
                "upgrade",
                "this endpoint is a WebSocket: send a GET with Upgrade: websocket",
                reason="WEBSOCKET_REQUIRED",
            )
        return ws

    def _refuse(self, error: MediaStreamError, request: web.Request) -> web.Response:
        """Count, log (peer, path, never a credential), remember and answer a refusal."""
        if request.get("refusal_replay"):
            return error_response(error)
        metrics.STREAM_ERRORS.labels(error.reason).inc()
        log.warning(
            "refused %s from %s%s: %s (%s)",
            request.path,
            request.remote or "?",
            logs.who(),
            error.message,
            error.reason,
        )
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return error_response(error)  # not an upgrade: nothing for the page to ask again
        key = (request.remote or "", request.path)
        self._refusals.pop(key, None)
        self._refusals[key] = (time.monotonic(), error)
        while len(self._refusals) > REFUSALS_KEPT:
            self._refusals.popitem(last=False)
        response = error_response(error)
        if error.reason == "DRAINING":
            # A kept-alive connection (a proxy's) must not bring its next upgrade here.
            response.force_close()
        return response

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
            return self._refuse(exc, request)
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
            return self._refuse(exc, request)
        dialect = twilio.TwilioDialect(
            ws,
            stream,
            self._streams,
            account=principal.subject,
            parameters=twilio.custom_parameters(request.query),
        )
        return await self._serve(request, ws, stream, dialect)

    async def _serve(
        self, request: web.Request, ws: ShimWebSocket, stream: Stream, dialect: Dialect
    ) -> web.StreamResponse:
        self._sockets.add(ws)
        try:
            await ws.prepare(request)
            self.gate.upgraded(request)
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
            return self._refuse(exc, request)
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
            return self._refuse(exc, request)
        if not self._embedded:
            return _json({"embedded": False, "calls": [], "conferences": []})
        return _json(_demo_targets())

    def _sign_in(self, request: web.Request) -> web.Response | None:
        """A page address carrying a credential: keep it in a cookie, drop it from the URL.

        The credential would otherwise stay in the address bar and the history, and
        reach logs; the page's requests carry the cookie (same origin only).
        """
        credential = next(
            (request.query[k] for k in _CREDENTIAL_PARAMETERS if k in request.query), ""
        )
        if not credential:
            return None
        try:
            self._auth.authenticate(credential)
        except MediaStreamError as exc:
            return self._refuse(exc, request)
        query = {k: v for k, v in request.query.items() if k not in _CREDENTIAL_PARAMETERS}
        location = str(request.rel_url.with_path("/ui/").with_query(query))
        response = web.Response(status=303, headers={"Location": location})
        if self._auth.enabled:
            response.set_cookie(
                "token",
                credential,
                path="/",
                httponly=True,
                samesite="Strict",
                secure=request.secure,
            )
        response.headers["Cache-Control"] = "no-store"
        return response

    async def _page(self, request: web.Request) -> web.Response:
        signed_in = self._sign_in(request)
        if signed_in is not None:
            return signed_in
        # With credentials configured, only their holders see the page (a cookie).
        try:
            self._principal(request)
        except MediaStreamError as exc:
            return self._refuse(exc, request)
        html = _PAGE.read_text(encoding="utf-8")
        return web.Response(
            text=html,
            content_type="text/html",
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": page_csp(html, request.host),
            },
        )

    async def _worklet(self, request: web.Request) -> web.StreamResponse:
        # The page's AudioWorklet module (microphone capture). Behind the same credentials
        # as the page: the browser's module fetch is same-origin and carries its cookie.
        try:
            self._principal(request)
        except MediaStreamError as exc:
            return self._refuse(exc, request)
        return web.Response(
            text=_WORKLET.read_text(encoding="utf-8"),
            content_type="text/javascript",
            headers={"Cache-Control": "no-store"},
        )

    async def _root(self, request: web.Request) -> web.StreamResponse:
        signed_in = self._sign_in(request)
        if signed_in is not None:
            return signed_in
        raise web.HTTPFound(request.rel_url.with_path("/ui/").with_query(request.query))
