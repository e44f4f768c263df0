"""The WebSocket/page port's guard against connections that never make a request.

aiohttp waits for a request head for as long as a client dribbles it, and admits any
number of connections: 400 connections sending a header line every 5 s (or nothing)
were all still open after 55 s. Every connection therefore passes through a `_Gate`
protocol until it is upgraded to a WebSocket (which happens only after its credential
was checked), and meanwhile:

* it must deliver a complete request head within ``header_timeout_s`` of connecting
  (over TLS: of the end of the handshake, which itself has that long), or of the
  previous answer on a kept-alive connection; otherwise it is answered
  ``408 HEADER_TIMEOUT`` and closed (an idle kept-alive connection that sent nothing
  since its last answer is closed quietly: that is ordinary keep-alive expiry);
* at most ``max_per_address`` of them may be open per client address (IPv6: per /64,
  which one host holds); the next one is answered ``429 TOO_MANY_CONNECTIONS`` and
  closed at once, before anything of it is read.

Both refusals are logged at WARNING with the peer (at most one line per address and
reason per `LOG_EVERY_S`, saying how many were not logged), counted in
``mediastream_stream_errors_total{reason}``, and the connections waiting now are
``mediastream_ws_connections_pending``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from mediastream import metrics
from mediastream.shim.errors import error_body

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0
"""Default: seconds a connection has to send a complete request head."""
MAX_PENDING_PER_ADDRESS = 64
"""Default: connections one address may hold open before their upgrade (0: no limit)."""
LOG_EVERY_S = 10.0
"""A refusal of one address for one reason is logged at most this often."""
CLOSE_GRACE_S = 1.0
"""How long a refused connection may take to receive its answer before it is cut."""

_REASON_PHRASES = {408: "Request Timeout", 429: "Too Many Requests"}


def address_key(host: str) -> str:
    """What the per-address cap counts by: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _answer(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 answer with VoIPBIN's envelope, closing the connection."""
    body = json.dumps(error_body(status, reason, message)).encode()
    head = (
        f"HTTP/1.1 {status} {_REASON_PHRASES[status]}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "Cache-Control: no-store\r\n"
        "\r\n"
    )
    return head.encode() + body


class ConnectionGate:
    """Header timeout and per-address cap of connections not yet upgraded.

    Args:
        header_timeout_s: Seconds a connection has to send a complete request head.
        max_per_address: Such connections one address (IPv6: /64) may hold; 0: no limit.
    """

    def __init__(
        self,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        max_per_address: int = MAX_PENDING_PER_ADDRESS,
    ) -> None:
        self.header_timeout_s = header_timeout_s
        self.max_per_address = max_per_address
        self._pending: dict[str, int] = {}
        self._gates: dict[RequestHandler, _Gate] = {}
        # (address, reason) -> (when last logged, refusals not logged since)
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}

    def pending(self, host: str) -> int:
        """Connections from `host`'s address (or /64) not yet upgraded."""
        return self._pending.get(address_key(host), 0)

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """What the listening socket makes per connection: a gate before `server`'s handler."""
        return lambda: _Gate(self, server)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Stop the head timer while a request is handled; start it again after the answer."""
        gate = self._gates.get(request.protocol)
        if gate is not None:
            gate.request_started()
        try:
            return await handler(request)
        finally:
            if gate is not None:
                gate.request_done()

    def upgraded(self, request: web.Request) -> None:
        """`request`'s connection is now a WebSocket (authenticated): no longer counted."""
        gate = self._gates.get(request.protocol)
        if gate is not None:
            gate.release(hand_over=True)

    def _admit(self, gate: _Gate) -> bool:
        count = self._pending.get(gate.key, 0)
        if self.max_per_address and count >= self.max_per_address:
            return False
        self._pending[gate.key] = count + 1
        metrics.WS_PENDING.inc()
        return True

    def _release(self, gate: _Gate) -> None:
        count = self._pending.get(gate.key, 0) - 1
        if count > 0:
            self._pending[gate.key] = count
        else:
            self._pending.pop(gate.key, None)
        metrics.WS_PENDING.dec()
        if gate.handler is not None:
            self._gates.pop(gate.handler, None)

    def refuse(self, gate: _Gate, status: int, reason: str, message: str) -> None:
        """Answer `status` with the envelope, close, count, and log (throttled)."""
        transport = gate.transport
        if transport is not None and not transport.is_closing():
            transport.write(_answer(status, reason, message))
            transport.close()
            # A peer that does not read must not keep the answer (and the socket) pending.
            asyncio.get_running_loop().call_later(CLOSE_GRACE_S, transport.abort)
        metrics.STREAM_ERRORS.labels(reason).inc()
        now = time.monotonic()
        key = (gate.key, reason)
        last, unlogged = self._logged.get(key, (-LOG_EVERY_S, 0))
        if now - last < LOG_EVERY_S:
            self._logged[key] = (last, unlogged + 1)
            return
        self._logged[key] = (now, 0)
        if len(self._logged) > 4096:  # forget the oldest addresses: bounded under a spread flood
            for stale in list(self._logged)[:2048]:
                del self._logged[stale]
        more = f" ({unlogged} more from this address not logged)" if unlogged else ""
        log.warning(
            "refused connection from %s: %s (%s)%s", gate.peer or "?", message, reason, more
        )


