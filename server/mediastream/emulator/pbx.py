"""The emulated Asterisk core: channels, Stasis, bridges, and their event sequences.

Each operation publishes the ARI events real Asterisk 23.4.1 publishes, in the
recorded order (``ari_lifecycle*.json``):

* start of an originated or externalMedia channel: ``Dial`` (``dialstatus ""``),
  ``ChannelStateChange`` (Up), ``Dial`` (``ANSWER``), ``ChannelVarset``
  ``STASISSTATUS=""``, ``StasisStart`` -- about 1 ms after the HTTP response;
* ``DELETE`` of a channel: ``ChannelHangupRequest {cause:32, soft:true}``,
  ``ChannelVarset BRIDGEPEER=""``, ``ChannelLeftBridge``, ``StasisEnd``,
  ``ChannelVarset STASISSTATUS=SUCCESS``, ``ChannelDestroyed {cause:16}`` (none
  for snoop channels), then the Local ``;2`` half;
* a hangup from the far end: ``ChannelHangupRequest {cause:16}`` without ``soft``;
* bridges: ``ChannelEnteredBridge`` / ``ChannelLeftBridge`` carry the bridge as it
  was before the technology switch, ``BRIDGEPEER`` follows; no ``BridgeCreated``;
  ``BridgeDestroyed`` on delete.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import random
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from mediastream.core.formats import AudioFormat
from mediastream.emulator import events as ev
from mediastream.emulator.audiosocket import AudioSocketTech
from mediastream.emulator.bridge import BRIDGE_TYPES, Bridge
from mediastream.emulator.dialplan import (
    EXTENSIONS,
    OWN_EXTENSIONS,
    DialplanRunner,
    Playback,
    Program,
)
from mediastream.emulator.errors import AriError, internal_error
from mediastream.emulator.events import EventBus
from mediastream.emulator.media import MediaClock
from mediastream.emulator.model import Channel, Dialplan, Frame, UniqueIds
from mediastream.emulator.rtp import RtpTech, bind_rtp_socket
from mediastream.emulator.snoop import DIRECTIONS, Snoop
from mediastream.emulator.websocket_channel import WebSocketChannelTech

__all__ = ["Pbx", "PbxSettings"]

log = logging.getLogger(__name__)

# How long after the HTTP response the first events of a new channel follow.
_START_DELAY = 0.001
# chan_websocket server mode: the originate's dial timeout (30 s).
_WEBSOCKET_DIAL_TIMEOUT = 30.0

_FORMATS = {fmt.value: fmt for fmt in AudioFormat}
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$")


def _split_args(text: str | None) -> list[str]:
    """Stasis application arguments: the ``appArgs`` string split at commas."""
    return text.split(",") if text else []


def _pointer() -> str:
    """A channel-pvt pointer for names like ``UnicastRTP/...-0x7f0870424510``."""
    return f"0x7f08{random.getrandbits(32):08x}"


class PbxSettings:
    """What the PBX needs from the emulator's configuration."""

    def __init__(self, host: str, rtp_port_start: int, rtp_port_end: int) -> None:
        """Store the settings."""
        self.host = host
        self.rtp_port_start = rtp_port_start
        self.rtp_port_end = rtp_port_end


