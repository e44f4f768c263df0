"""Bad input on the gRPC ingress not covered in tests/integration/test_errors.py.

One resume token used by two connections at once, and messages over gRPC's receive limit.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest

from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from mediastream.emulator import ECHO_CALL_ID, TONE_CALL_ID
from mediastream_client import RPCError
from tests.fuzz.bystander import listening
from tests.harness import Harness

MAX_RECEIVE = 4 * 1024 * 1024
"""gRPC's default max_receive_message_length, which the gateway keeps."""


async def read_chunks(call: grpc.aio.UnaryStreamCall, n: int, into: list[int]) -> None:
    while len(into) < n:
        msg = await call.read()
        assert msg is not grpc.aio.EOF
        if msg.WhichOneof("payload") == "audio":
            into.append(msg.audio.sequence_number)


async def final_status(call: grpc.aio.UnaryStreamCall) -> RPCError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async with asyncio.timeout(5):
            while await call.read() is not grpc.aio.EOF:
                pass
    return RPCError.from_aio(err.value)


@pytest.mark.settings(resume_grace_s=0.5)
async def test_one_resume_token_on_two_connections_at_once(harness: Harness) -> None:
    """The last resume owns the stream; every older connection ends STREAM_TAKEN_OVER.

    The first connection is still attached (the gateway has not seen it drop), as with a
    client whose network went silent and which reconnected; two resumes then race.
    """
    call_id = harness.emulator.add_call("tone")
    config = pb.StreamConfig(call_id=call_id, format=pb.AUDIO_FORMAT_ULAW, resumable=True)
    channels = [grpc.aio.insecure_channel(harness.grpc) for _ in range(3)]
    try:
        async with harness.client() as client, listening(client, TONE_CALL_ID) as bystander:
            stubs = [pb_grpc.MediaStreamServiceStub(c) for c in channels]
            first = stubs[0].ListenMedia(pb.ListenMediaRequest(config=config))
            started = (await first.read()).started
            got: list[int] = []
            await read_chunks(first, 10, got)
            resume = pb.StreamConfig()
            resume.CopyFrom(config)
            resume.resume.token = started.resume_token
            resume.resume.last_sequence_number = got[-1]
            racers = [s.ListenMedia(pb.ListenMediaRequest(config=resume)) for s in stubs[1:]]
            replies = await asyncio.gather(*(r.read() for r in racers))
            assert all(r.started.resumed for r in replies)
            assert {r.started.stream_id for r in replies} == {started.stream_id}
            # The first connection is taken over at once.
            lost = await final_status(first)
            assert (lost.code, lost.reason) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                "STREAM_TAKEN_OVER",
            )
            # Of the two racers, the one that resumed last owns it; the other is ended
            # (after any chunk the gateway had already sent it before the take-over).
            async def follow(racer: grpc.aio.UnaryStreamCall) -> list[int] | RPCError:
                seq: list[int] = []
                try:
                    async with asyncio.timeout(5):
                        while len(seq) < 40:
                            reply = await racer.read()
                            assert reply is not grpc.aio.EOF
                            seq.append(reply.audio.sequence_number)
                except grpc.aio.AioRpcError as exc:
                    return RPCError.from_aio(exc)
                return seq

            outcomes = await asyncio.gather(*(follow(r) for r in racers))
            winners = [i for i, o in enumerate(outcomes) if isinstance(o, list)]
            assert len(winners) == 1, outcomes
            lost = outcomes[1 - winners[0]]
            assert isinstance(lost, RPCError) and lost.reason == "STREAM_TAKEN_OVER", lost
            winner = racers[winners[0]]
            seq = outcomes[winners[0]]
            assert isinstance(seq, list)
            # The winner goes on from where the first connection stopped, without a gap.
            assert seq == list(range(got[-1] + 1, got[-1] + 1 + len(seq)))
            assert harness.gateway.streams.resumes == 2
            assert len(harness.gateway.streams.streams) == 2  # the victim's and the bystander's
            winner.cancel()
            bystander.assert_unharmed()
        # The stream is released after the grace period, like any dropped resumable stream.
        assert await harness.leftovers(wait=3.0) == []
    finally:
        for c in channels:
            await c.close()


async def test_audio_over_the_receive_limit_is_resource_exhausted(harness: Harness) -> None:
    async with harness.client() as client, listening(client, TONE_CALL_ID) as bystander:
        async with grpc.aio.insecure_channel(
            harness.grpc, options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
        ) as channel:
            call = pb_grpc.MediaStreamServiceStub(channel).StreamMedia()
            await call.write(pb.StreamMediaRequest(config=pb.StreamConfig(call_id=ECHO_CALL_ID)))
            assert (await call.read()).WhichOneof("payload") == "started"
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await call.write(
                    pb.StreamMediaRequest(audio=pb.AudioChunk(data=b"\xff" * (MAX_RECEIVE + 1)))
                )
            error = await final_status(call)
        assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        await asyncio.sleep(0.3)
        bystander.assert_unharmed()
    assert await harness.leftovers() == []


async def test_config_over_the_receive_limit_is_resource_exhausted(harness: Harness) -> None:
    async with harness.client() as client, listening(client, TONE_CALL_ID) as bystander:
        async with grpc.aio.insecure_channel(
            harness.grpc, options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
        ) as channel:
            config = pb.StreamConfig(call_id="x" * (MAX_RECEIVE + 1))
            call = pb_grpc.MediaStreamServiceStub(channel).ListenMedia(
                pb.ListenMediaRequest(config=config)
            )
            error = await final_status(call)
        assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        bystander.assert_unharmed()
    assert await harness.leftovers() == []
