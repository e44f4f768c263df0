"""Dial-out: the gateway connects to a bot's WebSocket server, in Twilio's protocol or VoIPBIN's.

It speaks as Twilio does when Twilio connects to an application.

A dial-out is one more client of the stream core: the same `Dialect` the inbound
endpoints run (`mediastream.shim.twilio`, `mediastream.shim.voipbin`), the same
`run_session` pumps, over the client side of a WebSocket (aiohttp's
``ClientSession.ws_connect``). Pacing, marks at play time and clear with its cut
position are the core's, as for inbound streams.

Every connection fault has one defined outcome (`DialOutFault`): a status and
reason for StartExternalMedia, an ``end_reason``, a ``stream-error`` status
callback, a count in ``mediastream_dial_outs_total{outcome}`` and one WARNING
log line. The bot's host passes the external media allow-list: a name is
resolved once, every address it has must be allowed, and the connection goes
to those addresses only (a second lookup could answer otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

import aiohttp
from aiohttp import WSMessage, WSMsgType
from aiohttp.abc import AbstractResolver, ResolveResult

from mediastream import metrics
from mediastream.core.stream import StopReason, TargetKind
from mediastream.errors import (
    InvalidArgument,
    MediaStreamError,
    PermissionDenied,
    Unavailable,
)
from mediastream.shim import twilio, voipbin
from mediastream.shim.server import SEND_BUFFER_BYTES
from mediastream.shim.session import CLIENT_WENT_AWAY, Dialect, run_session
from mediastream.streams import Stream, StreamManager

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_CHARS = 2048
"""Longest bot or status callback URL accepted."""

MAX_PARAMETERS = 64
"""Most custom parameters one dial-out may carry."""

MAX_PARAMETER_CHARS = 1024
"""Longest custom parameter name or value."""


class DialOutKind(enum.Enum):
    """Which protocol the gateway speaks to the bot."""

    TWILIO = "twilio"
    VOIPBIN = "voipbin"


class OnBotClose(enum.Enum):
    """What happens to the call when the bot ends the WebSocket."""

    HANGUP = "hangup"
    NOTHING = "nothing"


class StatusEvent(enum.Enum):
    """Twilio's ``StreamEvent`` values of a status callback."""

    STARTED = "stream-started"
    STOPPED = "stream-stopped"
    ERROR = "stream-error"


@dataclass(frozen=True)
class DialOutSettings:
    """Times, sizes and trust of dial-outs (gateway settings ``dial_out_*``).

    Attributes:
        allow: Networks a bot's (and a status callback's) addresses must be in.
        connect_timeout_s: Name lookup, TCP, TLS and the upgrade together.
        ca_file: PEM CA bundle trusted for ``wss://`` besides the system's (a private CA).
        heartbeat_s: Ping a quiet bot this often; one that does not answer within
            half of it is dropped (the inbound endpoints' heartbeat).
        callback_timeout_s: One status callback POST.
        callback_retries: POSTs after a failed first one.
        callback_backoff_s: Wait before the first retry, doubled for each next one.
        redials: New connections (each with a fresh ``start``, the same ``streamSid``)
            after the bot's connection is lost without a close frame; 0: none.
    """

    allow: tuple[Network, ...] = ()
    connect_timeout_s: float = 10.0
    ca_file: str = ""
    heartbeat_s: float = 20.0
    callback_timeout_s: float = 5.0
    callback_retries: int = 2
    callback_backoff_s: float = 0.5
    redials: int = 0


