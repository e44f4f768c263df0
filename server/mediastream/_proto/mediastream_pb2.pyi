# Generated from proto/ by scripts/generate.py. Do not edit.
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_FORMAT_UNSPECIFIED: _ClassVar[AudioFormat]
    AUDIO_FORMAT_ULAW: _ClassVar[AudioFormat]
    AUDIO_FORMAT_SLIN: _ClassVar[AudioFormat]
    AUDIO_FORMAT_SLIN16: _ClassVar[AudioFormat]

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_BOTH: _ClassVar[Direction]
    DIRECTION_IN: _ClassVar[Direction]
    DIRECTION_OUT: _ClassVar[Direction]

class Encapsulation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCAPSULATION_UNSPECIFIED: _ClassVar[Encapsulation]
    ENCAPSULATION_RTP: _ClassVar[Encapsulation]
    ENCAPSULATION_SLN: _ClassVar[Encapsulation]
    ENCAPSULATION_AUDIOSOCKET: _ClassVar[Encapsulation]

class MediaTransport(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEDIA_TRANSPORT_UNSPECIFIED: _ClassVar[MediaTransport]
    MEDIA_TRANSPORT_RTP: _ClassVar[MediaTransport]
    MEDIA_TRANSPORT_AUDIOSOCKET: _ClassVar[MediaTransport]
    MEDIA_TRANSPORT_WEBSOCKET: _ClassVar[MediaTransport]

class StopReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STOP_REASON_UNSPECIFIED: _ClassVar[StopReason]
    STOP_REASON_CLIENT_DONE: _ClassVar[StopReason]
    STOP_REASON_CALL_HANGUP: _ClassVar[StopReason]
    STOP_REASON_CONFERENCE_ENDED: _ClassVar[StopReason]
    STOP_REASON_SERVER_SHUTDOWN: _ClassVar[StopReason]
    STOP_REASON_ASTERISK_FAILURE: _ClassVar[StopReason]
AUDIO_FORMAT_UNSPECIFIED: AudioFormat
AUDIO_FORMAT_ULAW: AudioFormat
AUDIO_FORMAT_SLIN: AudioFormat
AUDIO_FORMAT_SLIN16: AudioFormat
DIRECTION_UNSPECIFIED: Direction
DIRECTION_BOTH: Direction
DIRECTION_IN: Direction
DIRECTION_OUT: Direction
ENCAPSULATION_UNSPECIFIED: Encapsulation
ENCAPSULATION_RTP: Encapsulation
ENCAPSULATION_SLN: Encapsulation
ENCAPSULATION_AUDIOSOCKET: Encapsulation
MEDIA_TRANSPORT_UNSPECIFIED: MediaTransport
MEDIA_TRANSPORT_RTP: MediaTransport
MEDIA_TRANSPORT_AUDIOSOCKET: MediaTransport
MEDIA_TRANSPORT_WEBSOCKET: MediaTransport
STOP_REASON_UNSPECIFIED: StopReason
STOP_REASON_CLIENT_DONE: StopReason
STOP_REASON_CALL_HANGUP: StopReason
STOP_REASON_CONFERENCE_ENDED: StopReason
STOP_REASON_SERVER_SHUTDOWN: StopReason
STOP_REASON_ASTERISK_FAILURE: StopReason

class StreamConfig(_message.Message):
    __slots__ = ("call_id", "conference_id", "format", "direction", "chunk_ms", "encapsulation", "transport")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CONFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_MS_FIELD_NUMBER: _ClassVar[int]
    ENCAPSULATION_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    conference_id: str
    format: AudioFormat
    direction: Direction
    chunk_ms: int
    encapsulation: Encapsulation
    transport: MediaTransport
    def __init__(self, call_id: _Optional[str] = ..., conference_id: _Optional[str] = ..., format: _Optional[_Union[AudioFormat, str]] = ..., direction: _Optional[_Union[Direction, str]] = ..., chunk_ms: _Optional[int] = ..., encapsulation: _Optional[_Union[Encapsulation, str]] = ..., transport: _Optional[_Union[MediaTransport, str]] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("data", "sequence_number", "timestamp")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    sequence_number: int
    timestamp: int
    def __init__(self, data: _Optional[bytes] = ..., sequence_number: _Optional[int] = ..., timestamp: _Optional[int] = ...) -> None: ...

class StreamStarted(_message.Message):
    __slots__ = ("stream_id", "format", "sample_rate_hz", "frame_bytes", "chunk_ms", "encapsulation", "transport")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    FRAME_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_MS_FIELD_NUMBER: _ClassVar[int]
    ENCAPSULATION_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    format: AudioFormat
    sample_rate_hz: int
    frame_bytes: int
    chunk_ms: int
    encapsulation: Encapsulation
    transport: MediaTransport
    def __init__(self, stream_id: _Optional[str] = ..., format: _Optional[_Union[AudioFormat, str]] = ..., sample_rate_hz: _Optional[int] = ..., frame_bytes: _Optional[int] = ..., chunk_ms: _Optional[int] = ..., encapsulation: _Optional[_Union[Encapsulation, str]] = ..., transport: _Optional[_Union[MediaTransport, str]] = ...) -> None: ...

class StreamStopped(_message.Message):
    __slots__ = ("reason", "detail")
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    reason: StopReason
    detail: str
    def __init__(self, reason: _Optional[_Union[StopReason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class StreamMediaRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    audio: AudioChunk
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ...) -> None: ...

class StreamMediaResponse(_message.Message):
    __slots__ = ("started", "audio", "stopped")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    started: StreamStarted
    audio: AudioChunk
    stopped: StreamStopped
    def __init__(self, started: _Optional[_Union[StreamStarted, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., stopped: _Optional[_Union[StreamStopped, _Mapping]] = ...) -> None: ...

class ListenMediaRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ...) -> None: ...

class ListenMediaResponse(_message.Message):
    __slots__ = ("started", "audio", "stopped")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    started: StreamStarted
    audio: AudioChunk
    stopped: StreamStopped
    def __init__(self, started: _Optional[_Union[StreamStarted, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., stopped: _Optional[_Union[StreamStopped, _Mapping]] = ...) -> None: ...
