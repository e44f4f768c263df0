"""Attach a stream to a call or a conference in Asterisk, and take it away again.

A call is reached through a snoop channel (spy/whisper from the stream's
direction) in a mixing bridge of the gateway's own with the externalMedia
channel; a conference by adding the externalMedia channel to the conference's
bridge. While a two-way stream is open on a call, the gateway keeps frames
flowing to the call (ARI's silence generator, or a silent member of its own in
the call's bridge): Asterisk mixes the client's audio only into frames that flow.
Every object the gateway creates is named with the gateway's prefix so that an
orphan left by a killed gateway can be recognised and removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from mediastream import metrics
from mediastream.asterisk.ari import AriClient, AriError, Event, EventWatch
from mediastream.asterisk.audiosocket import AudioSocketServer
from mediastream.asterisk.transports import FrameSink, MediaTransport, RtpTransport
from mediastream.asterisk.websocket_channel import WebSocketChannelTransport
from mediastream.core.formats import AudioFormat
from mediastream.core.stream import StopReason, StreamSpec, Target, TargetKind, Transport
from mediastream.errors import InternalError, NotFound, Unavailable
from mediastream.play_clock import PlayClock

log = logging.getLogger(__name__)

NAME_PREFIX = "mediastream-"
"""Prefix of the Stasis args of what the gateway creates (for humans reading ARI)."""

GATEWAY_CHANNELS = ("UnicastRTP/", "AudioSocket/", "WebSocket/", "Snoop/")
"""Name prefixes of the channels the gateway creates."""

RECONNECT_GRACE = 5.0
"""Seconds a leg waits for ARI's events connection to come back."""

STASIS_TIMEOUT = 5.0
"""Seconds to wait for a created channel's StasisStart."""

SHUTDOWN_SOFTHANGUP = 4
"""``cause`` of the soft ``ChannelHangupRequest`` Asterisk's shutdown sends every channel.

A soft hangup's cause is the flag that asked for it (``ast_softhangup`` in
main/channel.c): ``AST_SOFTHANGUP_SHUTDOWN`` (4) comes only from
``ast_softhangup_all()`` in ``core stop now``/``core restart now``; ARI's DELETE
is ``AST_SOFTHANGUP_EXPLICIT`` (32).
"""

SNOOP_GONE_S = 1.0
"""Seconds a deleted snoop channel gets to go before the gateway helps it.

Asterisk finishes hanging up a snoop only when its audiohook has been detached from
the snooped call, and that happens when the next frame passes the call
(``ast_audiohook_detach`` in ``main/audiohook.c``): with frames flowing, within one
frame (20 ms). A call that nothing is written to and that sends nothing (an echo
alone in Stasis once the silence generator stopped) would keep the snoop for ever, so a
closing leg deletes its snoop while the generator or the keeper still runs (a frame then
comes within 20 ms) and stops them only once the snoop is gone."""

SNOOP_NUDGE_S = 3.0
"""Seconds the silence generator runs, at most, to let a stuck snoop go."""

SNOOP_POLL_S = 0.02
"""How often the gateway looks whether the snoop is gone (one frame)."""


@dataclass(frozen=True)
class LegEnd:
    """Why the Asterisk side of a stream ended."""

    reason: StopReason
    detail: str


class LegSink(FrameSink, Protocol):
    """Receives everything a leg produces: frames, DTMF and its end."""

    def on_leg_end(self, end: LegEnd) -> None:
        """Asterisk ended the leg (hangup, conference end, failure)."""


@dataclass
class Leg:
    """The Asterisk side of one stream: what the gateway created, and the media.

    Attributes:
        sink: Gets the 20 ms frames from Asterisk, in `fmt` (16-bit little-endian
            if linear), DTMF, and the leg's end.
        ended: Resolves when Asterisk ends the stream (hangup, conference end, failure).
    """

    stream_id: str
    spec: StreamSpec
    fmt: AudioFormat
    sink: LegSink
    ended: asyncio.Future[LegEnd]
    channel_ids: list[str] = field(default_factory=list)
    bridge_ids: list[str] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)
    transport: MediaTransport | None = None
    watch: EventWatch | None = None
    monitor: asyncio.Task[None] | None = None
    direct: tuple[str, str] | None = None
    factory: LegFactory | None = None
    holds_silence: bool = False
    kept_bridge: str | None = None
    snoop_id: str | None = None
    shutdown: bool = False

    def send_frame(self, frame: bytes) -> None:
        """Play one 20 ms frame (in `fmt`) into the call or conference."""
        if self.transport is not None:
            self.transport.send_frame(frame)

    def end(self, end: LegEnd) -> None:
        """Record the leg's end once and tell the sink."""
        if not self.ended.done():
            self.ended.set_result(end)
            self.sink.on_leg_end(end)


