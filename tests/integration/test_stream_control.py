"""Control both ways on a live stream: DTMF, marks, clear, flow control, resume."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import grpc
import numpy as np
import pytest

from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from mediastream.asterisk.transports import RtpTransport
from mediastream.core.rtp import parse_rtp
from mediastream.emulator import DTMF_CALL_ID, ECHO_CALL_ID, TONE_CALL_ID
from mediastream.emulator.rtp import RtpTech
from mediastream_client import (
    AudioChunk,
    AudioFormat,
    Cleared,
    DtmfReceived,
    FlowControl,
    MarkPlayed,
    RPCError,
    Stopped,
    StopReason,
)
from tests.audio_checks import dominant_hz, pcm16, sine, tone_level
from tests.harness import Harness
from tests.timing import LOADED_SLACK

FRAME = 320  # 20 ms of slin


def loud(chunk: bytes) -> bool:
    return float(np.abs(pcm16(chunk)).max(initial=0)) > 1000


async def test_dtmf_from_the_call_reaches_the_listener(harness: Harness) -> None:
    digits: list[str] = []
    async with harness.client() as client, client.listen(call_id=DTMF_CALL_ID) as stream:
        async with asyncio.timeout(6):
            async for event in stream:
                if isinstance(event, DtmfReceived):
                    digits.append(event.digit)
                    assert event.duration_ms > 0
                    if len(digits) == 3:
                        break
    assert digits == ["1", "2", "#"]


def goertzel_digit(samples: np.ndarray, rate: int) -> str | None:
    from mediastream.core.dtmf import FREQUENCIES

    best, level = None, 0.0
    for digit, (low, high) in FREQUENCIES.items():
        score = min(tone_level(samples, rate, low), tone_level(samples, rate, high))
        if score > level:
            best, level = digit, score
    return best if level > 2000 else None


async def test_dtmf_sent_is_heard_on_the_call_as_tones(harness: Harness) -> None:
    got = bytearray()
    async with (
        harness.client() as client,
        client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as stream,
    ):
        await stream.send_dtmf("1#9", duration_ms=100)
        await stream.done_sending()
        async for chunk in stream.audio():
            got += chunk.data
    samples = pcm16(bytes(got))
    # Cut what came back into 160 ms digit slots at the first loud sample.
    start = int(np.argmax(np.abs(samples) > 3000))
    slots = [samples[start + i * 1280 + 80 : start + i * 1280 + 720] for i in range(3)]
    assert [goertzel_digit(s, 8000) for s in slots] == ["1", "#", "9"]


async def test_bad_dtmf_names_the_field(harness: Harness) -> None:
    async with harness.client() as client, client.stream(call_id=ECHO_CALL_ID) as stream:
        await stream.send_dtmf("x")
        with pytest.raises(RPCError) as err:
            async for _ in stream:
                pass
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.value.field_violations] == ["dtmf.digits"]


def record_loud_rtp(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Times at which the emulated Asterisk takes in each loud RTP packet.

    Over RTP, Asterisk plays input the moment it arrives, so this is when the
    call heard each frame.
    """
    played: list[float] = []
    original = RtpTech.datagram_received

    def spy(self: RtpTech, data: bytes, addr: tuple[object, ...]) -> None:
        samples = np.frombuffer(parse_rtp(data).payload, ">i2")
        if samples.size and int(np.abs(samples.astype(np.int32)).max()) > 1000:
            played.append(time.monotonic())
        original(self, data, addr)

    monkeypatch.setattr(RtpTech, "datagram_received", spy)
    return played


