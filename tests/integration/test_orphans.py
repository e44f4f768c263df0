"""A gateway killed mid-stream leaves objects in Asterisk; the next start removes them."""

from __future__ import annotations

import asyncio
import os
import signal

from mediastream.emulator import TONE_CALL_ID, Emulator, EmulatorConfig
from mediastream_client import MediaStreamClient, Transport
from tests.conftest import start_gateway, stop_gateway

GATEWAY_CHANNELS = ("UnicastRTP/", "AudioSocket/", "WebSocket/", "Snoop/")


def gateway_objects(emulator: Emulator) -> list[str]:
    pbx = emulator.pbx
    return [
        c.name
        for c in pbx.channels.values()
        if not c.hung_up and c.name.startswith(GATEWAY_CHANNELS)
    ] + [b.name for b in pbx.bridges.values() if b.name.startswith("mediastream-")]


async def test_sigkill_then_restart_removes_the_orphans() -> None:
    emulator = Emulator(EmulatorConfig(demo=True))
    await emulator.start()
    env = {"MEDIASTREAM_ARI_URL": emulator.ari_url}
    try:
        gw = await asyncio.to_thread(start_gateway, env=env)
        async with MediaStreamClient(gw.grpc) as client:
            for transport in Transport:
                stream = client.listen(call_id=TONE_CALL_ID, transport=transport)
                await stream.__aenter__()
            assert len(gateway_objects(emulator)) == 9  # 3 snoops, 3 externalMedia, 3 bridges
            os.kill(gw.process.pid, signal.SIGKILL)
            await asyncio.to_thread(gw.process.wait, 10)
        await asyncio.sleep(0.3)
        left = gateway_objects(emulator)
        assert left, "a killed gateway should have left its objects behind"
        gw2 = await asyncio.to_thread(start_gateway, env=env)
        try:
            assert gateway_objects(emulator) == []
        finally:
            await asyncio.to_thread(stop_gateway, gw2)
    finally:
        await emulator.stop()
