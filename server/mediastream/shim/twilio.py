"""The Twilio Media Streams dialect, for clients written against Twilio.

JSON text messages only, field for field as Twilio's "Media Streams -
WebSocket Messages" reference names them. The gateway sends ``connected``,
``start``, ``media`` (base64 mu-law 8 kHz, 20 ms each), ``dtmf``, ``mark``
and ``stop``; it accepts ``media``, ``mark`` and ``clear``, like a
bidirectional (``<Connect><Stream>``) Twilio stream. As Twilio does, a
``clear`` sends back the marks whose audio it dropped, and any other event
(a client's ``stop``, an unknown one) is ignored: logged once per stream and
event, and counted in ``mediastream_client_messages_ignored_total``.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from mediastream import metrics
from mediastream.core.formats import FRAME_MS, PLAY_BUFFER_MS, AudioFormat
from mediastream.core.stream import (
    Chunk,
    Direction,
    Dtmf,
    Encapsulation,
    MarkReached,
    PlaybackCleared,
    StreamEvent,
    StreamSpec,
    Target,
    Transport,
)
from mediastream.errors import InvalidArgument, MediaStreamError
from mediastream.shim.session import Dialect, WebSocketLike
from mediastream.streams import Stream, StreamManager, StreamStopped

log = logging.getLogger(__name__)

ENVELOPE_BYTES = 64 * 1024
"""Room in a message for the JSON around the base64 payload (and for mark and clear)."""

PROTOCOL_VERSION = "1.0.0"
"""``connected.version``, as Twilio sends it."""

_ACCEPTED = ("media", "mark", "clear")
_TWILIO_EVENTS = frozenset({"connected", "start", "media", "dtmf", "mark", "clear", "stop"})
"""Events Twilio defines; any other name is counted as ``other`` (bounded metric labels)."""

_RESERVED_PARAMETERS = frozenset({"token", "accesskey"})
"""Query parameters that are credentials, never echoed as customParameters."""


def max_message_bytes(play_buffer_ms: int) -> int:
    """Largest text message accepted: one ``media`` with the whole play buffer of mu-law."""
    audio = AudioFormat.ULAW.bytes_for(play_buffer_ms)
    return 4 * -(-audio // 3) + ENVELOPE_BYTES


MAX_MESSAGE_BYTES = max_message_bytes(PLAY_BUFFER_MS)
"""`max_message_bytes` at the default play buffer (a dial-out's receive limit)."""


def custom_parameters(query: Mapping[str, str]) -> dict[str, str]:
    """A connection's query parameters as ``customParameters``, credentials left out."""
    return {k: v for k, v in query.items() if k not in _RESERVED_PARAMETERS}


TRACKS: Mapping[Direction, str] = {
    Direction.BOTH: "inbound",
    Direction.IN: "inbound",
    Direction.OUT: "outbound",
}
"""Twilio's name of the track a stream hears: a two-way stream (``<Connect><Stream>``)
hears the call as ``inbound``; a listen-only one (``<Start><Stream track=...>``) the
track it names, ``inbound`` being the caller's side (the snoop's ``in``)."""


def twilio_spec(target: Target, transport: Transport) -> StreamSpec:
    """The stream a Twilio-dialect client gets: mu-law 8 kHz both ways, bare samples."""
    return StreamSpec(
        target=target,
        format=AudioFormat.ULAW,
        encapsulation=Encapsulation.SLN,
        transport=transport,
        bidirectional=True,
    )


def sid(prefix: str, seed: str) -> str:
    """A Twilio-shaped SID (two letters, 32 hex digits) derived from `seed`."""
    try:
        return prefix + uuid.UUID(seed).hex
    except ValueError:
        return prefix + uuid.uuid5(uuid.NAMESPACE_URL, seed).hex


class TwilioDialect(Dialect):
    """Twilio Media Streams messages over the stream core.

    Args:
        ws: The upgraded connection.
        stream: The stream it carries.
        streams: The stream manager.
        account: Who opened the stream (becomes ``accountSid``).
        parameters: Sent as ``start.customParameters``.

    A listen-only stream (a dial-out's ``<Start><Stream>``) ignores the media,
    marks and clears its peer sends, as Twilio's unidirectional streams do.
    """

    def __init__(
        self,
        ws: WebSocketLike,
        stream: Stream,
        streams: StreamManager,
        *,
        account: str,
        parameters: Mapping[str, str],
    ) -> None:
        super().__init__(ws, stream, streams)
        self.stream_sid = sid("MZ", stream.id)
        self.account_sid = sid("AC", account)
        # Twilio's callSid names the call; here it is the call's (or conference's) ID.
        self.call_sid = stream.spec.target.id
        self.parameters = dict(parameters)
        self.track = TRACKS[stream.spec.direction]
        self._sequence = 0
        self._noted: set[str] = set()

    async def _send(self, event: str, body: dict[str, object]) -> None:
        # Every message after `connected` is numbered from 1, as Twilio numbers them.
        self._sequence += 1
        message = {
            "event": event,
            "sequenceNumber": str(self._sequence),
            **body,
            "streamSid": self.stream_sid,
        }
        await self.ws.send_str(json.dumps(message, separators=(",", ":")))

    async def opened(self) -> None:
        """Send ``connected`` and ``start``."""
        await self.ws.send_str(
            json.dumps({"event": "connected", "protocol": "Call", "version": PROTOCOL_VERSION})
        )
        await self._send(
            "start",
            {
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": [self.track],
                    "customParameters": self.parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                }
            },
        )

    async def send(self, item: Chunk | StreamEvent) -> None:
        """Audio as ``media``; DTMF as ``dtmf``; played and cleared marks as ``mark``."""
        if isinstance(item, Chunk):
            metrics.ADDED_LATENCY.observe(time.monotonic() - item.arrived)
            media = {
                # The stream hears the call (both parties, as VoIPBIN's snoop
                # does); Twilio calls what a stream hears from the call inbound.
                "track": self.track,
                "chunk": str(item.sequence_number + 1),
                "timestamp": str(item.sequence_number * FRAME_MS),
                "payload": base64.b64encode(item.data).decode("ascii"),
            }
            await self._send("media", {"media": media})
        elif isinstance(item, Dtmf):
            await self._send("dtmf", {"dtmf": {"track": "inbound_track", "digit": item.digit}})
        elif isinstance(item, MarkReached):
            await self._send("mark", {"mark": {"name": item.name}})
        elif isinstance(item, PlaybackCleared):
            for name in item.dropped_marks:
                await self._send("mark", {"mark": {"name": name}})
        # Flow control has no Twilio message: the gateway holds the client back by TCP.

    async def _stop(self) -> None:
        await self._send(
            "stop", {"stop": {"accountSid": self.account_sid, "callSid": self.call_sid}}
        )

    async def stopped(self, stopped: StreamStopped) -> None:
        """Send ``stop``."""
        await self._stop()

    async def failed(self, error: MediaStreamError) -> None:
        """Send ``stop``: Twilio has no error message; the close frame says why."""
        await self._stop()

    async def on_binary(self, data: bytes) -> None:
        """Refuse: Twilio streams carry JSON text only.

        Raises:
            InvalidArgument: always.
        """
        raise InvalidArgument(
            "message", "Twilio Media Streams messages are JSON text", reason="UNSUPPORTED_DATA"
        )

    async def on_text(self, text: str) -> None:
        """Carry out ``media``, ``mark`` or ``clear``; ignore any other event, as Twilio does.

        Raises:
            InvalidArgument: not JSON, another stream's SID, or a malformed
                ``media`` or ``mark``.
            MediaStreamError: what the stream refuses.
        """
        message = _parse(text)
        event = message["event"]
        if event not in _ACCEPTED:
            # Twilio ignores what it does not expect from the application (its own
            # `stop` included): the application ends a stream by closing the socket.
            label = event if event in _TWILIO_EVENTS else "other"
            metrics.CLIENT_MESSAGES_IGNORED.labels("twilio", label).inc()
            self._note_once(
                f"ignored:{label}",
                "stream %s: ignored a Twilio %r event from the client (only media, mark and "
                "clear are carried out)",
                event[:64],
            )
            return
        stream_sid = message.get("streamSid")
        if stream_sid is None:
            # Twilio requires it on messages to Twilio; being liberal costs nothing here,
            # since a connection carries one stream.
            metrics.CLIENT_MESSAGES_TOLERATED.labels("twilio", "missing_stream_sid").inc()
            self._note_once(
                "missing_stream_sid",
                "stream %s: a %r message without streamSid was carried out; Twilio requires it",
                event,
            )
        elif stream_sid != self.stream_sid:
            raise InvalidArgument(
                "streamSid",
                f"streamSid {stream_sid!r} is not this stream's: send {self.stream_sid}, "
                "the streamSid of the start message",
                reason="WRONG_STREAM_SID",
            )
        if not self.stream.spec.bidirectional:
            return  # listen-only: nothing goes into the call
        if event == "media":
            self._play(_object(message, "media", "MALFORMED_MEDIA").get("payload"))
        elif event == "mark":
            name = _object(message, "mark", "MALFORMED_MARK").get("name")
            if not isinstance(name, str) or not name:
                raise InvalidArgument(
                    "mark.name", "mark.name must be a non-empty string", reason="INVALID_MARK"
                )
            self.stream.mark(name)
        else:
            self.stream.clear()

    def _note_once(self, key: str, text: str, *args: object) -> None:
        """Log a WARNING the first time `key` happens on this stream (the metric counts all)."""
        if key not in self._noted:
            self._noted.add(key)
            log.warning(text, self.stream.id, *args)

    def _play(self, payload: object) -> None:
        if not isinstance(payload, str):
            raise InvalidArgument(
                "media.payload",
                "media.payload must be a string: base64 of mu-law 8 kHz samples",
                reason="MALFORMED_MEDIA",
            )
        try:
            audio = base64.b64decode(payload, validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII character in the string
            raise InvalidArgument(
                "media.payload",
                "media.payload is not valid base64: encode the mu-law bytes with standard "
                "base64 (A-Z a-z 0-9 + /, = padding)",
                reason="MALFORMED_MEDIA",
            ) from None
        # Twilio takes payloads of any length; so does the stream, up to its play buffer.
        self.stream.play(audio)


def _parse(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: nested deeper than the interpreter's recursion limit.
        raise InvalidArgument(
            "message", "messages are JSON objects", reason="MALFORMED_MESSAGE"
        ) from None
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        raise InvalidArgument(
            "message", 'a message is an object with an "event"', reason="MALFORMED_MESSAGE"
        )
    return message


def _object(message: dict[str, Any], field: str, reason: str) -> dict[str, Any]:
    value = message.get(field)
    if not isinstance(value, dict):
        raise InvalidArgument(field, f"{field} must be an object", reason=reason)
    return value