@dataclass(frozen=True)
class BotAddress:
    """A checked ``ws://``/``wss://`` or ``http(s)://`` URL and the addresses it may reach."""

    url: str
    host: str
    port: int
    secure: bool
    addresses: tuple[str, ...]

    @property
    def host_port(self) -> str:
        """``host:port`` (IPv6 in brackets), for records and logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def check_url(url: str, field_name: str, schemes: tuple[str, str]) -> SplitResult:
    """`url` split, if it is a URL of one of `schemes` with a host.

    Raises:
        InvalidArgument: too long, another scheme, no host, credentials in it, a bad port.
    """
    if len(url) > MAX_URL_CHARS:
        raise InvalidArgument(
            field_name,
            f"{field_name} may hold at most {MAX_URL_CHARS} characters",
            reason="INVALID_URL",
            metadata={"limit": str(MAX_URL_CHARS)},
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(
            field_name, f"{field_name} is not a URL: {exc}", reason="INVALID_URL"
        ) from None
    if parts.scheme not in schemes or not parts.hostname:
        raise InvalidArgument(
            field_name,
            f"{field_name} must be a {' or '.join(s + '://' for s in schemes)} URL with a host",
            reason="INVALID_URL",
        )
    if parts.username is not None or parts.password is not None:
        # They would be logged and kept in the record: credentials go in parameters.
        raise InvalidArgument(
            field_name,
            f"{field_name} must not carry credentials (user:password@)",
            reason="INVALID_URL",
        )
    if port == 0 or not url.isprintable():
        raise InvalidArgument(field_name, f"{field_name} is not a valid URL", reason="INVALID_URL")
    return parts


def check_parameters(parameters: Mapping[str, str]) -> dict[str, str]:
    """Custom parameters, bounded in number and size.

    Raises:
        InvalidArgument: too many, or one too long.
    """
    if len(parameters) > MAX_PARAMETERS:
        raise InvalidArgument(
            "custom_parameters",
            f"at most {MAX_PARAMETERS} custom parameters",
            reason="TOO_MANY_PARAMETERS",
            metadata={"limit": str(MAX_PARAMETERS)},
        )
    for name, value in parameters.items():
        if len(name) > MAX_PARAMETER_CHARS or len(value) > MAX_PARAMETER_CHARS:
            raise InvalidArgument(
                "custom_parameters",
                f"a custom parameter's name and value may hold at most "
                f"{MAX_PARAMETER_CHARS} characters each",
                reason="PARAMETER_TOO_LONG",
                metadata={"limit": str(MAX_PARAMETER_CHARS)},
            )
    return dict(parameters)


class DialOutFault(Unavailable):
    """A dial-out that could not be set up or that the bot ended badly.

    Attributes:
        outcome: Its label in ``mediastream_dial_outs_total``.
    """

    def __init__(self, outcome: str, message: str, *, reason: str, **metadata: str) -> None:
        super().__init__(message, reason=reason, metadata=metadata or None)
        self.outcome = outcome


async def resolve(
    parts: SplitResult, field_name: str, allow: Iterable[Network], timeout_s: float = 10.0
) -> BotAddress:
    """Look up `parts`' host (within `timeout_s`) and check every address against `allow`.

    Raises:
        DialOutFault: the name does not resolve (``DIAL_OUT_DNS_FAILED``).
        PermissionDenied: an address is outside the allow-list (``HOST_NOT_ALLOWED``).
    """
    host = parts.hostname or ""
    secure = parts.scheme in ("wss", "https")
    port = parts.port or (443 if secure else 80)
    try:
        addresses: list[str] = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            async with asyncio.timeout(timeout_s):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
        except TimeoutError:
            raise DialOutFault(
                "dns_failed",
                f"{field_name}: no answer for the name {host!r} within {timeout_s:g} s",
                reason="DIAL_OUT_DNS_FAILED",
                host=host,
            ) from None
        except (socket.gaierror, UnicodeError) as exc:
            raise DialOutFault(
                "dns_failed",
                f"{field_name}: the name {host!r} does not resolve ({exc})",
                reason="DIAL_OUT_DNS_FAILED",
                host=host,
            ) from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    networks = list(allow)
    for address in addresses:
        ip = ipaddress.ip_address(address.partition("%")[0])
        if not any(ip in net for net in networks):
            raise PermissionDenied(
                f"{field_name}: {host} ({ip}) is not in the external media allow-list",
                reason="HOST_NOT_ALLOWED",
                metadata={"host": str(ip)},
            )
    return BotAddress(parts.geturl(), host, port, secure, tuple(addresses))


class _PinnedResolver(AbstractResolver):
    """Answers every lookup with the addresses already checked against the allow-list."""

    def __init__(self, addresses: Iterable[str]) -> None:
        self._addresses = list(addresses)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self._addresses
        ]

    async def close(self) -> None:
        """Nothing to release."""


def client_session(address: BotAddress, settings: DialOutSettings) -> aiohttp.ClientSession:
    """An HTTP client that reaches only `address`'s checked addresses."""
    context: ssl.SSLContext | bool = True
    if address.secure and settings.ca_file:
        context = ssl.create_default_context(cafile=settings.ca_file)
    connector = aiohttp.TCPConnector(
        resolver=_PinnedResolver(address.addresses), ssl=context, force_close=True
    )
    return aiohttp.ClientSession(connector=connector)


