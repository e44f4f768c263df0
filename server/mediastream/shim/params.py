"""What a media_stream request asks for: target, wire form, format, credentials.

The forms are VoIPBIN's (``/v1.0/calls/{id}/media_stream?encapsulation=...``);
where VoIPBIN is silent or lenient (an unknown encapsulation makes it drop
every frame) the gateway refuses with a clear 400 instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mediastream.core.formats import AudioFormat
from mediastream.core.stream import (
    Direction,
    Encapsulation,
    StreamSpec,
    Target,
    TargetKind,
    Transport,
    validate_target_id,
)
from mediastream.errors import InvalidArgument

FORMATS: Mapping[str, AudioFormat] = {
    "ulaw": AudioFormat.ULAW,
    "slin": AudioFormat.SLIN,
    "slin16": AudioFormat.SLIN16,
}
"""Values of the ``format`` query parameter."""

ENCAPSULATIONS: Mapping[str, Encapsulation] = {e.value: e for e in Encapsulation}
"""Values of the ``encapsulation`` query parameter: ``rtp``, ``sln``, ``audiosocket``."""

KINDS: Mapping[str, TargetKind] = {"calls": TargetKind.CALL, "conferences": TargetKind.CONFERENCE}
"""Path segment -> what the ID names."""


@dataclass(frozen=True)
class MediaStreamRequest:
    """A validated ``media_stream`` request.

    Attributes:
        spec: The stream to open.
        events: Whether the client asked for the JSON control channel (``events=json``).
    """

    spec: StreamSpec
    events: bool


def parse_target(kind: str, target_id: str) -> Target:
    """The call or conference a path names.

    Any ID Asterisk or a platform gives a channel or bridge is accepted (UUIDs,
    Asterisk's own ``uniqueid``s such as ``1795515126.1745``), with the same
    checks as on gRPC (:func:`~mediastream.core.stream.validate_target_id`).

    Raises:
        InvalidArgument: the ID is empty or not an ID (``INVALID_ID``).
    """
    return Target(KINDS[kind], validate_target_id("id", target_id))


def parse_format(query: Mapping[str, str]) -> AudioFormat | None:
    """The ``format`` parameter; None when absent.

    Raises:
        InvalidArgument: a value other than ulaw, slin, slin16.
    """
    raw = query.get("format")
    if raw is None:
        return None
    try:
        return FORMATS[raw]
    except KeyError:
        raise InvalidArgument(
            "format",
            f"format must be one of {', '.join(FORMATS)}, got {raw!r}",
            reason="INVALID_FORMAT",
        ) from None


def parse_media_stream(
    target: Target, query: Mapping[str, str], transport: Transport
) -> MediaStreamRequest:
    """Validate a media_stream request's query string.

    Without ``format`` the stream is VoIPBIN's: mu-law down and 16-bit 8 kHz
    slin up, RTP framed as VoIPBIN frames it. With ``format`` it is that format
    both ways.

    Raises:
        InvalidArgument: naming the first parameter that is missing or wrong.
    """
    raw = query.get("encapsulation")
    if not raw:
        raise InvalidArgument(
            "encapsulation",
            "encapsulation is required: rtp, sln or audiosocket",
            reason="MISSING_ENCAPSULATION",
        )
    encapsulation = ENCAPSULATIONS.get(raw)
    if encapsulation is None:
        raise InvalidArgument(
            "encapsulation",
            f"encapsulation must be rtp, sln or audiosocket, got {raw!r}",
            reason="INVALID_ENCAPSULATION",
        )
    events = query.get("events")
    if events not in (None, "json"):
        raise InvalidArgument(
            "events", f"events must be json, got {events!r}", reason="INVALID_EVENTS"
        )
    fmt = parse_format(query)
    spec = StreamSpec(
        target=target,
        format=fmt or AudioFormat.ULAW,
        uplink_format=None if fmt else AudioFormat.SLIN,
        direction=Direction.BOTH,
        encapsulation=encapsulation,
        transport=transport,
        bidirectional=True,
        voipbin_rtp=True,
    )
    return MediaStreamRequest(spec, events == "json")


def credentials(
    cookies: Mapping[str, str], query: Mapping[str, str], authorization: str | None
) -> str | None:
    """The request's credential, looked for where VoIPBIN looks and in its order.

    The ``token`` cookie, ``?token=``, ``Authorization: Bearer``, the
    ``accesskey`` cookie, ``?accesskey=``: the first one present wins.
    """
    bearer = None
    if authorization:
        scheme, _, rest = authorization.partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            bearer = rest.strip()
    for candidate in (
        cookies.get("token"),
        query.get("token"),
        bearer,
        cookies.get("accesskey"),
        query.get("accesskey"),
    ):
        if candidate:
            return candidate
    return None