def record_loud_handoffs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Times at which the gateway hands each loud frame to its RTP socket."""
    handed: list[float] = []
    original = RtpTransport.send_frame

    def spy(self: RtpTransport, frame: bytes) -> None:
        original(self, frame)
        samples = np.frombuffer(frame, "<i2")
        if samples.size and int(np.abs(samples.astype(np.int32)).max()) > 1000:
            handed.append(time.monotonic())

    monkeypatch.setattr(RtpTransport, "send_frame", spy)
    return handed


async def test_a_mark_sent_just_before_the_end_of_input_is_reported_before_stopped(
    harness: Harness,
) -> None:
    # A bot marks the end of its last sentence and ends its input at once: the mark
    # must still come, and before Stopped (it was lost: the stream stopped in the very
    # tick the mark's frame was sent, before the mark's report, which waits out that
    # frame's 20 ms).
    tone = sine(1000, 0.2, 8000)
    events: list[object] = []
    async with (
        harness.client() as client,
        client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as stream,
    ):
        for i in range(0, len(tone), FRAME):
            await stream.send(tone[i : i + FRAME])
        await stream.mark("last-sentence")
        await stream.done_sending()
        async with asyncio.timeout(5):
            async for event in stream:
                if isinstance(event, (MarkPlayed, Stopped)):
                    events.append(event)
    kinds = [(type(e).__name__, getattr(e, "name", None)) for e in events]
    assert kinds == [("MarkPlayed", "last-sentence"), ("Stopped", None)], kinds
    assert isinstance(events[0], MarkPlayed) and events[0].position_ms == 200
    assert isinstance(events[1], Stopped) and events[1].reason is StopReason.CLIENT_DONE


async def test_mark_is_reported_when_its_audio_has_played(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    played = record_loud_rtp(monkeypatch)
    handed = record_loud_handoffs(monkeypatch)
    tone = sine(1000, 1.0, 8000)
    mark_at = 0.0
    mark: MarkPlayed | None = None
    async with (
        harness.client() as client,
        client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as stream,
    ):
        # All of it at once: the gateway paces, so the mark comes after ~1 s of play.
        first_sent = time.monotonic()
        for i in range(0, len(tone), FRAME):
            await stream.send(tone[i : i + FRAME])
        await stream.mark("end-of-tone")
        async with asyncio.timeout(5):
            async for event in stream:
                if isinstance(event, MarkPlayed):
                    mark, mark_at = event, time.monotonic()
                    break
    assert mark is not None and mark.name == "end-of-tone" and mark.position_ms == 1000
    # Not before its second of audio has played, counted from before the first send
    # (play starts when that frame reaches the gateway; the play clock may put it on
    # the tick up to 20 ms before, and a timer may fire 1 ms early: hence 0.96, not
    # 1.0). Counting from after the sends made the bound fail on a busy machine, where
    # sending alone took 0.1 s. Late by at most a busy machine's slack (a mark held
    # for the wrong frame would be seconds late).
    assert 0.96 < mark_at - first_sent < 1.0 + LOADED_SLACK
    assert len(played) == len(handed) == 50
    # Reported once the last marked frame was handed to Asterisk and its 20 ms played
    # (the emulator's own receipt of it can lag the hand-off on a loaded loop), and
    # soon after that frame reached the call (40 ms on an idle machine; a loaded loop
    # may wake late, but a mark waiting for later audio would be seconds late).
    # (A loop timer may fire up to 1 ms early: uvloop counts whole milliseconds.)
    assert mark_at - handed[-1] >= 0.020 - 0.001
    assert mark_at - played[-1] < 0.040 + 0.020 + LOADED_SLACK


async def test_clear_cuts_playback_and_drops_pending_marks(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    played = record_loud_rtp(monkeypatch)
    tone = sine(1000, 3.0, 8000)
    cleared: Cleared | None = None
    async with (
        harness.client() as client,
        client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as stream,
    ):
        for i in range(0, len(tone), FRAME):
            await stream.send(tone[i : i + FRAME])
        await stream.mark("never")
        await asyncio.sleep(0.5)
        await stream.clear()
        cleared_at = time.monotonic()
        async with asyncio.timeout(5):
            async for event in stream:
                if isinstance(event, Cleared):
                    cleared = event
                elif isinstance(event, MarkPlayed):
                    pytest.fail("a cleared mark was reported")
                if time.monotonic() - cleared_at > 0.5:
                    break
    assert cleared is not None
    assert cleared.dropped_marks == ("never",)
    assert 400 <= cleared.position_ms <= 700
    # Silence on the call from the command on: at most the frame already in flight
    # (20 ms; its delivery may lag on a loaded loop). Playback going on would put
    # loud frames on the call for the remaining 2.5 s.
    assert played and played[-1] - cleared_at < 0.020 + LOADED_SLACK
    assert len(played) == cleared.position_ms // 20


async def test_flow_control_holds_a_fast_sender_without_loss(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    played = record_loud_rtp(monkeypatch)
    harness.gateway.streams.limits = dataclasses.replace(
        harness.gateway.streams.limits, play_buffer_ms=2000, pause_at_ms=1600, resume_at_ms=800
    )
    tone = sine(1000, 4.0, 8000)
    frames = [tone[i : i + FRAME] for i in range(0, len(tone), FRAME)]
    flows: list[FlowControl] = []
    echoed_loud = 0
    async with (
        harness.client() as client,
        client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN) as stream,
    ):

        async def read() -> None:
            nonlocal echoed_loud
            async for event in stream:
                if isinstance(event, FlowControl):
                    flows.append(event)
                elif isinstance(event, AudioChunk) and loud(event.data):
                    echoed_loud += 1

        reader = asyncio.create_task(read())
        start = time.monotonic()
        for frame in frames:
            await stream.send(frame)  # the SDK waits while the server says pause
            await asyncio.sleep(0.002)  # 10x real time
        await stream.done_sending()
        await asyncio.wait_for(reader, 10)
        elapsed = time.monotonic() - start
        assert stream.stopped is not None and stream.stopped.reason is StopReason.CLIENT_DONE
    assert [f.paused for f in flows][:2] == [True, False]
    assert all(f.buffered_ms <= 2000 for f in flows)
    # Everything accepted reached the call (counted where Asterisk receives it).
    assert len(played) >= len(frames) - 2
    # And came back through the echo; a frame or two at the edges may straddle the
    # echo's 20 ms tick and count as quiet, and the stream may end before the last
    # frames' return trip, which a loaded loop makes longer (up to its slack).
    assert echoed_loud >= len(frames) - 4 - round(LOADED_SLACK / 0.020)
    assert elapsed > 3.5  # it was paced at real time, not at the sender's speed


@pytest.mark.settings(resume_grace_s=0.5)
async def test_resume_continues_without_a_missing_chunk(harness: Harness) -> None:
    config = pb.StreamConfig(call_id=TONE_CALL_ID, format=pb.AUDIO_FORMAT_ULAW, resumable=True)
    received: list[int] = []
    channel = grpc.aio.insecure_channel(harness.grpc)
    call = pb_grpc.MediaStreamServiceStub(channel).ListenMedia(pb.ListenMediaRequest(config=config))
    started = (await call.read()).started
    assert started.resume_token and not started.resumed
    while len(received) < 10:
        received.append((await call.read()).audio.sequence_number)
    await channel.close(grace=None)  # the connection drops
    await asyncio.sleep(0.3)  # the call keeps producing audio meanwhile
    config.resume.token = started.resume_token
    config.resume.last_sequence_number = received[-1]
    async with grpc.aio.insecure_channel(harness.grpc) as channel2:
        call2 = pb_grpc.MediaStreamServiceStub(channel2).ListenMedia(
            pb.ListenMediaRequest(config=config)
        )
        again = (await call2.read()).started
        assert again.resumed and again.stream_id == started.stream_id
        for _ in range(30):
            received.append((await call2.read()).audio.sequence_number)
        call2.cancel()
    assert received == list(range(len(received)))
    assert harness.gateway.streams.resumes == 1


@pytest.mark.settings(resume_grace_s=0.8)
async def test_resumable_stream_is_released_after_the_grace_period(harness: Harness) -> None:
    config = pb.StreamConfig(call_id=TONE_CALL_ID, resumable=True)
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        call = pb_grpc.MediaStreamServiceStub(channel).ListenMedia(
            pb.ListenMediaRequest(config=config)
        )
        await call.read()
        call.cancel()
    await asyncio.sleep(0.2)
    assert len(harness.gateway.streams.streams) == 1  # kept for a resume
    assert harness.gateway_objects()


async def test_resume_with_an_unknown_token_is_not_found(harness: Harness) -> None:
    config = pb.StreamConfig(call_id=TONE_CALL_ID)
    config.resume.token = "nope.nope"
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        call = pb_grpc.MediaStreamServiceStub(channel).ListenMedia(
            pb.ListenMediaRequest(config=config)
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
    assert err.value.code() is grpc.StatusCode.NOT_FOUND


async def test_hangup_from_the_client_ends_the_stream(harness: Harness) -> None:
    call_id = harness.emulator.add_call("tone")
    async with harness.client() as client, client.stream(call_id=call_id) as stream:
        await stream.hangup()
        async with asyncio.timeout(3):
            async for event in stream:
                if isinstance(event, Stopped):
                    break
    assert stream.stopped is not None and stream.stopped.reason is StopReason.CLIENT_HANGUP
    assert call_id not in harness.emulator.channel_ids()


async def test_call_hangup_ends_the_stream_with_the_reason(harness: Harness) -> None:
    call_id = harness.emulator.add_call("tone")
    async with harness.client() as client, client.listen(call_id=call_id) as stream:
        await asyncio.sleep(0.2)
        harness.emulator.hangup(call_id)
        async with asyncio.timeout(3):
            async for _ in stream:
                pass
    assert stream.stopped is not None and stream.stopped.reason is StopReason.CALL_HANGUP


async def test_echo_round_trip_in_slin16_is_resampled(harness: Harness) -> None:
    sent = sine(3000, 1.0, 16000)
    got = bytearray()
    async with (
        harness.client() as client,
        client.stream(call_id=ECHO_CALL_ID, format=AudioFormat.SLIN16) as stream,
    ):
        for i in range(0, len(sent), 640):
            await stream.send(sent[i : i + 640])
        await stream.done_sending()
        async for chunk in stream.audio():
            assert len(chunk.data) == 640
            got += chunk.data
    back = pcm16(bytes(got))
    assert abs(dominant_hz(back, 16000) - 3000) < 5
    assert tone_level(back, 16000, 3000) > 2000


async def test_input_ended_before_any_audio_stops_the_stream_as_client_done(
    harness: Harness,
) -> None:
    # The pacer has never been given a time then: its "now" is -inf.
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        call = pb_grpc.MediaStreamServiceStub(channel).StreamMedia()
        await call.write(pb.StreamMediaRequest(config=pb.StreamConfig(call_id=TONE_CALL_ID)))
        assert (await call.read()).WhichOneof("payload") == "started"
        await call.done_writing()
        async with asyncio.timeout(3):
            while True:
                response = await call.read()
                assert response is not grpc.aio.EOF
                if response.WhichOneof("payload") == "stopped":
                    break
        assert response.stopped.reason == pb.STOP_REASON_CLIENT_DONE
        assert await call.code() is grpc.StatusCode.OK
    assert await harness.leftovers() == []