class _Gate(asyncio.Protocol):
    """Sits between a connection and aiohttp's handler until the connection is upgraded."""

    def __init__(self, owner: ConnectionGate, server: web.Server) -> None:
        self._owner = owner
        self._server = server
        self.transport: asyncio.Transport | None = None
        self.handler: RequestHandler | None = None
        self.peer = ""
        self.key = ""
        self._counted = False
        self._timer: asyncio.TimerHandle | None = None
        self._requests = 0
        self._received = False  # bytes arrived since the timer was (re)started

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport instances, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        peer: Any = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else ""
        self.key = address_key(self.peer)
        owner = self._owner
        if not owner._admit(self):
            owner.refuse(
                self,
                429,
                "TOO_MANY_CONNECTIONS",
                f"at most {owner.max_per_address} connections from one address may wait"
                " for their upgrade; finish or close one first",
            )
            return
        self._counted = True
        self.handler = self._server()
        owner._gates[self.handler] = self
        self._arm()
        self.handler.connection_made(self.transport)

    def _arm(self) -> None:
        self._received = False
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._owner.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._requests and not self._received:
            # Kept alive after an answer and quiet since: ordinary keep-alive expiry.
            if self.transport is not None:
                self.transport.close()
            return
        self._owner.refuse(
            self,
            408,
            "HEADER_TIMEOUT",
            f"no complete request head within {self._owner.header_timeout_s:g} s",
        )

    def request_started(self) -> None:
        """A request head is complete: its handler runs without the head timer."""
        self._requests += 1
        self._disarm()

    def request_done(self) -> None:
        """The answer is on its way: the next head has the timeout again."""
        if self._counted:
            self._arm()

    def release(self, *, hand_over: bool = False) -> None:
        """No longer counted; with `hand_over`, the handler takes the connection directly."""
        self._disarm()
        if self._counted:
            self._counted = False
            self._owner._release(self)
        if hand_over and self.transport is not None and self.handler is not None:
            # A WebSocket's frames need not pass through here any more.
            self.transport.set_protocol(self.handler)

    # --- the rest goes to aiohttp's handler -----------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.handler is None:
            return  # refused: its answer is on its way
        self._received = True
        self.handler.data_received(data)

    def eof_received(self) -> None:
        if self.handler is not None:
            self.handler.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        if self.handler is not None:
            self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()


class GatedSite(web.BaseSite):
    """A TCP site whose connections pass through `gate` (aiohttp's TCPSite, gated).

    Args:
        runner: The set-up runner.
        host: Address to bind.
        port: Port to bind (0: any free port).
        gate: The header timeout and per-address cap.
        ssl_context: Serve TLS; the handshake has ``gate.header_timeout_s`` too.
        reuse_port: SO_REUSEPORT (worker processes share the port).
    """

    __slots__ = ("_gate", "_host", "_port", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        gate: ConnectionGate,
        ssl_context: Any = None,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._gate = gate
        self._reuse_port = reuse_port

    @property
    def name(self) -> str:
        """The site's URL."""
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        """Listen."""
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._gate.protocol_factory(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self._gate.header_timeout_s if self._ssl_context else None,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )
