"""ControlStream: clear, DTMF and hangup beside a running stream (issue 16).

An in-stream clear after a burst is read only after every audio message before it
(grpc.aio needs about 90 us a message, 3000 of them for 60 s of 20 ms chunks). The
side channel is an HTTP/2 stream of its own: nothing queues ahead of it. These tests
assert what it does; the time it takes is measured by scripts/bargein.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from mediastream import streams
from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from mediastream.emulator import ECHO_CALL_ID, TONE_CALL_ID
from mediastream_client import RPCError
from tests.audio_checks import sine
from tests.harness import Harness
from tests.integration.test_burst import RawStream
from tests.integration.test_stream_control import record_loud_handoffs

BURST = 60 * 50  # 60 s of 20 ms chunks


async def control(channel: grpc.aio.Channel, **request: Any) -> pb.ControlStreamResponse:
    """One ControlStream call."""
    stub = pb_grpc.MediaStreamServiceStub(channel)
    response: pb.ControlStreamResponse = await stub.ControlStream(
        pb.ControlStreamRequest(**request), timeout=10
    )
    return response


async def refused(channel: grpc.aio.Channel, **request: Any) -> RPCError:
    """The rich error a ControlStream call ends with."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await control(channel, **request)
    return RPCError.from_aio(err.value)


