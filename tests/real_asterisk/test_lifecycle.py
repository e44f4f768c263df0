"""DTMF both ways, marks and clear, every stop reason, Asterisk going away, churn."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable

import aiohttp
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mediastream_client import (
    AudioFormat,
    Cleared,
    Direction,
    MarkPlayed,
    RPCError,
    StopReason,
    Transport,
)
from tests.audio_checks import sine, tone_level
from tests.real_asterisk.conftest import (
    TRANSPORTS,
    Backend,
    RunningGateway,
    gateway_objects,
    running_gateway,
)
from tests.real_asterisk.media import (
    HEARD,
    NOT_HEARD,
    TALK_HZ,
    TONE_LEVEL,
    collect_digits,
    record,
    samples_of,
    until_stopped,
)
from tests.real_asterisk.platform import Platform

SERVICE = "voipbin.mediastream.v1.MediaStreamService"
FRAME = 320  # 20 ms of 8 kHz slin


async def talking_echo_call(platform: Platform) -> str:
    # An echo call bridged to a 440 Hz peer: frames flow to the call whatever the gateway
    # does, so these tests measure marks, clear and DTMF, not the talk path (test_talk.py).
    call = await platform.stasis_call("echo")
    await platform.bridge(call, await platform.stasis_call("tone"))
    return call


async def serving(gw: RunningGateway) -> bool:
    async with grpc.aio.insecure_channel(gw.endpoints.grpc) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE)
        )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def wait_health(gw: RunningGateway, want: bool, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await serving(gw) != want:
        assert time.monotonic() < deadline, f"health did not become {want} in {timeout} s"
        await asyncio.sleep(0.1)


async def no_leftovers(platform: Platform, wait: float = 5.0) -> list[str]:
    """What the gateway made and Asterisk still holds, after ``wait`` s for it to go."""
    deadline = time.monotonic() + wait
    while (left := await gateway_objects(platform)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return left


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.value)
async def test_dtmf_from_the_call(
    backend: Backend, gw: RunningGateway, platform: Platform, transport: Transport
) -> None:
    call = await platform.stasis_call("dtmf")
    async with gw.client() as client, client.listen(call_id=call, transport=transport) as s:
        assert await collect_digits(s, 3) == ["1", "2", "#"]


async def test_dtmf_to_the_call(backend: Backend, gw: RunningGateway, platform: Platform) -> None:
    # The gateway plays the client's digits in-band (server/mediastream/streams.py,
    # send_dtmf): the call hears the two tones of `4` (770 + 1209 Hz), which its echo sends
    # back to the client listening `in`.
    call = await talking_echo_call(platform)
    heard = bytearray()
    async with (
        gw.client() as client,
        client.stream(call_id=call, format=AudioFormat.SLIN, direction=Direction.IN) as stream,
    ):
        await stream.send_dtmf("4", duration_ms=1500)
        async with asyncio.timeout(15):
            async for chunk in stream.audio():
                heard += chunk.data
                if len(heard) >= 2 * 8000 * 2:
                    break
    samples = samples_of(bytes(heard), AudioFormat.SLIN)
    window = samples[int(0.6 * 8000) : int(1.5 * 8000)]
    assert tone_level(window, 8000, 770) > NOT_HEARD
    assert tone_level(window, 8000, 1209) > NOT_HEARD
    assert tone_level(window, 8000, 852) < NOT_HEARD  # not a `7`


async def test_mark_reports_its_position_when_played(
    backend: Backend, gw: RunningGateway, platform: Platform
) -> None:
    call = await talking_echo_call(platform)
    tone = sine(TALK_HZ, 1.0, 8000)
    async with (
        gw.client() as client,
        client.stream(call_id=call, format=AudioFormat.SLIN) as stream,
    ):
        # All at once: the gateway paces what it plays at one frame per 20 ms.
        for i in range(0, len(tone), FRAME):
            await stream.send(tone[i : i + FRAME])
        await stream.mark("end")
        sent = time.monotonic()
        mark = None
        async with asyncio.timeout(10):
            async for event in stream:
                if isinstance(event, MarkPlayed):
                    mark = event
                    break
        took = time.monotonic() - sent
    assert mark is not None and (mark.name, mark.position_ms) == ("end", 1000)
    # Played in real time: not before the second of audio had time to play.
    assert took > 0.9


async def test_clear_cuts_the_audio_on_the_call(
    backend: Backend, gw: RunningGateway, platform: Platform
) -> None:
    call = await talking_echo_call(platform)
    tone = sine(TALK_HZ, 4.0, 8000)
    heard = bytearray()
    cleared = None
    async with (
        gw.client() as client,
        client.stream(call_id=call, format=AudioFormat.SLIN, direction=Direction.IN) as stream,
    ):
        for i in range(0, len(tone), FRAME):
            await stream.send(tone[i : i + FRAME])
        await stream.mark("never")
        chunks = 0
        async with asyncio.timeout(15):
            async for event in stream:
                if isinstance(event, Cleared):
                    cleared = event
                elif isinstance(event, MarkPlayed):
                    pytest.fail("a cleared mark was reported")
                elif hasattr(event, "data"):
                    chunks += 1
                    heard += event.data  # type: ignore[union-attr]
                    if chunks == 75:  # 1.5 s in: cut
                        await stream.clear()
                    if chunks == 175:
                        break
    assert cleared is not None and cleared.dropped_marks == ("never",)
    samples = samples_of(bytes(heard), AudioFormat.SLIN)
    before = samples[int(0.8 * 8000) : int(1.4 * 8000)]
    # What the echo sends back lags the cut by the path's latency (measured < 200 ms).
    after = samples[int(2.1 * 8000) :]
    assert tone_level(before, 8000, TALK_HZ) > HEARD
    assert tone_level(after, 8000, TALK_HZ) < NOT_HEARD, "audio after the cut was heard"


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.value)
async def test_hangup_ends_the_stream_call_hangup(
    backend: Backend, gw: RunningGateway, platform: Platform, transport: Transport
) -> None:
    call = await platform.stasis_call("tone")
    async with gw.client() as client, client.listen(call_id=call, transport=transport) as s:
        await asyncio.sleep(0.5)
        await platform.hangup(call)
        stopped = await until_stopped(s)
    assert stopped.reason is StopReason.CALL_HANGUP
    assert await no_leftovers(platform) == []


async def test_conference_deleted_ends_the_stream(
    backend: Backend, gw: RunningGateway, platform: Platform
) -> None:
    bridge = await platform.bridge(await platform.stasis_call("tone"))
    async with gw.client() as client, client.listen(conference_id=bridge) as s:
        await asyncio.sleep(0.5)
        await platform.request("DELETE", f"/bridges/{bridge}")
        stopped = await until_stopped(s)
    assert stopped.reason is StopReason.CONFERENCE_ENDED
    assert await no_leftovers(platform) == []


@pytest.mark.parametrize("target", ["call_id", "conference_id"])
async def test_unknown_ids_are_not_found(backend: Backend, gw: RunningGateway, target: str) -> None:
    async with gw.client() as client:
        with pytest.raises(RPCError) as caught:
            async with client.listen(**{target: "1795515126.1745"}) as s:  # type: ignore[arg-type]
                async for _ in s:
                    pass
    assert caught.value.code is grpc.StatusCode.NOT_FOUND


async def test_two_streams_on_one_call_and_client_done_leaves_nothing(
    backend: Backend, gw: RunningGateway, platform: Platform
) -> None:
    call = await platform.stasis_call("tone")
    async with gw.client() as client:
        one, two = await asyncio.gather(
            record(client, 0.5, call_id=call, transport=Transport.RTP),
            record(client, 0.5, call_id=call, transport=Transport.AUDIOSOCKET),
        )
    assert tone_level(one, 8000, 440) > TONE_LEVEL
    assert tone_level(two, 8000, 440) > TONE_LEVEL
    assert await no_leftovers(platform) == []
    # The platform's call is untouched by the gateway's leaving.
    assert (await platform.request("GET", f"/channels/{call}"))["state"] == "Up"


@pytest.mark.settings(max_streams_per_target=50)
async def test_churn_of_100_streams_with_abrupt_exits_leaves_nothing(
    backend: Backend, gw: RunningGateway, platform: Platform
) -> None:
    calls = [await platform.stasis_call(kind) for kind in ("tone", "echo", "tone880")]
    rng = np.random.default_rng(15)

    async def one(i: int) -> None:
        transport = TRANSPORTS[i % 3]
        async with gw.client() as client:
            stream_cm = client.stream(call_id=calls[i % 3], transport=transport)
            stream = await stream_cm.__aenter__()
            got = 0
            async with asyncio.timeout(30):
                async for _chunk in stream.audio():
                    got += 1
                    if got >= int(rng.integers(1, 10)):
                        break
            # Abrupt: cancel the RPC mid-stream (as a crashing client's connection drops).
            await stream.aclose()

    for start in range(0, 100, 20):
        await asyncio.gather(*(one(i) for i in range(start, start + 20)))
    left = await no_leftovers(platform, wait=15)
    kinds = collections.Counter(name.split("/")[0] if "/" in name else "bridge" for name in left)
    assert left == [], (
        f"{len(left)} left ({dict(kinds)}), {len(gw.gateway.streams.streams)} streams open;"
        f" calls {calls}; first {left[:3]}"
    )
    mine = {b["id"] for b in await platform.bridges()}
    assert mine <= set(platform.made_bridges)


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.value)
async def test_stream_on_a_call_nothing_passes_leaves_no_snoop(
    backend: Backend, gw: RunningGateway, platform: Platform, transport: Transport
) -> None:
    # An echo call alone in Stasis with a listen-only stream: nothing is written to it, so
    # nothing comes back from it either, and Asterisk can finish hanging the snoop up only
    # once a frame passes the call (main/audiohook.c, ast_audiohook_detach): the gateway
    # has to make one pass. The emulator keeps such a snoop the same way.
    call = await platform.stasis_call("echo")
    async with gw.client() as client, client.listen(call_id=call, transport=transport) as s:
        got = 0
        async with asyncio.timeout(10):
            async for _chunk in s.audio():
                got += 1
                if got == 10:
                    break
    assert await no_leftovers(platform, wait=10) == []
    assert (await platform.request("GET", f"/channels/{call}"))["state"] == "Up"


async def test_a_tone_call_alone_is_not_heard_two_way(
    backend: Backend, gw: RunningGateway, platform: Platform
) -> None:
    # A limit of Local channels, not of the gateway: a two-way stream starts ARI's silence
    # generator on a call alone in Stasis (so that the client is heard), and Asterisk passes
    # no voice frame between the halves of a Local pair while both have a generator
    # (main/core_unreal.c, unreal_queue_frame) - here the ;2 half's Playtones. A listen-only
    # stream of the same call hears the tone. The emulator does the same.
    call = await platform.stasis_call("tone")
    await asyncio.sleep(1.0)
    async with gw.client() as client:
        listened = await record(client, 0.6, call_id=call)
        two_way = bytearray()
        async with client.stream(call_id=call, format=AudioFormat.SLIN) as stream:
            async with asyncio.timeout(10):
                async for chunk in stream.audio():
                    two_way += chunk.data
                    if len(two_way) >= 2 * 8000 * 1.2:
                        break
    assert tone_level(listened, 8000, 440) > TONE_LEVEL
    heard = samples_of(bytes(two_way), AudioFormat.SLIN)[int(0.6 * 8000) :]
    assert tone_level(heard, 8000, 440) < NOT_HEARD


# --- Asterisk going away: each on a private Asterisk ---------------------------------------


# The emulator plays these too: it stops as `core stop now` does (every channel soft-hung
# with cause 4, then ARI closes) and dies as `kill -9` does (sockets drop, no events).


async def test_core_stop_now_ends_streams_asterisk_failure(
    own_backend: Callable[..., Awaitable[Backend]],
) -> None:
    backend = await own_backend()
    async with running_gateway(backend) as gw, backend.platform() as platform:
        call = await platform.stasis_call("tone")
        async with gw.client() as client, client.listen(call_id=call) as s:
            await asyncio.sleep(0.5)
            stopper = asyncio.create_task(backend.stop())
            with pytest.raises(RPCError) as caught:
                await until_stopped(s)
            await stopper
        assert (caught.value.code, caught.value.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "ASTERISK_FAILURE",
        )
        with contextlib.suppress(Exception):
            await platform.close(hang_up=False)


async def test_kill_9_then_restart_health_and_new_streams(
    own_backend: Callable[..., Awaitable[Backend]],
) -> None:
    backend = await own_backend()
    async with running_gateway(backend) as gw:
        async with backend.platform() as platform:
            call = await platform.stasis_call("tone")
            async with gw.client() as client, client.listen(call_id=call) as s:
                await asyncio.sleep(0.5)
                await backend.kill()
                with pytest.raises(RPCError) as caught:
                    await until_stopped(s)
            assert (caught.value.code, caught.value.reason) == (
                grpc.StatusCode.UNAVAILABLE,
                "ASTERISK_FAILURE",
            )
            with contextlib.suppress(Exception):
                await platform.close(hang_up=False)
        await wait_health(gw, False, 10)
        await backend.start()  # same ARI port: the gateway reconnects
        await wait_health(gw, True, 20)
        async with backend.platform() as platform:
            call = await platform.stasis_call("tone")
            await asyncio.sleep(1.0)  # the ;2 half's Playtones starts ~0.5 s after Answer()
            async with gw.client() as client:
                samples = await record(client, 0.5, call_id=call)
            assert tone_level(samples, 8000, 440) > TONE_LEVEL
            await platform.hangup(call)
            assert await no_leftovers(platform) == []


async def test_health_and_new_streams_across_a_restart(
    own_backend: Callable[..., Awaitable[Backend]],
) -> None:
    backend = await own_backend()
    async with running_gateway(backend) as gw:
        await wait_health(gw, True, 10)
        await backend.stop()
        await wait_health(gw, False, 10)
        await backend.start()
        await wait_health(gw, True, 20)
        async with backend.platform() as platform:
            for transport in TRANSPORTS:
                call = await platform.stasis_call("tone")
                await asyncio.sleep(1.0)  # the ;2 half's Playtones starts ~0.5 s after Answer()
                async with gw.client() as client:
                    samples = await record(client, 0.5, call_id=call, transport=transport)
                assert tone_level(samples, 8000, 440) > TONE_LEVEL


# --- The WebSocket endpoints and the page's API with Asterisk's own IDs ---------------------


@pytest.mark.parametrize("kind", ["calls", "conferences"])
async def test_websocket_endpoint_reaches_asterisk_style_ids(
    backend: Backend, gw: RunningGateway, platform: Platform, kind: str
) -> None:
    # A platform that keeps Asterisk's own uniqueids (`1795515126.1745`) and bridge ids.
    # In a bridge of the platform's (with a silent peer for a call): the endpoint's stream is
    # two-way, and ARI's silence generator on a Local call alone in Stasis would stop its
    # far end's Playtones reaching it (test_a_tone_call_alone_is_not_heard_two_way).
    call = await platform.stasis_call("tone", channel_id=None)
    target = call
    bridge_id = f"{time.time():.0f}.{id(call) % 9999}"
    if kind == "conferences":
        target = await platform.bridge(call, bridge_id=bridge_id)
    else:
        await platform.bridge(call, await platform.stasis_call("silent"), bridge_id=bridge_id)
    await asyncio.sleep(1.0)  # the ;2 half's Playtones starts ~0.5 s after Answer()
    url = f"http://{gw.ws_url}/v1.0/{kind}/{target}/media_stream?encapsulation=sln&format=slin"
    payload = bytearray()
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        while len(payload) < 8000 * 2 * 1.2:
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.BINARY, msg
            payload += msg.data
    samples = samples_of(bytes(payload), AudioFormat.SLIN)[int(0.6 * 8000) :]
    assert tone_level(samples, 8000, 440) > TONE_LEVEL
