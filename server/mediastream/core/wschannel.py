"""Control messages of Asterisk's WebSocket channel driver (``chan_websocket``).

TEXT frames carry events (Asterisk -> app) and commands (app -> Asterisk) in one of
two formats, chosen per call with the ``f(plain-text|json)`` dial option:

* plain text: ``EVENT key:value key:value`` and ``COMMAND[ argument]``;
* JSON: ``{"event":"NAME","channel_id":...}`` (compact, keys in a fixed order) and
  ``{"command":"NAME",...}``.

:func:`parse_event` / :func:`format_event` read and reproduce Asterisk's events
byte for byte (as recorded from Asterisk 23.4.1); :func:`parse_command` /
:func:`format_command` do the same for commands and mirror how Asterisk itself
accepts them, so an emulator can answer exactly like Asterisk does.

Plain-text quirks kept here because Asterisk has them: ``MEDIA_XON``,
``MEDIA_XOFF`` and ``QUEUE_DRAINED`` carry no fields at all; ``MEDIA_MARK_PROCESSED``
and ``MEDIA_BUFFERING_COMPLETED`` carry the bare correlation id after a space (no
``key:``); ``ERROR``'s ``error_text`` runs to the end of the message, spaces and
trailing newline included; ``DTMF_END`` lists ``digit`` before ``channel_id``
(JSON lists ``channel_id`` first).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "ANSWER",
    "COMMANDS",
    "CONTINUE_MEDIA",
    "DTMF_END",
    "ERROR",
    "EVENTS",
    "FLUSH_MEDIA",
    "GET_STATUS",
    "HANGUP",
    "MARK_MEDIA",
    "MAX_COMMAND_BYTES",
    "MEDIA_BUFFERING_COMPLETED",
    "MEDIA_DIRECTIONS",
    "MEDIA_MARK_PROCESSED",
    "MEDIA_START",
    "MEDIA_XOFF",
    "MEDIA_XON",
    "PAUSE_MEDIA",
    "QUEUE_DRAINED",
    "REPORT_QUEUE_DRAINED",
    "SET_MEDIA_DIRECTION",
    "START_MEDIA_BUFFERING",
    "STATUS",
    "STOP_MEDIA_BUFFERING",
    "ControlCommand",
    "ControlEvent",
    "WsChannelError",
    "format_command",
    "format_event",
    "parse_command",
    "parse_event",
]

# Events (Asterisk -> app).
MEDIA_START = "MEDIA_START"
"""First message on every connection: ids, format, optimal frame size, ptime."""
MEDIA_XOFF = "MEDIA_XOFF"
"""The media queue reached its high-water mark (900 frames)."""
MEDIA_XON = "MEDIA_XON"
"""The media queue fell below its low-water mark (800 frames)."""
MEDIA_MARK_PROCESSED = "MEDIA_MARK_PROCESSED"
"""A ``MARK_MEDIA`` reached the head of the queue: everything before it played."""
MEDIA_BUFFERING_COMPLETED = "MEDIA_BUFFERING_COMPLETED"
"""The media of a ``START``/``STOP_MEDIA_BUFFERING`` run reached the head of the queue."""
QUEUE_DRAINED = "QUEUE_DRAINED"
"""The queue emptied after ``REPORT_QUEUE_DRAINED`` (one shot)."""
STATUS = "STATUS"
"""Reply to ``GET_STATUS``."""
DTMF_END = "DTMF_END"
"""The caller released a DTMF digit."""
ERROR = "ERROR"
"""A command could not be carried out."""

EVENTS = frozenset(
    {
        MEDIA_START,
        MEDIA_XOFF,
        MEDIA_XON,
        MEDIA_MARK_PROCESSED,
        MEDIA_BUFFERING_COMPLETED,
        QUEUE_DRAINED,
        STATUS,
        DTMF_END,
        ERROR,
    }
)
"""Every event name Asterisk sends."""

# Commands (app -> Asterisk).
ANSWER = "ANSWER"
"""Answer the channel (with the ``n`` dial option)."""
HANGUP = "HANGUP"
"""Hang up; Asterisk closes the websocket with code 1000."""
MARK_MEDIA = "MARK_MEDIA"
"""Queue a mark; ``MEDIA_MARK_PROCESSED`` reports it when played up to."""
FLUSH_MEDIA = "FLUSH_MEDIA"
"""Drop queued media and marks, end buffering mode."""
PAUSE_MEDIA = "PAUSE_MEDIA"
"""Stop dequeuing (Asterisk plays silence meanwhile)."""
CONTINUE_MEDIA = "CONTINUE_MEDIA"
"""Resume dequeuing."""
START_MEDIA_BUFFERING = "START_MEDIA_BUFFERING"
"""Keep partial frames across BINARY messages."""
STOP_MEDIA_BUFFERING = "STOP_MEDIA_BUFFERING"
"""Queue the partial remainder and report ``MEDIA_BUFFERING_COMPLETED`` when played."""
GET_STATUS = "GET_STATUS"
"""Ask for a ``STATUS`` event (answered at once, not queued)."""
REPORT_QUEUE_DRAINED = "REPORT_QUEUE_DRAINED"
"""Ask for one ``QUEUE_DRAINED`` when the queue next empties."""
SET_MEDIA_DIRECTION = "SET_MEDIA_DIRECTION"
"""Change media direction (``both``/``in``/``out``); JSON format only."""

COMMANDS = frozenset(
    {
        ANSWER,
        HANGUP,
        MARK_MEDIA,
        FLUSH_MEDIA,
        PAUSE_MEDIA,
        CONTINUE_MEDIA,
        START_MEDIA_BUFFERING,
        STOP_MEDIA_BUFFERING,
        GET_STATUS,
        REPORT_QUEUE_DRAINED,
        SET_MEDIA_DIRECTION,
    }
)
"""Every command name Asterisk understands."""

MEDIA_DIRECTIONS = frozenset({"both", "in", "out"})
"""Valid ``direction`` values of ``SET_MEDIA_DIRECTION``."""

MAX_COMMAND_BYTES = 128
"""Longest TEXT message Asterisk accepts (``MAX_TEXT_MESSAGE_LEN``); longer ones are dropped."""

_INT_KEYS = frozenset({"queue_length", "xon_level", "xoff_level", "optimal_frame_size", "ptime"})
_BOOL_KEYS = frozenset({"queue_full", "bulk_media", "media_paused"})
_STATUS_KEYS = (
    "channel_id",
    "queue_length",
    "xon_level",
    "xoff_level",
    "queue_full",
    "bulk_media",
    "media_paused",
)
_MEDIA_START_KEYS = (
    "connection_id",
    "channel",
    "channel_id",
    "format",
    "optimal_frame_size",
    "ptime",
)

# Key order of each event as Asterisk writes it (``ast_json_pack`` / ``ast_asprintf``).
_JSON_KEYS: dict[str, tuple[str, ...]] = {
    MEDIA_START: (*_MEDIA_START_KEYS, "channel_variables"),
    MEDIA_XOFF: ("channel_id",),
    MEDIA_XON: ("channel_id",),
    QUEUE_DRAINED: ("channel_id",),
    MEDIA_MARK_PROCESSED: ("channel_id", "correlation_id"),
    MEDIA_BUFFERING_COMPLETED: ("channel_id", "correlation_id"),
    STATUS: _STATUS_KEYS,
    DTMF_END: ("channel_id", "digit"),
    ERROR: ("channel_id", "error_text"),
}
_PLAIN_KEYS: dict[str, tuple[str, ...]] = {
    MEDIA_START: _MEDIA_START_KEYS,
    MEDIA_XOFF: (),
    MEDIA_XON: (),
    QUEUE_DRAINED: (),
    STATUS: _STATUS_KEYS,
    DTMF_END: ("digit", "channel_id"),
    ERROR: ("channel_id", "error_text"),
}
# What the plain form of a known event leaves out of the JSON form.
_PLAIN_OMITS = {name: frozenset(_JSON_KEYS[name]) - set(keys) for name, keys in _PLAIN_KEYS.items()}
# Plain events whose whole argument is the correlation id, verbatim.
_PLAIN_ID_EVENTS = frozenset({MEDIA_MARK_PROCESSED, MEDIA_BUFFERING_COMPLETED})

# jansson writes \u escapes with upper-case hex; Python writes lower case. Only match a
# backslash that is itself not escaped (an odd run of backslashes).
_LOWER_U_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u([0-9a-f]{4})")


class WsChannelError(ValueError):
    """A control message that cannot be parsed or formatted.

    Attributes:
        reply: For :func:`parse_command`, the ``error_text`` of the ``ERROR`` event
            Asterisk answers with, or None when Asterisk drops the command silently
            (too long, empty, no ``command`` key).
    """

    def __init__(self, message: str, *, reply: str | None = None) -> None:
        super().__init__(message)
        self.reply = reply


@dataclass(frozen=True)
class ControlEvent:
    """An event from Asterisk.

    Attributes:
        name: Event name, e.g. ``"MEDIA_START"``.
        fields: The other keys in the order they were sent; numbers and booleans
            typed as in the JSON form (``queue_length`` is an int, ``queue_full`` a
            bool, ``digit`` and ids strings) whichever format they came in.
    """

    name: str
    fields: dict[str, object] = field(default_factory=dict)

    def get_str(self, key: str) -> str | None:
        """A string field, or None when absent or not a string."""
        value = self.fields.get(key)
        return value if isinstance(value, str) else None

    def get_int(self, key: str) -> int | None:
        """An integer field, or None when absent or not an int."""
        value = self.fields.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def get_bool(self, key: str) -> bool | None:
        """A boolean field, or None when absent or not a bool."""
        value = self.fields.get(key)
        return value if isinstance(value, bool) else None

    @property
    def channel_id(self) -> str | None:
        """The channel's uniqueid (absent from plain XON/XOFF/QUEUE_DRAINED/marks)."""
        return self.get_str("channel_id")

    @property
    def connection_id(self) -> str | None:
        """``MEDIA_START``: the connection id from ``MEDIA_WEBSOCKET_CONNECTION_ID``."""
        return self.get_str("connection_id")

    @property
    def channel(self) -> str | None:
        """``MEDIA_START``: the channel name, e.g. ``WebSocket/INCOMING/0x...``."""
        return self.get_str("channel")

    @property
    def format(self) -> str | None:
        """``MEDIA_START``: the codec name, e.g. ``slin16``."""
        return self.get_str("format")

    @property
    def optimal_frame_size(self) -> int | None:
        """``MEDIA_START``: bytes per 20 ms frame Asterisk wants."""
        return self.get_int("optimal_frame_size")

    @property
    def ptime(self) -> int | None:
        """``MEDIA_START``: frame duration in ms."""
        return self.get_int("ptime")

    @property
    def channel_variables(self) -> dict[str, str]:
        """``MEDIA_START`` (JSON only): the channel's variables; empty when absent."""
        value = self.fields.get("channel_variables")
        if not isinstance(value, dict):
            return {}
        return {str(k): str(v) for k, v in value.items()}

    @property
    def correlation_id(self) -> str | None:
        """Mark / buffering events: the id given with the command."""
        return self.get_str("correlation_id")

    @property
    def digit(self) -> str | None:
        """``DTMF_END``: the digit."""
        return self.get_str("digit")

    @property
    def error_text(self) -> str | None:
        """``ERROR``: Asterisk's message (it may end in a newline)."""
        return self.get_str("error_text")

    @property
    def queue_length(self) -> int | None:
        """``STATUS``: frames queued."""
        return self.get_int("queue_length")

    @property
    def queue_full(self) -> bool | None:
        """``STATUS``: whether XOFF is in force."""
        return self.get_bool("queue_full")


