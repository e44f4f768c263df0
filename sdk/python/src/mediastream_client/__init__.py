"""Python client for the mediastream gateway: live call and conference audio."""

from mediastream_client.audio import from_numpy, to_numpy
from mediastream_client.client import DuplexStream, ListenStream, MediaStreamClient
from mediastream_client.errors import (
    ConfigError,
    FieldViolation,
    MediaStreamClientError,
    RPCError,
)
from mediastream_client.external_media import (
    ExternalEncapsulation,
    ExternalMedia,
    ExternalMediaClient,
    ExternalStatus,
    OnBotClose,
)
from mediastream_client.sync import SyncClient
from mediastream_client.types import (
    AudioChunk,
    AudioFormat,
    Cleared,
    Direction,
    DtmfReceived,
    Encapsulation,
    FlowControl,
    FlowState,
    MarkPlayed,
    Stopped,
    StopReason,
    StreamEvent,
    StreamInfo,
    Transport,
)

__all__ = [
    "AudioChunk",
    "AudioFormat",
    "Cleared",
    "ConfigError",
    "Direction",
    "DtmfReceived",
    "DuplexStream",
    "Encapsulation",
    "ExternalEncapsulation",
    "ExternalMedia",
    "ExternalMediaClient",
    "ExternalStatus",
    "FieldViolation",
    "FlowControl",
    "FlowState",
    "ListenStream",
    "MarkPlayed",
    "MediaStreamClient",
    "MediaStreamClientError",
    "OnBotClose",
    "RPCError",
    "StopReason",
    "Stopped",
    "StreamEvent",
    "StreamInfo",
    "SyncClient",
    "Transport",
    "from_numpy",
    "to_numpy",
]