class _TransportSink:
    """What a transport reports, passed to the leg's sink.

    For a call, DTMF is taken from ARI (ChannelDtmfReceived), which every
    transport has, so the transport's own DTMF is dropped to avoid doubles.
    """

    def __init__(self, leg: Leg) -> None:
        self.leg = leg
        self.sink = leg.sink
        self.dtmf = leg.spec.target.kind is TargetKind.CONFERENCE
        self.malformed = 0
        self._width = leg.fmt.sample_width

    def on_frame(self, frame: bytes) -> None:
        if len(frame) % self._width:
            # A partial 16-bit sample cannot be converted (the transcoder raises) and
            # would shift every later sample by a byte: drop it and count it.
            self.malformed += 1
            metrics.MALFORMED_INPUT.labels(self.leg.spec.transport.value).inc()
            if self.malformed == 1:
                log.warning(
                    "stream %s: dropped a %d-byte frame from Asterisk (not whole samples)",
                    self.leg.stream_id,
                    len(frame),
                )
            return
        self.sink.on_frame(frame)

    def on_dtmf(self, digit: str, duration_ms: int = 0) -> None:
        if self.dtmf:
            self.sink.on_dtmf(digit, duration_ms)

    def on_transport_closed(self, reason: str) -> None:
        self.leg.end(LegEnd(StopReason.ASTERISK_FAILURE, reason))


@dataclass
class _Silence:
    """ARI's silence generator on one call, shared by the two-way streams on it.

    Attributes:
        holders: Two-way streams on the call that want frames to flow to it.
        started: The gateway's own ``POST /channels/{id}/silence`` succeeded.
        tried: Asked already (a call outside Stasis answers 409 each time).
        resumed: Playbacks after which the generator was started again.
        in_bridge: The call is in a bridge (the platform's): no generator then.
        bridge_id: That bridge, when known.
        lock: Orders the POSTs and DELETEs of one call.
    """

    holders: int = 0
    started: bool = False
    tried: bool = False
    in_bridge: bool = False
    bridge_id: str | None = None
    resumed: set[str] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


KEEPER_FORMAT = AudioFormat.ULAW
"""What a bridge keeper sends: 8 kHz like ARI's silence generator, and a format every
release's RTP externalMedia takes in (wideband payload types coming back are dropped)."""

KEEPER_FRAME = bytes([0xFF]) * KEEPER_FORMAT.frame_bytes
"""20 ms of mu-law silence."""

KEEPER_FRAME_S = 0.02
"""Seconds between two frames of a keeper (Asterisk's 20 ms framing)."""


class _DiscardSink:
    """What a bridge keeper receives from the bridge (the mix) is not needed."""

    def on_frame(self, frame: bytes) -> None:
        pass

    def on_dtmf(self, digit: str, duration_ms: int = 0) -> None:
        pass

    def on_transport_closed(self, reason: str) -> None:
        pass


@dataclass
class _Keeper:
    """A silent member the gateway keeps in a bridge holding a call with a two-way stream.

    Attributes:
        holders: Stream IDs of the two-way streams on calls in that bridge.
        channel_id: The externalMedia channel in the bridge, once created.
        transport: Its RTP socket.
        feeder: Sends it 20 ms of silence every 20 ms.
        lock: Orders the creation and removal.
    """

    holders: set[str] = field(default_factory=set)
    channel_id: str | None = None
    transport: RtpTransport | None = None
    feeder: _SilenceFeeder | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _SilenceFeeder:
    """Sends a keeper's silence on the 20 ms grid (no burst after a stall, no drift).

    An owner on the gateway's play clock, which runs it among the pacers' ticks.
    """

    def __init__(self, transport: RtpTransport, clock: PlayClock) -> None:
        self._transport = transport
        self._clock = clock
        self._due = 0.0

    def start(self) -> None:
        """Send the first frame on the next tick, then one every 20 ms."""
        self._due = time.monotonic()
        self._clock.schedule(self, self._due)

    def stop(self) -> None:
        """Send no more."""
        self._clock.cancel(self)

    def on_tick(self, now: float) -> float | None:
        """The play clock's call: one frame, and when the next one is due."""
        self._transport.send_frame(KEEPER_FRAME)
        self._due += KEEPER_FRAME_S
        if self._due < now - 10 * KEEPER_FRAME_S:
            # Stalled (a loaded machine): start a fresh grid rather than send a burst,
            # which the bridge would only queue up or drop.
            self._due = now
        return self._due


def _needs_silence(spec: StreamSpec) -> bool:
    """Whether the client's audio is whispered into what the call hears.

    Asterisk mixes a snoop's whisper only into frames written to the channel
    anyway (main/audiohook.c), so such a stream keeps frames flowing to the call.
    A listen-only stream, or one whispering only to the far side (``in``), must
    not change what the call hears.
    """
    return (
        spec.target.kind is TargetKind.CALL
        and spec.bidirectional
        and spec.direction.whisper in ("out", "both")
    )


