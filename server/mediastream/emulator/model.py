"""Channels and the frames that flow through them, as Asterisk models them.

A :class:`Channel` is what ARI shows (id, name, state, dialplan location) plus the
media plumbing of an Asterisk channel:

* :meth:`Channel.read` takes a frame the channel's endpoint produced (what the
  party *sends*: RTP received, a tone the dialplan plays) and hands it to the
  channel's bridge;
* :meth:`Channel.write` takes a frame for the endpoint (what the party *hears*),
  converts it to the channel's native format and gives it to the channel's
  :class:`ChannelTech`.

Audio hooks (snoop channels) sit on both paths, exactly where Asterisk's
audiohooks do: they see every frame read or written and may replace it (whisper).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from mediastream.core.formats import AudioFormat
from mediastream.core.pcm import Transcoder

if TYPE_CHECKING:
    from mediastream.emulator.bridge import Bridge

__all__ = [
    "AudioHook",
    "Channel",
    "ChannelObserver",
    "ChannelTech",
    "Dialplan",
    "FormatConverter",
    "Frame",
    "NullTech",
    "UniqueIds",
    "ari_timestamp",
]


def ari_timestamp(when: datetime | None = None) -> str:
    """Format a time the way ARI does: ``2026-11-24T10:13:03.027+0000``.

    Args:
        when: The moment; now when omitted.

    Returns:
        The timestamp string (UTC, milliseconds, ``+0000``).
    """
    t = when or datetime.now(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+0000"


@dataclass(frozen=True, slots=True)
class Frame:
    """One voice frame, in whatever format it was produced.

    Asterisk passes frames between channels untouched when the formats agree and
    transcodes only at the edge that needs another format; keeping the format on
    the frame lets the emulator do the same (so an echoed mu-law RTP payload comes
    back byte for byte).

    Attributes:
        format: Encoding of ``payload`` (linear formats are little-endian).
        payload: The audio bytes; usually 20 ms, but any length Asterisk would pass.
        timing_ms: Asterisk's "timing info": the media time in ms of a frame read from
            RTP. An RTP channel that writes the frame reuses it for its timestamp.
    """

    format: AudioFormat
    payload: bytes
    timing_ms: int | None = None

    @property
    def samples(self) -> int:
        """Number of samples in the payload."""
        return len(self.payload) // self.format.sample_width


class FormatConverter:
    """Converts frames of any format to one format, with a stream per source format.

    Resampling keeps filter state between frames, so each source format gets its
    own :class:`~mediastream.core.pcm.Transcoder` for the life of the consumer
    (its ~1.4 ms filter delay is close to Asterisk's own translation path).
    """

    def __init__(self, target: AudioFormat) -> None:
        """Create a converter to ``target``."""
        self.target = target
        self._streams: dict[AudioFormat, Transcoder] = {}

    def convert(self, frame: Frame) -> Frame:
        """Return ``frame`` in the target format (the same object when it already is)."""
        if frame.format is self.target:
            return frame
        stream = self._streams.get(frame.format)
        if stream is None:
            stream = self._streams[frame.format] = Transcoder(frame.format, self.target)
        return Frame(self.target, stream.convert(frame.payload), frame.timing_ms)


class ChannelTech(Protocol):
    """The endpoint behind a channel: a socket, a dialplan, a snoop."""

    def write_frame(self, frame: Frame) -> None:
        """Deliver a frame (already in the channel's native format) to the endpoint."""

    def write_dtmf(self, digit: str, duration_ms: int) -> None:
        """Deliver the end of a DTMF digit to the endpoint."""

    def close(self) -> None:
        """Release the endpoint's resources; the channel is being hung up."""


class NullTech:
    """An endpoint that swallows everything (a channel not connected to anything)."""

    def write_frame(self, frame: Frame) -> None:
        """Drop the frame."""

    def write_dtmf(self, digit: str, duration_ms: int) -> None:
        """Drop the digit."""

    def close(self) -> None:
        """Nothing to release."""


class AudioHook(Protocol):
    """Something attached to a channel's audio paths (a snoop)."""

    def on_read(self, frame: Frame) -> Frame:
        """See a frame read from the channel; return the frame to pass on."""

    def on_write(self, frame: Frame) -> Frame:
        """See a frame written to the channel; return the frame to pass on."""


class ChannelObserver(Protocol):
    """The PBX side of a channel: what it reports upwards."""

    def channel_dtmf(self, channel: Channel, digit: str, duration_ms: int) -> None:
        """A DTMF digit ended on what the channel reads."""

    def channel_remote_hangup(
        self, channel: Channel, cause: int, tech_cause: int | None = None
    ) -> None:
        """The endpoint went away (socket closed, dialplan ended)."""


@dataclass
class Dialplan:
    """Where a channel is in the dialplan (the snapshot's ``dialplan`` object)."""

    context: str = "default"
    exten: str = "s"
    priority: int = 1
    app_name: str = "AppDial2"
    app_data: str = "(Outgoing Line)"

    def to_json(self) -> dict[str, Any]:
        """The ARI JSON object."""
        return {
            "context": self.context,
            "exten": self.exten,
            "priority": self.priority,
            "app_name": self.app_name,
            "app_data": self.app_data,
        }


class UniqueIds:
    """Asterisk's channel uniqueids: ``<epoch seconds at creation>.<global counter>``."""

    def __init__(self, start: int = 1) -> None:
        """Create a generator whose first counter value is ``start``."""
        self._counter = itertools.count(start)

    def next(self) -> str:
        """A fresh uniqueid."""
        return f"{int(time.time())}.{next(self._counter)}"


@dataclass(eq=False)
class Channel:
    """An Asterisk channel: ARI state plus its audio paths.

    Attributes:
        id: The uniqueid (ARI ``channel.id``).
        name: e.g. ``UnicastRTP/127.0.0.1:40000-0x7f08...``.
        native_format: The format the endpoint reads and writes.
        observer: Where DTMF and remote hangups are reported.
        state: ``Down``, ``Ring`` or ``Up``.
        dialplan: Current dialplan location (``app_name`` is ``Stasis`` while in an app).
        tech: The endpoint.
        channelvars: Variables returned with the externalMedia response only.
        stasis_app: The Stasis application the channel is in, if any.
        original_dialplan: Where the channel returns when it leaves Stasis.
        bridge: The bridge the channel is in, if any.
        apps: Applications subscribed to the channel's events.
        hooks: Audio hooks (snoops) attached.
        is_snoop: Snoop channels get no ``ChannelDestroyed`` event.
        local_peer: The other half of a Local channel pair.
        hung_up: Set once the hangup started (no further events or media).
        snoops: Snoop channels spying on this one (they die with it).
        on_hangup: Callbacks run while the channel is torn down.
        generating: A generator (ARI's silence generator) writes to the channel:
            as in ``ast_write``, every other frame written meanwhile is dropped.
        lingering: Hung up but not yet destroyed, and still listed by ARI (a snoop
            whose audiohook waits for a frame to pass the snooped channel).
    """

    id: str
    name: str
    native_format: AudioFormat
    observer: ChannelObserver
    state: str = "Down"
    dialplan: Dialplan = field(default_factory=Dialplan)
    caller: tuple[str, str] = ("", "")
    connected: tuple[str, str] = ("", "")
    creationtime: str = field(default_factory=ari_timestamp)
    tech: ChannelTech = field(default_factory=NullTech)
    channelvars: dict[str, str] = field(default_factory=dict)
    stasis_app: str | None = None
    original_dialplan: Dialplan | None = None
    bridge: Bridge | None = None
    apps: set[str] = field(default_factory=set)
    hooks: list[AudioHook] = field(default_factory=list)
    is_snoop: bool = False
    local_peer: Channel | None = None
    hung_up: bool = False
    snoops: list[Channel] = field(default_factory=list)
    on_hangup: list[Callable[[], None]] = field(default_factory=list)
    generating: bool = False
    lingering: bool = False

    def __post_init__(self) -> None:
        self._to_native = FormatConverter(self.native_format)

    def snapshot(self) -> dict[str, Any]:
        """The ARI ``Channel`` JSON object, keys in Asterisk's order."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "protocol_id": "",
            "caller": {"name": self.caller[0], "number": self.caller[1]},
            "connected": {"name": self.connected[0], "number": self.connected[1]},
            "accountcode": "",
            "dialplan": self.dialplan.to_json(),
            "creationtime": self.creationtime,
            "language": "en",
        }

    # --- media -------------------------------------------------------------

    def read(self, frame: Frame) -> None:
        """The endpoint produced ``frame`` (what the party sends): pass it to the bridge."""
        if self.hung_up:
            return
        for hook in list(self.hooks):
            frame = hook.on_read(frame)
        self.deliver_to_bridge(frame)

    def deliver_to_bridge(self, frame: Frame) -> None:
        """Hand a frame to the bridge without passing the hooks."""
        if self.bridge is not None and not self.hung_up:
            self.bridge.on_frame(self, frame)

    def write(self, frame: Frame, *, generated: bool = False) -> None:
        """Send ``frame`` to the endpoint (what the party hears).

        Args:
            frame: The frame.
            generated: It comes from the channel's generator; other frames are
                dropped while one runs (main/channel.c, ``ast_write``).
        """
        if self.hung_up or (self.generating and not generated):
            return
        for hook in list(self.hooks):
            frame = hook.on_write(frame)
        self.deliver_to_endpoint(frame)

    def deliver_to_endpoint(self, frame: Frame) -> None:
        """Give a frame to the endpoint without passing the hooks."""
        if not self.hung_up:
            self.tech.write_frame(self._to_native.convert(frame))

    def read_dtmf_end(self, digit: str, duration_ms: int) -> None:
        """The endpoint finished sending a DTMF digit."""
        if not self.hung_up:
            self.observer.channel_dtmf(self, digit, duration_ms)

    def write_dtmf_end(self, digit: str, duration_ms: int) -> None:
        """Play the end of a DTMF digit to the endpoint."""
        if not self.hung_up:
            self.tech.write_dtmf(digit, duration_ms)

    def remote_hangup(self, cause: int = 16, tech_cause: int | None = None) -> None:
        """The endpoint hung up (called by the tech)."""
        if not self.hung_up:
            self.observer.channel_remote_hangup(self, cause, tech_cause)
