"""A forged resume token must not steer the SDK to another address (finding 9)."""

from __future__ import annotations

import base64

import grpc
import pytest

from mediastream.emulator import TONE_CALL_ID
from mediastream_client import MediaStreamClient, RPCError
from tests.harness import Harness

EVIL = "evil.example:443"


def forged() -> str:
    instance = base64.urlsafe_b64encode(EVIL.encode()).decode().rstrip("=")
    return f"00000000-0000-4000-8000-000000000bad.AAAAAAAAAAAAAAAAAAAAAA.{instance}"


async def test_the_sdk_follows_a_redirect_only_where_allowed(harness: Harness) -> None:
    dialled: list[str] = []

    def instance_channel(address: str) -> grpc.aio.Channel:
        dialled.append(address)
        return grpc.aio.insecure_channel(harness.grpc)  # answers the same refusal again

    async with MediaStreamClient(harness.grpc, instance_channel=instance_channel) as client:
        with pytest.raises(RPCError) as err:
            async with client.listen(call_id=TONE_CALL_ID, resume_token=forged()):
                pass
        assert (err.value.reason, err.value.metadata) == (
            "RESUME_WRONG_INSTANCE",
            {"instance_address": EVIL},
        )
        assert dialled == [], "the SDK dialled an address only a token named"

    async with MediaStreamClient(
        harness.grpc, instance_channel=instance_channel, allowed_instances=[EVIL]
    ) as client:
        with pytest.raises(RPCError):
            async with client.listen(call_id=TONE_CALL_ID, resume_token=forged()):
                pass
        assert dialled == [EVIL], "an allowed instance is followed"
