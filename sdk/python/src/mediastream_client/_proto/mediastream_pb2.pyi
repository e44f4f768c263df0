# Generated from proto/ by scripts/generate.py. Do not edit.
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
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
    STOP_REASON_CLIENT_HANGUP: _ClassVar[StopReason]

class FlowState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLOW_STATE_UNSPECIFIED: _ClassVar[FlowState]
    FLOW_STATE_PAUSE: _ClassVar[FlowState]
    FLOW_STATE_RESUME: _ClassVar[FlowState]
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
STOP_REASON_CLIENT_HANGUP: StopReason
FLOW_STATE_UNSPECIFIED: FlowState
FLOW_STATE_PAUSE: FlowState
FLOW_STATE_RESUME: FlowState

class StreamConfig(_message.Message):
    __slots__ = ("call_id", "conference_id", "format", "direction", "chunk_ms", "encapsulation", "transport", "resume", "resumable")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CONFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_MS_FIELD_NUMBER: _ClassVar[int]
    ENCAPSULATION_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    RESUMABLE_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    conference_id: str
    format: AudioFormat
    direction: Direction
    chunk_ms: int
    encapsulation: Encapsulation
    transport: MediaTransport
    resume: ResumeRequest
    resumable: bool
    def __init__(self, call_id: _Optional[str] = ..., conference_id: _Optional[str] = ..., format: _Optional[_Union[AudioFormat, str]] = ..., direction: _Optional[_Union[Direction, str]] = ..., chunk_ms: _Optional[int] = ..., encapsulation: _Optional[_Union[Encapsulation, str]] = ..., transport: _Optional[_Union[MediaTransport, str]] = ..., resume: _Optional[_Union[ResumeRequest, _Mapping]] = ..., resumable: _Optional[bool] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("token", "last_sequence_number")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    token: str
    last_sequence_number: int
    def __init__(self, token: _Optional[str] = ..., last_sequence_number: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("stream_id", "format", "sample_rate_hz", "frame_bytes", "chunk_ms", "encapsulation", "transport", "resume_token", "resumed", "buffer_high_chunks", "instance_address")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    FRAME_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_MS_FIELD_NUMBER: _ClassVar[int]
    ENCAPSULATION_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    BUFFER_HIGH_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    format: AudioFormat
    sample_rate_hz: int
    frame_bytes: int
    chunk_ms: int
    encapsulation: Encapsulation
    transport: MediaTransport
    resume_token: str
    resumed: bool
    buffer_high_chunks: int
    instance_address: str
    def __init__(self, stream_id: _Optional[str] = ..., format: _Optional[_Union[AudioFormat, str]] = ..., sample_rate_hz: _Optional[int] = ..., frame_bytes: _Optional[int] = ..., chunk_ms: _Optional[int] = ..., encapsulation: _Optional[_Union[Encapsulation, str]] = ..., transport: _Optional[_Union[MediaTransport, str]] = ..., resume_token: _Optional[str] = ..., resumed: _Optional[bool] = ..., buffer_high_chunks: _Optional[int] = ..., instance_address: _Optional[str] = ...) -> None: ...

class StreamStopped(_message.Message):
    __slots__ = ("reason", "detail")
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    reason: StopReason
    detail: str
    def __init__(self, reason: _Optional[_Union[StopReason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class SendDtmf(_message.Message):
    __slots__ = ("digits", "duration_ms")
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    digits: str
    duration_ms: int
    def __init__(self, digits: _Optional[str] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class Mark(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Clear(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HangupCall(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DtmfReceived(_message.Message):
    __slots__ = ("digit", "duration_ms")
    DIGIT_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    digit: str
    duration_ms: int
    def __init__(self, digit: _Optional[str] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class MarkPlayed(_message.Message):
    __slots__ = ("name", "position_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POSITION_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    position_ms: int
    def __init__(self, name: _Optional[str] = ..., position_ms: _Optional[int] = ...) -> None: ...

class Cleared(_message.Message):
    __slots__ = ("position_ms", "dropped_marks")
    POSITION_MS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_MARKS_FIELD_NUMBER: _ClassVar[int]
    position_ms: int
    dropped_marks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, position_ms: _Optional[int] = ..., dropped_marks: _Optional[_Iterable[str]] = ...) -> None: ...

class FlowControl(_message.Message):
    __slots__ = ("state", "buffered_ms")
    STATE_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_MS_FIELD_NUMBER: _ClassVar[int]
    state: FlowState
    buffered_ms: int
    def __init__(self, state: _Optional[_Union[FlowState, str]] = ..., buffered_ms: _Optional[int] = ...) -> None: ...

class StreamMediaRequest(_message.Message):
    __slots__ = ("config", "audio", "dtmf", "mark", "clear", "hangup")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    DTMF_FIELD_NUMBER: _ClassVar[int]
    MARK_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    HANGUP_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    audio: AudioChunk
    dtmf: SendDtmf
    mark: Mark
    clear: Clear
    hangup: HangupCall
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., dtmf: _Optional[_Union[SendDtmf, _Mapping]] = ..., mark: _Optional[_Union[Mark, _Mapping]] = ..., clear: _Optional[_Union[Clear, _Mapping]] = ..., hangup: _Optional[_Union[HangupCall, _Mapping]] = ...) -> None: ...

class StreamMediaResponse(_message.Message):
    __slots__ = ("started", "audio", "stopped", "dtmf", "mark", "cleared", "flow")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    DTMF_FIELD_NUMBER: _ClassVar[int]
    MARK_FIELD_NUMBER: _ClassVar[int]
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    started: StreamStarted
    audio: AudioChunk
    stopped: StreamStopped
    dtmf: DtmfReceived
    mark: MarkPlayed
    cleared: Cleared
    flow: FlowControl
    def __init__(self, started: _Optional[_Union[StreamStarted, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., stopped: _Optional[_Union[StreamStopped, _Mapping]] = ..., dtmf: _Optional[_Union[DtmfReceived, _Mapping]] = ..., mark: _Optional[_Union[MarkPlayed, _Mapping]] = ..., cleared: _Optional[_Union[Cleared, _Mapping]] = ..., flow: _Optional[_Union[FlowControl, _Mapping]] = ...) -> None: ...

class ControlStreamRequest(_message.Message):
    __slots__ = ("stream_id", "clear", "dtmf", "hangup", "last_sent_sequence_number", "marks_and_dtmf_sent")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    DTMF_FIELD_NUMBER: _ClassVar[int]
    HANGUP_FIELD_NUMBER: _ClassVar[int]
    LAST_SENT_SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    MARKS_AND_DTMF_SENT_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    clear: Clear
    dtmf: SendDtmf
    hangup: HangupCall
    last_sent_sequence_number: int
    marks_and_dtmf_sent: int
    def __init__(self, stream_id: _Optional[str] = ..., clear: _Optional[_Union[Clear, _Mapping]] = ..., dtmf: _Optional[_Union[SendDtmf, _Mapping]] = ..., hangup: _Optional[_Union[HangupCall, _Mapping]] = ..., last_sent_sequence_number: _Optional[int] = ..., marks_and_dtmf_sent: _Optional[int] = ...) -> None: ...

class ControlStreamResponse(_message.Message):
    __slots__ = ("cleared",)
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    cleared: Cleared
    def __init__(self, cleared: _Optional[_Union[Cleared, _Mapping]] = ...) -> None: ...

class ListenMediaRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ...) -> None: ...

class ListenMediaResponse(_message.Message):
    __slots__ = ("started", "audio", "stopped", "dtmf")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    DTMF_FIELD_NUMBER: _ClassVar[int]
    started: StreamStarted
    audio: AudioChunk
    stopped: StreamStopped
    dtmf: DtmfReceived
    def __init__(self, started: _Optional[_Union[StreamStarted, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., stopped: _Optional[_Union[StreamStopped, _Mapping]] = ..., dtmf: _Optional[_Union[DtmfReceived, _Mapping]] = ...) -> None: ...
