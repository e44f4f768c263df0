"""A resume token is bound to the identity that opened the stream (finding 3).

Held up in the probe, and kept: tokens are 128-bit and compared in constant time;
an unknown token is RESUME_TOKEN_UNKNOWN.
"""

from __future__ import annotations

import base64
from typing import Any

import grpc
import pytest

from mediastream import streams
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
            # Ended by its client, not cancelled: a cancelled resumable stream waits out
            # its resume grace holding one of the call's five slots, and six cases run.
            await again.done_writing()
            while (await again.read()).WhichOneof("payload") != "stopped":
                pass
        err = await refusal(await open_stream(channel, KEY, resume="no-such-stream.AAAA"))
        assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "RESUME_TOKEN_UNKNOWN")
    assert await harness.leftovers(wait=15) == []


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_resume_tokens_are_128_random_bits_compared_in_constant_time(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held up in the probe: the secret part of a token is 128 random bits; knowing the
    stream ID, or all but one character of the secret, resumes nothing."""
    compared: list[object] = []
    real = streams.secrets.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(streams.secrets, "compare_digest", spy)
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        holders = [await open_stream(channel, KEY) for _ in range(2)]
        tokens = [(await started(h)).resume_token for h in holders]
        secrets_ = [t.split(".")[1] for t in tokens]
        assert secrets_[0] != secrets_[1]
        for secret in secrets_:
            assert len(base64.urlsafe_b64decode(secret + "==")) == 16
        stream_id, secret = tokens[0].split(".")[:2]
        flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
        for guess in (stream_id, f"{stream_id}.", f"{stream_id}.{flipped}"):
            err = await refusal(await open_stream(channel, KEY, resume=guess))
            assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "RESUME_TOKEN_UNKNOWN")
        assert tokens[0] in compared  # the token check went through compare_digest
        await still_hears(holders[0])
        for h in holders:
            h.cancel()
    assert await harness.leftovers(wait=15) == []
