"""Resume after a dropped connection, and the page's API with Asterisk's own IDs.

The same scenarios on every release and on the emulator, with the same outcome.
"""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import numpy as np
import pytest

from mediastream_client import AudioFormat, MediaStreamClient, Transport
from tests.audio_checks import tone_level
from tests.real_asterisk.conftest import TRANSPORTS, Backend, RunningGateway, gateway_objects
from tests.real_asterisk.media import HEARD, TALK_HZ, TONE_LEVEL, samples_of
from tests.real_asterisk.platform import Platform
from tests.sdk.test_python_sdk import CuttableProxy

ASTERISK_ID = re.compile(r"^\d+\.\d+$")
"""Asterisk's own uniqueid, e.g. ``1795515126.1745``."""


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.value)
@pytest.mark.settings(resume_grace_s=5.0)
async def test_resume_after_a_dropped_connection_continues_the_audio(
    backend: Backend, gw: RunningGateway, platform: Platform, transport: Transport
) -> None:
    # The client's connection is cut (as a network drop would) after 25 chunks; the SDK
    # resumes with the stream's token and the last sequence number it got, and the call's
    # audio continues with no sequence number missing or repeated.
    assert backend.supports(transport) is None
    call = await platform.stasis_call("tone")
    proxy = CuttableProxy(gw.endpoints.grpc)
    address = await proxy.start()
    seqs: list[int] = []
    after = bytearray()
    try:
        async with (
            MediaStreamClient(address) as client,
            client.listen(
                call_id=call, format=AudioFormat.SLIN, transport=transport, auto_resume=True
            ) as stream,
        ):
            async with asyncio.timeout(30):
                async for chunk in stream.audio():
                    seqs.append(chunk.sequence_number)
                    if len(seqs) == 25:
                        proxy.cut()
                    elif len(seqs) > 25:
                        after += chunk.data
                    if len(seqs) == 100:
                        break
            assert stream.resumes == 1
    finally:
        await proxy.close()
    assert seqs == list(range(seqs[0], seqs[0] + 100)), "sequence numbers not contiguous"
    assert gw.gateway.streams.resumes == 1
    samples = samples_of(bytes(after), AudioFormat.SLIN)
    assert tone_level(samples[-8000:], 8000, 440) > TONE_LEVEL, "no call audio after resume"


async def test_page_api_with_asterisk_style_ids(
    backend: Backend, gw: RunningGateway, platform: Platform
) -> None:
    # What the page (/ui/) does, against a call the platform holds by Asterisk's own
    # uniqueid: open the stream WebSocket as the page does (sln, events=json, the ID
    # URL-encoded), see it in /v1.0/streams, talk a 1 kHz tone into an echo call and hear
    # it come back; /v1.0/demo says there is no embedded emulator behind this gateway.
    call = await platform.stasis_call("echo", channel_id=None)
    assert ASTERISK_ID.match(call), call
    base = f"http://{gw.ws_url}"
    path = f"/v1.0/calls/{call}/media_stream?encapsulation=sln&events=json"
    tone = (8000 * np.sin(2 * np.pi * TALK_HZ * np.arange(8000 * 3) / 8000)).astype("<i2")
    down = bytearray()
    async with aiohttp.ClientSession() as http:
        demo = await (await http.get(base + "/v1.0/demo")).json()
        assert demo == {"embedded": False, "calls": [], "conferences": []}
        async with http.ws_connect(base + path) as ws:
            started = json.loads((await ws.receive(timeout=10)).data)
            assert started["type"] == "started", started
            listed = await (await http.get(base + "/v1.0/streams")).json()
            [mine] = [s for s in listed["streams"] if s["stream_id"] == started["stream_id"]]
            assert (mine["kind"], mine["id"], mine["bidirectional"]) == ("call", call, True)

            async def talk() -> None:
                for i in range(0, len(tone), 160):
                    await ws.send_bytes(tone[i : i + 160].tobytes())
                    await asyncio.sleep(0.018)

            talker = asyncio.create_task(talk())
            try:
                async with asyncio.timeout(15):
                    while len(down) < 8000 * 2.5:  # µ-law: one byte a sample
                        msg = await ws.receive()
                        if msg.type is aiohttp.WSMsgType.BINARY:
                            down += msg.data
                        elif msg.type is not aiohttp.WSMsgType.TEXT:
                            raise AssertionError(f"the page's stream ended: {msg}")
            finally:
                talker.cancel()
        listed = await (await http.get(base + "/v1.0/streams")).json()
    heard = samples_of(bytes(down), AudioFormat.ULAW)[int(0.8 * 8000) :]
    assert tone_level(heard, 8000, TALK_HZ) > HEARD, "the echo call did not hear the page"
    async with asyncio.timeout(10):
        while listed["streams"]:
            await asyncio.sleep(0.1)
            async with aiohttp.ClientSession() as http:
                listed = await (await http.get(base + "/v1.0/streams")).json()
    left = await gateway_objects(platform)
    for _ in range(50):
        if not left:
            break
        await asyncio.sleep(0.1)
        left = await gateway_objects(platform)
    assert left == []