class LegFactory:
    """Creates and removes legs on one Asterisk through ARI.

    Args:
        ari: The ARI client of that Asterisk.
        media_host: Address Asterisk can reach the gateway's media sockets on.
        audiosocket: The listener AudioSocket channels connect to.
        clock: The gateway's play clock (bridge keepers send their silence on its
            ticks); a new one when not given.
    """

    def __init__(
        self,
        ari: AriClient,
        media_host: str,
        audiosocket: AudioSocketServer | None = None,
        clock: PlayClock | None = None,
    ) -> None:
        self.ari = ari
        self.media_host = media_host
        self.audiosocket = audiosocket
        self.clock = clock if clock is not None else PlayClock()
        self._silence: dict[str, _Silence] = {}
        self._keepers: dict[str, _Keeper] = {}

    async def open(
        self, stream_id: str, spec: StreamSpec, sink: LegSink, direct: tuple[str, str] | None = None
    ) -> Leg:
        """Create everything the stream needs in Asterisk and start media.

        Args:
            stream_id: The stream's ID (names what is created).
            spec: What to attach to and how.
            sink: Gets the frames, DTMF and the end.
            direct: ``(encapsulation, host:port)`` to have Asterisk send the audio
                straight to a host of the caller's instead of to the gateway.

        Raises:
            NotFound: the call or conference does not exist.
            Unavailable: Asterisk cannot be reached.
            InternalError: Asterisk refused a step it should accept.
        """
        loop = asyncio.get_running_loop()
        leg = Leg(
            stream_id,
            spec,
            spec.asterisk_format,
            sink,
            loop.create_future(),
            direct=direct,
            factory=self,
        )
        leg.watch = self.ari.watch()
        try:
            await self._build(leg)
        except BaseException:
            await self.close(leg)
            raise
        leg.monitor = asyncio.create_task(self._monitor(leg), name=f"leg-monitor-{stream_id}")
        return leg

    async def _build(self, leg: Leg) -> None:
        spec, target = leg.spec, leg.spec.target
        assert leg.watch is not None
        if target.kind is TargetKind.CALL:
            await self._get(f"/channels/{target.id}", target)
            leg.watch.add(target.id)
            await self._subscribe(leg, f"channel:{target.id}")
            bridge_id = str(uuid.uuid4())
            leg.watch.add(bridge_id)
            # Recorded before asking: if Asterisk acts but its answer is lost or
            # unreadable, close() still deletes it (a 404 there is fine).
            leg.bridge_ids.append(bridge_id)
            await self.ari.request(
                "POST",
                "/bridges",
                {
                    "type": "mixing,proxy_media",
                    "bridgeId": bridge_id,
                    "name": f"{self.ari.config.app}-{leg.stream_id}",
                },
            )
            snoop_id = str(uuid.uuid4())
            leg.watch.add(snoop_id)
            params = {
                "spy": spec.direction.value,
                "whisper": spec.direction.whisper if spec.bidirectional else "none",
                "app": self.ari.config.app,
                "appArgs": f"{NAME_PREFIX}snoop,{leg.stream_id}",
                "snoopId": snoop_id,
            }
            leg.channel_ids.append(snoop_id)
            leg.snoop_id = snoop_id
            try:
                await self.ari.request("POST", f"/channels/{target.id}/snoop", params)
            except AriError as exc:
                raise self._translate(exc, target) from exc
            await self._wait_stasis(leg.watch, snoop_id)
            join_bridge, members = bridge_id, [snoop_id]
        else:
            await self._get(f"/bridges/{target.id}", target)
            leg.watch.add(target.id)
            await self._subscribe(leg, f"bridge:{target.id}")
            join_bridge, members = target.id, []
        channel_id = await self._external_media(leg)
        members.append(channel_id)
        try:
            await self.ari.request(
                "POST", f"/bridges/{join_bridge}/addChannel", {"channel": ",".join(members)}
            )
        except AriError as exc:
            if target.kind is TargetKind.CONFERENCE and exc.status == 404:
                raise self._translate(exc, target) from exc  # the conference ended meanwhile
            # 400 "Channel not found": a channel the gateway just made is already gone
            # (seen on 20.20.1 with 25 streams opening at once: the WebSocket channel).
            raise Unavailable(
                f"Asterisk dropped the stream's channel before it was bridged: {exc.message}"
            ) from exc
        if _needs_silence(spec):
            await self._hold_silence(leg)

    # --- the silence generator --------------------------------------------------------

    async def _hold_silence(self, leg: Leg) -> None:
        """Keep frames flowing to the call while this two-way stream is open.

        Asterisk mixes the whisper only into frames written to the call anyway
        (main/audiohook.c), so the gateway makes sure some are:

        - a call in no bridge gets ARI's silence generator (``POST
          /channels/{id}/silence``), which writes 20 ms of silence whenever nothing
          else is written. It exists only for a channel in a Stasis application (409
          otherwise: a call running dialplan needs ``transmit_silence = yes`` in
          asterisk.conf, which makes ``Wait()`` and the like run the same generator);
        - a call in a bridge gets a keeper in that bridge (:meth:`_keep`): a generator
          there would make ``ast_write`` drop every other frame written to the call
          (main/channel.c), so the call would stop hearing its peers. The generator
          stops when the call enters a bridge (``ChannelEnteredBridge``) and starts
          again when it leaves one.
        """
        call_id = leg.spec.target.id
        state = self._silence.setdefault(call_id, _Silence())
        state.holders += 1
        leg.holds_silence = True
        async with state.lock:
            if state.holders > 0 and not state.tried:
                state.tried = True
                known, state.bridge_id = await self._bridge_of(call_id)
                # Unknown: do not risk muting the call's peers with a generator.
                state.in_bridge = not known or state.bridge_id is not None
                if not state.in_bridge:
                    state.started = await self._start_silence(call_id)
            bridge_id = state.bridge_id
        if bridge_id is not None:
            await self._keep(leg, bridge_id)

    async def _bridge_of(self, call_id: str) -> tuple[bool, str | None]:
        """Which bridge holds the call (a channel snapshot does not say).

        Returns:
            Whether that is known (listing the bridges worked), and the bridge's ID
            or None.
        """
        try:
            bridges = _objects(await self.ari.request("GET", "/bridges"))
        except (AriError, Unavailable) as exc:
            log.warning("listing bridges failed: %s", exc)
            return False, None
        for bridge in bridges:
            if isinstance(bridge.get("channels"), list) and call_id in bridge["channels"]:
                return True, str(bridge["id"])
        return True, None

    async def _bridge_changed(self, call_id: str, in_bridge: bool, bridge_id: str | None) -> None:
        """The call entered or left a bridge: stop or restart the generator."""
        state = self._silence.get(call_id)
        if state is None:
            return
        async with state.lock:
            if state.holders <= 0 or not state.tried:
                return
            state.bridge_id = bridge_id if in_bridge else None
            if state.in_bridge == in_bridge:
                return
            state.in_bridge = in_bridge
            if in_bridge and state.started:
                state.started = False
                await self._quietly("DELETE", f"/channels/{call_id}/silence", expected=(404, 409))
            elif not in_bridge and not state.started:
                state.started = await self._start_silence(call_id)

    # --- the bridge keeper ---------------------------------------------------------------

    async def _keep(self, leg: Leg, bridge_id: str) -> None:
        """Keep frames flowing in the bridge the call is in, while this stream is open.

        A bridge writes to a member only what the others send it: a call alone in
        a bridge, or bridged to a silent leg, gets no frames, so the whisper is not
        heard. The gateway adds one externalMedia channel of its own to that bridge
        (one per bridge, shared by every two-way stream on calls in it) and sends it
        20 ms of silence every 20 ms: a two-party bridge passes it to the call
        (bridge_simple), a bigger one mixes it (bridge_softmix writes every member a
        frame each interval). Silence adds nothing to what anyone in the bridge hears;
        what the keeper receives (the mix) is discarded.
        """
        if leg.kept_bridge == bridge_id:
            return
        if leg.kept_bridge is not None:
            await self._unkeep(leg)
        leg.kept_bridge = bridge_id
        keeper = self._keepers.setdefault(bridge_id, _Keeper())
        keeper.holders.add(leg.stream_id)
        async with keeper.lock:
            if keeper.holders and keeper.channel_id is None:
                await self._start_keeper(bridge_id, keeper)

    async def _unkeep(self, leg: Leg) -> None:
        """The stream no longer needs its call's bridge kept; the last one removes the keeper."""
        bridge_id, leg.kept_bridge = leg.kept_bridge, None
        if bridge_id is None:
            return
        keeper = self._keepers.get(bridge_id)
        if keeper is None:
            return
        keeper.holders.discard(leg.stream_id)
        async with keeper.lock:
            if keeper.holders:
                return
            await self._stop_keeper(keeper)
            if not keeper.holders and self._keepers.get(bridge_id) is keeper:
                del self._keepers[bridge_id]

    async def _start_keeper(self, bridge_id: str, keeper: _Keeper) -> None:
        """Create the keeper's channel, start feeding it and add it to the bridge.

        A failure is logged, not raised: the stream goes on, and the client is heard
        whenever something else is written to the call.
        """
        channel_id = str(uuid.uuid4())
        try:
            transport = await RtpTransport.bind(self.media_host, KEEPER_FORMAT, _DiscardSink())
        except OSError as exc:
            log.warning("could not keep frames flowing in bridge %s: %s", bridge_id, exc)
            return
        keeper.channel_id, keeper.transport = channel_id, transport
        params = {
            "app": self.ari.config.app,
            "format": KEEPER_FORMAT.value,
            "channelId": channel_id,
            "encapsulation": "rtp",
            "transport": "udp",
            "external_host": transport.external_host,
            "data": f"{NAME_PREFIX}keeper,{bridge_id}",
        }
        try:
            async with self.ari.watching(channel_id) as watch:
                channel = await self.ari.request("POST", "/channels/externalMedia", params)
                variables = channel.get("channelvars") if isinstance(channel, dict) else None
                if not isinstance(variables, dict):
                    raise InternalError("Asterisk did not say where to send RTP")
                transport.set_remote(
                    str(variables["UNICASTRTP_LOCAL_ADDRESS"]),
                    int(variables["UNICASTRTP_LOCAL_PORT"]),
                )
                await self._wait_stasis(watch, channel_id)
            keeper.feeder = _SilenceFeeder(transport, self.clock)
            keeper.feeder.start()
            await self.ari.request(
                "POST", f"/bridges/{bridge_id}/addChannel", {"channel": channel_id}
            )
        except (AriError, Unavailable, InternalError, KeyError, ValueError) as exc:
            log.warning(
                "could not keep frames flowing in bridge %s (the client is heard there only"
                " while something else is written to the call): %s",
                bridge_id,
                exc,
            )
            await self._stop_keeper(keeper)

    async def _stop_keeper(self, keeper: _Keeper) -> None:
        """Stop feeding the keeper and hang its channel up (it leaves the bridge)."""
        feeder, keeper.feeder = keeper.feeder, None
        if feeder is not None:
            feeder.stop()
        channel_id, keeper.channel_id = keeper.channel_id, None
        if channel_id is not None:
            await self._quietly("DELETE", f"/channels/{channel_id}")
        transport, keeper.transport = keeper.transport, None
        if transport is not None:
            transport.close()

    async def _start_silence(self, call_id: str) -> bool:
        """Ask for the silence generator on a call; whether Asterisk started it."""
        try:
            await self.ari.request("POST", f"/channels/{call_id}/silence")
        except AriError as exc:
            if exc.status == 409:
                log.info(
                    "call %s is not in a Stasis application: ARI cannot keep frames flowing to"
                    " it, so the client is heard only while something else is written to the"
                    " call (transmit_silence = yes in asterisk.conf covers dialplan waits)",
                    call_id,
                )
            elif exc.status != 404:
                log.warning("silence generator on call %s refused: %s", call_id, exc)
            return False
        except Unavailable as exc:
            log.warning("silence generator on call %s: %s", call_id, exc)
            return False
        return True

    async def _resume_silence(self, call_id: str, playback_id: str) -> None:
        """Start the generator again after a playback on the call stopped it.

        Playing media on a channel deactivates its generator and ARI does not
        resume it (res/stasis/control.c), so after the platform's ``/play`` the
        call would go quiet again for the whisper.
        """
        state = self._silence.get(call_id)
        if state is None or not state.started or playback_id in state.resumed:
            return
        state.resumed.add(playback_id)
        async with state.lock:
            if state.holders > 0 and state.started:
                await self._start_silence(call_id)

    async def _release_silence(self, leg: Leg) -> None:
        """The stream no longer needs frames to flow; the last one stops the generator."""
        if not leg.holds_silence:
            return
        leg.holds_silence = False
        call_id = leg.spec.target.id
        state = self._silence.get(call_id)
        if state is None:
            return
        state.holders -= 1
        async with state.lock:
            if state.holders > 0:
                return
            if state.started:
                state.started = False
                # Only what the gateway started; 404/409: the call is gone or left Stasis.
                await self._quietly("DELETE", f"/channels/{call_id}/silence", expected=(404, 409))
            state.tried = False
            state.resumed.clear()
            if state.holders <= 0 and self._silence.get(call_id) is state:
                del self._silence[call_id]

    async def _external_media(self, leg: Leg) -> str:
        assert leg.watch is not None
        channel_id = str(uuid.uuid4())
        leg.watch.add(channel_id)
        params = {
            "app": self.ari.config.app,
            "format": leg.fmt.value,
            "channelId": channel_id,
        }
        sink = _TransportSink(leg)
        transport = leg.spec.transport
        if leg.direct is not None:
            # Asterisk sends straight to the named host; the gateway only sets it up.
            encapsulation, host = leg.direct
            params |= {
                "encapsulation": encapsulation,
                "external_host": host,
                "transport": "tcp" if encapsulation == "audiosocket" else "udp",
                "data": str(uuid.uuid4())
                if encapsulation == "audiosocket"
                else f"{NAME_PREFIX}{leg.stream_id}",
            }
            await self._create_external_media(leg, params)
            await self._wait_stasis(leg.watch, channel_id)
        elif transport is Transport.RTP:
            rtp = await RtpTransport.bind(self.media_host, leg.fmt, sink)
            leg.transport = rtp
            params |= {
                "encapsulation": "rtp",
                "transport": "udp",
                "external_host": rtp.external_host,
                "data": f"{NAME_PREFIX}{leg.stream_id}",
            }
            variables = await self._create_external_media(leg, params)
            try:
                rtp.set_remote(
                    variables["UNICASTRTP_LOCAL_ADDRESS"], int(variables["UNICASTRTP_LOCAL_PORT"])
                )
            except (KeyError, ValueError) as exc:
                raise InternalError(
                    "Asterisk did not say where to send RTP (UNICASTRTP_LOCAL_ADDRESS/PORT)"
                ) from exc
            await self._wait_stasis(leg.watch, channel_id)
        elif transport is Transport.AUDIOSOCKET:
            if self.audiosocket is None:
                raise Unavailable("the AudioSocket listener is not running")
            key = uuid.uuid4()
            connected = self.audiosocket.expect(key, sink)
            params |= {
                "encapsulation": "audiosocket",
                "transport": "tcp",
                "external_host": self.audiosocket.external_host,
                "data": str(key),
            }
            try:
                await self._create_external_media(leg, params)
                # Asterisk connects while it handles the POST, so this is quick.
                leg.transport = await asyncio.wait_for(connected, STASIS_TIMEOUT)
            except TimeoutError:
                raise Unavailable("Asterisk did not connect to the AudioSocket listener") from None
            finally:
                self.audiosocket.forget(key)
            await self._wait_stasis(leg.watch, channel_id)
        else:
            params |= {
                "encapsulation": "none",
                "transport": "websocket",
                "connection_type": "server",
                "external_host": "INCOMING",
                "transport_data": "f(json)",
                "data": f"{NAME_PREFIX}{leg.stream_id}",
            }
            variables = await self._create_external_media(leg, params)
            connection_id = variables.get("MEDIA_WEBSOCKET_CONNECTION_ID")
            if not connection_id:
                raise InternalError("Asterisk did not give MEDIA_WEBSOCKET_CONNECTION_ID")
            try:
                leg.transport = await WebSocketChannelTransport.connect(
                    self.ari.websocket_session,
                    self.ari.config.media_url(connection_id),
                    sink,
                    json_format=True,
                )
            except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                raise Unavailable(f"media WebSocket to Asterisk failed: {exc}") from exc
            # chan_websocket answers, and enters Stasis, only once connected.
            await self._wait_stasis(leg.watch, channel_id)
        return channel_id

    async def _create_external_media(self, leg: Leg, params: dict[str, str]) -> dict[str, str]:
        leg.channel_ids.append(params["channelId"])  # before asking, as for the bridge
        try:
            channel = await self.ari.request("POST", "/channels/externalMedia", params)
        except AriError as exc:
            raise InternalError(
                f"Asterisk refused the externalMedia channel: {exc.message}",
                reason="ASTERISK_REFUSED",
            ) from exc
        variables = channel.get("channelvars") if isinstance(channel, dict) else None
        if not isinstance(variables, dict):
            return {}
        return {str(k): str(v) for k, v in variables.items()}

    async def _get(self, path: str, target: Target) -> Any:
        try:
            return await self.ari.request("GET", path)
        except AriError as exc:
            raise self._translate(exc, target) from exc

    async def _subscribe(self, leg: Leg, source: str) -> None:
        await self.ari.request(
            "POST", f"/applications/{self.ari.config.app}/subscription", {"eventSource": source}
        )
        leg.subscriptions.append(source)

    @staticmethod
    def _translate(exc: AriError, target: Target) -> Exception:
        if exc.status == 404:
            return NotFound(
                f"{target.kind.value} {target.id} not found",
                reason=f"{target.kind.name}_NOT_FOUND",
                metadata={f"{target.kind.value}_id": target.id},
            )
        return InternalError(f"Asterisk refused: {exc}", reason="ASTERISK_REFUSED")

    @staticmethod
    async def _wait_stasis(watch: EventWatch, channel_id: str) -> None:
        def started(e: Event) -> bool:
            return e.get("type") == "StasisStart" and _object_id(e, "channel") == channel_id

        try:
            await watch.wait_for(started, STASIS_TIMEOUT)
        except TimeoutError:
            raise Unavailable(
                f"channel {channel_id} did not enter Stasis within {STASIS_TIMEOUT:.0f} s"
            ) from None

    async def _monitor(self, leg: Leg) -> None:
        assert leg.watch is not None
        target = leg.spec.target
        ours = set(leg.channel_ids)
        shut_down = LegEnd(StopReason.ASTERISK_FAILURE, "Asterisk is shutting down")
        while not leg.ended.done():
            event = await leg.watch.queue.get()
            kind = event.get("type")
            subject = _object_id(event, "channel") or _object_id(event, "bridge")
            end: LegEnd | None = None
            if (
                kind == "ChannelHangupRequest"
                and event.get("soft") is True
                and event.get("cause") == SHUTDOWN_SOFTHANGUP
                and (subject == target.id or subject in ours)
            ):
                # Asterisk is stopping: it soft-hangs every channel, destroys them and
                # only then closes ARI. The decision waits for what follows (the
                # channel destroyed, ARI gone); whatever it is, it is a failure of
                # Asterisk's, not the call hanging up.
                leg.shutdown = True
            elif kind == "_AriDisconnected":
                end = shut_down if leg.shutdown else await self._after_disconnect(leg)
            elif (
                target.kind is TargetKind.CALL
                and subject == target.id
                and kind in ("ChannelDestroyed", "ChannelHangupRequest")
            ):
                cause = event.get("cause_txt") or f"cause {event.get('cause')}"
                end = (
                    shut_down
                    if leg.shutdown
                    else LegEnd(StopReason.CALL_HANGUP, f"call hung up ({cause})")
                )
            elif (
                target.kind is TargetKind.CONFERENCE
                and subject == target.id
                and kind == ("BridgeDestroyed")
            ):
                end = (
                    shut_down
                    if leg.shutdown
                    else LegEnd(StopReason.CONFERENCE_ENDED, "conference ended")
                )
            elif subject in ours and kind in ("StasisEnd", "ChannelDestroyed"):
                end = (
                    shut_down
                    if leg.shutdown
                    else LegEnd(StopReason.ASTERISK_FAILURE, f"Asterisk ended channel {subject}")
                )
            elif (
                kind in ("ChannelEnteredBridge", "ChannelLeftBridge")
                and leg.holds_silence
                and subject == target.id
            ):
                entered = kind == "ChannelEnteredBridge"
                bridge_id = _object_id(event, "bridge")
                await self._bridge_changed(target.id, entered, bridge_id)
                if entered and bridge_id is not None:
                    await self._keep(leg, bridge_id)
                elif not entered and bridge_id == leg.kept_bridge:
                    await self._unkeep(leg)
            elif kind == "PlaybackFinished" and leg.holds_silence:
                playback = event.get("playback")
                if (
                    isinstance(playback, dict)
                    and playback.get("target_uri") == f"channel:{target.id}"
                    and isinstance(playback.get("id"), str)
                ):
                    await self._resume_silence(target.id, playback["id"])
            elif (
                kind == "ChannelDtmfReceived"
                and subject == target.id
                and isinstance(event.get("digit"), str)
            ):
                duration = event.get("duration_ms")
                leg.sink.on_dtmf(event["digit"], duration if type(duration) is int else 0)
            if end is not None:
                leg.end(end)

    async def _after_disconnect(self, leg: Leg) -> LegEnd | None:
        """Decide whether a leg survives a drop of ARI's events connection.

        Media does not travel over that connection, so if it comes back soon and
        everything of the leg is still in Asterisk, the leg goes on (events
        missed meanwhile are re-checked by looking the objects up). If Asterisk
        restarted, its channels are gone and the leg ends.
        """
        if not await self.ari.wait_connected(RECONNECT_GRACE):
            return LegEnd(
                StopReason.ASTERISK_FAILURE, f"lost ARI for more than {RECONNECT_GRACE:.0f} s"
            )
        target = leg.spec.target
        paths = [f"/channels/{c}" for c in leg.channel_ids] + [
            f"/bridges/{b}" for b in leg.bridge_ids
        ]
        paths.append(
            f"/channels/{target.id}" if target.kind is TargetKind.CALL else f"/bridges/{target.id}"
        )
        try:
            for path in paths:
                await self.ari.request("GET", path)
            for source in leg.subscriptions:
                await self.ari.request(
                    "POST",
                    f"/applications/{self.ari.config.app}/subscription",
                    {"eventSource": source},
                )
        except AriError:
            reason = (
                StopReason.CALL_HANGUP
                if target.kind is TargetKind.CALL
                else StopReason.CONFERENCE_ENDED
            )
            try:
                await self.ari.request("GET", paths[-1])
            except AriError:
                return LegEnd(reason, f"{target.kind.value} ended while ARI was down")
            return LegEnd(
                StopReason.ASTERISK_FAILURE, "Asterisk lost the stream's channels (restarted?)"
            )
        except Unavailable as exc:
            return LegEnd(StopReason.ASTERISK_FAILURE, str(exc))
        log.info("leg %s survived an ARI events reconnect", leg.stream_id)
        return None

    async def sweep_orphans(self) -> int:
        """Remove what an earlier run of this gateway left in Asterisk.

        A gateway killed without a chance to clean up leaves its bridges
        (named after its Stasis app) and its snoop and externalMedia channels
        (in its Stasis app). Run at start-up only: at that moment nothing of
        this app's is live. Each gateway instance needs its own app name.

        Returns:
            How many channels and bridges were removed.
        """
        app = self.ari.config.app
        removed = 0
        for channel in _objects(await self.ari.request("GET", "/channels")):
            dialplan = channel.get("dialplan")
            if not isinstance(dialplan, dict):
                dialplan = {}
            in_app = dialplan.get("app_name") == "Stasis" and (
                str(dialplan.get("app_data", "")).split(",")[0] == app
            )
            if in_app and str(channel.get("name", "")).startswith(GATEWAY_CHANNELS):
                await self._quietly("DELETE", f"/channels/{channel['id']}")
                removed += 1
        for bridge in _objects(await self.ari.request("GET", "/bridges")):
            # Exactly `<app>-<stream UUID>`: a prefix match would also take the
            # bridges of an app named `<app>-<something>`.
            name = str(bridge.get("name", ""))
            if name.startswith(f"{app}-") and _is_uuid(name.removeprefix(f"{app}-")):
                await self._quietly("DELETE", f"/bridges/{bridge['id']}")
                removed += 1
        if removed:
            log.warning("removed %d channels and bridges left by an earlier run", removed)
        return removed

    async def hangup(self, channel_id: str) -> None:
        """Hang up a call's channel.

        Raises:
            NotFound: the call is gone.
        """
        try:
            await self.ari.request("DELETE", f"/channels/{channel_id}")
        except AriError as exc:
            raise self._translate(exc, Target(TargetKind.CALL, channel_id)) from exc

    async def close(self, leg: Leg) -> None:
        """Remove everything the leg created; safe to call more than once."""
        if leg.monitor is not None:
            leg.monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leg.monitor
            leg.monitor = None
        if leg.transport is not None:
            leg.transport.close()
            leg.transport = None
        for channel_id in reversed(leg.channel_ids):
            await self._quietly("DELETE", f"/channels/{channel_id}")
        leg.channel_ids.clear()
        if leg.snoop_id is not None:
            # Before the silence generator stops: its frames are what lets the snoop go.
            await self._until_snoop_gone(leg.spec.target.id, leg.snoop_id)
            leg.snoop_id = None
        await self._release_silence(leg)
        await self._unkeep(leg)
        for bridge_id in leg.bridge_ids:
            await self._quietly("DELETE", f"/bridges/{bridge_id}")
        leg.bridge_ids.clear()
        for source in leg.subscriptions:
            # 422 "Event source was not subscribed to": Asterisk drops an app's
            # subscription to a channel itself when the channel is destroyed
            # (res/stasis/app.c), so after a hangup that answer is expected.
            await self._quietly(
                "DELETE",
                f"/applications/{self.ari.config.app}/subscription",
                {"eventSource": source},
                expected=(404, 422),
            )
        leg.subscriptions.clear()
        if leg.watch is not None:
            leg.watch.close()
        if not leg.ended.done():
            leg.ended.cancel()

    async def _gone(self, channel_id: str, timeout: float) -> bool:
        """Whether ``channel_id`` is gone from Asterisk within ``timeout`` s (polled)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await self.ari.request("GET", f"/channels/{channel_id}")
            except AriError as exc:
                if exc.status == 404:
                    return True
            except Unavailable:
                return True  # Asterisk is gone: so is the snoop
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(SNOOP_POLL_S)

    async def _until_snoop_gone(self, call_id: str, snoop_id: str) -> None:
        """Wait until a deleted snoop is gone; make frames flow to the call if need be.

        A snoop whose call passes no frame cannot finish its hangup (``SNOOP_GONE_S``):
        it would stay in Asterisk, out of Stasis, until the call hangs up. ARI's silence
        generator on the call writes the frame it waits for; it runs only until the
        snoop is gone (a frame or two), and only on a call that nothing flowed through,
        so what the call hears does not change.
        """
        if await self._gone(snoop_id, SNOOP_GONE_S):
            return
        state = self._silence.setdefault(call_id, _Silence())
        state.holders += 1  # keeps the entry while it is used here
        try:
            async with state.lock:
                started_here = False
                if not state.started:
                    try:
                        await self.ari.request("POST", f"/channels/{call_id}/silence")
                        started_here = True
                    except (AriError, Unavailable) as exc:
                        # 409: a call running dialplan; ARI cannot write to it.
                        log.info(
                            "call %s: no silence generator to let a snoop go: %s", call_id, exc
                        )
                gone = await self._gone(snoop_id, SNOOP_NUDGE_S)
                if started_here:
                    await self._quietly(
                        "DELETE", f"/channels/{call_id}/silence", expected=(404, 409)
                    )
            metrics.SNOOPS_NUDGED.labels("gone" if gone else "stuck").inc()
            if gone:
                log.info("snoop %s went once frames flowed to call %s", snoop_id, call_id)
            else:
                log.warning(
                    "snoop channel %s is still in Asterisk: nothing passes call %s, so"
                    " Asterisk cannot detach it; it goes when the call hangs up or a frame"
                    " passes it",
                    snoop_id,
                    call_id,
                )
        finally:
            state.holders -= 1
            if state.holders <= 0 and not state.started and self._silence.get(call_id) is state:
                del self._silence[call_id]

    async def _quietly(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        expected: tuple[int, ...] = (404,),
    ) -> bool:
        """Ask, tolerating that the object is gone; whether Asterisk did it (2xx)."""
        # Gone already (404, or `expected`) is the outcome we want; anything else
        # is logged and left for the start-up orphan sweep.
        try:
            await self.ari.request(method, path, params)
        except AriError as exc:
            if exc.status not in expected:
                log.warning("clean-up %s %s failed: %s", method, path, exc)
        except Unavailable as exc:
            log.warning("clean-up %s %s failed: %s", method, path, exc)
        else:
            return True
        return False


def _objects(answer: Any) -> list[dict[str, Any]]:
    """The channels or bridges of a list answer that have a string ``id``; junk is skipped."""
    if not isinstance(answer, list):
        return []
    return [o for o in answer if isinstance(o, dict) and isinstance(o.get("id"), str)]


def _object_id(event: Event, key: str) -> str | None:
    """The ``id`` of the channel or bridge object `key` of an ARI event, if it has one."""
    obj = event.get(key)
    if isinstance(obj, dict):
        value = obj.get("id")
        if isinstance(value, str):
            return value
    return None


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
