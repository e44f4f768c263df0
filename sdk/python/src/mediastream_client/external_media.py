"""Client for ExternalMediaService: a call's audio sent straight to a host you name.

Example:
    async with MediaStreamClient(target) as client:
        media = await client.external_media.start(call_id=CALL, external_host="10.0.0.5:4000")
        ...
        await client.external_media.stop(media.id)

    # Dial-out: the gateway connects to your bot's WebSocket server, as Twilio does.
    media = await client.external_media.dial_out(
        call_id=CALL, url="wss://bot.example/media", custom_parameters={"lang": "en"}
    )
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc

from mediastream_client._convert import DIRECTIONS, FORMATS, reverse
from mediastream_client._proto import external_media_pb2 as em
from mediastream_client._proto import external_media_pb2_grpc as em_grpc
from mediastream_client.errors import RPCError
from mediastream_client.types import AudioFormat, Direction

_T = TypeVar("_T")


class ExternalEncapsulation(enum.Enum):
    """Wire form Asterisk (or the gateway) sends to the host."""

    RTP = "rtp"
    AUDIOSOCKET = "audiosocket"
    SLN = "sln"
    TWILIO_WEBSOCKET = "twilio_websocket"
    """Dial-out in Twilio Media Streams' protocol."""
    VOIPBIN_WEBSOCKET = "voipbin_websocket"
    """Dial-out in VoIPBIN's media_stream forms."""


class OnBotClose(enum.Enum):
    """What happens to the call when a dial-out's bot ends the WebSocket."""

    HANGUP = "hangup"
    NOTHING = "nothing"


class ExternalStatus(enum.Enum):
    """Where an external media is in its life."""

    RUNNING = "running"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class ExternalMedia:
    """One flow of audio to an external host."""

    id: str
    call_id: str | None
    conference_id: str | None
    external_host: str
    encapsulation: ExternalEncapsulation
    format: AudioFormat
    direction: Direction
    status: ExternalStatus
    created: datetime
    end_reason: str
    url: str = ""
    """A dial-out's bot URL."""
    stream_sid: str = ""
    """A dial-out's Twilio stream SID."""
    on_bot_close: OnBotClose | None = None


_ENC = {
    ExternalEncapsulation.RTP: em.EXTERNAL_MEDIA_ENCAPSULATION_RTP,
    ExternalEncapsulation.AUDIOSOCKET: em.EXTERNAL_MEDIA_ENCAPSULATION_AUDIOSOCKET,
    ExternalEncapsulation.SLN: em.EXTERNAL_MEDIA_ENCAPSULATION_SLN,
    ExternalEncapsulation.TWILIO_WEBSOCKET: em.EXTERNAL_MEDIA_ENCAPSULATION_TWILIO_WEBSOCKET,
    ExternalEncapsulation.VOIPBIN_WEBSOCKET: em.EXTERNAL_MEDIA_ENCAPSULATION_VOIPBIN_WEBSOCKET,
}
_ON_BOT_CLOSE = {
    OnBotClose.HANGUP: em.EXTERNAL_MEDIA_ON_BOT_CLOSE_HANGUP,
    OnBotClose.NOTHING: em.EXTERNAL_MEDIA_ON_BOT_CLOSE_NOTHING,
}
_STATUS = {
    em.EXTERNAL_MEDIA_STATUS_RUNNING: ExternalStatus.RUNNING,
    em.EXTERNAL_MEDIA_STATUS_TERMINATING: ExternalStatus.TERMINATING,
    em.EXTERNAL_MEDIA_STATUS_TERMINATED: ExternalStatus.TERMINATED,
}

RETRIES = 3
"""Attempts of a read-only call (get, list) when the gateway is UNAVAILABLE."""


def _from_proto(m: Any) -> ExternalMedia:
    target = m.WhichOneof("target")
    return ExternalMedia(
        id=m.id,
        call_id=m.call_id if target == "call_id" else None,
        conference_id=m.conference_id if target == "conference_id" else None,
        external_host=m.external_host,
        encapsulation=reverse(_ENC)[m.encapsulation],
        format=reverse(FORMATS)[m.format],
        direction=reverse(DIRECTIONS)[m.direction],
        status=_STATUS[m.status],
        created=datetime.fromtimestamp(m.create_time.ToNanoseconds() / 1e9, UTC),
        end_reason=m.end_reason,
        url=m.url,
        stream_sid=m.stream_sid,
        on_bot_close=reverse(_ON_BOT_CLOSE).get(m.on_bot_close),
    )


