"""Two gateway instances on one Asterisk, each advertising its own address.

Both instances share one Asterisk (the emulator), each with its own Stasis app and
its own advertised address. The scenarios behind a proxy (spread, resume through
it, drain under load, proxy restart) run behind real nginx and HAProxy in
tests/real_proxy; this is what needs no proxy.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from mediastream.emulator import TONE_CALL_ID, Emulator, EmulatorConfig
from mediastream_client import AudioFormat, MediaStreamClient, RPCError
from mediastream_client._proto import mediastream_pb2 as pb
from mediastream_client._proto import mediastream_pb2_grpc as pb_grpc
from tests.conftest import RunningGateway, start_gateway, stop_gateway
from tests.harness import GATEWAY_CHANNELS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    emulator: Emulator
    gateways: list[RunningGateway]

    @property
    def addresses(self) -> list[str]:
        return [g.grpc for g in self.gateways]

    def objects_of(self, app: str) -> list[str]:
        return [
            c.name
            for c in self.emulator.pbx.channels.values()
            if not c.hung_up and c.name.startswith(GATEWAY_CHANNELS) and c.stasis_app == app
        ]


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    emulator = Emulator(EmulatorConfig(demo=True))
    await emulator.start()
    gateways: list[RunningGateway] = []
    try:
        for name in ("a", "b"):
            # The advertised address must be known before the gateway starts, so the
            # port is picked, let go, then bound by the gateway: another process may
            # take it in between (a busy machine opens many connections). Then the
            # gateway exits before its ready line, and a fresh port is tried.
            for attempt in range(3):
                address = f"127.0.0.1:{free_port()}"
                try:
                    gateway = await asyncio.to_thread(
                        start_gateway,
                        "--grpc-listen",
                        address,
                        "--advertise-address",
                        address,
                        "--ari-app",
                        f"mediastream-{name}",
                        "--drain-timeout-s",
                        "1",
                        env={"MEDIASTREAM_ARI_URL": emulator.ari_url},
                    )
                except RuntimeError:
                    if attempt == 2:
                        raise
                else:
                    gateways.append(gateway)
                    break
        yield Cluster(emulator, gateways)
    finally:
        for gw in gateways:
            await asyncio.to_thread(stop_gateway, gw)
        await emulator.stop()


async def test_a_resume_at_the_wrong_instance_names_the_right_one(cluster: Cluster) -> None:
    holder, other = cluster.addresses
    async with MediaStreamClient(holder) as owner_client:
        stream = owner_client.listen(call_id=TONE_CALL_ID, format=AudioFormat.SLIN)
        stream._config.resumable = True
        await stream.__aenter__()
        assert stream.info is not None and stream.info.instance_address == holder
        token = stream.info.resume_token
        await stream.aclose()  # the client vanishes; the stream waits for a resume

        # A raw client whose resume lands on the other instance is told where to go.
        config = pb.StreamConfig(call_id=TONE_CALL_ID, format=pb.AUDIO_FORMAT_SLIN, resumable=True)
        config.resume.token = token
        async with grpc.aio.insecure_channel(other) as channel:
            call = pb_grpc.MediaStreamServiceStub(channel).ListenMedia(
                pb.ListenMediaRequest(config=config)
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call.read()
        error = RPCError.from_aio(caught.value)
        assert error.code is grpc.StatusCode.NOT_FOUND
        assert (error.reason, error.metadata.get("instance_address")) == (
            "RESUME_WRONG_INSTANCE",
            holder,
        )

        # The SDK follows that answer by itself, to an instance it allows (a token
        # alone must not steer it: tests/security/test_sdk_redirect.py).
        async with (
            MediaStreamClient(other, allowed_instances=[holder]) as wrong_client,
            wrong_client.listen(
                call_id=TONE_CALL_ID, format=AudioFormat.SLIN, resume_token=token
            ) as resumed,
        ):
            assert resumed.info is not None and resumed.info.resumed
            assert resumed.info.stream_id == stream.info.stream_id
            async for chunk in resumed.audio():
                assert len(chunk.data) == 320
                break
