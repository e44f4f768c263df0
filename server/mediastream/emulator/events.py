"""ARI events: the JSON shapes Asterisk sends and who receives them.

Every builder returns the event with its keys in the order Asterisk 23.4.1 writes
them (checked against the recordings); :meth:`EventBus.publish` appends
``asterisk_id`` and ``application`` for each receiving app.

Who receives an event (as in ``res_stasis``): an application is *registered* only
while at least one events websocket for it is connected. It receives the events of
every channel and bridge it is subscribed to. A channel subscribes the app that
originated it (both halves of a Local pair), the app whose Stasis it enters, and
any app that asked through ``/applications/{app}/subscription``; a bridge
subscribes the apps of the Stasis channels that enter it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from mediastream.emulator.model import Channel, ari_timestamp

if TYPE_CHECKING:
    from mediastream.emulator.bridge import Bridge

__all__ = [
    "EventBus",
    "EventSink",
    "bridge_destroyed",
    "cause_text",
    "channel_destroyed",
    "channel_dialplan",
    "channel_dtmf_received",
    "channel_entered_bridge",
    "channel_hangup_request",
    "channel_left_bridge",
    "channel_state_change",
    "channel_varset",
    "dial",
    "stasis_end",
    "stasis_start",
]

log = logging.getLogger(__name__)

Event = dict[str, Any]

_CAUSES = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    3: "No route to destination",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    21: "Call Rejected",
    27: "Destination out of order",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    41: "Temporary failure",
}


def cause_text(cause: int) -> str:
    """Asterisk's ``cause_txt`` for a Q.850 cause code."""
    return _CAUSES.get(cause, "Unknown")


def dial(peer: Channel, dialstring: str, dialstatus: str) -> Event:
    """``Dial``: an outgoing channel started (``""``) or was answered (``ANSWER``)."""
    return {
        "type": "Dial",
        "timestamp": ari_timestamp(),
        "dialstatus": dialstatus,
        "forward": "",
        "dialstring": dialstring,
        "peer": peer.snapshot(),
    }


def channel_dialplan(channel: Channel) -> Event:
    """``ChannelDialplan``: the channel moved to a new dialplan application."""
    return {
        "type": "ChannelDialplan",
        "timestamp": ari_timestamp(),
        "dialplan_app": channel.dialplan.app_name,
        "dialplan_app_data": channel.dialplan.app_data,
        "channel": channel.snapshot(),
    }


def channel_state_change(channel: Channel) -> Event:
    """``ChannelStateChange``."""
    return {
        "type": "ChannelStateChange",
        "timestamp": ari_timestamp(),
        "channel": channel.snapshot(),
    }


def channel_varset(channel: Channel, variable: str, value: str) -> Event:
    """``ChannelVarset`` (Asterisk puts ``variable`` and ``value`` first)."""
    return {
        "variable": variable,
        "value": value,
        "type": "ChannelVarset",
        "timestamp": ari_timestamp(),
        "channel": channel.snapshot(),
    }


def stasis_start(channel: Channel, args: list[str]) -> Event:
    """``StasisStart``."""
    return {
        "type": "StasisStart",
        "timestamp": ari_timestamp(),
        "args": list(args),
        "channel": channel.snapshot(),
    }


def stasis_end(channel: Channel) -> Event:
    """``StasisEnd``."""
    return {"type": "StasisEnd", "timestamp": ari_timestamp(), "channel": channel.snapshot()}


def channel_entered_bridge(bridge: Bridge, channel: Channel) -> Event:
    """``ChannelEnteredBridge``."""
    return {
        "type": "ChannelEnteredBridge",
        "timestamp": ari_timestamp(),
        "bridge": bridge.snapshot(),
        "channel": channel.snapshot(),
    }


def channel_left_bridge(bridge: Bridge, channel: Channel) -> Event:
    """``ChannelLeftBridge``."""
    return {
        "type": "ChannelLeftBridge",
        "timestamp": ari_timestamp(),
        "bridge": bridge.snapshot(),
        "channel": channel.snapshot(),
    }


