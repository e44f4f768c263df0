"""ARI bridges and how audio crosses them.

A ``mixing`` bridge is Asterisk's "smart" bridge:

* with two members it uses ``simple_bridge``: every frame one member reads is
  written to the other at once, untouched and not re-paced (a burst in is a burst
  out, and nothing is sent while the other side is silent);
* with three or more it switches to ``softmix``: on every 20 ms tick each member
  gets the sum of everyone else's audio at full level (clipped, not attenuated),
  silence included.

A ``holding`` bridge passes no audio between its members.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mediastream.core.formats import FRAME_MS, AudioFormat
from mediastream.emulator.media import clip_to_pcm, pcm_array
from mediastream.emulator.model import Channel, FormatConverter, Frame, ari_timestamp

__all__ = ["BRIDGE_TYPES", "Bridge"]

BRIDGE_TYPES = frozenset(
    {"mixing", "holding", "dtmf_events", "proxy_media", "video_sfu", "video_single", "sdp_label"}
)
"""Values ``POST /bridges?type=`` accepts (comma-separated)."""

# Softmix keeps at most this much unplayed audio per member; older audio is
# dropped so that a burst into a conference does not add latency for good.
_MAX_BACKLOG_FRAMES = 10


class _MixMember:
    """A member's pending audio at the mixing rate."""

    def __init__(self, rate_format: AudioFormat) -> None:
        self.converter = FormatConverter(rate_format)
        self.pending = bytearray()


class Bridge:
    """A bridge: its ARI snapshot and its media.

    Attributes:
        id: Bridge id.
        name: Name given at creation.
        types: The ``type`` list it was created with.
        channels: Members, in join order.
        technology: ``simple_bridge``, ``softmix`` or ``holding_bridge`` as ARI shows
            it; :meth:`update_technology` changes it *after* the enter/leave event
            is published, as Asterisk does.
        apps: Applications subscribed to its events.
        on_destroyed: Callbacks run when the bridge is destroyed.
    """

    def __init__(self, bridge_id: str, name: str, types: list[str]) -> None:
        """Create an empty bridge."""
        self.id = bridge_id
        self.name = name
        self.types = types
        self.channels: list[Channel] = []
        self.creationtime = ari_timestamp()
        self.holding = "holding" in types
        self.technology = "holding_bridge" if self.holding else "simple_bridge"
        self.apps: set[str] = set()
        self.destroyed = False
        self.on_destroyed: list[Callable[[], None]] = []
        self._mix: dict[str, _MixMember] = {}
        self._mix_format = AudioFormat.SLIN

    @property
    def bridge_type(self) -> str:
        """ARI ``bridge_type``: ``holding`` or ``mixing`` (``proxy_media`` is not listed)."""
        return "holding" if self.holding else "mixing"

    def snapshot(self) -> dict[str, Any]:
        """The ARI ``Bridge`` JSON object."""
        return {
            "id": self.id,
            "technology": self.technology,
            "bridge_type": self.bridge_type,
            "bridge_class": "stasis",
            "creator": "Stasis",
            "name": self.name,
            "channels": [c.id for c in self.channels],
            "creationtime": self.creationtime,
            "video_mode": "talker",
        }

    def update_technology(self) -> None:
        """Pick simple_bridge or softmix for the current member count."""
        if self.holding:
            return
        softmix = len(self.channels) >= 3
        self.technology = "softmix" if softmix else "simple_bridge"
        if softmix:
            rate = max(c.native_format.sample_rate for c in self.channels)
            mix_format = AudioFormat.SLIN16 if rate >= 16000 else AudioFormat.SLIN
            if mix_format is not self._mix_format:
                self._mix_format = mix_format
                self._mix.clear()
            for channel in self.channels:
                self._mix.setdefault(channel.id, _MixMember(mix_format))
            for gone in set(self._mix) - {c.id for c in self.channels}:
                del self._mix[gone]
        else:
            self._mix.clear()

    # --- media -------------------------------------------------------------

    def on_frame(self, source: Channel, frame: Frame) -> None:
        """A member read ``frame``: forward it (simple_bridge) or queue it for the mix."""
        if self.holding or self.destroyed:
            return
        if self.technology == "softmix":
            member = self._mix.get(source.id)
            if member is not None:
                member.pending += member.converter.convert(frame).payload
                limit = _MAX_BACKLOG_FRAMES * self._mix_format.frame_bytes
                if len(member.pending) > limit:
                    del member.pending[: len(member.pending) - limit]
            return
        for other in self.channels:
            if other is not source:
                other.write(frame)

    def on_dtmf(self, source: Channel, digit: str, duration_ms: int) -> None:
        """A member read the end of a DTMF digit: every other member gets it."""
        if self.holding or self.destroyed:
            return
        for other in self.channels:
            if other is not source:
                other.write_dtmf_end(digit, duration_ms)

    def tick(self) -> None:
        """Softmix: give each member one frame of everyone else's audio."""
        if self.technology != "softmix" or self.destroyed or not self._mix:
            return
        fmt = self._mix_format
        samples = fmt.sample_rate * FRAME_MS // 1000
        own: dict[str, Any] = {}
        for channel_id, member in self._mix.items():
            own[channel_id] = pcm_array(bytes(member.pending[: 2 * samples]), samples)
            del member.pending[: 2 * samples]
        total = np.sum(list(own.values()), axis=0, dtype=np.int32)
        for channel in list(self.channels):
            mine = own.get(channel.id)
            if mine is None:
                continue
            channel.write(Frame(fmt, clip_to_pcm(total - mine)))
