"""External media: a call's or conference's audio sent to a host the caller names.

This is VoIPBIN's "external media start" flow action. For RTP and AudioSocket
Asterisk sends straight to the host; for bare sln, which Asterisk cannot send
(it answers 501), the gateway takes RTP itself and forwards each payload as
one UDP datagram. Hosts must be IP literals inside the configured allow-list,
so nobody can make the gateway send a call's audio anywhere else.

The two WebSocket encapsulations are dial-outs (`mediastream.dialout`): the
gateway connects to a bot's ``url`` and carries a stream there in Twilio's or
VoIPBIN's protocol; every address of the URL's host must be in the allow-list.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import enum
import ipaddress
import json
import logging
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import aiohttp

from mediastream import dialout, metrics
from mediastream.asterisk.legs import Leg, LegEnd
from mediastream.asterisk.pool import AsteriskPool
from mediastream.core.formats import AudioFormat
from mediastream.core.stream import (
    Direction,
    Encapsulation,
    StopReason,
    StreamSpec,
    Target,
    Transport,
)
from mediastream.dialout import DialOutFault, DialOutKind, DialOutSettings, OnBotClose
from mediastream.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from mediastream.shim.session import CLOSE_TIMEOUT_S, Dialect
from mediastream.shim.twilio import TwilioDialect, sid
from mediastream.streams import Stream, StreamManager

log = logging.getLogger(__name__)


MAX_HOST_CHARS = 64
"""Longest external_host accepted (``[<IPv6>]:<port>`` needs at most 47)."""


MAX_TERMINATED_KEPT = 1000
"""Terminated external media kept for reading; past it the oldest are forgotten."""

MAX_PAGE_SIZE = 1000
"""Most external media one List reply carries (also the default): about 150 KB."""

MAX_PAGE_TOKEN_CHARS = 256
"""Longest page token accepted; the gateway's own are under 200 characters."""


class ExternalEncapsulation(enum.Enum):
    """Wire form sent to the external host."""

    RTP = "rtp"
    AUDIOSOCKET = "audiosocket"
    SLN = "sln"
    TWILIO_WEBSOCKET = "twilio_websocket"
    VOIPBIN_WEBSOCKET = "voipbin_websocket"

    @property
    def dial_out(self) -> DialOutKind | None:
        """The protocol spoken to the bot, for a dial-out; None for the others."""
        return _DIAL_OUT.get(self)


_DIAL_OUT = {
    ExternalEncapsulation.TWILIO_WEBSOCKET: DialOutKind.TWILIO,
    ExternalEncapsulation.VOIPBIN_WEBSOCKET: DialOutKind.VOIPBIN,
}


class ExternalStatus(enum.Enum):
    """Where an external media is in its life."""

    RUNNING = "running"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


@dataclass
class ExternalMedia:
    """One flow of audio to an external host."""

    id: str
    target: Target
    external_host: str
    encapsulation: ExternalEncapsulation
    format: AudioFormat
    direction: Direction
    status: ExternalStatus = ExternalStatus.RUNNING
    created: float = field(default_factory=time.time)
    end_reason: str = ""
    ended_at: float | None = None
    leg: Leg | None = None
    forwarder: _SlnForwarder | None = None
    url: str = ""
    """A dial-out's bot URL."""
    on_bot_close: OnBotClose | None = None
    stream_sid: str = ""
    status_callback_url: str = ""
    websocket_framing: Encapsulation | None = None
    stream: Stream | None = None
    runner: asyncio.Task[None] | None = None
    callbacks: dialout.StatusCallbacks | None = None
    stop_reason: str = ""
    """Why the gateway ended a dial-out (a Stop, shutdown), for its end_reason."""


class _SlnForwarder:
    """Forwards each frame Asterisk sends the gateway as one bare UDP datagram."""

    def __init__(self, host: str, port: int, on_end: asyncio.Future[LegEnd]) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._dest = (host, port)
        self._on_end = on_end
        self.sent = 0

    def on_frame(self, frame: bytes) -> None:
        try:
            self._sock.sendto(frame, self._dest)
            self.sent += 1
        except OSError as exc:
            log.warning("external media datagram to %s failed: %s", self._dest, exc)

    def on_dtmf(self, digit: str, duration_ms: int = 0) -> None:
        """Bare samples have no way to carry DTMF."""

    def on_transport_closed(self, reason: str) -> None:
        """The leg reports its end through on_leg_end."""

    def on_leg_end(self, end: LegEnd) -> None:
        if not self._on_end.done():
            self._on_end.set_result(end)

    def close(self) -> None:
        self._sock.close()


