"""The one mapping between the SDK's plain types and the generated protobuf enums."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from mediastream_client._proto import mediastream_pb2 as pb
from mediastream_client.types import AudioFormat, Direction, Encapsulation, StopReason, Transport

_K = TypeVar("_K")
_V = TypeVar("_V")


def reverse(table: Mapping[_K, _V]) -> dict[_V, _K]:
    """The table read the other way."""
    return {v: k for k, v in table.items()}


FORMATS = {
    AudioFormat.ULAW: pb.AUDIO_FORMAT_ULAW,
    AudioFormat.SLIN: pb.AUDIO_FORMAT_SLIN,
    AudioFormat.SLIN16: pb.AUDIO_FORMAT_SLIN16,
}
DIRECTIONS = {
    Direction.BOTH: pb.DIRECTION_BOTH,
    Direction.IN: pb.DIRECTION_IN,
    Direction.OUT: pb.DIRECTION_OUT,
}
ENCAPSULATIONS = {
    Encapsulation.SLN: pb.ENCAPSULATION_SLN,
    Encapsulation.RTP: pb.ENCAPSULATION_RTP,
    Encapsulation.AUDIOSOCKET: pb.ENCAPSULATION_AUDIOSOCKET,
}
TRANSPORTS = {
    Transport.RTP: pb.MEDIA_TRANSPORT_RTP,
    Transport.AUDIOSOCKET: pb.MEDIA_TRANSPORT_AUDIOSOCKET,
    Transport.WEBSOCKET: pb.MEDIA_TRANSPORT_WEBSOCKET,
}
STOP_REASONS = {
    pb.STOP_REASON_UNSPECIFIED: StopReason.UNSPECIFIED,
    pb.STOP_REASON_CLIENT_DONE: StopReason.CLIENT_DONE,
    pb.STOP_REASON_CALL_HANGUP: StopReason.CALL_HANGUP,
    pb.STOP_REASON_CONFERENCE_ENDED: StopReason.CONFERENCE_ENDED,
    pb.STOP_REASON_SERVER_SHUTDOWN: StopReason.SERVER_SHUTDOWN,
    pb.STOP_REASON_ASTERISK_FAILURE: StopReason.ASTERISK_FAILURE,
    pb.STOP_REASON_CLIENT_HANGUP: StopReason.CLIENT_HANGUP,
}