class Pbx:
    """All channels and bridges, and every operation ARI can ask for."""

    def __init__(self, settings: PbxSettings, bus: EventBus, clock: MediaClock) -> None:
        """Create an empty PBX."""
        self.settings = settings
        self.bus = bus
        self.clock = clock
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}
        self.media_connections: dict[str, WebSocketChannelTech] = {}
        self.runners: dict[str, DialplanRunner] = {}
        self._ids = UniqueIds()
        self._local_counter = itertools.count(0x293)
        self._snoop_counter = itertools.count(0xE)
        self._bridge_tickers: dict[str, int] = {}
        self._silence_tickers: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- helpers -------------------------------------------------------------

    def _later(self, callback: Callable[[], None], delay: float = _START_DELAY) -> None:
        asyncio.get_running_loop().call_later(delay, callback)

    def spawn(self, coro: Any) -> None:
        """Run a coroutine in the background until it ends or the PBX shuts down."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _publish(self, event: dict[str, Any], *subjects: Channel | Bridge | None) -> None:
        channels = [s for s in subjects if isinstance(s, Channel)]
        bridges = [s for s in subjects if isinstance(s, Bridge)]
        self.bus.publish(event, channels=channels, bridges=bridges)

    def new_channel(
        self,
        name: str,
        fmt: AudioFormat,
        channel_id: str | None = None,
        *,
        dialplan: Dialplan | None = None,
        state: str = "Down",
    ) -> Channel:
        """Create and register a channel."""
        cid = channel_id or self._ids.next()
        if cid in self.channels:
            raise AriError(409, "Channel with given unique ID already exists")
        channel = Channel(
            id=cid,
            name=name,
            native_format=fmt,
            observer=self,
            state=state,
            dialplan=dialplan or Dialplan(),
        )
        self.channels[cid] = channel
        return channel

    def channel(self, channel_id: str) -> Channel:
        """The channel, or ARI's 404."""
        channel = self.channels.get(channel_id)
        if channel is None:
            raise AriError(404, "Channel not found")
        return channel

    def bridge(self, bridge_id: str, *, reason: str = "Not Found") -> Bridge:
        """The bridge, or ARI's 404."""
        bridge = self.bridges.get(bridge_id)
        if bridge is None:
            raise AriError(404, "Bridge not found", reason=reason)
        return bridge

    def stasis_control(self, channel_id: str) -> Channel:
        """A channel that must be in Stasis: 404 if unknown, 409 if not in Stasis."""
        channel = self.channel(channel_id)
        if channel.stasis_app is None:
            raise AriError(409, "Channel not in Stasis application")
        return channel

    def set_state(self, channel: Channel, state: str) -> None:
        """Change a channel's state and publish ``ChannelStateChange``."""
        if channel.state != state:
            channel.state = state
            self._publish(ev.channel_state_change(channel), channel)

    # --- Stasis ---------------------------------------------------------------

    def enter_stasis(self, channel: Channel, app: str, args: list[str]) -> None:
        """Put an answered channel in ``app``; a channel for an app nobody listens to dies."""
        if channel.hung_up:
            return
        if not self.bus.registered(app):
            log.info("Stasis app %r not registered: hanging up %s", app, channel.name)
            self.hangup(channel, cause=16)
            return
        channel.apps.add(app)
        channel.original_dialplan = copy.copy(channel.dialplan)
        channel.dialplan.app_name = "Stasis"
        channel.dialplan.app_data = ",".join([app, *args])
        self._publish(ev.channel_varset(channel, "STASISSTATUS", ""), channel)
        channel.stasis_app = app
        self._publish(ev.stasis_start(channel, args), channel)

    def _answer_outgoing(
        self, channel: Channel, dialstring: str, app: str, args: list[str]
    ) -> None:
        """An outgoing channel answered: StateChange, Dial ANSWER, then Stasis."""
        if channel.hung_up:
            return
        self.set_state(channel, "Up")
        self._publish(ev.dial(channel, dialstring, "ANSWER"), channel)
        self.enter_stasis(channel, app, args)

    def _leave_stasis(self, channel: Channel) -> None:
        if channel.stasis_app is None:
            return
        self._publish(ev.stasis_end(channel), channel)
        if not channel.is_snoop:
            self._publish(ev.channel_varset(channel, "STASISSTATUS", "SUCCESS"), channel)
        channel.stasis_app = None
        if channel.original_dialplan is not None:
            channel.dialplan = channel.original_dialplan
            channel.original_dialplan = None

    # --- originate --------------------------------------------------------------

    def originate(self, params: Mapping[str, str], channel_id: str | None = None) -> Channel:
        """``POST /channels``: only ``Local/<exten>@default`` can be dialled."""
        endpoint = params.get("endpoint", "")
        if not endpoint:
            raise AriError(400, "Endpoint must be specified")
        app = params.get("app", "")
        if not app and not params.get("extension"):
            raise AriError(400, "Application or extension must be specified")
        tech, _, resource = endpoint.partition("/")
        if tech.lower() != "local" or not resource:
            raise AriError(500, "Allocation failed", key="error")
        exten, _, context = resource.partition("@")
        context = context or "default"
        fmt = AudioFormat.ULAW
        for name in params.get("formats", "").split(","):
            if name.strip() in _FORMATS:
                fmt = _FORMATS[name.strip()]
                break
        counter = f"{next(self._local_counter):08x}"
        base = f"Local/{exten}@{context}-{counter}"
        dp = Dialplan(context=context, exten=exten)
        cid = channel_id or params.get("channelId") or None
        one = self.new_channel(f"{base};1", fmt, cid, dialplan=dp)
        two = self.new_channel(
            f"{base};2",
            fmt,
            params.get("otherChannelId") or None,
            dialplan=Dialplan(context, exten, 1, "", ""),
            state="Ring",
        )
        one.local_peer, two.local_peer = two, one
        if app:
            one.apps.add(app)
            two.apps.add(app)
        program = EXTENSIONS.get(exten) if context == "default" else None
        own = None
        if not app:
            # Originated into the dialplan: the ;1 half runs `extension` itself.
            own_exten = params.get("extension", "")
            own = (
                OWN_EXTENSIONS.get(own_exten)
                if params.get("context", "default") == ("default")
                else None
            )
            one.dialplan = Dialplan(params.get("context") or "default", own_exten, 1, "", "")
        self._later(
            lambda: self._start_local(
                one, two, program, app, _split_args(params.get("appArgs")), own
            )
        )
        return one

    def _start_local(
        self,
        one: Channel,
        two: Channel,
        program: Program | None,
        app: str,
        args: list[str],
        own: tuple[str, str, float | None] | None = None,
    ) -> None:
        if one.hung_up:
            return
        dialstring = f"{one.dialplan.exten}@{one.dialplan.context}"
        self._publish(ev.dial(one, dialstring, ""), one)
        if program is None:
            # No such extension: the Local channel cannot be dialled.
            self._publish(ev.dial(one, dialstring, "CHANUNAVAIL"), one)
            self.hangup(two, cause=1, quiet_peer=True)
            self.hangup(one, cause=1)
            return
        two.dialplan.app_name, two.dialplan.app_data = "Answer", ""
        self._publish(ev.channel_dialplan(two), two)
        self.set_state(two, "Up")
        runner = DialplanRunner(
            one,
            two,
            self.clock,
            on_app=lambda ch: self._publish(ev.channel_dialplan(ch), ch),
            on_finished=lambda: self.far_end_hangup(one),
        )
        one.tech = runner
        self.runners[one.id] = runner
        runner.start(program)
        if app:
            self._answer_outgoing(one, dialstring, app, args)
            return
        self.set_state(one, "Up")
        self._publish(ev.dial(one, dialstring, "ANSWER"), one)
        if own is None:
            # No such extension: Asterisk hangs the answered call up.
            self.hangup(one, cause=1)
            return
        one.dialplan.app_name, one.dialplan.app_data, frequency = own
        self._publish(ev.channel_dialplan(one), one)
        if one.dialplan.app_name == "Playback":
            Playback(one, self.clock, frequency)

    # --- hangup -------------------------------------------------------------------

    def hangup(
        self,
        channel: Channel,
        *,
        cause: int = 16,
        soft: bool = False,
        tech_cause: int | None = None,
        quiet_peer: bool = False,
    ) -> None:
        """Hang ``channel`` up with the full event sequence.

        Args:
            channel: The channel.
            cause: ``ChannelHangupRequest.cause`` (32 + soft for an ARI DELETE).
            soft: Whether the request was a soft hangup (ARI DELETE).
            tech_cause: chan_websocket's close code, when there is one.
            quiet_peer: Do not touch the Local peer (it is being handled).
        """
        if channel.hung_up:
            return
        channel.hung_up = True
        self._publish(
            ev.channel_hangup_request(channel, cause, soft=soft, tech_cause=tech_cause), channel
        )
        self._teardown(channel)
        peer = None if quiet_peer else channel.local_peer
        if peer is not None and not peer.hung_up:
            self._publish(ev.channel_hangup_request(peer, 16), peer)
        snoop = channel.tech if channel.is_snoop else None
        if isinstance(snoop, Snoop) and snoop.detaching:
            # Its audiohook waits for a frame to pass the snooped call (main/audiohook.c):
            # the channel stays, out of Stasis, until then.
            channel.lingering = True
            channel.dialplan.app_name = channel.dialplan.app_data = ""

            def destroyed() -> None:
                channel.lingering = False
                self._destroy(channel, tech_cause)

            snoop.on_detached = destroyed
        else:
            self._destroy(channel, tech_cause)
        if peer is not None and not peer.hung_up:
            peer.hung_up = True
            self._publish(ev.channel_hangup_request(peer, 16, soft=True), peer)
            self._teardown(peer)
            self._destroy(peer, None)

    def far_end_hangup(self, channel: Channel, cause: int = 16) -> None:
        """The far end of ``channel`` hung up (a Local ``;2`` dialplan ended, a phone hung up)."""
        peer = channel.local_peer
        if peer is None or peer.hung_up:
            self.hangup(channel, cause=cause)
            return
        # The ;2 half goes first, then ;1 sees a plain (not soft) hangup request.
        peer.hung_up = True
        self._publish(ev.channel_hangup_request(peer, cause, soft=True), peer)
        channel.hung_up = True
        self._publish(ev.channel_hangup_request(channel, cause), channel)
        self._teardown(peer)
        self._destroy(peer, None)
        self._teardown(channel)
        self._destroy(channel, None)

    def _teardown(self, channel: Channel) -> None:
        """Leave the bridge and Stasis, stop the media."""
        if channel.bridge is not None:
            self._leave_bridge(channel.bridge, channel)
        self._leave_stasis(channel)
        try:
            channel.tech.close()
        except Exception:
            log.exception("closing %s failed", channel.name)
        self.runners.pop(channel.id, None)
        for snoop_channel in list(channel.snoops):
            self.hangup(snoop_channel, cause=16)
        for hook in list(channel.hooks):
            if isinstance(hook, Snoop):
                hook.target_gone()
        for callback in channel.on_hangup:
            callback()

    def _destroy(self, channel: Channel, tech_cause: int | None) -> None:
        if channel.local_peer is not None and channel.name.endswith(";2"):
            # The ;2 dialplan application has ended by the time the channel dies.
            channel.dialplan.app_name = channel.dialplan.app_data = ""
        if not channel.is_snoop:
            self._publish(ev.channel_destroyed(channel, 16, tech_cause), channel)
        self.channels.pop(channel.id, None)

    # --- ChannelObserver -------------------------------------------------------------

    def channel_dtmf(self, channel: Channel, digit: str, duration_ms: int) -> None:
        """A digit ended on what ``channel`` reads: ARI event, then the bridge."""
        self._publish(ev.channel_dtmf_received(channel, digit, duration_ms), channel)
        if channel.bridge is not None:
            channel.bridge.on_dtmf(channel, digit, duration_ms)

    def channel_remote_hangup(
        self, channel: Channel, cause: int, tech_cause: int | None = None
    ) -> None:
        """The endpoint of ``channel`` went away."""
        peer = channel.local_peer
        if peer is not None and channel.name.endswith(";2"):
            self.far_end_hangup(peer, cause)  # the ;2 half *is* the far end of ;1
        elif peer is not None:
            self.far_end_hangup(channel, cause)
        else:
            self.hangup(channel, cause=cause, tech_cause=tech_cause)

    # --- bridges ----------------------------------------------------------------------

    def create_bridge(self, type_: str, name: str, bridge_id: str | None) -> Bridge:
        """``POST /bridges``."""
        types = [t.strip() for t in (type_ or "mixing").split(",") if t.strip()] or ["mixing"]
        invalid = any(t not in BRIDGE_TYPES for t in types) or (
            "holding" in types and "mixing" in types
        )
        if invalid or (bridge_id and bridge_id in self.bridges):
            raise AriError(
                500,
                f"Unable to create bridge. Possible duplicate bridge id '{bridge_id or '(null)'}'",
                reason="Internal Error",
            )
        bridge = Bridge(bridge_id or str(uuid.uuid4()), name, types)
        self.bridges[bridge.id] = bridge
        self._bridge_tickers[bridge.id] = self.clock.add(bridge.tick, order=1)
        return bridge

    def destroy_bridge(self, bridge: Bridge) -> None:
        """``DELETE /bridges/{id}``: members leave, then ``BridgeDestroyed``."""
        for channel in list(bridge.channels):
            self._leave_bridge(bridge, channel)
        bridge.destroyed = True
        self._publish(ev.bridge_destroyed(bridge), bridge)
        self.bridges.pop(bridge.id, None)
        handle = self._bridge_tickers.pop(bridge.id, None)
        if handle is not None:
            self.clock.remove(handle)
        for callback in bridge.on_destroyed:
            callback()

    def add_channels(self, bridge: Bridge, channel_ids: list[str]) -> None:
        """``POST /bridges/{id}/addChannel``: all channels checked before any joins."""
        members: list[Channel] = []
        for cid in channel_ids:
            channel = self.channels.get(cid)
            if channel is None:
                raise AriError(400, "Channel not found")
            if channel.stasis_app is None:
                raise AriError(422, "Channel not in Stasis application")
            members.append(channel)
        self.join(bridge, members)

    def join(self, bridge: Bridge, members: list[Channel]) -> None:
        """Put channels in a bridge (no Stasis check: also used for the demo)."""
        joined: list[Channel] = []
        for channel in members:
            if channel.bridge is bridge:
                continue
            if channel.bridge is not None:
                self._leave_bridge(channel.bridge, channel)
            bridge.channels.append(channel)
            channel.bridge = bridge
            if channel.stasis_app is not None:
                bridge.apps.add(channel.stasis_app)
            self._publish(ev.channel_entered_bridge(bridge, channel), channel, bridge)
            bridge.update_technology()
            joined.append(channel)
        if joined and len(bridge.channels) >= 2:
            if len(bridge.channels) >= 3:
                order = joined + [c for c in bridge.channels if c not in joined]
            else:
                order = list(bridge.channels)
            self._publish_bridge_peers(order)

    def _publish_bridge_peers(self, members: list[Channel]) -> None:
        for channel in members:
            bridge = channel.bridge
            if bridge is None:
                continue
            others = sorted(c.name for c in bridge.channels if c is not channel)
            self._publish(ev.channel_varset(channel, "BRIDGEPEER", ",".join(others)), channel)

    def remove_channels(self, bridge: Bridge, channel_ids: list[str]) -> None:
        """``POST /bridges/{id}/removeChannel``."""
        members: list[Channel] = []
        for cid in channel_ids:
            channel = self.channels.get(cid)
            if channel is None:
                raise AriError(400, "Channel not found")
            if channel.stasis_app is None:
                raise AriError(422, "Channel not in Stasis application")
            if channel.bridge is not bridge:
                raise AriError(422, "Channel not in this bridge")
            members.append(channel)
        for channel in members:
            self._leave_bridge(bridge, channel)

    def _leave_bridge(self, bridge: Bridge, channel: Channel) -> None:
        self._publish(ev.channel_varset(channel, "BRIDGEPEER", ""), channel)
        if channel in bridge.channels:
            bridge.channels.remove(channel)
        channel.bridge = None
        self._publish(ev.channel_left_bridge(bridge, channel), channel, bridge)
        bridge.update_technology()
        if len(bridge.channels) >= 2:
            self._publish_bridge_peers(list(bridge.channels))

    # --- externalMedia -------------------------------------------------------------------

    async def external_media(
        self, params: Mapping[str, str], variables: Mapping[str, str]
    ) -> Channel:
        """``POST /channels/externalMedia``, validated in Asterisk's order.

        ``variables`` (from a JSON body) are set on the channel and, like the
        driver's own variables, returned in the response's ``channelvars``.
        """
        channel = await self._external_media(params)
        channel.channelvars.update(variables)
        return channel

    async def _external_media(self, params: Mapping[str, str]) -> Channel:
        app = params.get("app", "")
        if not app:
            raise AriError(400, "app cannot be empty")
        encapsulation = (params.get("encapsulation") or "rtp").lower()
        transport = (params.get("transport") or "udp").lower()
        connection_type = (params.get("connection_type") or "client").lower()
        direction = params.get("direction") or "both"
        external_host = params.get("external_host", "")
        websocket_server = transport == "websocket" and connection_type == "server"
        if connection_type == "server" and transport != "websocket":
            raise AriError(
                400, "'server' connection_type can only be used with the websocket transport"
            )
        if not external_host:
            if not websocket_server:
                raise AriError(
                    400, "external_host is required for all but websocket server connections"
                )
            external_host = "INCOMING"
        host_port: tuple[str, int] | None = None
        if transport != "websocket":
            match = _HOST_PORT.match(external_host)
            if match is None or not 0 < int(match["port"]) < 65536:
                raise AriError(
                    400,
                    "external_host must be <host>:<port> for all transports other than websocket",
                )
            host_port = (match["v6"] or match["host"], int(match["port"]))
        format_name = params.get("format", "")
        if not format_name:
            raise AriError(400, "format cannot be empty")
        if direction not in ("both", "in", "out"):
            raise AriError(400, "Invalid direction specified")
        data = params.get("data") or None
        args = [data] if data else []
        channel_id = params.get("channelId") or None
        if encapsulation == "rtp" and transport == "udp":
            fmt = self._format(format_name)
            assert host_port is not None
            return await self._external_rtp(app, external_host, host_port, fmt, args, channel_id)
        if encapsulation == "rtp":
            raise AriError(400, "transport must be 'udp' for rtp encapsulation")
        if encapsulation == "audiosocket" and transport == "tcp":
            if not data:
                raise AriError(400, "data can not be empty")
            assert host_port is not None
            return await self._external_audiosocket(
                app, external_host, host_port, format_name, data, channel_id
            )
        if encapsulation == "none" and transport == "websocket":
            if not websocket_server:
                raise AriError(400, "external_host must be a valid websocket_client connection id.")
            fmt = self._format(format_name)
            return self._external_websocket(
                app, fmt, params.get("transport_data", ""), direction, args, channel_id
            )
        raise AriError(501, "The encapsulation and/or transport is not supported")

    @staticmethod
    def _format(name: str) -> AudioFormat:
        fmt = _FORMATS.get(name)
        if fmt is None:
            raise internal_error()
        return fmt

    def _start_outgoing(self, channel: Channel, dialstring: str, app: str, args: list[str]) -> None:
        """Dial, answer and enter Stasis, ~1 ms after the POST returns."""

        def start() -> None:
            if channel.hung_up:
                return
            self._publish(ev.dial(channel, dialstring, ""), channel)
            self._answer_outgoing(channel, dialstring, app, args)

        self._later(start)

    async def _external_rtp(
        self,
        app: str,
        external_host: str,
        host_port: tuple[str, int],
        fmt: AudioFormat,
        args: list[str],
        channel_id: str | None,
    ) -> Channel:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host_port[0], host_port[1], type=2)  # SOCK_DGRAM
        except OSError as exc:
            raise internal_error() from exc
        remote = (str(infos[0][4][0]), int(infos[0][4][1]))
        local_host = (
            self.settings.host if self.settings.host not in ("", "0.0.0.0") else "127.0.0.1"
        )
        try:
            sock = bind_rtp_socket(
                local_host, self.settings.rtp_port_start, self.settings.rtp_port_end
            )
        except OSError as exc:
            raise internal_error() from exc
        channel = self.new_channel(f"UnicastRTP/{external_host}-{_pointer()}", fmt, channel_id)
        tech = RtpTech(channel, remote, self.clock)
        await tech.open(sock)
        channel.tech = tech
        address, port = tech.local_address
        channel.channelvars = {
            "UNICASTRTP_LOCAL_PORT": str(port),
            "UNICASTRTP_LOCAL_ADDRESS": address,
        }
        channel.apps.add(app)
        self._start_outgoing(channel, f"{external_host}/c({fmt.value})", app, args)
        return channel

    async def _external_audiosocket(
        self,
        app: str,
        external_host: str,
        host_port: tuple[str, int],
        format_name: str,
        data: str,
        channel_id: str | None,
    ) -> Channel:
        fmt = self._format(format_name)
        try:
            call_uuid = uuid.UUID(data)
        except ValueError as exc:
            raise internal_error() from exc
        try:
            reader, writer = await AudioSocketTech.connect(*host_port)
        except OSError as exc:
            raise internal_error() from exc
        channel = self.new_channel(f"AudioSocket/{external_host}-{data}", fmt, channel_id)
        tech = AudioSocketTech(channel, reader, writer, call_uuid)
        channel.tech = tech
        channel.channelvars = {"AUDIOSOCKET_SERVICE": external_host, "AUDIOSOCKET_UUID": data}
        channel.apps.add(app)
        tech.start()
        self._start_outgoing(channel, f"{external_host}/{data}", app, [data])
        return channel

    def _external_websocket(
        self,
        app: str,
        fmt: AudioFormat,
        transport_data: str,
        direction: str,
        args: list[str],
        channel_id: str | None,
    ) -> Channel:
        json_format = "f(json)" in transport_data
        auto_answer = not re.search(r"(?:^|\))n(?:$|[a-z(])", transport_data)
        channel = self.new_channel(f"WebSocket/INCOMING/{_pointer()}", fmt, channel_id)
        connection_id = str(uuid.uuid4())
        channel.channelvars = {
            "MEDIA_WEBSOCKET_CONNECTION_ID": connection_id,
            "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE": str(fmt.frame_bytes),
        }
        dialstring = "INCOMING" + (f"/{transport_data}" if transport_data else "")
        channel.apps.add(app)

        def connected(_: WebSocketChannelTech) -> None:
            timeout.cancel()

        def answer(_: WebSocketChannelTech) -> None:
            if channel.state != "Up":
                self._answer_outgoing(channel, dialstring, app, args)

        tech = WebSocketChannelTech(
            channel,
            connection_id,
            self.clock,
            json_format=json_format,
            auto_answer=auto_answer,
            on_connected=connected,
            on_answer=answer,
        )
        tech.direction = direction
        channel.tech = tech
        self.media_connections[connection_id] = tech
        channel.on_hangup.append(lambda: self._forget_connection(connection_id))
        self._later(lambda: self._publish(ev.dial(channel, dialstring, ""), channel))
        timeout = asyncio.get_running_loop().call_later(
            _WEBSOCKET_DIAL_TIMEOUT, lambda: self.hangup(channel, cause=19)
        )
        return channel

    def _forget_connection(self, connection_id: str) -> None:
        self.media_connections.pop(connection_id, None)

    # --- snoop ---------------------------------------------------------------------------

    def snoop(self, target_id: str, params: Mapping[str, str], snoop_id: str | None) -> Channel:
        """``POST /channels/{id}/snoop``."""
        spy = params.get("spy") or "none"
        whisper = params.get("whisper") or "none"
        if spy not in DIRECTIONS:
            raise AriError(400, "Invalid direction specified for spy")
        if whisper not in DIRECTIONS:
            raise AriError(400, "Invalid direction specified for whisper")
        if spy == "none" and whisper == "none":
            raise AriError(400, "Direction must be specified for at least spy or whisper")
        app = params.get("app", "")
        if not app:
            raise AriError(400, "Application name is required")
        target = self.channels.get(target_id)
        if target is None:
            raise AriError(404, "Provided channel was not found", reason="Channel Not Found")
        app_args = params.get("appArgs", "")
        snoop = Snoop(target, spy, whisper, self.clock)
        dialplan = Dialplan(
            "default", "s", 1, "Stasis", ",".join([app, app_args]) if app_args else app
        )
        channel = self.new_channel(
            f"Snoop/{target.id}-{next(self._snoop_counter):08x}",
            snoop.format,
            snoop_id or params.get("snoopId") or None,
            dialplan=dialplan,
            state="Up",
        )
        channel.is_snoop = True
        channel.tech = snoop
        snoop.channel = channel
        channel.apps.add(app)
        target.snoops.append(channel)
        channel.on_hangup.append(lambda: self._snoop_gone(target, channel))
        if target.bridge is not None and len(target.bridge.channels) >= 2:
            self._publish_bridge_peers(list(target.bridge.channels))

        def start() -> None:
            if channel.hung_up:
                return
            if not self.bus.registered(app):
                self.hangup(channel, cause=16)
                return
            channel.stasis_app = app
            self._publish(ev.stasis_start(channel, _split_args(app_args)), channel)

        self._later(start)
        return channel

    def _snoop_gone(self, target: Channel, channel: Channel) -> None:
        if channel in target.snoops:
            target.snoops.remove(channel)
        if not target.hung_up and target.bridge is not None and len(target.bridge.channels) >= 2:
            self._publish_bridge_peers(list(target.bridge.channels))

    # --- misc ------------------------------------------------------------------------------

    def start_silence(self, channel: Channel) -> None:
        """``POST /channels/{id}/silence``: write 20 ms of 8 kHz slin silence every tick.

        The frames pass the channel's audio hooks, so a snoop's whisper is mixed
        into them; while it runs, other frames written to the channel are dropped.
        """
        self.stop_silence(channel)
        silence = Frame(AudioFormat.SLIN, bytes(AudioFormat.SLIN.frame_bytes))
        channel.generating = True
        self._silence_tickers[channel.id] = self.clock.add(
            lambda: channel.write(silence, generated=True), order=0
        )
        channel.on_hangup.append(lambda: self.stop_silence(channel))

    def stop_silence(self, channel: Channel) -> None:
        """``DELETE /channels/{id}/silence``, or media played on the channel."""
        channel.generating = False
        handle = self._silence_tickers.pop(channel.id, None)
        if handle is not None:
            self.clock.remove(handle)

    def send_dtmf(
        self, channel: Channel, digits: str, *, between_ms: int = 100, duration_ms: int = 100
    ) -> None:
        """``POST /channels/{id}/dtmf``: play digits *to* the channel's endpoint."""

        async def play() -> None:
            for digit in digits:
                if channel.hung_up:
                    return
                await asyncio.sleep(duration_ms / 1000)
                channel.write_dtmf_end(digit, duration_ms)
                await asyncio.sleep(between_ms / 1000)

        self.spawn(play())

    async def shutdown(self) -> None:
        """Hang up every channel and destroy every bridge, as ``core stop now`` does.

        Asterisk first soft-hangs every channel with ``AST_SOFTHANGUP_SHUTDOWN``
        (``ChannelHangupRequest`` cause 4, soft), before ARI goes away.
        """
        for channel in list(self.channels.values()):
            if not channel.hung_up:
                self.hangup(channel, cause=4, soft=True)
        for bridge in list(self.bridges.values()):
            self.destroy_bridge(bridge)
        for task in list(self._tasks):
            task.cancel()
