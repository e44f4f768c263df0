"""The emulator as a whole: configuration, start/stop, and fault injection."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from aiohttp import web

from mediastream.emulator.ari import AriServer
from mediastream.emulator.demo import add_call, create_demo
from mediastream.emulator.events import EventBus
from mediastream.emulator.media import MediaClock
from mediastream.emulator.pbx import Pbx, PbxSettings

__all__ = ["Emulator", "EmulatorConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmulatorConfig:
    """Where and how the emulator listens.

    Attributes:
        host: Address of the ARI/HTTP server and of the RTP sockets.
        port: ARI HTTP/WebSocket port; 0 picks a free one.
        username: ARI user.
        password: ARI password.
        rtp_port_start: First UDP port for UnicastRTP channels.
        rtp_port_end: Last UDP port for UnicastRTP channels.
        demo: Create the demo calls and conference at start.
    """

    host: str = "127.0.0.1"
    port: int = 0
    username: str = "asterisk"
    password: str = "asterisk"
    rtp_port_start: int = 20000
    rtp_port_end: int = 20999
    demo: bool = True


class Emulator:
    """An emulated Asterisk 23.4.1 that speaks ARI, RTP, AudioSocket and chan_websocket."""

    def __init__(self, config: EmulatorConfig = EmulatorConfig()) -> None:
        """Create a stopped emulator."""
        self.config = config
        self._asterisk_id = "02:fc:" + ":".join(f"{random.getrandbits(8):02x}" for _ in range(4))
        self.clock = MediaClock()
        self.bus = EventBus(self._asterisk_id)
        self.pbx = Pbx(
            PbxSettings(config.host, config.rtp_port_start, config.rtp_port_end),
            self.bus,
            self.clock,
        )
        self._server = AriServer(self.pbx, config.username, config.password)
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The ARI HTTP port (known after :meth:`start`)."""
        return self._port

    @property
    def ari_url(self) -> str:
        """Base URL of ARI, e.g. ``http://127.0.0.1:8088/ari``."""
        return f"http://{self.config.host}:{self._port}/ari"

    @property
    def asterisk_id(self) -> str:
        """The ``asterisk_id`` of every event."""
        return self._asterisk_id

    async def start(self) -> None:
        """Start the clock and the HTTP server; create the demo calls."""
        self.clock.start()
        runner = web.AppRunner(self._server.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port, reuse_address=True)
        await site.start()
        self._runner = runner
        addresses = runner.addresses
        self._port = int(addresses[0][1]) if addresses else self.config.port
        if self.config.demo:
            create_demo(self.pbx)

    async def stop(self) -> None:
        """Hang up everything, close every socket and stop."""
        await self.pbx.shutdown()
        await self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.clock.stop()

    async def kill(self) -> None:
        """Vanish as a ``kill -9``'d Asterisk does: no hangup events, every socket drops.

        ARI's websockets and HTTP server close first, so the hangups that follow reach
        no one; then the media sockets close with their channels.
        """
        await self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.pbx.shutdown()
        await self.clock.stop()

    # --- fault injection -------------------------------------------------------------

    def hangup(self, channel_id: str, cause: int = 16) -> None:
        """Make the far end of a channel hang up (``ChannelHangupRequest`` without ``soft``).

        Raises:
            KeyError: No such channel.
        """
        channel = self.pbx.channels.get(channel_id)
        if channel is None:
            raise KeyError(channel_id)
        channel.remote_hangup(cause)

    def end_conference(self, bridge_id: str) -> None:
        """End a conference: participants not in Stasis hang up, the bridge is destroyed.

        Raises:
            KeyError: No such bridge.
        """
        bridge = self.pbx.bridges.get(bridge_id)
        if bridge is None:
            raise KeyError(bridge_id)
        outside_stasis = [c for c in bridge.channels if c.stasis_app is None]
        self.pbx.destroy_bridge(bridge)
        for channel in outside_stasis:
            self.pbx.hangup(channel, cause=16)

    def send_dtmf(self, channel_id: str, digits: str, duration_ms: int = 120) -> None:
        """Make a channel's far end send DTMF, as if the caller pressed keys.

        Audio pauses while each digit is down; each digit ends with
        ``ChannelDtmfReceived`` and reaches the channel's bridge.

        Raises:
            KeyError: No such channel.
        """
        channel = self.pbx.channels.get(channel_id)
        if channel is None:
            raise KeyError(channel_id)
        runner = self.pbx.runners.get(channel_id)
        if runner is not None:
            self.pbx.spawn(runner.send_dtmf(digits, duration_ms=duration_ms))
            return
        for digit in digits:
            channel.read_dtmf_end(digit, duration_ms)

    async def drop_event_connections(self) -> None:
        """Close every ARI events WebSocket (a network blip); clients may reconnect."""
        await self._server.close()

    def add_call(self, kind: str = "tone", channel_id: str | None = None) -> str:
        """Add an Up call outside Stasis (reach it by snoop), like the demo calls.

        Args:
            kind: ``tone`` (440 Hz), ``tone880``, ``echo`` or ``dtmf`` (440 Hz and
                ``1 2 #`` every 2 s).
            channel_id: Its id; a fresh uniqueid when omitted.

        Returns:
            The channel id.

        Raises:
            ValueError: Unknown ``kind``.
        """
        return add_call(self.pbx, kind, channel_id).id

    def channel_ids(self) -> list[str]:
        """Ids of the live channels."""
        return [c.id for c in self.pbx.channels.values() if not c.hung_up]
