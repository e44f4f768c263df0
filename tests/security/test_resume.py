"""A resume token is bound to the identity that opened the stream (finding 3).

Held up in the probe, and kept: tokens are 128-bit and compared in constant time;
an unknown token is RESUME_TOKEN_UNKNOWN.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from mediastream.emulator import TONE_CALL_ID
from mediastream_client import RPCError
from tests.harness import Harness
from tests.security.conftest import KEY, KEY_2, PROBE_SETTINGS, bearer, refusal, token


async def open_stream(channel: grpc.aio.Channel, credential: str, resume: str = "") -> Any:
    """A StreamMedia call whose config (resumable, or resuming `resume`) is written."""
    call = pb_grpc.MediaStreamServiceStub(channel).StreamMedia(metadata=bearer(credential))
    config = pb.StreamConfig(call_id=TONE_CALL_ID, resumable=True)
    if resume:
        config.resume.token = resume
    await call.write(pb.StreamMediaRequest(config=config))
    return call


async def started(call: Any) -> pb.StreamStarted:
    first = await call.read()
    assert first.WhichOneof("payload") == "started", first
    info: pb.StreamStarted = first.started
    return info


async def still_hears(call: Any) -> None:
    for _ in range(5):
        message = await call.read()
        assert message.WhichOneof("payload") in ("audio", "flow"), message


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_only_the_opener_may_resume(harness: Harness) -> None:
    sub_a = token(sub="tenant-a")
    cases = [
        # opener, thief
        (KEY, KEY_2),
        (KEY, token(sub="tenant-a")),
        (sub_a, token(sub="tenant-b")),
        (sub_a, KEY),  # a full-access key is still another identity
        (sub_a, token(sub="tenant-a", call_id=TONE_CALL_ID)),  # same sub, another scope
        (token(call_id=TONE_CALL_ID), token(call_id=TONE_CALL_ID, sub="x")),
    ]
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        for opener, thief in cases:
            holder = await open_stream(channel, opener)
            info = await started(holder)
            err = await refusal(await open_stream(channel, thief, resume=info.resume_token))
            assert (err.code, err.reason) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "RESUME_NOT_OWNER",
            ), (opener, thief)
            assert info.resume_token not in err.message
            # The holder noticed nothing.
            await still_hears(holder)
            # The opener's own credentials (another token with the same sub) may.
            same = token(sub="tenant-a") if opener == sub_a else opener
            again = await open_stream(channel, same, resume=info.resume_token)
            assert (await started(again)).resumed
            with pytest.raises(grpc.aio.AioRpcError) as taken:
                while True:  # audio already on its way comes first
                    await holder.read()
            assert RPCError.from_aio(taken.value).reason == "STREAM_TAKEN_OVER"
            again.cancel()
        err = await refusal(await open_stream(channel, KEY, resume="no-such-stream.AAAA"))
        assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "RESUME_TOKEN_UNKNOWN")
    assert await harness.leftovers(wait=15) == []
