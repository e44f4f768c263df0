"""gRPC adapter: ExternalMediaService over the external media manager."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from mediastream._proto import external_media_pb2 as em_pb
from mediastream._proto import external_media_pb2_grpc as em_grpc
from mediastream._proto import mediastream_pb2 as pb
from mediastream.api.grpc_service import DIRECTIONS, FORMATS, FORMATS_OUT, enum_value
from mediastream.api.status import unary_errors
from mediastream.auth import Authenticator, Principal
from mediastream.core.stream import (
    Direction,
    Encapsulation,
    Target,
    TargetKind,
    validate_target_id,
)
from mediastream.dialout import OnBotClose
from mediastream.errors import InvalidArgument, PermissionDenied
from mediastream.external_media import (
    ExternalEncapsulation,
    ExternalMedia,
    ExternalMediaManager,
    ExternalStatus,
)

log = logging.getLogger(__name__)

SERVICE_NAME: str = em_pb.DESCRIPTOR.services_by_name["ExternalMediaService"].full_name

_ENCAPSULATIONS = {
    em_pb.EXTERNAL_MEDIA_ENCAPSULATION_UNSPECIFIED: ExternalEncapsulation.RTP,
    em_pb.EXTERNAL_MEDIA_ENCAPSULATION_RTP: ExternalEncapsulation.RTP,
    em_pb.EXTERNAL_MEDIA_ENCAPSULATION_AUDIOSOCKET: ExternalEncapsulation.AUDIOSOCKET,
    em_pb.EXTERNAL_MEDIA_ENCAPSULATION_SLN: ExternalEncapsulation.SLN,
    em_pb.EXTERNAL_MEDIA_ENCAPSULATION_TWILIO_WEBSOCKET: ExternalEncapsulation.TWILIO_WEBSOCKET,
    em_pb.EXTERNAL_MEDIA_ENCAPSULATION_VOIPBIN_WEBSOCKET: ExternalEncapsulation.VOIPBIN_WEBSOCKET,
}
_ENCAPSULATIONS_OUT = {
    v: k for k, v in _ENCAPSULATIONS.items() if k != em_pb.EXTERNAL_MEDIA_ENCAPSULATION_UNSPECIFIED
}
_FRAMINGS = {
    em_pb.EXTERNAL_MEDIA_ENCAPSULATION_UNSPECIFIED: Encapsulation.RTP,
    em_pb.EXTERNAL_MEDIA_ENCAPSULATION_RTP: Encapsulation.RTP,
    em_pb.EXTERNAL_MEDIA_ENCAPSULATION_SLN: Encapsulation.SLN,
    em_pb.EXTERNAL_MEDIA_ENCAPSULATION_AUDIOSOCKET: Encapsulation.AUDIOSOCKET,
}
_FRAMINGS_OUT = {
    v: k for k, v in _FRAMINGS.items() if k != em_pb.EXTERNAL_MEDIA_ENCAPSULATION_UNSPECIFIED
}
_ON_BOT_CLOSE: dict[int, OnBotClose | None] = {
    em_pb.EXTERNAL_MEDIA_ON_BOT_CLOSE_UNSPECIFIED: None,
    em_pb.EXTERNAL_MEDIA_ON_BOT_CLOSE_HANGUP: OnBotClose.HANGUP,
    em_pb.EXTERNAL_MEDIA_ON_BOT_CLOSE_NOTHING: OnBotClose.NOTHING,
}
_ON_BOT_CLOSE_OUT = {v: k for k, v in _ON_BOT_CLOSE.items() if v is not None}
_STATUS = {
    ExternalStatus.RUNNING: em_pb.EXTERNAL_MEDIA_STATUS_RUNNING,
    ExternalStatus.TERMINATING: em_pb.EXTERNAL_MEDIA_STATUS_TERMINATING,
    ExternalStatus.TERMINATED: em_pb.EXTERNAL_MEDIA_STATUS_TERMINATED,
}
_DIRECTIONS_OUT = {
    Direction.BOTH: pb.DIRECTION_BOTH,
    Direction.IN: pb.DIRECTION_IN,
    Direction.OUT: pb.DIRECTION_OUT,
}


def _target(message: Any, oneof: str, *, required: bool) -> Target | None:
    which = message.WhichOneof(oneof)
    if which == "call_id":
        return Target(TargetKind.CALL, validate_target_id("call_id", message.call_id))
    if which == "conference_id":
        return Target(
            TargetKind.CONFERENCE, validate_target_id("conference_id", message.conference_id)
        )
    if required:
        raise InvalidArgument(oneof, "set call_id or conference_id", reason="MISSING_TARGET")
    return None


def _media_id(media_id: str) -> str:
    """An external media ID as sent: an empty one is the client's mistake, not an unknown ID."""
    if not media_id:
        raise InvalidArgument(
            "id", "set id to the id StartExternalMedia returned", reason="MISSING_ID"
        )
    return media_id


