"""Client-supplied strings are capped and the events towards a client are bounded
(finding 2)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from mediastream.api import grpc_service
from mediastream.emulator import ECHO_CALL_ID
from mediastream.streams import MAX_MARK_NAME_CHARS, MAX_PENDING_EVENTS, MAX_PENDING_MARKS
from mediastream_client import RPCError
from tests.harness import Harness
from tests.security.conftest import KEY, PROBE_SETTINGS, bearer

SILENCE_200MS = b"\xff" * 1600


async def opened(channel: grpc.aio.Channel) -> Any:
    call = pb_grpc.MediaStreamServiceStub(channel).StreamMedia(metadata=bearer(KEY))
    await call.write(pb.StreamMediaRequest(config=pb.StreamConfig(call_id=ECHO_CALL_ID)))
    assert (await call.read()).WhichOneof("payload") == "started"
    return call


async def ending(call: Any) -> RPCError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        while True:
            await call.read()
    return RPCError.from_aio(err.value)


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_a_long_mark_name_is_refused(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        call = await opened(channel)
        await call.write(pb.StreamMediaRequest(mark=pb.Mark(name="m" * MAX_MARK_NAME_CHARS)))
        await call.write(pb.StreamMediaRequest(mark=pb.Mark(name="m" * (1 << 20))))
        err = await ending(call)
        assert (err.code, err.reason, err.metadata) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "MARK_NAME_TOO_LONG",
            {"limit": str(MAX_MARK_NAME_CHARS)},
        )
    assert await harness.leftovers() == [], list(harness.gateway.streams.streams)


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_marks_that_have_not_played_are_bounded(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        call = await opened(channel)
        # 4 s of audio first: the marks behind it cannot play during the test.
        for _ in range(20):
            await call.write(pb.StreamMediaRequest(audio=pb.AudioChunk(data=SILENCE_200MS)))
        for i in range(MAX_PENDING_MARKS + 1):
            await call.write(pb.StreamMediaRequest(mark=pb.Mark(name=f"m{i}")))
        err = await ending(call)
        assert (err.code, err.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_MARKS")
    assert await harness.leftovers() == [], list(harness.gateway.streams.streams)


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_events_a_client_does_not_read_end_the_stream(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        call = await opened(channel)
        (stream,) = harness.gateway.streams.streams.values()
        # More events than the bound, before the client reads any of them.
        for _ in range(MAX_PENDING_EVENTS + 50):
            stream.on_dtmf("1")
        assert stream._buffer.pending_events == MAX_PENDING_EVENTS
        err = await ending(call)
        assert (err.code, err.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "EVENT_BACKLOG")
    assert await harness.leftovers() == [], list(harness.gateway.streams.streams)


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_too_many_dtmf_digits_are_refused(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        call = await opened(channel)
        await call.write(pb.StreamMediaRequest(dtmf=pb.SendDtmf(digits="1" * 100_000)))
        err = await ending(call)
        assert (err.code, err.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_DTMF")
    assert await harness.leftovers() == [], list(harness.gateway.streams.streams)


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_a_stream_without_its_first_message_is_ended(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grpc_service, "FIRST_MESSAGE_TIMEOUT_S", 0.3)
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        # No credentials and no message: held up to the limit, then ended.
        silent = pb_grpc.MediaStreamServiceStub(channel).StreamMedia()
        err = await ending(silent)
        assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CONFIG_TIMEOUT")
        # A client that sends its config in time is not affected.
        call = await opened(channel)
        call.cancel()