class ExternalMediaClient:
    """ExternalMediaService over an existing channel."""

    def __init__(self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub = em_grpc.ExternalMediaServiceStub(channel)
        self._metadata = metadata

    async def _call(
        self, rpc: Callable[..., Awaitable[_T]], request: Any, *, idempotent: bool = False
    ) -> _T:
        # Only reads are retried: a start that timed out may have happened.
        for attempt in range(RETRIES if idempotent else 1):
            try:
                return await rpc(request, metadata=self._metadata)
            except grpc.aio.AioRpcError as exc:
                if (
                    idempotent
                    and exc.code() is grpc.StatusCode.UNAVAILABLE
                    and (attempt + 1 < RETRIES)
                ):
                    await asyncio.sleep(0.1 * 2**attempt)
                    continue
                raise RPCError.from_aio(exc) from None
        raise AssertionError("unreachable")

    async def start(
        self,
        *,
        external_host: str,
        call_id: str | None = None,
        conference_id: str | None = None,
        encapsulation: ExternalEncapsulation = ExternalEncapsulation.RTP,
        format: AudioFormat = AudioFormat.ULAW,
        direction: Direction = Direction.BOTH,
    ) -> ExternalMedia:
        """Start sending a call's or conference's audio to `external_host` (``ip:port``)."""
        request = em.StartExternalMediaRequest(
            external_host=external_host,
            encapsulation=_ENC[encapsulation],
            format=FORMATS[format],
            direction=DIRECTIONS[direction],
        )
        if call_id is not None:
            request.call_id = call_id
        if conference_id is not None:
            request.conference_id = conference_id
        reply = await self._call(self._stub.StartExternalMedia, request)
        return _from_proto(reply.external_media)

    async def dial_out(
        self,
        *,
        url: str,
        call_id: str | None = None,
        conference_id: str | None = None,
        protocol: ExternalEncapsulation = ExternalEncapsulation.TWILIO_WEBSOCKET,
        custom_parameters: dict[str, str] | None = None,
        direction: Direction = Direction.BOTH,
        on_bot_close: OnBotClose | None = None,
        status_callback_url: str = "",
    ) -> ExternalMedia:
        """Have the gateway connect to the bot at `url` (``ws://``/``wss://``) and stream there.

        Returns once the WebSocket is up. `direction` BOTH is two-way (Twilio's
        ``<Connect><Stream>``), IN or OUT listen-only. `on_bot_close` None: hang up a
        two-way stream's call when the bot closes, leave a listen-only one's alone.
        """
        request = em.StartExternalMediaRequest(
            url=url,
            encapsulation=_ENC[protocol],
            direction=DIRECTIONS[direction],
            custom_parameters=custom_parameters or {},
            status_callback_url=status_callback_url,
        )
        if on_bot_close is not None:
            request.on_bot_close = _ON_BOT_CLOSE[on_bot_close]
        if call_id is not None:
            request.call_id = call_id
        if conference_id is not None:
            request.conference_id = conference_id
        reply = await self._call(self._stub.StartExternalMedia, request)
        return _from_proto(reply.external_media)

    async def stop(self, media_id: str) -> ExternalMedia:
        """Stop one external media."""
        reply = await self._call(
            self._stub.StopExternalMedia, em.StopExternalMediaRequest(id=media_id)
        )
        return _from_proto(reply.external_media[0])

    async def stop_all(
        self, *, call_id: str | None = None, conference_id: str | None = None
    ) -> list[ExternalMedia]:
        """Stop every running external media of a call or conference."""
        request = em.StopExternalMediaRequest()
        if call_id is not None:
            request.call_id = call_id
        if conference_id is not None:
            request.conference_id = conference_id
        reply = await self._call(self._stub.StopExternalMedia, request)
        return [_from_proto(m) for m in reply.external_media]

    async def get(self, media_id: str) -> ExternalMedia:
        """One external media by ID."""
        reply = await self._call(
            self._stub.GetExternalMedia, em.GetExternalMediaRequest(id=media_id), idempotent=True
        )
        return _from_proto(reply.external_media)

    async def list(
        self, *, call_id: str | None = None, conference_id: str | None = None
    ) -> list[ExternalMedia]:
        """External media of a call or conference (all, if neither is given), newest first.

        The gateway answers a page at a time (at most 1000 each); this follows the pages.
        """
        request = em.ListExternalMediaRequest()
        if call_id is not None:
            request.call_id = call_id
        if conference_id is not None:
            request.conference_id = conference_id
        out: list[ExternalMedia] = []
        while True:
            reply = await self._call(self._stub.ListExternalMedia, request, idempotent=True)
            out += [_from_proto(m) for m in reply.external_media]
            if not reply.next_page_token:
                return out
            request.page_token = reply.next_page_token
