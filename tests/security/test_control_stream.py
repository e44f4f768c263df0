"""ControlStream is authorized as the stream it controls: only its opener may (issue 16)."""

from __future__ import annotations

import grpc
import pytest

from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from tests.harness import Harness
from tests.security.conftest import KEY, KEY_2, PROBE_SETTINGS, bearer, refusal, token
from tests.security.test_resume import open_stream, started, still_hears


@pytest.mark.settings(**PROBE_SETTINGS)
async def test_only_the_opener_may_control_a_stream(harness: Harness) -> None:
    sub_a = token(sub="tenant-a")
    cases = [
        # opener, other
        (KEY, KEY_2),
        (sub_a, token(sub="tenant-b")),
        (sub_a, KEY),  # a full-access key is still another identity
    ]
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        stub = pb_grpc.MediaStreamServiceStub(channel)
        for opener, other in cases:
            holder = await open_stream(channel, opener)
            info = await started(holder)
            request = pb.ControlStreamRequest(stream_id=info.stream_id, clear=pb.Clear())
            err = await refusal(stub.ControlStream(request, metadata=bearer(other)))
            assert (err.code, err.reason) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "STREAM_NOT_OWNER",
            ), (opener, other)
            # The holder noticed nothing: no Cleared, audio goes on.
            await still_hears(holder)
            # No credentials at all: refused by the same authenticator as the stream.
            err = await refusal(stub.ControlStream(request))
            assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
            # The opener's own credentials (another token with the same sub) may.
            same = token(sub="tenant-a") if opener == sub_a else opener
            reply = await stub.ControlStream(request, metadata=bearer(same))
            assert reply.HasField("cleared")
            await holder.done_writing()
            kinds = []
            while (kind := (await holder.read()).WhichOneof("payload")) != "stopped":
                kinds.append(kind)
            assert "cleared" in kinds
    assert await harness.leftovers(wait=15) == []