def _to_proto(media: ExternalMedia) -> em_pb.ExternalMedia:
    created = timestamp_pb2.Timestamp()
    created.FromNanoseconds(int(media.created * 1e9))
    out = em_pb.ExternalMedia(
        id=media.id,
        external_host=media.external_host,
        encapsulation=_ENCAPSULATIONS_OUT[media.encapsulation],
        format=FORMATS_OUT[media.format],
        direction=_DIRECTIONS_OUT[media.direction],
        status=_STATUS[media.status],
        create_time=created,
        end_reason=media.end_reason,
        url=media.url,
        stream_sid=media.stream_sid,
        status_callback_url=media.status_callback_url,
    )
    if media.on_bot_close is not None:
        out.on_bot_close = _ON_BOT_CLOSE_OUT[media.on_bot_close]  # type: ignore[assignment]
    if media.websocket_framing is not None:
        out.websocket_framing = _FRAMINGS_OUT[media.websocket_framing]
    if media.target.kind is TargetKind.CALL:
        out.call_id = media.target.id
    else:
        out.conference_id = media.target.id
    return out


class ExternalMediaServicer(em_grpc.ExternalMediaServiceServicer):
    """The gRPC ExternalMediaService."""

    def __init__(self, manager: ExternalMediaManager, auth: Authenticator) -> None:
        self._manager = manager
        self._auth = auth

    def _principal(self, context: grpc.aio.ServicerContext[object, object]) -> Principal:
        """Who calls: checked first, before anything of the request is looked at or up."""
        return self._auth.authenticate_metadata(context.invocation_metadata() or ())

    @staticmethod
    def _authorize(principal: Principal, target: Target | None) -> None:
        if target is not None:
            principal.check(target)
        elif principal.scope is not None:
            raise PermissionDenied(
                "a scoped token may only list its own call or conference", reason="TOKEN_SCOPE"
            )

    @unary_errors
    async def StartExternalMedia(
        self,
        request: em_pb.StartExternalMediaRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> em_pb.StartExternalMediaResponse:
        """Start sending audio to a host."""
        principal = self._principal(context)
        target = _target(request, "target", required=True)
        assert target is not None
        self._authorize(principal, target)
        fmt = enum_value(FORMATS, request.format, "format")
        direction = enum_value(DIRECTIONS, request.direction, "direction")
        encapsulation = enum_value(_ENCAPSULATIONS, request.encapsulation, "encapsulation")
        if encapsulation.dial_out is None:
            for name in ("url", "status_callback_url"):
                if getattr(request, name):
                    raise InvalidArgument(
                        name,
                        f"{name} is for the dial-out encapsulations "
                        "(TWILIO_WEBSOCKET, VOIPBIN_WEBSOCKET)",
                        reason="NOT_A_DIAL_OUT",
                    )
            media = await self._manager.start(
                target, request.external_host, encapsulation, fmt, direction
            )
            return em_pb.StartExternalMediaResponse(external_media=_to_proto(media))
        if request.external_host:
            raise InvalidArgument(
                "external_host",
                "a dial-out names its bot in url; leave external_host empty",
                reason="NOT_A_DIAL_OUT",
            )
        if not request.url:
            raise InvalidArgument(
                "url", "a dial-out needs the bot's ws:// or wss:// url", reason="INVALID_URL"
            )
        framing = enum_value(_FRAMINGS, request.websocket_framing, "websocket_framing")
        media = await self._manager.start_dial_out(
            target,
            encapsulation,
            request.url,
            fmt=None if request.format == pb.AUDIO_FORMAT_UNSPECIFIED else fmt,
            direction=direction,
            framing=framing,
            parameters=dict(request.custom_parameters),
            on_bot_close=enum_value(_ON_BOT_CLOSE, request.on_bot_close, "on_bot_close"),
            status_callback_url=request.status_callback_url,
            account=principal.subject,
        )
        return em_pb.StartExternalMediaResponse(external_media=_to_proto(media))

    @unary_errors
    async def StopExternalMedia(
        self,
        request: em_pb.StopExternalMediaRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> em_pb.StopExternalMediaResponse:
        """Stop one external media, or all of a call or conference."""
        principal = self._principal(context)
        if request.WhichOneof("selector") == "id":
            media = self._manager.get(_media_id(request.id))
            self._authorize(principal, media.target)
            stopped = [await self._manager.stop(request.id)]
        else:
            target = _target(request, "selector", required=True)
            assert target is not None
            self._authorize(principal, target)
            stopped = await self._manager.stop_target(target)
        return em_pb.StopExternalMediaResponse(external_media=[_to_proto(m) for m in stopped])

    @unary_errors
    async def GetExternalMedia(
        self,
        request: em_pb.GetExternalMediaRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> em_pb.GetExternalMediaResponse:
        """One external media."""
        principal = self._principal(context)
        media = self._manager.get(_media_id(request.id))
        self._authorize(principal, media.target)
        return em_pb.GetExternalMediaResponse(external_media=_to_proto(media))

    @unary_errors
    async def ListExternalMedia(
        self,
        request: em_pb.ListExternalMediaRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> em_pb.ListExternalMediaResponse:
        """External media of a call or conference, or all, a page at a time."""
        principal = self._principal(context)
        target = _target(request, "target", required=False)
        self._authorize(principal, target)
        page, next_token = self._manager.page(target, request.page_size, request.page_token)
        return em_pb.ListExternalMediaResponse(
            external_media=[_to_proto(m) for m in page], next_page_token=next_token
        )