def channel_hangup_request(
    channel: Channel, cause: int, *, soft: bool = False, tech_cause: int | None = None
) -> Event:
    """``ChannelHangupRequest``: ``soft`` only when true, ``tech_cause`` only when given."""
    event: Event = {"cause": cause}
    if soft:
        event["soft"] = True
    if tech_cause is not None:
        event["tech_cause"] = tech_cause
    event.update(type="ChannelHangupRequest", timestamp=ari_timestamp(), channel=channel.snapshot())
    return event


def channel_destroyed(channel: Channel, cause: int, tech_cause: int | None = None) -> Event:
    """``ChannelDestroyed``."""
    event: Event = {
        "type": "ChannelDestroyed",
        "timestamp": ari_timestamp(),
        "cause": cause,
        "cause_txt": cause_text(cause),
    }
    if tech_cause is not None:
        event["tech_cause"] = tech_cause
    event["channel"] = channel.snapshot()
    return event


def channel_dtmf_received(channel: Channel, digit: str, duration_ms: int) -> Event:
    """``ChannelDtmfReceived`` (sent at the end of the digit)."""
    return {
        "type": "ChannelDtmfReceived",
        "timestamp": ari_timestamp(),
        "digit": digit,
        "duration_ms": duration_ms,
        "channel": channel.snapshot(),
    }


def bridge_destroyed(bridge: Bridge) -> Event:
    """``BridgeDestroyed``."""
    return {"type": "BridgeDestroyed", "timestamp": ari_timestamp(), "bridge": bridge.snapshot()}


def playback_started(playback: dict[str, Any]) -> Event:
    """``PlaybackStarted``."""
    return {"type": "PlaybackStarted", "timestamp": ari_timestamp(), "playback": playback}


class EventSink(Protocol):
    """One events websocket, seen from the bus."""

    def send(self, text: str) -> None:
        """Queue one event for sending (must not block)."""


class EventBus:
    """Registered applications and the delivery of events to their websockets."""

    def __init__(self, asterisk_id: str) -> None:
        """Create a bus for the Asterisk with id ``asterisk_id``."""
        self.asterisk_id = asterisk_id
        self._sinks: dict[str, list[EventSink]] = {}
        self._subscribe_all: set[str] = set()

    def connect(self, apps: Iterable[str], sink: EventSink, subscribe_all: bool = False) -> None:
        """Register ``apps`` for a newly connected websocket."""
        for app in apps:
            self._sinks.setdefault(app, []).append(sink)
            if subscribe_all:
                self._subscribe_all.add(app)

    def disconnect(self, apps: Iterable[str], sink: EventSink) -> None:
        """Unregister a websocket; an app with no websocket left stops existing."""
        for app in apps:
            sinks = self._sinks.get(app, [])
            if sink in sinks:
                sinks.remove(sink)
            if not sinks:
                self._sinks.pop(app, None)
                self._subscribe_all.discard(app)

    def registered(self, app: str) -> bool:
        """Whether ``app`` has a connected websocket."""
        return bool(self._sinks.get(app))

    @property
    def apps(self) -> list[str]:
        """Names of the registered applications."""
        return sorted(self._sinks)

    def publish(
        self,
        event: Event,
        *,
        channels: Iterable[Channel | None] = (),
        bridges: Iterable[Bridge | None] = (),
    ) -> None:
        """Send ``event`` to every registered app subscribed to one of its subjects."""
        targets: set[str] = set(self._subscribe_all)
        for channel in channels:
            if channel is not None:
                targets |= channel.apps
        for bridge in bridges:
            if bridge is not None:
                targets |= bridge.apps
        for app in sorted(targets):
            sinks = self._sinks.get(app)
            if not sinks:
                continue
            body = dict(event)
            body["asterisk_id"] = self.asterisk_id
            body["application"] = app
            text = json.dumps(body, separators=(",", ":"))
            for sink in sinks:
                sink.send(text)