async def test_a_side_channel_clear_after_a_burst_drops_it_all_even_what_is_in_flight(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed = record_loud_handoffs(monkeypatch)
    frame = sine(1000, 0.02, 8000)
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        stream = RawStream(
            channel, pb.StreamConfig(call_id=ECHO_CALL_ID, format=pb.AUDIO_FORMAT_SLIN)
        )
        started, _ = await stream.next("started", 5)
        stream_id = started.started.stream_id
        for seq in range(BURST):
            stream.send(audio=pb.AudioChunk(data=frame, sequence_number=seq))
        stream.send(mark=pb.Mark(name="end-of-speech"))
        # Sent beside the stream while most of the burst is still on its way: it
        # overtakes the audio, which the gateway drops as it reads it.
        reply = await control(
            channel,
            stream_id=stream_id,
            clear=pb.Clear(),
            last_sent_sequence_number=BURST - 1,
            marks_and_dtmf_sent=1,
        )
        played_at_ack = len(handed)
        # One Cleared on the stream, as for an in-stream clear: once the stream has read
        # what was sent before the clear, at the reply's cut, naming the mark sent before
        # the clear (which the reply names only if it had been read by then).
        event, _ = await stream.next("cleared", 10)
        assert event.cleared.position_ms == reply.cleared.position_ms
        assert list(event.cleared.dropped_marks) == ["end-of-speech"]
        assert list(reply.cleared.dropped_marks) in ([], ["end-of-speech"])
        # Audio sent after the clear plays, and a mark after it comes back.
        stream.send(audio=pb.AudioChunk(data=frame, sequence_number=BURST))
        stream.send(mark=pb.Mark(name="after"))
        mark, _ = await stream.next("mark", 10)
        stream.call.cancel()
    assert mark.mark.name == "after"
    cut = reply.cleared.position_ms
    # At once: the clear overtakes the burst (0 when it arrived before the first frame).
    assert 0 <= cut < 1500
    # Nothing of the burst played after the cut: at most the frame in flight at the
    # cut, then the one frame sent after the clear.
    assert len(handed) - played_at_ack <= 2
    assert mark.mark.position_ms <= cut + 3 * 20 + 20


async def test_without_last_sent_the_clear_drops_what_was_read(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        stream = RawStream(
            channel, pb.StreamConfig(call_id=ECHO_CALL_ID, format=pb.AUDIO_FORMAT_SLIN)
        )
        started, _ = await stream.next("started", 5)
        stream_id = started.started.stream_id
        # No sequence numbers: a client of its own that does not number its chunks.
        stream.send(audio=pb.AudioChunk(data=bytes(320 * 50)))
        stream.send(mark=pb.Mark(name="queued"))
        stream.send(audio=pb.AudioChunk(data=bytes(320 * 50)))
        held = harness.gateway.streams.streams[stream_id]
        async with asyncio.timeout(5):
            while held.buffered_ms < 1500:  # the second second was read: the mark too
                await asyncio.sleep(0.01)
        reply = await control(channel, stream_id=stream_id, clear=pb.Clear())
        # Audio sent after it plays at once (no window of dropping was opened).
        stream.send(audio=pb.AudioChunk(data=bytes(320)))
        stream.send(mark=pb.Mark(name="after"))
        mark, _ = await stream.next("mark", 5)
        stream.call.cancel()
    assert list(reply.cleared.dropped_marks) == ["queued"]
    assert mark.mark.name == "after"


async def test_hangup_and_dtmf_by_the_side_channel(harness: Harness) -> None:
    call_id = harness.emulator.add_call("echo")
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        stream = RawStream(channel, pb.StreamConfig(call_id=call_id, format=pb.AUDIO_FORMAT_SLIN))
        started, _ = await stream.next("started", 5)
        stream_id = started.started.stream_id
        for _ in range(BURST):
            stream.send(audio=pb.AudioChunk(data=bytes(320)))
        reply = await control(channel, stream_id=stream_id, dtmf=pb.SendDtmf(digits="12"))
        assert not reply.HasField("cleared")
        err = await refused(channel, stream_id=stream_id, dtmf=pb.SendDtmf(digits="x"))
        assert (err.code, err.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_DTMF")
        await control(channel, stream_id=stream_id, hangup=pb.HangupCall())
        response, _ = await stream.next("stopped", 10)
        assert response.stopped.reason == pb.STOP_REASON_CLIENT_HANGUP
        # Ended: the ID names no running stream any more.
        err = await refused(channel, stream_id=stream_id, clear=pb.Clear())
    assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "STREAM_UNKNOWN")


async def test_refusals_name_the_fix(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        err = await refused(channel, stream_id="", clear=pb.Clear())
        assert (err.code, err.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MISSING_STREAM_ID")
        assert "StreamStarted" in err.message
        err = await refused(channel, stream_id="x" * 65, clear=pb.Clear())
        assert (err.code, err.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ID")
        assert "x" * 65 not in err.message
        err = await refused(channel, stream_id="no-such-stream", clear=pb.Clear())
        assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "STREAM_UNKNOWN")
        assert err.metadata["stream_id"] == "no-such-stream"
        # A listen-only stream has no audio to clear, and sends nothing into the call.
        listen = pb_grpc.MediaStreamServiceStub(channel).ListenMedia(
            pb.ListenMediaRequest(config=pb.StreamConfig(call_id=TONE_CALL_ID))
        )
        first = await listen.read()
        listen_id = first.started.stream_id
        for command in (
            {"clear": pb.Clear()},
            {"dtmf": pb.SendDtmf(digits="1")},
            {"hangup": pb.HangupCall()},
        ):
            err = await refused(channel, stream_id=listen_id, **command)
            assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LISTEN_ONLY")
            assert "StreamMedia" in err.message
        err = await refused(channel, stream_id=listen_id)
        assert (err.code, err.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MISSING_COMMAND")
        # The listen stream went on.
        assert (await listen.read()).WhichOneof("payload") == "audio"
        listen.cancel()


async def test_the_first_chunk_after_the_clear_ends_the_dropping_whatever_the_counts(
    harness: Harness,
) -> None:
    # Counts that never add up (messages lost with a dropped connection before a resume):
    # the first chunk numbered past the clear's still ends the dropping, and plays.
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        stream = RawStream(
            channel, pb.StreamConfig(call_id=ECHO_CALL_ID, format=pb.AUDIO_FORMAT_SLIN)
        )
        started, _ = await stream.next("started", 5)
        stream_id = started.started.stream_id
        for seq in range(BURST):
            stream.send(audio=pb.AudioChunk(data=bytes(320), sequence_number=seq))
        stream.send(mark=pb.Mark(name="end-of-speech"))
        await control(
            channel,
            stream_id=stream_id,
            clear=pb.Clear(),
            last_sent_sequence_number=BURST - 1,
            marks_and_dtmf_sent=5,  # 4 more than were sent
        )
        stream.send(audio=pb.AudioChunk(data=bytes(320), sequence_number=BURST))
        stream.send(mark=pb.Mark(name="after"))
        cleared, _ = await stream.next("cleared", 10)
        mark, _ = await stream.next("mark", 10)
        stream.call.cancel()
    assert list(cleared.cleared.dropped_marks) == ["end-of-speech"]
    assert mark.mark.name == "after"


async def test_the_end_of_input_ends_the_dropping(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        stream = RawStream(
            channel, pb.StreamConfig(call_id=ECHO_CALL_ID, format=pb.AUDIO_FORMAT_SLIN)
        )
        started, _ = await stream.next("started", 5)
        stream.send(audio=pb.AudioChunk(data=bytes(320 * 50), sequence_number=0))
        # Names a chunk never sent: only the end of the input ends the dropping.
        await control(
            channel,
            stream_id=started.started.stream_id,
            clear=pb.Clear(),
            last_sent_sequence_number=10,
        )
        stream.queue.put_nowait(None)  # half-close
        cleared, _ = await stream.next("cleared", 10)
        stopped, _ = await stream.next("stopped", 10)
    assert list(cleared.cleared.dropped_marks) == []
    assert stopped.stopped.reason == pb.STOP_REASON_CLIENT_DONE


async def test_marks_held_for_a_side_channel_clear_count_against_the_marks_cap(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A clear that claims more marks than ever come holds the ones read for its Cleared:
    # they count against MAX_PENDING_MARKS, so that list stays bounded.
    monkeypatch.setattr(streams, "MAX_PENDING_MARKS", 3)
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        stream = RawStream(
            channel, pb.StreamConfig(call_id=ECHO_CALL_ID, format=pb.AUDIO_FORMAT_SLIN)
        )
        started, _ = await stream.next("started", 5)
        await control(
            channel,
            stream_id=started.started.stream_id,
            clear=pb.Clear(),
            marks_and_dtmf_sent=1000,
        )
        for i in range(4):
            stream.send(mark=pb.Mark(name=f"m{i}"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.next("stopped", 10)
    error = RPCError.from_aio(err.value)
    assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_MARKS")
