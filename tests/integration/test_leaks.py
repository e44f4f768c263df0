"""200 streams through each exit path leave nothing of the gateway's in Asterisk."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from mediastream.emulator import ECHO_CALL_ID, TONE_CALL_ID
from mediastream_client import AudioFormat, StopReason, Transport
from tests.harness import Harness

STREAMS = 200
CONCURRENCY = 20
TRANSPORTS = itertools.cycle(list(Transport))


async def run_all(job: Callable[[int], Awaitable[StopReason | None]]) -> list[StopReason | None]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> StopReason | None:
        async with gate:
            return await job(i)

    return await asyncio.gather(*(one(i) for i in range(STREAMS)))


async def first_audio(stream) -> None:  # type: ignore[no-untyped-def]
    async for _ in stream.audio():
        return


@pytest.mark.slow
@pytest.mark.settings(max_streams_per_target=STREAMS)
async def test_client_cancel(harness: Harness) -> None:
    async def job(i: int) -> None:
        async with (
            harness.client() as client,
            client.listen(call_id=TONE_CALL_ID, transport=next(TRANSPORTS)) as stream,
        ):
            await first_audio(stream)

    await run_all(job)
    assert await harness.leftovers(wait=10) == []


@pytest.mark.slow
@pytest.mark.settings(max_streams_per_target=STREAMS)
async def test_client_done(harness: Harness) -> None:
    async def job(i: int) -> StopReason | None:
        async with (
            harness.client() as client,
            client.stream(
                call_id=ECHO_CALL_ID, format=AudioFormat.SLIN, transport=next(TRANSPORTS)
            ) as stream,
        ):
            await stream.send(b"\x00\x10" * 160)
            await stream.done_sending()
            async for _ in stream.events():
                pass
            return stream.stopped.reason if stream.stopped else None

    reasons = await run_all(job)
    assert set(reasons) == {StopReason.CLIENT_DONE}
    assert await harness.leftovers(wait=10) == []


@pytest.mark.slow
async def test_call_hangup(harness: Harness) -> None:
    async def job(i: int) -> StopReason | None:
        call_id = harness.emulator.add_call("tone")
        async with (
            harness.client() as client,
            client.listen(call_id=call_id, transport=next(TRANSPORTS)) as stream,
        ):
            await first_audio(stream)
            harness.emulator.hangup(call_id)
            async for _ in stream.events():
                pass
            return stream.stopped.reason if stream.stopped else None

    reasons = await run_all(job)
    assert set(reasons) == {StopReason.CALL_HANGUP}
    assert await harness.leftovers(wait=10) == []


@pytest.mark.slow
async def test_conference_end(harness: Harness) -> None:
    auth = aiohttp.encode_basic_auth("asterisk", "asterisk")
    async with aiohttp.ClientSession(headers={"Authorization": auth}) as ari:

        async def job(i: int) -> StopReason | None:
            async with ari.post(
                f"{harness.ari_url}/bridges", params={"type": "mixing", "name": f"conf-{i}"}
            ) as r:
                bridge_id = (await r.json())["id"]
            async with (
                harness.client() as client,
                client.listen(conference_id=bridge_id, transport=next(TRANSPORTS)) as stream,
            ):
                harness.emulator.end_conference(bridge_id)
                async for _ in stream.events():
                    pass
                return stream.stopped.reason if stream.stopped else None

        reasons = await run_all(job)
    assert set(reasons) == {StopReason.CONFERENCE_ENDED}
    assert await harness.leftovers(wait=10) == []
