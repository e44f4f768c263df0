"""Two gateway instances behind one address, as on Kubernetes.

Both instances share one Asterisk (the emulator), each with its own Stasis app
and its own advertised address; a round-robin TCP balancer with readiness
probes (tests/loadbalancer.py) stands in for the Service in front of them.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from mediastream.emulator import TONE_CALL_ID, Emulator, EmulatorConfig
from mediastream_client import AudioFormat, MediaStreamClient, RPCError, Stopped, StopReason
from mediastream_client._proto import mediastream_pb2 as pb
from mediastream_client._proto import mediastream_pb2_grpc as pb_grpc
from tests.conftest import RunningGateway, start_gateway, stop_gateway
from tests.harness import GATEWAY_CHANNELS, own_connection
from tests.loadbalancer import LoadBalancer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    emulator: Emulator
    gateways: list[RunningGateway]
    lb: LoadBalancer

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
        lb = LoadBalancer([g.grpc for g in gateways])
        await lb.start()
        try:
            yield Cluster(emulator, gateways, lb)
        finally:
            await lb.stop()
    finally:
        for gw in gateways:
            await asyncio.to_thread(stop_gateway, gw)
        await emulator.stop()


async def test_streams_spread_and_each_resume_reaches_its_instance(cluster: Cluster) -> None:
    clients = [own_connection(cluster.lb.address) for _ in range(2)]
    streams = [c.listen(call_id=TONE_CALL_ID, auto_resume=True) for c in clients]
    try:
        for s in streams:
            await s.__aenter__()
        holders = [s.info.instance_address for s in streams if s.info is not None]
        # One connection each, round robin: one stream on each instance.
        assert sorted(holders) == sorted(cluster.addresses)
        seqs: list[list[int]] = [[], []]

        async def read(i: int) -> None:
            async for chunk in streams[i].audio():
                seqs[i].append(chunk.sequence_number)
                if len(seqs[i]) == 100:
                    return

        readers = [asyncio.create_task(read(i)) for i in range(2)]
        while min(len(s) for s in seqs) < 25:
            await asyncio.sleep(0.02)
        cluster.lb.drop_connections()  # both clients lose their connection at once
        await asyncio.wait_for(asyncio.gather(*readers), 15)
        for i, s in enumerate(streams):
            assert seqs[i] == list(range(100)), "audio continues with no chunk lost"
            assert s.resumes >= 1
            assert s.info is not None and s.info.resumed
            assert s.info.instance_address == holders[i]
    finally:
        for s in streams:
            await s.aclose()
        for c in clients:
            await c.close()
            await c._channel.close()


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


async def test_drain_moves_new_streams_to_the_other_instance(cluster: Cluster) -> None:
    draining, staying = cluster.gateways
    async with (
        MediaStreamClient(draining.grpc) as client,
        client.listen(call_id=TONE_CALL_ID) as old,
    ):
        assert old.info is not None and old.info.instance_address == draining.grpc
        draining.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            while draining.grpc in cluster.lb.ready:
                await asyncio.sleep(0.05)
        # New streams, each on a connection of its own, all land on the other instance.
        landed = []
        for _ in range(4):
            c = own_connection(cluster.lb.address)
            try:
                async with c.listen(call_id=TONE_CALL_ID) as s:
                    assert s.info is not None
                    landed.append(s.info.instance_address)
            finally:
                await c.close()
            await c._channel.close()
        assert landed == [staying.grpc] * 4
        # The stream on the draining instance gets drain_timeout_s, then a clear end.
        last = None
        async with asyncio.timeout(10):
            async for event in old.events():
                last = event
        assert isinstance(last, Stopped) and last.reason is StopReason.SERVER_SHUTDOWN
    assert await asyncio.to_thread(draining.process.wait, 10) == 0
    await asyncio.sleep(0.3)
    assert cluster.objects_of("mediastream-a") == []
