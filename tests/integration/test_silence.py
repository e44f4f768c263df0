"""Two-way call streams keep frames flowing to the call.

Real Asterisk mixes a snoop's whisper only into frames written to the call; a
call in Stasis that nothing writes to gets ARI's silence generator for as long
as a two-way stream is open, and not while it is in a bridge (a generator makes
``ast_write`` drop the bridge's frames): there the gateway keeps a silent member
of its own in the call's bridge instead (the bridge keeper). Listen-only streams
change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest

from mediastream.emulator import TONE_CALL_ID
from mediastream_client import AudioFormat, RPCError
from tests.emulator.conftest import Ari
from tests.harness import Harness

PLATFORM = "platform"


@contextlib.asynccontextmanager
async def platform(harness: Harness) -> AsyncIterator[Ari]:
    """A platform's own Stasis app on the emulator, holding its calls."""
    ari = Ari(harness.emulator.ari_url, app=PLATFORM)
    await ari.start()
    try:
        yield ari
    finally:
        await ari.close()


def generating(harness: Harness, call_id: str) -> bool:
    return harness.emulator.pbx.channels[call_id].generating


async def until(predicate: object, timeout: float = 3.0) -> None:
    # Generous: a loaded machine; the state changes within one ARI round trip.
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_silence_while_two_way_streams_are_open_counted_per_call(harness: Harness) -> None:
    async with platform(harness) as ari, harness.client() as client:
        call = (await ari.originate("echo"))["id"]
        async with client.listen(call_id=call, format=AudioFormat.SLIN):
            await asyncio.sleep(0.3)
            assert not generating(harness, call), "a listen-only stream changes nothing"
        first = client.stream(call_id=call, format=AudioFormat.SLIN)
        second = client.stream(call_id=call, format=AudioFormat.SLIN)
        await first.__aenter__()
        await until(lambda: generating(harness, call))
        await second.__aenter__()
        await first.aclose()
        await asyncio.sleep(0.3)
        assert generating(harness, call), "the second stream still needs it"
        await second.aclose()
        await until(lambda: not generating(harness, call))


async def test_no_silence_while_the_call_is_in_a_bridge(harness: Harness) -> None:
    async with platform(harness) as ari, harness.client() as client:
        call = (await ari.originate("echo"))["id"]
        async with client.stream(call_id=call, format=AudioFormat.SLIN):
            await until(lambda: generating(harness, call))
            bridge = await ari.ok("POST", "/bridges", type="mixing")
            await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=call)
            await until(lambda: not generating(harness, call))
            await ari.ok("POST", f"/bridges/{bridge['id']}/removeChannel", channel=call)
            await until(lambda: generating(harness, call))
            await ari.ok("DELETE", f"/bridges/{bridge['id']}")


async def test_a_call_running_dialplan_gets_no_generator_and_the_stream_goes_on(
    harness: Harness,
) -> None:
    async with harness.client() as client:
        stream = client.stream(call_id=TONE_CALL_ID, format=AudioFormat.SLIN)
        async with stream:
            got = 0
            async for chunk in stream.audio():
                got += len(chunk.data)
                if got >= 8000:
                    break
    assert not generating(harness, TONE_CALL_ID)


@pytest.mark.leaves_streams
async def test_asterisk_shutdown_ends_a_two_way_stream_as_asterisk_failure(
    harness: Harness,
) -> None:
    async with harness.client() as client:
        stream = client.stream(call_id=TONE_CALL_ID, format=AudioFormat.SLIN)
        await stream.__aenter__()
        await asyncio.sleep(0.2)
        await harness.emulator.stop()  # soft hangups with cause 4 first, as `core stop now`
        with pytest.raises(RPCError) as err:
            async with asyncio.timeout(10):
                async for _ in stream.events():
                    pass
        assert (err.value.code, err.value.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "ASTERISK_FAILURE",
        )
        assert "shutting down" in err.value.message


async def members(ari: Ari, bridge_id: str) -> list[str]:
    bridge = await ari.ok("GET", f"/bridges/{bridge_id}")
    return list(bridge["channels"])


async def until_members(ari: Ari, bridge_id: str, count: int, timeout: float = 3.0) -> list[str]:
    # Generous: a loaded machine; the keeper is added within a few ARI round trips.
    async with asyncio.timeout(timeout):
        while len(got := await members(ari, bridge_id)) != count:
            await asyncio.sleep(0.02)
    return got


async def test_a_keeper_joins_the_bridge_of_a_call_with_two_way_streams(harness: Harness) -> None:
    # Asterisk writes nothing to a call alone in a bridge (or bridged to a silent leg), so
    # the gateway keeps one silent member of its own in that bridge, shared per bridge.
    async with platform(harness) as ari, harness.client() as client:
        call = (await ari.originate("echo"))["id"]
        other = (await ari.originate("echo"))["id"]
        bridge = (await ari.ok("POST", "/bridges", type="mixing"))["id"]
        await ari.ok("POST", f"/bridges/{bridge}/addChannel", channel=f"{call},{other}")
        await until_members(ari, bridge, 2)
        async with client.listen(call_id=call, format=AudioFormat.SLIN):
            await asyncio.sleep(0.3)
            assert len(await members(ari, bridge)) == 2, "a listen-only stream adds nothing"
        first = client.stream(call_id=call, format=AudioFormat.SLIN)
        await first.__aenter__()
        keeper = set(await until_members(ari, bridge, 3)) - {call, other}
        assert not generating(harness, call), "no generator in a bridge"
        second = client.stream(call_id=other, format=AudioFormat.SLIN)
        await second.__aenter__()
        await asyncio.sleep(0.3)
        assert set(await members(ari, bridge)) - {call, other} == keeper, "one per bridge"
        await first.aclose()
        await asyncio.sleep(0.3)
        assert len(await members(ari, bridge)) == 3, "the second stream still needs it"
        await second.aclose()
        await until_members(ari, bridge, 2)
        (keeper_id,) = keeper
        channels = {c["id"] for c in await ari.ok("GET", "/channels")}
        assert keeper_id not in channels, "the keeper is hung up, not left in Stasis"


async def test_the_keeper_follows_the_call_from_bridge_to_bridge(harness: Harness) -> None:
    async with platform(harness) as ari, harness.client() as client:
        call = (await ari.originate("echo"))["id"]
        first = (await ari.ok("POST", "/bridges", type="mixing"))["id"]
        second = (await ari.ok("POST", "/bridges", type="mixing"))["id"]
        async with client.stream(call_id=call, format=AudioFormat.SLIN):
            await until(lambda: generating(harness, call))
            await ari.ok("POST", f"/bridges/{first}/addChannel", channel=call)
            await until_members(ari, first, 2)
            await ari.ok("POST", f"/bridges/{first}/removeChannel", channel=call)
            await until_members(ari, first, 0)
            await until(lambda: generating(harness, call))
            await ari.ok("POST", f"/bridges/{second}/addChannel", channel=call)
            await until_members(ari, second, 2)
        await until_members(ari, second, 1)
        for bridge in (first, second):
            await ari.ok("DELETE", f"/bridges/{bridge}")
