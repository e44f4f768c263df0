"""The client's audio is heard on a bridged call over the WebSocket dialects too.

The WebSocket endpoints (VoIPBIN's ``media_stream``, the Twilio dialect) open the same
two-way streams as gRPC, on the transport the gateway is configured with (``transport``).
The call is ``Local/echo@default/n`` as in test_talk: what the call heard comes back as what
it reads, and both dialects hear the call as a whole (spy ``both``), so a client hearing its
own 1 kHz tone proves the call heard it. A call alone in a bridge, or bridged to a silent
leg, is written nothing by Asterisk: it hears the client only through the gateway's bridge
keeper (server/mediastream/asterisk/legs.py, ``LegFactory._keep``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest

from mediastream.core.g711 import ulaw_decode, ulaw_encode
from mediastream.core.stream import Transport as GatewayTransport
from mediastream_client import Transport
from tests.audio_checks import pcm16, sine, tone_level
from tests.real_asterisk.conftest import TRANSPORTS, Backend, running_gateway
from tests.real_asterisk.media import HEARD, SETTLE_S, TALK_HZ
from tests.real_asterisk.platform import Platform

log = logging.getLogger(__name__)

RATE = 8000
FRAME = RATE // 50 * 2
"""20 ms of 8 kHz slin, in bytes."""

DIALECTS = ("media_stream", "twilio")

BRIDGED = ("bridge-alone", "bridge-silent-peer")


async def _bridged_call(platform: Platform, topology: str) -> str:
    call = await platform.stasis_call("echo")
    peers = [await platform.stasis_call("silent")] if topology == "bridge-silent-peer" else []
    await platform.bridge(call, *peers)
    return call


async def ws_talk(
    ws_base: str, call: str, dialect: str, seconds: float = 2.0
) -> npt.NDArray[np.float64]:
    """Speak 1 kHz over a dialect's WebSocket and return what came back (settle dropped)."""
    tone = sine(TALK_HZ, seconds, RATE)
    if dialect == "twilio":
        url, params = f"{ws_base}/v1.0/calls/{call}/twilio", {}
    else:
        # slin both ways, bare samples: the same bytes as gRPC's slin.
        url = f"{ws_base}/v1.0/calls/{call}/media_stream"
        params = {"encapsulation": "sln", "format": "slin"}
    got = bytearray()
    async with aiohttp.ClientSession() as http, http.ws_connect(url, params=params) as ws:

        async def speak() -> None:
            for i in range(0, len(tone), FRAME):
                frame = tone[i : i + FRAME]
                if dialect == "twilio":
                    payload = base64.b64encode(ulaw_encode(frame)).decode()
                    await ws.send_str(json.dumps({"event": "media", "media": {"payload": payload}}))
                else:
                    await ws.send_bytes(frame)
                # Paced a little ahead of real time: the gateway plays at the call's clock.
                await asyncio.sleep(0.018)

        speaker = asyncio.create_task(speak())
        want = int((seconds + SETTLE_S) * RATE) * 2
        try:
            async with asyncio.timeout(seconds + 10):
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        got += msg.data
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        event = json.loads(msg.data)
                        if event.get("event") == "media":
                            got += ulaw_decode(base64.b64decode(event["media"]["payload"]))
                    else:
                        break
                    if len(got) >= want:
                        break
        finally:
            speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await speaker
    return pcm16(bytes(got))[int(SETTLE_S * RATE) :]


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.value)
@pytest.mark.parametrize("topology", BRIDGED)
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_client_audio_is_heard_on_a_bridged_call_over_a_dialect(
    backend: Backend,
    platform: Platform,
    dialect: str,
    topology: str,
    transport: Transport,
) -> None:
    assert backend.supports(transport) is None
    call = await _bridged_call(platform, topology)
    async with running_gateway(backend, transport=GatewayTransport(transport.value)) as gw:
        base = gw.ws_url if "://" in gw.ws_url else f"ws://{gw.ws_url}"
        heard = await ws_talk(base, call, dialect)
    level = tone_level(heard, RATE, TALK_HZ)
    log.info(
        "measured %s %s %s %s: 1 kHz at %.0f",
        backend.release,
        dialect,
        topology,
        transport.value,
        level,
    )
    assert level > HEARD, f"the call heard the client at {level:.0f} ({dialect}, {topology})"
