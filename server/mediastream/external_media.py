"""External media: a call's or conference's audio sent to a host the caller names.

This is VoIPBIN's "external media start" flow action. For RTP and AudioSocket
Asterisk sends straight to the host; for bare sln, which Asterisk cannot send
(it answers 501), the gateway takes RTP itself and forwards each payload as
one UDP datagram. Hosts must be IP literals inside the configured allow-list,
so nobody can make the gateway send a call's audio anywhere else.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import ipaddress
import json
import logging
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from mediastream import metrics
from mediastream.asterisk.legs import Leg, LegEnd
from mediastream.asterisk.pool import AsteriskPool
from mediastream.core.formats import AudioFormat
from mediastream.core.stream import Direction, StreamSpec, Target, Transport
from mediastream.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)

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
    """

    def __init__(
        self,
        legs: AsteriskPool,
        allow: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
        max_per_target: int = 5,
        keep_terminated_s: float = 300.0,
    ) -> None:
        self._legs = legs
        self._allow = list(allow)
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

    async def _watch(self, media: ExternalMedia, ended: asyncio.Future[LegEnd]) -> None:
        end = await ended
        await self._terminate(media, end.detail)

    async def _terminate(self, media: ExternalMedia, reason: str) -> None:
        if media.status is not ExternalStatus.RUNNING:
            return
        media.status = ExternalStatus.TERMINATING
        if media.leg is not None:
            await self._legs.close(media.leg)
        if media.forwarder is not None:
            media.forwarder.close()
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
        """Stop everything (shutdown)."""
        await asyncio.gather(
            *(self._terminate(m, "gateway shutting down") for m in list(self._items.values()))
        )


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
