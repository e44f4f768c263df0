"""Status callbacks: Twilio's statusCallback fields, form-encoded, POSTed on started,
stopped and error, with bounded retries and a timeout, never holding up the stream."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid

import grpc
import pytest
from aiohttp import web

from mediastream._proto import external_media_pb2 as em
from tests.dialout.conftest import Bot, api, http_server, metric, start_dial_out, terminated
from tests.harness import Harness

TWILIO = em.EXTERNAL_MEDIA_ENCAPSULATION_TWILIO_WEBSOCKET


class Callbacks:
    """An application's statusCallback endpoint: records each POST's form."""

    def __init__(self, answers: list[int] | None = None, hang: bool = False) -> None:
        self.forms: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.answers = list(answers or [])
        self.hang = hang
        self.posts = 0

    async def handle(self, request: web.Request) -> web.Response:
        assert request.method == "POST"
        assert request.content_type == "application/x-www-form-urlencoded"
        self.posts += 1
        if self.hang:
            await asyncio.sleep(3600)
        status = self.answers.pop(0) if self.answers else 204
        if status < 300:
            await self.forms.put(dict(await request.post()))  # type: ignore[arg-type]
        return web.Response(status=status)

    async def next(self, timeout: float = 3.0) -> dict[str, str]:
        return await asyncio.wait_for(self.forms.get(), timeout)


def callbacks(event: str, outcome: str) -> float:
    return metric("mediastream_status_callbacks_total", event=event, outcome=outcome)


async def test_started_and_stopped(harness: Harness) -> None:
    call_id = harness.emulator.add_call("tone", channel_id=str(uuid.uuid4()))
    bot, hook = Bot(), Callbacks()
    delivered = callbacks("stream-stopped", "delivered")
    async with (
        http_server({"/media": bot.handle}) as bot_at,
        http_server({"/status": hook.handle}) as hook_at,
    ):
        channel, stub, media = await start_dial_out(
            harness,
            call_id=call_id,
            encapsulation=TWILIO,
            url=f"ws://{bot_at}/media",
            status_callback_url=f"http://{hook_at}/status",
        )
        async with channel:
            assert media.status_callback_url == f"http://{hook_at}/status"
            started = await hook.next()
            assert set(started) == {
                "AccountSid",
                "CallSid",
                "StreamSid",
                "StreamName",
                "StreamEvent",
                "Timestamp",
            }
            assert started["StreamEvent"] == "stream-started"
            assert started["CallSid"] == call_id
            assert started["StreamSid"] == media.stream_sid
            assert started["StreamName"] == media.id
            assert re.fullmatch(r"AC[0-9a-f]{32}", started["AccountSid"])
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", started["Timestamp"])
            await stub.StopExternalMedia(em.StopExternalMediaRequest(id=media.id))
            stopped = await hook.next()
            assert stopped["StreamEvent"] == "stream-stopped"
            assert stopped["StreamSid"] == media.stream_sid
            assert "StreamError" not in stopped
    assert callbacks("stream-stopped", "delivered") == delivered + 1


async def test_error_with_its_code_when_the_bot_cannot_be_reached(harness: Harness) -> None:
    call_id = harness.emulator.add_call("tone", channel_id=str(uuid.uuid4()))
    hook = Callbacks()
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))
    try:
        async with (
            http_server({"/status": hook.handle}) as hook_at,
            grpc.aio.insecure_channel(harness.grpc) as channel,
        ):
            with pytest.raises(grpc.aio.AioRpcError):
                await api(channel).StartExternalMedia(
                    em.StartExternalMediaRequest(
                        call_id=call_id,
                        encapsulation=TWILIO,
                        url=f"ws://127.0.0.1:{refusing.getsockname()[1]}/media",
                        status_callback_url=f"http://{hook_at}/status",
                    )
                )
            error = await hook.next()
    finally:
        refusing.close()
    assert error["StreamEvent"] == "stream-error"
    assert error["ErrorCode"] == "DIAL_OUT_REFUSED"
    assert error["StreamError"].endswith("refused the connection")


async def test_failed_posts_are_retried_a_bounded_number_of_times(harness: Harness) -> None:
    call_id = harness.emulator.add_call("tone", channel_id=str(uuid.uuid4()))
    bot, hook = Bot(), Callbacks(answers=[500, 503])
    retried = callbacks("stream-started", "retried")
    async with (
        http_server({"/media": bot.handle}) as bot_at,
        http_server({"/status": hook.handle}) as hook_at,
    ):
        channel, stub, media = await start_dial_out(
            harness,
            call_id=call_id,
            encapsulation=TWILIO,
            url=f"ws://{bot_at}/media",
            status_callback_url=f"http://{hook_at}/status",
        )
        async with channel:
            # Two failures, then the third POST (dial_out_callback_retries = 2) is taken.
            assert (await hook.next(timeout=5))["StreamEvent"] == "stream-started"
            assert hook.posts == 3
            await stub.StopExternalMedia(em.StopExternalMediaRequest(id=media.id))
            assert (await hook.next())["StreamEvent"] == "stream-stopped"
    assert callbacks("stream-started", "retried") == retried + 2


@pytest.mark.settings(dial_out_callback_timeout_s=0.3, dial_out_callback_retries=1)
async def test_a_callback_that_never_answers_holds_nothing_up(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    call_id = harness.emulator.add_call("tone", channel_id=str(uuid.uuid4()))
    bot, hook = Bot(), Callbacks(hang=True)
    failed = callbacks("stream-started", "failed")
    async with (
        http_server({"/media": bot.handle}) as bot_at,
        http_server({"/status": hook.handle}) as hook_at,
    ):
        channel, stub, media = await start_dial_out(
            harness,
            call_id=call_id,
            encapsulation=TWILIO,
            url=f"ws://{bot_at}/media",
            status_callback_url=f"http://{hook_at}/status",
        )
        async with channel:
            # The stream flows while the callback hangs.
            conn = await bot.accepted()
            await conn.next_event("media", timeout=1.0)
            async with asyncio.timeout(3):
                while callbacks("stream-started", "failed") == failed:
                    await asyncio.sleep(0.05)
            assert hook.posts == 2  # the first and one retry
            assert any("status callback stream-started" in r.getMessage() for r in caplog.records)
            await stub.StopExternalMedia(em.StopExternalMediaRequest(id=media.id))
            assert (await terminated(stub, media.id)).end_reason == "stopped by request"