async def connect(
    session: aiohttp.ClientSession, address: BotAddress, settings: DialOutSettings
) -> aiohttp.ClientWebSocketResponse:
    """Open the WebSocket to the bot: TCP, TLS and the upgrade within the connect timeout.

    Raises:
        DialOutFault: refused, timed out, TLS failed, or the upgrade was answered
            with something else than 101.
    """
    where = address.host_port
    try:
        async with asyncio.timeout(settings.connect_timeout_s):
            ws = await session.ws_connect(
                address.url,
                max_msg_size=twilio.MAX_MESSAGE_BYTES,
                heartbeat=settings.heartbeat_s,
                autoclose=True,
                autoping=True,
            )
    except TimeoutError:
        raise DialOutFault(
            "timeout",
            f"no WebSocket to {where} within {settings.connect_timeout_s:g} s",
            reason="DIAL_OUT_TIMEOUT",
            timeout_s=f"{settings.connect_timeout_s:g}",
        ) from None
    except aiohttp.WSServerHandshakeError as exc:
        raise DialOutFault(
            "http_error",
            f"{where} answered the WebSocket upgrade with HTTP {exc.status}",
            reason="DIAL_OUT_HTTP_ERROR",
            http_status=str(exc.status),
        ) from None
    except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
        raise DialOutFault(
            "tls_failed",
            f"TLS with {where} failed: {_tls_problem(exc)}",
            reason="DIAL_OUT_TLS_FAILED",
        ) from None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, ConnectionRefusedError):
            raise DialOutFault(
                "refused", f"{where} refused the connection", reason="DIAL_OUT_REFUSED"
            ) from None
        raise DialOutFault(
            "connect_failed",
            f"cannot connect to {where}: {exc.os_error}",
            reason="DIAL_OUT_CONNECT_FAILED",
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise DialOutFault(
            "connect_failed",
            f"cannot connect to {where}: {exc}",
            reason="DIAL_OUT_CONNECT_FAILED",
        ) from None
    _limit_send_buffer(ws)
    return ws


def _tls_problem(exc: BaseException) -> str:
    cause = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None) or exc
    return str(getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or cause)


