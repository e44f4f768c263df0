"""Every error code a client can meet, with its google.rpc.Status details."""

from __future__ import annotations

import time

import grpc
import jwt
import pytest

from mediastream._proto import mediastream_pb2 as pb
from mediastream._proto import mediastream_pb2_grpc as pb_grpc
from mediastream.emulator import CONFERENCE_ID, ECHO_CALL_ID, TONE_CALL_ID
from mediastream_client import AudioFormat, MediaStreamClient, RPCError, StopReason
from tests.harness import Harness


async def open_error(harness: Harness, token: str | None = None, **kw: object) -> RPCError:
    async with harness.client(token) as client:
        with pytest.raises(RPCError) as err:
            async with client.listen(**kw):  # type: ignore[arg-type]
                pass
    return err.value


async def raw_stream_error(harness: Harness, *requests: pb.StreamMediaRequest) -> RPCError:
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        call = pb_grpc.MediaStreamServiceStub(channel).StreamMedia()
        for r in requests:
            await call.write(r)
        await call.done_writing()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            while True:
                if await call.read() is grpc.aio.EOF:
                    break
    return RPCError.from_aio(err.value)


async def test_unknown_conference_is_not_found(harness: Harness) -> None:
    err = await open_error(harness, conference_id="no-such-bridge")
    assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "CONFERENCE_NOT_FOUND")
    assert err.domain == "mediastream.voipbin.net"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (pb.StreamConfig(call_id=TONE_CALL_ID, format=99), "config.format"),
        (pb.StreamConfig(call_id=TONE_CALL_ID, direction=42), "config.direction"),
        (pb.StreamConfig(call_id=TONE_CALL_ID, encapsulation=7), "config.encapsulation"),
        (pb.StreamConfig(call_id="bad id!"), "config.call_id"),
        (pb.StreamConfig(), "config.target"),
        (pb.StreamConfig(call_id=TONE_CALL_ID, chunk_ms=15), "config.chunk_ms"),
    ],
)
async def test_bad_config_is_invalid_argument_naming_the_field(
    harness: Harness, config: pb.StreamConfig, field: str
) -> None:
    err = await raw_stream_error(harness, pb.StreamMediaRequest(config=config))
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.field_violations] == [field]


async def test_audio_before_config_is_failed_precondition(harness: Harness) -> None:
    err = await raw_stream_error(
        harness, pb.StreamMediaRequest(audio=pb.AudioChunk(data=b"\xff" * 160))
    )
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CONFIG_NOT_FIRST")


async def test_second_config_is_failed_precondition(harness: Harness) -> None:
    config = pb.StreamConfig(call_id=ECHO_CALL_ID)
    err = await raw_stream_error(
        harness, pb.StreamMediaRequest(config=config), pb.StreamMediaRequest(config=config)
    )
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CONFIG_NOT_FIRST")


@pytest.mark.settings(play_buffer_s=1)
async def test_chunk_over_the_play_buffer_is_refused_whole(harness: Harness) -> None:
    config = pb.StreamConfig(call_id=ECHO_CALL_ID, format=pb.AUDIO_FORMAT_ULAW)
    err = await raw_stream_error(
        harness,
        pb.StreamMediaRequest(config=config),
        pb.StreamMediaRequest(audio=pb.AudioChunk(data=b"\xff" * 8001)),  # 1 s is 8000
    )
    assert (err.code, err.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CHUNK_TOO_LARGE")
    assert [v.field for v in err.field_violations] == ["audio.data"]
    assert err.message.startswith("split the audio into messages of at most 8000 bytes")


async def test_hangup_of_a_conference_is_failed_precondition(harness: Harness) -> None:
    # hangup() goes beside the stream (ControlStream): the refusal is its own, and the
    # stream goes on (an in-stream hangup failed the whole stream).
    async with harness.client() as client, client.stream(conference_id=CONFERENCE_ID) as stream:
        with pytest.raises(RPCError) as err:
            await stream.hangup()
        await stream.done_sending()
        stopped = await stream.wait_stopped(10)
    assert (err.value.code, err.value.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_A_CALL")
    assert stopped is not None and stopped.reason is StopReason.CLIENT_DONE


@pytest.mark.settings(max_streams_per_target=1)
async def test_streams_per_call_limit_is_resource_exhausted(harness: Harness) -> None:
    async with harness.client() as client, client.listen(call_id=TONE_CALL_ID):
        err = await open_error(harness, call_id=TONE_CALL_ID)
    assert (err.code, err.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_STREAMS_FOR_TARGET",
    )
    assert err.metadata == {"limit": "1"}


@pytest.mark.leaves_streams
async def test_asterisk_gone_is_unavailable(harness: Harness) -> None:
    await harness.emulator.stop()
    err = await open_error(harness, call_id=TONE_CALL_ID)
    assert err.code is grpc.StatusCode.UNAVAILABLE


SECRET = "test-secret-for-hs256-please-change"


def token(**claims: object) -> str:
    return jwt.encode({"exp": int(time.time()) + 60, **claims}, SECRET, algorithm="HS256")


@pytest.mark.settings(api_keys="key-1,key-2", jwt_key=SECRET)
async def test_authentication_and_scopes(harness: Harness) -> None:
    missing = await open_error(harness, None, call_id=TONE_CALL_ID)
    assert (missing.code, missing.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
    wrong = await open_error(harness, "key-3", call_id=TONE_CALL_ID)
    assert (wrong.code, wrong.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
    expired = jwt.encode({"exp": int(time.time()) - 5}, SECRET, algorithm="HS256")
    late = await open_error(harness, expired, call_id=TONE_CALL_ID)
    assert (late.code, late.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED")
    other = await open_error(harness, token(call_id=ECHO_CALL_ID), call_id=TONE_CALL_ID)
    assert (other.code, other.reason) == (grpc.StatusCode.PERMISSION_DENIED, "TOKEN_SCOPE")
    for good in ("key-2", token(call_id=TONE_CALL_ID), token(sub="svc")):
        async with (
            MediaStreamClient(harness.grpc, token=good) as client,
            client.listen(call_id=TONE_CALL_ID, format=AudioFormat.ULAW) as stream,
        ):
            assert stream.info is not None


async def test_a_channel_gone_before_it_is_bridged_is_unavailable(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen on 20.20.1 with 25 streams opening at once: the externalMedia channel was gone
    # when the gateway bridged it (400 "Channel not found"). That is Asterisk dropping the
    # stream, not a bug of the gateway's (it was UNKNOWN, "Unexpected AriError").
    from mediastream.emulator.errors import AriError
    from mediastream.emulator.pbx import Pbx

    pbx = harness.emulator.pbx

    def gone(self: Pbx, bridge: object, channel_ids: list[str]) -> None:
        for cid in channel_ids:
            if cid in self.channels and not self.channels[cid].name.startswith("Snoop/"):
                self.hangup(self.channels[cid])
        raise AriError(400, "Channel not found")

    monkeypatch.setattr(Pbx, "add_channels", gone)
    err = await open_error(harness, call_id=TONE_CALL_ID)
    assert (err.code, err.reason) == (grpc.StatusCode.UNAVAILABLE, "ASTERISK_UNAVAILABLE")
    assert "dropped the stream's channel" in err.message
    assert not [c for c in pbx.channels.values() if c.name.startswith("Snoop/")]