@dataclass(frozen=True)
class ControlCommand:
    """A command to Asterisk.

    Attributes:
        name: Command name, e.g. ``"MARK_MEDIA"``.
        correlation_id: The id of ``MARK_MEDIA`` / ``STOP_MEDIA_BUFFERING`` (in plain
            text, whatever followed the first space).
        fields: Other JSON keys, e.g. ``{"direction": "in"}`` for ``SET_MEDIA_DIRECTION``.
    """

    name: str
    correlation_id: str | None = None
    fields: Mapping[str, object] = field(default_factory=dict)

    @property
    def is_known(self) -> bool:
        """Whether Asterisk knows this command (unknown ones get no reply at all)."""
        return self.name in COMMANDS


def _convert_plain(key: str, value: str) -> object:
    if key in _INT_KEYS:
        try:
            return int(value)
        except ValueError:
            return value
    if key in _BOOL_KEYS and value in ("true", "false"):
        return value == "true"
    return value


_TYPED_KEYS = _INT_KEYS | _BOOL_KEYS

# One encoder for all dumps: json.dumps with non-default options builds a new one per call.
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def parse_event(text: str) -> ControlEvent:
    """Parse an event TEXT frame, JSON or plain text (detected by a leading ``{``).

    Args:
        text: The frame's text.

    Returns:
        The event.

    Raises:
        WsChannelError: If the text is empty, plain text that does not start with an
            upper-case event name or has a field without ``key:``, or JSON that is not
            an object with a string ``event``.
    """
    stripped = text.lstrip()
    if not stripped:
        raise WsChannelError("empty event")
    if stripped[0] == "{":
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            # RecursionError: nesting deeper than the interpreter's recursion limit.
            raise WsChannelError(f"event is not valid JSON: {exc}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
            raise WsChannelError('JSON event has no "event" string')
        name = obj.pop("event")
        return ControlEvent(name, obj)
    name, _, rest = text.partition(" ")
    if not (name.isupper() and name[0].isalpha() and name.replace("_", "").isalnum()):
        raise WsChannelError(f"not an event name: {name[:40]!r}")
    fields: dict[str, object] = {}
    if name in _PLAIN_ID_EVENTS:
        if rest:
            fields["correlation_id"] = rest
        return ControlEvent(name, fields)
    if not rest:
        return ControlEvent(name, fields)
    tokens = rest.split(" ")
    for i, token in enumerate(tokens):
        key, colon, value = token.partition(":")
        if not colon:
            raise WsChannelError(f"{name}: expected key:value, got {token!r}")
        if key == "error_text":
            # Free text: it runs to the end, spaces and newline included.
            fields[key] = " ".join(tokens[i:])[len("error_text:") :]
            break
        fields[key] = _convert_plain(key, value) if key in _TYPED_KEYS else value
    return ControlEvent(name, fields)


def _json_dumps(obj: object) -> str:
    text = _JSON_ENCODER.encode(obj)
    if "\\u" in text:
        text = _LOWER_U_ESCAPE.sub(lambda m: f"{m.group(1)}\\u{m.group(2).upper()}", text)
    return text


def _plain_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _ordered(event: ControlEvent, known: tuple[str, ...]) -> list[tuple[str, object]]:
    items = [(key, event.fields[key]) for key in known if key in event.fields]
    items.extend((k, v) for k, v in event.fields.items() if k not in known)
    return items


def format_event(event: ControlEvent, *, json_format: bool) -> str:
    """Write an event exactly as Asterisk does.

    JSON is compact with Asterisk's key order for known events (then any extra keys
    in their own order). Plain text leaves out what Asterisk's plain form does not
    carry: ``channel_variables``, and ``channel_id`` of XON/XOFF/QUEUE_DRAINED and
    the mark/buffering events.

    Args:
        event: The event.
        json_format: JSON (``f(json)``) or plain text.

    Returns:
        The TEXT frame.
    """
    name = event.name
    if json_format:
        known = _JSON_KEYS.get(name, ())
        if tuple(event.fields) == known:  # already in Asterisk's order: the usual case
            return _json_dumps({"event": name, **event.fields})
        return _json_dumps({"event": name, **dict(_ordered(event, known))})
    if name in _PLAIN_ID_EVENTS:
        cid = event.fields.get("correlation_id")
        return f"{name} {cid}" if cid else name
    plain_keys = _PLAIN_KEYS.get(name)
    if plain_keys is None:
        items = list(event.fields.items())
    else:
        json_only = _PLAIN_OMITS[name]
        items = [(k, v) for k, v in _ordered(event, plain_keys) if k not in json_only]
    parts = [name]
    parts.extend(f"{key}:{_plain_value(value)}" for key, value in items)
    return " ".join(parts)


def format_command(cmd: ControlCommand, *, json_format: bool) -> str:
    """Write a command for Asterisk.

    Args:
        cmd: The command.
        json_format: JSON (``{"command":...}``) or plain text (``NAME[ id]``).

    Returns:
        The TEXT frame.

    Raises:
        WsChannelError: If the result exceeds :data:`MAX_COMMAND_BYTES` (Asterisk
            would drop it silently), the name is empty or has a space, or a plain
            command has fields plain text cannot carry.
    """
    if not cmd.name or " " in cmd.name:
        raise WsChannelError(f"invalid command name {cmd.name!r}")
    if json_format:
        obj: dict[str, object] = {"command": cmd.name}
        if cmd.correlation_id is not None:
            obj["correlation_id"] = cmd.correlation_id
        obj.update(cmd.fields)
        text = _json_dumps(obj)
    else:
        if cmd.fields:
            raise WsChannelError(
                f"{cmd.name}: fields {sorted(cmd.fields)} need the JSON control format"
            )
        text = f"{cmd.name} {cmd.correlation_id}" if cmd.correlation_id else cmd.name
    size = len(text.encode("utf-8"))
    if size > MAX_COMMAND_BYTES:
        raise WsChannelError(
            f"{cmd.name} command is {size} bytes; Asterisk drops commands over "
            f"{MAX_COMMAND_BYTES} bytes"
        )
    return text


def parse_command(text: str, *, json_format: bool) -> ControlCommand:
    """Parse a command the way Asterisk's ``process_text_message`` does.

    Unknown command names parse fine (check :attr:`ControlCommand.is_known`):
    Asterisk ignores them without a reply.

    Args:
        text: The TEXT frame.
        json_format: The call's control format. In JSON mode a plain command is an
            error, as it is for Asterisk.

    Returns:
        The command.

    Raises:
        WsChannelError: With ``reply`` set to the ``error_text`` Asterisk would send
            (``"Unable to parse JSON command"``, an invalid direction), or
            ``reply=None`` when Asterisk ignores the message silently (empty, over
            :data:`MAX_COMMAND_BYTES`, JSON without a ``command`` string).
    """
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        # Lone surrogates: no UTF-8 frame can carry them, so Asterisk never sees this.
        raise WsChannelError("command is not valid UTF-8 text") from None
    if size == 0:
        raise WsChannelError("empty command")
    if size > MAX_COMMAND_BYTES:
        raise WsChannelError(f"command of {size} bytes exceeds {MAX_COMMAND_BYTES}")
    body = text.strip()
    if json_format:
        try:
            obj = json.loads(body)
        except ValueError:
            raise WsChannelError(
                "Unable to parse JSON command", reply="Unable to parse JSON command"
            ) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("command"), str):
            raise WsChannelError('JSON command has no "command" string')
        name = obj.pop("command")
        cid = obj.pop("correlation_id", None)
        cmd = ControlCommand(name, cid if isinstance(cid, str) else None, obj)
        if name == SET_MEDIA_DIRECTION:
            direction = obj.get("direction")
            # Not a string (a list is not even hashable): as invalid as a wrong one.
            if not isinstance(direction, str) or direction not in MEDIA_DIRECTIONS:
                # Asterisk's text, trailing newline included, as recorded.
                reply = f"'{direction or ''}' is not a valid direction for {name}.\n"
                raise WsChannelError(reply.strip(), reply=reply)
        return cmd
    name, _, data = body.partition(" ")
    return ControlCommand(name, data or None)