def _limit_send_buffer(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Hold a dial-out to the inbound endpoints' send buffer.

    A bot that stops reading then meets the same cap as an inbound client: the
    replay ring, then the oldest audio dropped and counted.
    """
    sock = ws.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
    transport = ws.get_extra_info("transport") or getattr(
        getattr(ws, "_writer", None), "transport", None
    )
    if isinstance(transport, asyncio.WriteTransport):
        transport.set_write_buffer_limits(high=SEND_BUFFER_BYTES // 2)


@dataclass
class Ending:
    """How a dial-out session ended.

    Attributes:
        end_reason: The record's ``end_reason``.
        outcome: Label in ``mediastream_dial_outs_total``.
        event: The status callback sent.
        error_code: ``ErrorCode`` of the callback (a reason), or "".
        by_bot: Whether the bot ended it (then ``on_bot_close`` applies).
        redial: The connection was lost and the stream kept for a redial.
    """

    end_reason: str
    outcome: str
    event: StatusEvent
    error_code: str = ""
    by_bot: bool = False
    redial: bool = False


def session_ending(stream: Stream, peer_end: WSMessage | None, heartbeat_s: float) -> Ending:
    """What ended a dial-out session, from its stream and the bot's last message."""
    if stream.error is not None:
        error = stream.error
        return Ending(
            f"bot broke the protocol: {error.reason}: {error.message}",
            "bot_backlog" if error.reason == "EVENT_BACKLOG" else "bot_garbage",
            StatusEvent.ERROR,
            error.reason,
            by_bot=True,
        )
    if peer_end is not None:
        if peer_end.type is WSMsgType.CLOSE:
            extra = f" {peer_end.extra}" if peer_end.extra else ""
            return Ending(
                f"bot closed the WebSocket ({peer_end.data}{extra})",
                "bot_closed",
                StatusEvent.STOPPED,
                by_bot=True,
            )
        if peer_end.type is WSMsgType.ERROR and isinstance(
            peer_end.data, aiohttp.ServerTimeoutError
        ):
            return Ending(
                f"bot stopped reading: no answer to a ping within {heartbeat_s / 2:g} s",
                "bot_not_reading",
                StatusEvent.ERROR,
                "DIAL_OUT_BOT_NOT_READING",
                by_bot=True,
            )
        if peer_end.type is WSMsgType.ERROR:
            return Ending(
                f"bot broke the WebSocket protocol: {peer_end.data}",
                "bot_garbage",
                StatusEvent.ERROR,
                "DIAL_OUT_BOT_PROTOCOL",
                by_bot=True,
            )
        return Ending(
            "bot connection lost without a close frame",
            "bot_lost",
            StatusEvent.ERROR,
            "DIAL_OUT_BOT_LOST",
            by_bot=True,
        )
    stopped = stream.stopped.result() if stream.stopped.done() else None
    if stopped is None or stopped.detail == CLIENT_WENT_AWAY:
        # The session ended without the bot's end being seen: the connection broke.
        return Ending(
            "bot connection lost without a close frame",
            "bot_lost",
            StatusEvent.ERROR,
            "DIAL_OUT_BOT_LOST",
            by_bot=True,
        )
    text = f"{stopped.reason.value}: {stopped.detail}" if stopped.detail else stopped.reason.value
    return Ending(text, stopped.reason.value, StatusEvent.STOPPED)


def make_dialect(
    kind: DialOutKind,
    ws: aiohttp.ClientWebSocketResponse,
    stream: Stream,
    streams: StreamManager,
    *,
    account: str,
    parameters: Mapping[str, str],
) -> Dialect:
    """The inbound dialect of `kind`, over the dialled-out connection."""
    dialect: Dialect
    if kind is DialOutKind.TWILIO:
        dialect = twilio.TwilioDialect(ws, stream, streams, account=account, parameters=parameters)
    else:
        # Dial-out always has the control channel: the bot learns what the frames carry.
        dialect = voipbin.VoipbinDialect(
            ws, stream, streams, events=True, parameters=dict(parameters)
        )
    dialect.wait_for_peer_end = True
    return dialect


async def run_dial_out(
    dialect: Dialect, on_bot_close: OnBotClose, heartbeat_s: float, *, may_redial: bool = False
) -> Ending:
    """Carry the stream over the bot's connection until either side ends it.

    Applies `on_bot_close` when the bot ended it, and releases the stream; but
    when `may_redial` and the connection was lost (no close frame) while the
    stream is still up, the stream is kept for a new connection and
    ``Ending.redial`` is set.
    """
    stream = dialect.stream
    await run_session(dialect, release=not may_redial)
    ending = session_ending(stream, dialect.peer_end, heartbeat_s)
    if (
        may_redial
        and ending.outcome == "bot_lost"
        and stream.error is None
        and not stream.stopped.done()
    ):
        ending.redial = True
        return ending
    if may_redial:
        await dialect.streams.close(stream, StopReason.CLIENT_DONE, CLIENT_WENT_AWAY)
    await apply_on_bot_close(dialect.streams, stream, on_bot_close, ending)
    return ending


async def apply_on_bot_close(
    streams: StreamManager, stream: Stream, on_bot_close: OnBotClose, ending: Ending
) -> None:
    """Hang up the stream's call if the bot ended the session and `on_bot_close` says so."""
    if (
        ending.by_bot
        and on_bot_close is OnBotClose.HANGUP
        and stream.spec.target.kind is TargetKind.CALL
    ):
        try:
            await streams.hangup(stream)
            ending.end_reason += "; call hung up"
        except MediaStreamError as exc:
            # The call may already be gone; the stream's end is what matters.
            log.info("dial-out %s: hang-up after the bot left failed: %s", stream.id, exc)


@dataclass
class StatusCallbacks:
    """POSTs a dial-out's status callbacks, in order, off the stream's path.

    Twilio's ``statusCallback`` fields, form-encoded: ``AccountSid``, ``CallSid``,
    ``StreamSid``, ``StreamName``, ``StreamEvent``, ``StreamError``, ``Timestamp``,
    plus ``ErrorCode`` (the gateway's reason). Each POST has `callback_timeout_s`;
    a failed one (no answer, not 2xx) is tried `callback_retries` more times.
    Counted in ``mediastream_status_callbacks_total{event,outcome}``.
    """

    address: BotAddress
    settings: DialOutSettings
    base: dict[str, str]
    _last: asyncio.Task[None] | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def send(self, event: StatusEvent, error: str = "", error_code: str = "") -> None:
        """Queue one callback; returns at once."""
        form = {
            **self.base,
            "StreamEvent": event.value,
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if error:
            form["StreamError"] = error
        if error_code:
            form["ErrorCode"] = error_code
        previous = self._last
        task = asyncio.create_task(self._post(form, previous), name="status-callback")
        self._last = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, form: dict[str, str], previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            # stream-stopped never overtakes stream-started.
            with contextlib.suppress(Exception):
                await asyncio.shield(previous)
        event = form["StreamEvent"]
        s = self.settings
        async with client_session(self.address, s) as session:
            for attempt in range(s.callback_retries + 1):
                if attempt:
                    metrics.STATUS_CALLBACKS.labels(event, "retried").inc()
                    await asyncio.sleep(s.callback_backoff_s * 2 ** (attempt - 1))
                try:
                    async with (
                        asyncio.timeout(s.callback_timeout_s),
                        session.post(self.address.url, data=form, allow_redirects=False) as r,
                    ):
                        if 200 <= r.status < 300:
                            metrics.STATUS_CALLBACKS.labels(event, "delivered").inc()
                            return
                        problem = f"HTTP {r.status}"
                except TimeoutError:
                    problem = f"no answer within {s.callback_timeout_s:g} s"
                except (aiohttp.ClientError, OSError) as exc:
                    problem = str(exc) or type(exc).__name__
        metrics.STATUS_CALLBACKS.labels(event, "failed").inc()
        log.warning(
            "status callback %s of stream %s to %s failed after %d tries: %s",
            event,
            form.get("StreamSid", "?"),
            self.address.host_port,
            s.callback_retries + 1,
            problem,
        )

    async def flush(self, timeout: float) -> None:
        """Wait up to `timeout` s for the queued callbacks (shutdown, tests)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def cancel(self) -> None:
        """Drop whatever is still queued (shutdown)."""
        for task in self._tasks:
            task.cancel()


def form_base(account: str, call_sid: str, stream_sid: str, name: str) -> dict[str, str]:
    """The fields every status callback of a stream carries."""
    return {
        "AccountSid": account,
        "CallSid": call_sid,
        "StreamSid": stream_sid,
        "StreamName": name,
    }