class _EndWatcher:
    """Sink of a direct leg: only its end matters."""

    def __init__(self, on_end: asyncio.Future[LegEnd]) -> None:
        self._on_end = on_end

    def on_frame(self, frame: bytes) -> None:
        """Direct legs send no media to the gateway."""

    def on_dtmf(self, digit: str, duration_ms: int = 0) -> None:
        """Not reported for external media."""

    def on_transport_closed(self, reason: str) -> None:
        """The leg reports its end through on_leg_end."""

    def on_leg_end(self, end: LegEnd) -> None:
        if not self._on_end.done():
            self._on_end.set_result(end)


def parse_allow_list(spec: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Networks from a comma-separated CIDR list.

    Raises:
        ValueError: an entry is not a network.
    """
    return [ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip()]


class ExternalMediaManager:
    """Starts, stops and remembers external media.

    Args:
        legs: Creates the Asterisk side.
        allow: Networks external hosts must be in.
        max_per_target: Running external media allowed on one call or conference.
        keep_terminated_s: How long a terminated one can still be read.
        streams: Opens the streams of dial-outs (None: no dial-out).
        dial_out: Dial-out timeouts and trust (its allow-list is `allow`).
        transport: How a dial-out's stream takes audio from Asterisk.
    """

    def __init__(
        self,
        legs: AsteriskPool,
        allow: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
        max_per_target: int = 5,
        keep_terminated_s: float = 300.0,
        *,
        streams: StreamManager | None = None,
        dial_out: DialOutSettings | None = None,
        transport: Transport = Transport.RTP,
    ) -> None:
        self._legs = legs
        self._allow = list(allow)
        self._streams = streams
        self._dial_out = dataclasses.replace(
            dial_out or DialOutSettings(), allow=tuple(self._allow)
        )
        self._transport = transport
        self._max = max_per_target
        self._keep = keep_terminated_s
        self._items: dict[str, ExternalMedia] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    def _check_host(self, host: str) -> tuple[str, int]:
        if len(host) > MAX_HOST_CHARS:
            raise InvalidArgument(
                "external_host",
                f"external_host may hold at most {MAX_HOST_CHARS} characters: <ip>:<port>",
                reason="INVALID_HOST",
                metadata={"limit": str(MAX_HOST_CHARS)},
            )
        address, sep, port = host.rpartition(":")
        address = address.strip("[]")
        # isascii: str.isdigit() is also true of digits like '²' that int() refuses.
        if not sep or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise InvalidArgument(
                "external_host",
                "external_host must be <ip>:<port> with a port from 1 to 65535",
                reason="INVALID_HOST",
            )
        if "%" in address:
            # Python's ipaddress accepts an IPv6 zone ID (fe80::1%eth0); Asterisk would
            # get a name of the gateway's interfaces, of any length.
            raise InvalidArgument(
                "external_host",
                "external_host must not carry an IPv6 zone ID (%...)",
                reason="INVALID_HOST",
            )
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise InvalidArgument(
                "external_host",
                "external_host must be an IP address, not a name",
                reason="INVALID_HOST",
            ) from None
        if not any(ip in net for net in self._allow):
            raise PermissionDenied(
                f"{ip} is not in the external media allow-list",
                reason="HOST_NOT_ALLOWED",
                metadata={"host": str(ip)},
            )
        return str(ip), int(port)

    async def start(
        self,
        target: Target,
        external_host: str,
        encapsulation: ExternalEncapsulation,
        fmt: AudioFormat,
        direction: Direction,
    ) -> ExternalMedia:
        """Start sending `target`'s audio to `external_host`.

        Raises:
            InvalidArgument: the host is not ``ip:port``.
            PermissionDenied: the host is outside the allow-list.
            ResourceExhausted: the target already has the maximum running.
            NotFound: the call or conference does not exist.
        """
        ip, port = self._check_host(external_host)
        self._check_count(target)
        if encapsulation is ExternalEncapsulation.AUDIOSOCKET:
            fmt = AudioFormat.SLIN  # AudioSocket carries 8 kHz slin, whatever is asked.
        transport = (
            Transport.AUDIOSOCKET
            if encapsulation is ExternalEncapsulation.AUDIOSOCKET
            else Transport.RTP
        )
        spec = StreamSpec(
            target=target, format=fmt, direction=direction, transport=transport, bidirectional=False
        )
        media = ExternalMedia(
            str(uuid.uuid4()),
            target,
            f"{ip}:{port}" if ":" not in ip else f"[{ip}]:{port}",
            encapsulation,
            fmt,
            direction,
        )
        ended: asyncio.Future[LegEnd] = asyncio.get_running_loop().create_future()
        if encapsulation is ExternalEncapsulation.SLN:
            media.forwarder = _SlnForwarder(ip, port, ended)
            try:
                media.leg = await self._legs.open(media.id, spec, media.forwarder)
            except BaseException:
                media.forwarder.close()
                raise
        else:
            media.leg = await self._legs.open(
                media.id,
                spec,
                _EndWatcher(ended),
                direct=(encapsulation.value, media.external_host),
            )
        self._items[media.id] = media
        metrics.EXTERNAL_MEDIA.labels(ExternalStatus.RUNNING.value).inc()
        task = asyncio.create_task(self._watch(media, ended))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        log.info(
            "external media %s started: %s %s -> %s (%s)",
            media.id,
            target.kind.value,
            target.id,
            media.external_host,
            encapsulation.value,
        )
        return media

    def _check_count(self, target: Target) -> None:
        running = [
            m
            for m in self._items.values()
            if m.target == target and m.status is not ExternalStatus.TERMINATED
        ]
        if len(running) >= self._max:
            raise ResourceExhausted(
                f"{target.kind.value} {target.id} already has {self._max} external media",
                reason="TOO_MANY_EXTERNAL_MEDIA",
                metadata={"limit": str(self._max)},
            )

    async def start_dial_out(
        self,
        target: Target,
        encapsulation: ExternalEncapsulation,
        url: str,
        *,
        fmt: AudioFormat | None = None,
        direction: Direction = Direction.BOTH,
        framing: Encapsulation = Encapsulation.RTP,
        parameters: Mapping[str, str] | None = None,
        on_bot_close: OnBotClose | None = None,
        status_callback_url: str = "",
        account: str = "",
    ) -> ExternalMedia:
        """Connect to the bot at `url` and carry `target`'s stream there.

        Returns once the WebSocket is up and ``connected``/``start`` (or
        ``started``) are on their way: the record is RUNNING.

        Args:
            target: The call or conference.
            encapsulation: TWILIO_WEBSOCKET or VOIPBIN_WEBSOCKET.
            url: ``ws://`` or ``wss://`` URL of the bot.
            fmt: VoIPBIN: the format both ways (None: mu-law down, slin up, as
                media_stream); Twilio: mu-law only.
            direction: BOTH: two-way; IN, OUT: listen-only on that track.
            framing: VoIPBIN: the binary framing of audio messages.
            parameters: Custom parameters (Twilio's ``customParameters``).
            on_bot_close: What the bot's end does to the call (None: hang up a
                two-way stream's call, leave a listen-only one's alone).
            status_callback_url: ``http(s)://`` URL for status callbacks, or "".
            account: Who asks (the principal's subject): ``accountSid``.

        Raises:
            InvalidArgument: a bad URL, format or parameter.
            PermissionDenied: the bot's (or callback's) address is outside the allow-list.
            ResourceExhausted: the target already has the maximum running.
            NotFound: the call or conference does not exist.
            DialOutFault: the bot could not be reached (DNS, refused, timeout,
                TLS, HTTP on the upgrade); the record is kept TERMINATED with why.
        """
        kind = encapsulation.dial_out
        if kind is None or self._streams is None:
            raise InvalidArgument(
                "encapsulation", "not a dial-out encapsulation", reason="INVALID_ENCAPSULATION"
            )
        parts = dialout.check_url(url, "url", ("ws", "wss"))
        params = dialout.check_parameters(parameters or {})
        if kind is DialOutKind.TWILIO and fmt not in (None, AudioFormat.ULAW):
            raise InvalidArgument(
                "format",
                "Twilio Media Streams carry mu-law 8 kHz only: leave format unset or ULAW",
                reason="INVALID_FORMAT",
            )
        callback_address = None
        if status_callback_url:
            callback_parts = dialout.check_url(
                status_callback_url, "status_callback_url", ("http", "https")
            )
            try:
                callback_address = await dialout.resolve(
                    callback_parts,
                    "status_callback_url",
                    self._allow,
                    self._dial_out.connect_timeout_s,
                )
            except DialOutFault as exc:
                raise InvalidArgument(
                    "status_callback_url", exc.message, reason="INVALID_URL"
                ) from None
        self._check_count(target)
        two_way = direction is Direction.BOTH
        action = on_bot_close or (OnBotClose.HANGUP if two_way else OnBotClose.NOTHING)
        media = ExternalMedia(
            str(uuid.uuid4()),
            target,
            "",
            encapsulation,
            fmt or AudioFormat.ULAW,
            direction,
            url=parts.geturl(),
            on_bot_close=action,
            status_callback_url=status_callback_url,
            websocket_framing=framing if kind is DialOutKind.VOIPBIN else None,
        )
        media.stream_sid = sid("MZ", media.id)
        if callback_address is not None:
            media.callbacks = dialout.StatusCallbacks(
                callback_address,
                self._dial_out,
                dialout.form_base(sid("AC", account), target.id, media.stream_sid, media.id),
            )
        try:
            bot = await dialout.resolve(parts, "url", self._allow, self._dial_out.connect_timeout_s)
        except DialOutFault as fault:
            self._failed(media, kind, fault)
            raise
        media.external_host = bot.host_port
        if kind is DialOutKind.TWILIO:
            spec = StreamSpec(
                target=target,
                format=AudioFormat.ULAW,
                direction=direction,
                encapsulation=Encapsulation.SLN,
                transport=self._transport,
                bidirectional=two_way,
            )
        else:
            spec = StreamSpec(
                target=target,
                format=fmt or AudioFormat.ULAW,
                uplink_format=None if fmt else AudioFormat.SLIN,
                direction=direction,
                encapsulation=framing,
                transport=self._transport,
                bidirectional=two_way,
                voipbin_rtp=True,
            )
        streams = self._streams
        stream = await streams.open(spec, account, account)
        session = dialout.client_session(bot, self._dial_out)
        try:
            ws = await dialout.connect(session, bot, self._dial_out)
        except DialOutFault as fault:
            await session.close()
            await streams.close(stream, StopReason.CLIENT_DONE, "dial-out failed")
            self._failed(media, kind, fault)
            raise
        except BaseException:
            await session.close()
            await streams.close(stream, StopReason.CLIENT_DONE, "dial-out cancelled")
            raise
        media.stream = stream
        dialect = dialout.make_dialect(
            kind, ws, stream, streams, account=account, parameters=params
        )
        if isinstance(dialect, TwilioDialect):
            # The bot's streamSid, as the record and the status callbacks name it.
            dialect.stream_sid = media.stream_sid
        self._items[media.id] = media
        metrics.EXTERNAL_MEDIA.labels(ExternalStatus.RUNNING.value).inc()
        metrics.DIAL_OUTS.labels(kind.value, "connected").inc()
        if media.callbacks is not None:
            media.callbacks.send(dialout.StatusEvent.STARTED)
        media.runner = asyncio.create_task(
            self._run_dial_out(media, kind, dialect, session, bot, params, account),
            name=f"dial-out-{media.id}",
        )
        log.info(
            "dial-out %s started: %s %s -> %s (%s, %s, on bot close: %s)",
            media.id,
            target.kind.value,
            target.id,
            bot.host_port,
            kind.value,
            "two-way" if two_way else f"listen-only {direction.value}",
            action.value,
        )
        return media

    def _failed(self, media: ExternalMedia, kind: DialOutKind, fault: DialOutFault) -> None:
        """Keep a dial-out that never started, TERMINATED with why; count, log, call back."""
        fault.metadata.setdefault("external_media_id", media.id)
        media.status = ExternalStatus.TERMINATED
        media.end_reason = f"{fault.reason}: {fault.message}"
        media.ended_at = time.time()
        self._items[media.id] = media
        metrics.EXTERNAL_MEDIA.labels(ExternalStatus.TERMINATED.value).inc()
        metrics.DIAL_OUTS.labels(kind.value, fault.outcome).inc()
        log.warning(
            "dial-out %s to %s failed: %s (%s)", media.id, media.url, fault.message, fault.reason
        )
        if media.callbacks is not None:
            media.callbacks.send(dialout.StatusEvent.ERROR, fault.message, fault.reason)
        self._expire()

    async def _run_dial_out(
        self,
        media: ExternalMedia,
        kind: DialOutKind,
        dialect: Dialect,
        session: aiohttp.ClientSession,
        bot: dialout.BotAddress,
        params: dict[str, str],
        account: str,
    ) -> None:
        action = media.on_bot_close or OnBotClose.NOTHING
        redials = self._dial_out.redials
        try:
            while True:
                ending = await dialout.run_dial_out(
                    dialect, action, self._dial_out.heartbeat_s, may_redial=redials > 0
                )
                if not ending.redial:
                    break
                # Lost without a close frame: dial again, fresh start, same streamSid.
                redials -= 1
                metrics.DIAL_OUTS.labels(kind.value, "redialled").inc()
                log.warning(
                    "dial-out %s to %s: connection lost; redialling (%d more allowed)",
                    media.id,
                    media.url,
                    redials,
                )
                await session.close()
                session = dialout.client_session(bot, self._dial_out)
                try:
                    ws = await dialout.connect(session, bot, self._dial_out)
                except DialOutFault as fault:
                    ending.redial = False
                    ending.end_reason += f"; redial failed: {fault.reason}: {fault.message}"
                    if self._streams is not None:
                        await self._streams.close(
                            dialect.stream, StopReason.CLIENT_DONE, "dial-out redial failed"
                        )
                        await dialout.apply_on_bot_close(
                            self._streams, dialect.stream, action, ending
                        )
                    break
                assert self._streams is not None
                dialect = dialout.make_dialect(
                    kind, ws, dialect.stream, self._streams, account=account, parameters=params
                )
                if isinstance(dialect, TwilioDialect):
                    dialect.stream_sid = media.stream_sid
        finally:
            await session.close()
        if media.stop_reason and not ending.by_bot:
            ending.end_reason = media.stop_reason
        metrics.DIAL_OUTS.labels(kind.value, ending.outcome).inc()
        (log.warning if ending.event is dialout.StatusEvent.ERROR else log.info)(
            "dial-out %s to %s ended: %s", media.id, media.url, ending.end_reason
        )
        if media.callbacks is not None:
            error = ending.end_reason if ending.event is dialout.StatusEvent.ERROR else ""
            media.callbacks.send(ending.event, error, ending.error_code)
        self._finish(media, ending.end_reason)

    async def _watch(self, media: ExternalMedia, ended: asyncio.Future[LegEnd]) -> None:
        end = await ended
        await self._terminate(media, end.detail)

    async def _terminate(self, media: ExternalMedia, reason: str) -> None:
        if media.status is not ExternalStatus.RUNNING:
            return
        media.status = ExternalStatus.TERMINATING
        if media.runner is not None:
            await self._stop_dial_out(media, reason)
            return
        if media.leg is not None:
            await self._legs.close(media.leg)
        if media.forwarder is not None:
            media.forwarder.close()
        self._finish(media, reason)

    async def _stop_dial_out(self, media: ExternalMedia, reason: str) -> None:
        """End the stream: the dialect says ``stop`` and closes; the runner records the end."""
        assert media.runner is not None and media.stream is not None
        media.stop_reason = reason
        if self._streams is not None:
            await self._streams.close(media.stream, StopReason.CLIENT_DONE, reason)
        done, _ = await asyncio.wait({media.runner}, timeout=CLOSE_TIMEOUT_S + 1.0)
        if not done:
            media.runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await media.runner
        if media.status is not ExternalStatus.TERMINATED:
            self._finish(media, reason)

    def _finish(self, media: ExternalMedia, reason: str) -> None:
        if media.status is ExternalStatus.TERMINATED:
            return
        media.status = ExternalStatus.TERMINATED
        metrics.EXTERNAL_MEDIA.labels(ExternalStatus.RUNNING.value).dec()
        metrics.EXTERNAL_MEDIA.labels(ExternalStatus.TERMINATED.value).inc()
        media.end_reason = reason
        media.ended_at = time.time()
        self._expire()
        log.info("external media %s terminated: %s", media.id, reason)

    def _expire(self) -> None:
        cutoff = time.time() - self._keep
        ended = sorted(
            (m for m in self._items.values() if m.ended_at is not None),
            key=lambda m: m.ended_at or 0.0,
        )
        # Past MAX_TERMINATED_KEPT the oldest go early: start/stop loops must not
        # pile up records (and List replies) for keep_terminated_s.
        excess = len(ended) - MAX_TERMINATED_KEPT
        for i, media in enumerate(ended):
            if i < excess or (media.ended_at or 0.0) < cutoff:
                del self._items[media.id]
                metrics.EXTERNAL_MEDIA.labels(ExternalStatus.TERMINATED.value).dec()

    def get(self, media_id: str) -> ExternalMedia:
        """One external media.

        Raises:
            NotFound: unknown or expired ID.
        """
        self._expire()
        media = self._items.get(media_id)
        if media is None:
            raise NotFound(
                f"external media {media_id} not found", reason="EXTERNAL_MEDIA_NOT_FOUND"
            )
        return media

    def list_for(self, target: Target | None = None) -> list[ExternalMedia]:
        """External media of `target` (all if None), newest first."""
        self._expire()
        items = [m for m in self._items.values() if target is None or m.target == target]
        # The ID breaks ties of equal creation times, so that pages follow one order.
        return sorted(items, key=lambda m: (m.created, m.id), reverse=True)

    def page(
        self, target: Target | None, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[ExternalMedia], str]:
        """One page of `list_for(target)` and the token of the next ("" after the last).

        A token is a cursor (the last item's creation time and ID), not an offset: items
        started or forgotten between two pages neither repeat nor shift the next one.

        Args:
            target: Whose external media (all if None); a token is valid only with
                the target it was made for.
            page_size: At most this many; 0 or more than MAX_PAGE_SIZE: MAX_PAGE_SIZE.
            page_token: The previous page's next token; "" for the first page.

        Raises:
            InvalidArgument: a negative page_size, or a page_token this listing did not make.
        """
        if page_size < 0:
            raise InvalidArgument(
                "page_size",
                f"page_size must be 0 (the default, {MAX_PAGE_SIZE}) or more",
                reason="INVALID_PAGE_SIZE",
                metadata={"limit": str(MAX_PAGE_SIZE)},
            )
        size = min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        scope = "" if target is None else f"{target.kind.value}:{target.id}"
        items = self.list_for(target)
        if page_token:
            created, last_id = _decode_page_token(page_token, scope)
            items = [m for m in items if (m.created, m.id) < (created, last_id)]
        page, rest = items[:size], items[size:]
        if not rest:
            return page, ""
        cursor = {"t": scope, "c": page[-1].created, "i": page[-1].id}
        token = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode()
        return page, token

    async def stop(self, media_id: str) -> ExternalMedia:
        """Stop one external media.

        Raises:
            NotFound: unknown or expired ID.
        """
        media = self.get(media_id)
        await self._terminate(media, "stopped by request")
        return media

    async def stop_target(self, target: Target) -> list[ExternalMedia]:
        """Stop every running external media of a call or conference."""
        running = [m for m in self.list_for(target) if m.status is ExternalStatus.RUNNING]
        await asyncio.gather(*(self._terminate(m, "stopped by request") for m in running))
        return running

    async def close_all(self) -> None:
        """Stop everything (shutdown); give queued status callbacks a moment."""
        items = list(self._items.values())
        await asyncio.gather(*(self._terminate(m, "gateway shutting down") for m in items))
        callbacks = [m.callbacks for m in items if m.callbacks is not None]
        await asyncio.gather(*(c.flush(self._dial_out.callback_timeout_s) for c in callbacks))
        for c in callbacks:
            c.cancel()


def _decode_page_token(token: str, scope: str) -> tuple[float, str]:
    """The cursor in a page token made for `scope`."""
    refusal = InvalidArgument(
        "page_token",
        "page_token must be the next_page_token of a previous reply listing the same"
        " call or conference; leave it empty for the first page",
        reason="INVALID_PAGE_TOKEN",
    )
    if len(token) > MAX_PAGE_TOKEN_CHARS:
        raise refusal
    try:
        cursor = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (UnicodeError, binascii.Error, ValueError):
        raise refusal from None
    if not isinstance(cursor, dict) or cursor.get("t") != scope:
        raise refusal
    created, last_id = cursor.get("c"), cursor.get("i")
    if not isinstance(created, float | int) or isinstance(created, bool):
        raise refusal
    if not isinstance(last_id, str):
        raise refusal
    return float(created), last_id
