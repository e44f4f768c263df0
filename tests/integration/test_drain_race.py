"""A drain that comes while a stream's leg is still being made in Asterisk."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mediastream import metrics
from mediastream.core.stream import StopReason
from mediastream.emulator import TONE_CALL_ID
from mediastream_client import MediaStreamClient, RPCError
from tests.harness import Harness


async def test_a_stream_drained_while_its_leg_is_made_is_undone(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = harness.gateway.streams
    legs = manager._legs
    original = legs.open
    entered, go_on = asyncio.Event(), asyncio.Event()

    async def slow_open(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await go_on.wait()
        return await original(*args, **kwargs)

    monkeypatch.setattr(legs, "open", slow_open)
    active = metrics.STREAMS_ACTIVE.labels("call", "rtp", "sln", "listen")
    before = active._value.get()
    # No retry: a retried open would find the gateway serving (close_all is no drain).
    async with MediaStreamClient(harness.grpc, open_retries=0) as client:
        stream = client.listen(call_id=TONE_CALL_ID)
        opening = asyncio.create_task(stream.__aenter__())
        await entered.wait()
        await manager.close_all(StopReason.SERVER_SHUTDOWN, "drain")
        go_on.set()
        with pytest.raises(RPCError) as caught:
            await opening
    assert caught.value.reason == "DRAINING"
    assert manager.streams == {}
    assert manager._counts._counts == {}  # type: ignore[attr-defined]  # released once
    assert active._value.get() == before  # never counted as active
    assert await harness.leftovers() == []  # the leg made after the drain was removed
