"""Where the Python SDK sends a resume when the gateway runs behind a load balancer."""

from __future__ import annotations

import grpc

from mediastream_client import MediaStreamClient


async def test_a_client_on_its_own_channel_dials_no_instance_unless_told_how() -> None:
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    try:
        # Its channel's credentials are unknown: a plaintext dial could leak the token.
        client = MediaStreamClient(channel=channel, token="secret")
        assert client._stub_for("10.0.0.7:50051") is client._stub
        dialled: list[str] = []

        def dial(address: str) -> grpc.aio.Channel:
            dialled.append(address)
            return grpc.aio.insecure_channel(address)

        told = MediaStreamClient(channel=channel, instance_channel=dial)
        stub = told._stub_for("10.0.0.7:50051")
        assert stub is not told._stub and dialled == ["10.0.0.7:50051"]
        assert told._stub_for("10.0.0.7:50051") is stub  # one channel per instance
        await told.close()
    finally:
        await channel.close()


async def test_instances_are_dialled_like_the_client_and_only_for_an_address() -> None:
    async with MediaStreamClient("gateway.example:50051") as client:
        assert client._stub_for("") is client._stub
        assert client._stub_for("10.0.0.7:50051") is not client._stub
        assert set(client._instances) == {"10.0.0.7:50051"}
    assert client._instances == {}
