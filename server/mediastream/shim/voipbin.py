"""VoIPBIN's media_stream dialect: binary frames, plus an opt-in JSON control channel.

Audio goes both ways as binary messages in the stream's encapsulation, one per
20 ms, exactly as VoIPBIN frames them. With ``?events=json`` the connection
also carries text messages, one JSON object each, with the gRPC API's
semantics; their shapes are in docs/websocket.md.
"""

from __future__ import annotations

import json
import time
from typing import Any

from mediastream import metrics
from mediastream.core.stream import (
    Chunk,
    Dtmf,
    Flow,
    MarkReached,
    PlaybackCleared,
    StreamEvent,
    StreamSpec,
)
from mediastream.errors import InvalidArgument, MediaStreamError
from mediastream.shim.errors import close_for_error
from mediastream.shim.session import Dialect, WebSocketLike
from mediastream.streams import Stream, StreamManager, StreamStopped

OVERHEAD_BYTES = 64 * 1024
"""Room in a message besides its samples: RTP and AudioSocket headers, control messages."""


def max_message_bytes(spec: StreamSpec, play_buffer_ms: int) -> int:
    """Largest message accepted: the play buffer's worth of the client's samples, with headers."""
    return spec.input_format.bytes_for(play_buffer_ms) + OVERHEAD_BYTES


def started_message(stream: Stream) -> dict[str, object]:
    """The ``started`` control message: what the binary frames carry."""
    spec: StreamSpec = stream.spec
    down, up = spec.format, spec.input_format
    return {
        "type": "started",
        "stream_id": stream.id,
        "kind": spec.target.kind.value,
        "id": spec.target.id,
        "encapsulation": spec.encapsulation.value,
        "transport": spec.transport.value,
        "format": down.value,
        "sample_rate": down.sample_rate,
        "frame_bytes": down.frame_bytes,
        "uplink_format": up.value,
        "uplink_sample_rate": up.sample_rate,
        "uplink_frame_bytes": up.frame_bytes,
        "chunk_ms": spec.chunk_ms,
    }


def event_message(event: StreamEvent) -> dict[str, object]:
    """A stream event as its control message."""
    if isinstance(event, Dtmf):
        return {"type": "dtmf", "digit": event.digit, "duration_ms": event.duration_ms}
    if isinstance(event, MarkReached):
        return {"type": "mark", "name": event.name, "position_ms": event.position_ms}
    if isinstance(event, PlaybackCleared):
        return {
            "type": "cleared",
            "position_ms": event.position_ms,
            "dropped_marks": list(event.dropped_marks),
        }
    assert isinstance(event, Flow)
    return {
        "type": "flow",
        "state": "pause" if event.paused else "resume",
        "buffered_ms": event.buffered_ms,
    }


def parse_control(text: str) -> dict[str, Any]:
    """A client control message, checked for shape.

    Raises:
        InvalidArgument: not a JSON object with a known ``type``.
    """
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: nested deeper than the interpreter's recursion limit.
        raise InvalidArgument(
            "message", "control messages are JSON objects", reason="MALFORMED_MESSAGE"
        ) from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise InvalidArgument(
            "message", 'a control message is an object with a "type"', reason="MALFORMED_MESSAGE"
        )
    return message


def _string(message: dict[str, Any], field: str, reason: str) -> str:
    value = message.get(field)
    if not isinstance(value, str) or not value:
        raise InvalidArgument(
            f"{message['type']}.{field}", f"{field} must be a non-empty string", reason=reason
        )
    return value


class VoipbinDialect(Dialect):
    """VoIPBIN's binary frames, and the JSON control channel when asked for.

    Args:
        ws: The upgraded connection.
        stream: The stream it carries.
        streams: The stream manager (for hang-up).
        events: Whether the JSON control channel is on.
        parameters: A dial-out's custom parameters, sent in ``started.custom_parameters``;
            None: no such field (an accepted connection has its own query string).

    A listen-only stream (a dial-out's) ignores the audio its peer sends.
    """

    def __init__(
        self,
        ws: WebSocketLike,
        stream: Stream,
        streams: StreamManager,
        *,
        events: bool,
        parameters: dict[str, str] | None = None,
    ) -> None:
        super().__init__(ws, stream, streams)
        self.events = events
        self.parameters = parameters

    async def _send_json(self, message: dict[str, object]) -> None:
        await self.ws.send_str(json.dumps(message, separators=(",", ":")))

    async def opened(self) -> None:
        """Send ``started`` when the control channel is on."""
        if self.events:
            started = started_message(self.stream)
            if self.parameters is not None:
                started["custom_parameters"] = self.parameters
            await self._send_json(started)

    async def send(self, item: Chunk | StreamEvent) -> None:
        """Audio as a binary message; events as text when the control channel is on."""
        if isinstance(item, Chunk):
            metrics.ADDED_LATENCY.observe(time.monotonic() - item.arrived)
            await self.ws.send_bytes(item.data)
        elif self.events:
            await self._send_json(event_message(item))

    async def stopped(self, stopped: StreamStopped) -> None:
        """Send ``stopped`` when the control channel is on."""
        if self.events:
            await self._send_json(
                {"type": "stopped", "reason": stopped.reason.value, "detail": stopped.detail}
            )

    async def failed(self, error: MediaStreamError) -> None:
        """Send ``error`` when the control channel is on."""
        if self.events:
            code, _ = close_for_error(error)
            await self._send_json(
                {
                    "type": "error",
                    "reason": error.reason,
                    "message": error.message,
                    "close_code": code,
                }
            )

    async def on_binary(self, data: bytes) -> None:
        """Play one chunk of audio in the stream's encapsulation."""
        if self.stream.spec.bidirectional:
            self.stream.play(data)

    async def on_text(self, text: str) -> None:
        """Carry out a control message.

        Raises:
            InvalidArgument: text without ``events=json``, or a malformed message.
            MediaStreamError: what the stream refuses (e.g. hang-up of a conference).
        """
        if not self.events:
            raise InvalidArgument(
                "message",
                "this connection carries binary audio only; text needs ?events=json",
                reason="UNSUPPORTED_DATA",
            )
        message = parse_control(text)
        kind = message["type"]
        if kind == "mark":
            self.stream.mark(_string(message, "name", "INVALID_MARK"))
        elif kind == "clear":
            self.stream.clear()
        elif kind == "dtmf":
            duration = message.get("duration_ms", 0)
            if not isinstance(duration, int) or isinstance(duration, bool):
                raise InvalidArgument(
                    "dtmf.duration_ms", "duration_ms must be a whole number", reason="INVALID_DTMF"
                )
            self.stream.send_dtmf(_string(message, "digits", "INVALID_DTMF"), duration)
        elif kind == "hangup":
            await self.streams.hangup(self.stream)
        elif kind == "done":
            self.stream.end_input()
        else:
            raise InvalidArgument(
                "type",
                f"unknown control message type {kind!r}: mark, clear, dtmf, hangup or done",
                reason="UNKNOWN_MESSAGE",
            )
