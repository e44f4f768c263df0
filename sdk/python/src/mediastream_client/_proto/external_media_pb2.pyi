# Generated from proto/ by scripts/generate.py. Do not edit.
import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from . import mediastream_pb2 as _mediastream_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExternalMediaEncapsulation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXTERNAL_MEDIA_ENCAPSULATION_UNSPECIFIED: _ClassVar[ExternalMediaEncapsulation]
    EXTERNAL_MEDIA_ENCAPSULATION_RTP: _ClassVar[ExternalMediaEncapsulation]
    EXTERNAL_MEDIA_ENCAPSULATION_AUDIOSOCKET: _ClassVar[ExternalMediaEncapsulation]
    EXTERNAL_MEDIA_ENCAPSULATION_SLN: _ClassVar[ExternalMediaEncapsulation]
    EXTERNAL_MEDIA_ENCAPSULATION_TWILIO_WEBSOCKET: _ClassVar[ExternalMediaEncapsulation]
    EXTERNAL_MEDIA_ENCAPSULATION_VOIPBIN_WEBSOCKET: _ClassVar[ExternalMediaEncapsulation]

class ExternalMediaOnBotClose(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXTERNAL_MEDIA_ON_BOT_CLOSE_UNSPECIFIED: _ClassVar[ExternalMediaOnBotClose]
    EXTERNAL_MEDIA_ON_BOT_CLOSE_HANGUP: _ClassVar[ExternalMediaOnBotClose]
    EXTERNAL_MEDIA_ON_BOT_CLOSE_NOTHING: _ClassVar[ExternalMediaOnBotClose]

class ExternalMediaStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXTERNAL_MEDIA_STATUS_UNSPECIFIED: _ClassVar[ExternalMediaStatus]
    EXTERNAL_MEDIA_STATUS_RUNNING: _ClassVar[ExternalMediaStatus]
    EXTERNAL_MEDIA_STATUS_TERMINATING: _ClassVar[ExternalMediaStatus]
    EXTERNAL_MEDIA_STATUS_TERMINATED: _ClassVar[ExternalMediaStatus]
EXTERNAL_MEDIA_ENCAPSULATION_UNSPECIFIED: ExternalMediaEncapsulation
EXTERNAL_MEDIA_ENCAPSULATION_RTP: ExternalMediaEncapsulation
EXTERNAL_MEDIA_ENCAPSULATION_AUDIOSOCKET: ExternalMediaEncapsulation
EXTERNAL_MEDIA_ENCAPSULATION_SLN: ExternalMediaEncapsulation
EXTERNAL_MEDIA_ENCAPSULATION_TWILIO_WEBSOCKET: ExternalMediaEncapsulation
EXTERNAL_MEDIA_ENCAPSULATION_VOIPBIN_WEBSOCKET: ExternalMediaEncapsulation
EXTERNAL_MEDIA_ON_BOT_CLOSE_UNSPECIFIED: ExternalMediaOnBotClose
EXTERNAL_MEDIA_ON_BOT_CLOSE_HANGUP: ExternalMediaOnBotClose
EXTERNAL_MEDIA_ON_BOT_CLOSE_NOTHING: ExternalMediaOnBotClose
EXTERNAL_MEDIA_STATUS_UNSPECIFIED: ExternalMediaStatus
EXTERNAL_MEDIA_STATUS_RUNNING: ExternalMediaStatus
EXTERNAL_MEDIA_STATUS_TERMINATING: ExternalMediaStatus
EXTERNAL_MEDIA_STATUS_TERMINATED: ExternalMediaStatus

class ExternalMedia(_message.Message):
    __slots__ = ("id", "call_id", "conference_id", "external_host", "encapsulation", "format", "direction", "status", "create_time", "end_reason", "url", "on_bot_close", "stream_sid", "status_callback_url", "websocket_framing")
    ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CONFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_HOST_FIELD_NUMBER: _ClassVar[int]
    ENCAPSULATION_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    ON_BOT_CLOSE_FIELD_NUMBER: _ClassVar[int]
    STREAM_SID_FIELD_NUMBER: _ClassVar[int]
    STATUS_CALLBACK_URL_FIELD_NUMBER: _ClassVar[int]
    WEBSOCKET_FRAMING_FIELD_NUMBER: _ClassVar[int]
    id: str
    call_id: str
    conference_id: str
    external_host: str
    encapsulation: ExternalMediaEncapsulation
    format: _mediastream_pb2.AudioFormat
    direction: _mediastream_pb2.Direction
    status: ExternalMediaStatus
    create_time: _timestamp_pb2.Timestamp
    end_reason: str
    url: str
    on_bot_close: ExternalMediaOnBotClose
    stream_sid: str
    status_callback_url: str
    websocket_framing: ExternalMediaEncapsulation
    def __init__(self, id: _Optional[str] = ..., call_id: _Optional[str] = ..., conference_id: _Optional[str] = ..., external_host: _Optional[str] = ..., encapsulation: _Optional[_Union[ExternalMediaEncapsulation, str]] = ..., format: _Optional[_Union[_mediastream_pb2.AudioFormat, str]] = ..., direction: _Optional[_Union[_mediastream_pb2.Direction, str]] = ..., status: _Optional[_Union[ExternalMediaStatus, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_reason: _Optional[str] = ..., url: _Optional[str] = ..., on_bot_close: _Optional[_Union[ExternalMediaOnBotClose, str]] = ..., stream_sid: _Optional[str] = ..., status_callback_url: _Optional[str] = ..., websocket_framing: _Optional[_Union[ExternalMediaEncapsulation, str]] = ...) -> None: ...

class StartExternalMediaRequest(_message.Message):
    __slots__ = ("call_id", "conference_id", "external_host", "encapsulation", "format", "direction", "url", "custom_parameters", "on_bot_close", "status_callback_url", "websocket_framing")
    class CustomParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CONFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_HOST_FIELD_NUMBER: _ClassVar[int]
    ENCAPSULATION_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ON_BOT_CLOSE_FIELD_NUMBER: _ClassVar[int]
    STATUS_CALLBACK_URL_FIELD_NUMBER: _ClassVar[int]
    WEBSOCKET_FRAMING_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    conference_id: str
    external_host: str
    encapsulation: ExternalMediaEncapsulation
    format: _mediastream_pb2.AudioFormat
    direction: _mediastream_pb2.Direction
    url: str
    custom_parameters: _containers.ScalarMap[str, str]
    on_bot_close: ExternalMediaOnBotClose
    status_callback_url: str
    websocket_framing: ExternalMediaEncapsulation
    def __init__(self, call_id: _Optional[str] = ..., conference_id: _Optional[str] = ..., external_host: _Optional[str] = ..., encapsulation: _Optional[_Union[ExternalMediaEncapsulation, str]] = ..., format: _Optional[_Union[_mediastream_pb2.AudioFormat, str]] = ..., direction: _Optional[_Union[_mediastream_pb2.Direction, str]] = ..., url: _Optional[str] = ..., custom_parameters: _Optional[_Mapping[str, str]] = ..., on_bot_close: _Optional[_Union[ExternalMediaOnBotClose, str]] = ..., status_callback_url: _Optional[str] = ..., websocket_framing: _Optional[_Union[ExternalMediaEncapsulation, str]] = ...) -> None: ...

class StartExternalMediaResponse(_message.Message):
    __slots__ = ("external_media",)
    EXTERNAL_MEDIA_FIELD_NUMBER: _ClassVar[int]
    external_media: ExternalMedia
    def __init__(self, external_media: _Optional[_Union[ExternalMedia, _Mapping]] = ...) -> None: ...

class StopExternalMediaRequest(_message.Message):
    __slots__ = ("id", "call_id", "conference_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CONFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    call_id: str
    conference_id: str
    def __init__(self, id: _Optional[str] = ..., call_id: _Optional[str] = ..., conference_id: _Optional[str] = ...) -> None: ...

class StopExternalMediaResponse(_message.Message):
    __slots__ = ("external_media",)
    EXTERNAL_MEDIA_FIELD_NUMBER: _ClassVar[int]
    external_media: _containers.RepeatedCompositeFieldContainer[ExternalMedia]
    def __init__(self, external_media: _Optional[_Iterable[_Union[ExternalMedia, _Mapping]]] = ...) -> None: ...

class GetExternalMediaRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetExternalMediaResponse(_message.Message):
    __slots__ = ("external_media",)
    EXTERNAL_MEDIA_FIELD_NUMBER: _ClassVar[int]
    external_media: ExternalMedia
    def __init__(self, external_media: _Optional[_Union[ExternalMedia, _Mapping]] = ...) -> None: ...

class ListExternalMediaRequest(_message.Message):
    __slots__ = ("call_id", "conference_id", "page_size", "page_token")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CONFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    conference_id: str
    page_size: int
    page_token: str
    def __init__(self, call_id: _Optional[str] = ..., conference_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListExternalMediaResponse(_message.Message):
    __slots__ = ("external_media", "next_page_token")
    EXTERNAL_MEDIA_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    external_media: _containers.RepeatedCompositeFieldContainer[ExternalMedia]
    next_page_token: str
    def __init__(self, external_media: _Optional[_Iterable[_Union[ExternalMedia, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
