"""External media: a call's audio sent to a host the caller names, started and stopped by API."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import grpc
import pytest

from mediastream._proto import external_media_pb2 as em
from mediastream._proto import external_media_pb2_grpc as em_grpc
from mediastream._proto import mediastream_pb2 as pb
from mediastream.core import g711
from mediastream.core.audiosocket import Kind, Message
from mediastream.core.rtp import parse_rtp
from mediastream.emulator import CONFERENCE_ID, TONE_CALL_ID
from mediastream_client import RPCError
from tests.audio_checks import dominant_hz, pcm16
from tests.audiosocket_peer import AudioSocketHost
from tests.harness import Harness


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.put_nowait(data)


async def udp_sink() -> tuple[asyncio.DatagramTransport, Datagrams, str]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Datagrams, local_addr=("127.0.0.1", 0))
    host, port = transport.get_extra_info("sockname")[:2]
    return transport, proto, f"{host}:{port}"  # type: ignore[return-value]


def stub(harness: Harness, channel: grpc.aio.Channel) -> em_grpc.ExternalMediaServiceStub:
    return em_grpc.ExternalMediaServiceStub(channel)


async def test_rtp_external_media_streams_the_call_then_stops(harness: Harness) -> None:
    transport, sink, host = await udp_sink()
    try:
        async with grpc.aio.insecure_channel(harness.grpc) as channel:
            api = stub(harness, channel)
            started = (
                await api.StartExternalMedia(
                    em.StartExternalMediaRequest(
                        call_id=TONE_CALL_ID,
                        external_host=host,
                        encapsulation=em.EXTERNAL_MEDIA_ENCAPSULATION_RTP,
                        format=pb.AUDIO_FORMAT_ULAW,
                    )
                )
            ).external_media
            assert started.status == em.EXTERNAL_MEDIA_STATUS_RUNNING
            packets = [parse_rtp(await asyncio.wait_for(sink.received.get(), 3)) for _ in range(50)]
            assert {p.payload_type for p in packets} == {0}
            assert {len(p.payload) for p in packets} == {160}
            tone = pcm16(g711.ulaw_decode(b"".join(p.payload for p in packets)))
            assert abs(dominant_hz(tone, 8000) - 440) < 3
            got = await api.GetExternalMedia(em.GetExternalMediaRequest(id=started.id))
            assert got.external_media.call_id == TONE_CALL_ID
            listed = await api.ListExternalMedia(em.ListExternalMediaRequest(call_id=TONE_CALL_ID))
            assert [m.id for m in listed.external_media] == [started.id]
            stopped = await api.StopExternalMedia(em.StopExternalMediaRequest(id=started.id))
            assert [m.status for m in stopped.external_media] == [
                em.EXTERNAL_MEDIA_STATUS_TERMINATED
            ]
            while not sink.received.empty():
                sink.received.get_nowait()
            await asyncio.sleep(0.2)
            assert sink.received.empty(), "audio kept coming after stop"
    finally:
        transport.close()


async def test_sln_external_media_sends_bare_samples(harness: Harness) -> None:
    transport, sink, host = await udp_sink()
    try:
        async with grpc.aio.insecure_channel(harness.grpc) as channel:
            api = stub(harness, channel)
            await api.StartExternalMedia(
                em.StartExternalMediaRequest(
                    call_id=TONE_CALL_ID,
                    external_host=host,
                    format=pb.AUDIO_FORMAT_SLIN,
                    encapsulation=em.EXTERNAL_MEDIA_ENCAPSULATION_SLN,
                )
            )
            frames = [await asyncio.wait_for(sink.received.get(), 3) for _ in range(50)]
            assert {len(f) for f in frames} == {320}
            assert abs(dominant_hz(pcm16(b"".join(frames)), 8000) - 440) < 3
            stopped = await api.StopExternalMedia(em.StopExternalMediaRequest(call_id=TONE_CALL_ID))
            assert len(stopped.external_media) == 1
    finally:
        transport.close()


async def audiosocket_messages(
    harness: Harness,
    host: AudioSocketHost,
    request: em.StartExternalMediaRequest,
    count: int,
    within: float,
) -> list[Message]:
    """Start external media to ``host``; what it got: ``count`` messages, or all in ``within`` s."""
    request.external_host = host.address
    request.encapsulation = em.EXTERNAL_MEDIA_ENCAPSULATION_AUDIOSOCKET
    messages: list[Message] = []
    async with grpc.aio.insecure_channel(harness.grpc) as channel:
        api = stub(harness, channel)
        await api.StartExternalMedia(request)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while len(messages) < count:
                    messages.append(await host.messages.get())
        await api.StopExternalMedia(
            em.StopExternalMediaRequest(call_id=request.call_id)
            if request.call_id
            else em.StopExternalMediaRequest(conference_id=request.conference_id)
        )
    return messages


async def test_audiosocket_external_media_connects_to_the_host(harness: Harness) -> None:
    async with AudioSocketHost() as host:
        request = em.StartExternalMediaRequest(conference_id=CONFERENCE_ID)
        messages = await audiosocket_messages(harness, host, request, 40, within=3.0)
    assert len(messages) == 40
    uuid.UUID(bytes=messages[0].payload)  # Asterisk's UUID comes first
    assert messages[0].kind == Kind.UUID
    audio = [m.payload for m in messages[1:] if m.kind == Kind.AUDIO]
    assert {len(a) for a in audio} == {320}


async def test_an_audiosocket_host_that_never_sends_gets_only_the_uuid(
    harness: Harness,
) -> None:
    """Asterisk may write nothing to a host that has sent nothing; the emulator never does."""
    async with AudioSocketHost(sends=False) as host:
        request = em.StartExternalMediaRequest(call_id=TONE_CALL_ID)
        # The tone call's audio would fill 40 messages in 0.8 s; not one comes in 1 s.
        messages = await audiosocket_messages(harness, host, request, 40, within=1.0)
    assert [m.kind for m in messages] == [Kind.UUID]


async def test_limits_and_allow_list(harness: Harness) -> None:
    transport, _, host = await udp_sink()
    try:
        async with grpc.aio.insecure_channel(harness.grpc) as channel:
            api = stub(harness, channel)
            request = em.StartExternalMediaRequest(call_id=TONE_CALL_ID, external_host=host)
            for _ in range(5):
                await api.StartExternalMedia(request)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await api.StartExternalMedia(request)
            e = RPCError.from_aio(err.value)
            assert (e.code, e.reason) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "TOO_MANY_EXTERNAL_MEDIA",
            )
            stopped = await api.StopExternalMedia(em.StopExternalMediaRequest(call_id=TONE_CALL_ID))
            assert len(stopped.external_media) == 5
            for bad, code, reason in [
                ("203.0.113.9:4000", grpc.StatusCode.PERMISSION_DENIED, "HOST_NOT_ALLOWED"),
                ("example.com:4000", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_HOST"),
                ("127.0.0.1", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_HOST"),
            ]:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await api.StartExternalMedia(
                        em.StartExternalMediaRequest(call_id=TONE_CALL_ID, external_host=bad)
                    )
                e = RPCError.from_aio(err.value)
                assert (e.code, e.reason) == (code, reason)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await api.GetExternalMedia(em.GetExternalMediaRequest(id="nope"))
            assert err.value.code() is grpc.StatusCode.NOT_FOUND
    finally:
        transport.close()
