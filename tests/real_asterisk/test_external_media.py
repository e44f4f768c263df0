"""External media of a platform's call: RTP and bare slin to a UDP host, AudioSocket to TCP."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from mediastream._proto import external_media_pb2 as em
from mediastream._proto import external_media_pb2_grpc as em_grpc
from mediastream._proto import mediastream_pb2 as pb
from mediastream.core import g711
from mediastream.core.audiosocket import Kind
from mediastream.core.rtp import parse_rtp
from tests.audio_checks import dominant_hz, pcm16
from tests.audiosocket_peer import AudioSocketHost
from tests.real_asterisk.conftest import Backend, RunningGateway
from tests.real_asterisk.platform import Platform


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.put_nowait(data)


@pytest.mark.parametrize("encapsulation", ["rtp", "sln"])
async def test_udp_external_media_carries_the_call(
    backend: Backend, gw: RunningGateway, platform: Platform, encapsulation: str
) -> None:
    call = await platform.stasis_call("tone")
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(Datagrams, local_addr=("127.0.0.1", 0))
    host, port = transport.get_extra_info("sockname")[:2]
    try:
        async with grpc.aio.insecure_channel(gw.endpoints.grpc) as channel:
            api = em_grpc.ExternalMediaServiceStub(channel)
            started = await api.StartExternalMedia(
                em.StartExternalMediaRequest(
                    call_id=call,
                    external_host=f"{host}:{port}",
                    encapsulation=em.EXTERNAL_MEDIA_ENCAPSULATION_RTP
                    if encapsulation == "rtp"
                    else em.EXTERNAL_MEDIA_ENCAPSULATION_SLN,
                    format=pb.AUDIO_FORMAT_ULAW if encapsulation == "rtp" else pb.AUDIO_FORMAT_SLIN,
                )
            )
            # 75 packets: the first 25 may be the path's silent start.
            packets = [await asyncio.wait_for(sink.received.get(), 5) for _ in range(75)][25:]
            if encapsulation == "rtp":
                parsed = [parse_rtp(p) for p in packets]
                assert {p.payload_type for p in parsed} == {0}
                audio = pcm16(g711.ulaw_decode(b"".join(p.payload for p in parsed)))
            else:
                assert {len(p) for p in packets} == {320}
                audio = pcm16(b"".join(packets))
            assert abs(dominant_hz(audio, 8000) - 440) < 5
            await api.StopExternalMedia(em.StopExternalMediaRequest(id=started.external_media.id))
    finally:
        transport.close()


async def test_audiosocket_external_media_carries_the_call(
    backend: Backend, gw: RunningGateway, platform: Platform
) -> None:
    call = await platform.stasis_call("tone")
    # A host must send too (docs/api.md): until it has, Asterisk may write it nothing.
    async with (
        AudioSocketHost() as host,
        grpc.aio.insecure_channel(gw.endpoints.grpc) as channel,
    ):
        api = em_grpc.ExternalMediaServiceStub(channel)
        await api.StartExternalMedia(
            em.StartExternalMediaRequest(
                call_id=call,
                external_host=host.address,
                encapsulation=em.EXTERNAL_MEDIA_ENCAPSULATION_AUDIOSOCKET,
                format=pb.AUDIO_FORMAT_SLIN,
            )
        )
        audio = bytearray()
        async with asyncio.timeout(10):
            while len(audio) < 1.5 * 16000:
                message = await host.messages.get()
                if message.kind == Kind.AUDIO:
                    audio += message.payload
        await api.StopExternalMedia(em.StopExternalMediaRequest(call_id=call))
    samples = pcm16(bytes(audio))[int(0.5 * 8000) :]
    assert abs(dominant_hz(samples, 8000) - 440) < 5
