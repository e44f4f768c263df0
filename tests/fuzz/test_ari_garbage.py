"""ARI answering garbage, end to end, through a proxy in front of the emulator.

REST answers the gateway cannot read end the stream being opened with a defined status and
leave nothing behind in Asterisk, even when Asterisk did the work and only its answer was
lost. Junk on the events WebSocket is dropped: the connection stays up, and a live stream
still learns of its call's hangup.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator

import grpc
import pytest

from mediastream.app import Gateway
from mediastream.emulator import Emulator, EmulatorConfig
from mediastream_client import MediaStreamClient, RPCError, Transport
from tests.fuzz.ari_proxy import AriProxy, Garble
from tests.fuzz.bystander import listening
from tests.harness import GATEWAY_CHANNELS, free_port_settings


@dataclasses.dataclass
class Proxied:
    gateway: Gateway
    emulator: Emulator
    proxy: AriProxy
    grpc: str

    def client(self) -> MediaStreamClient:
        return MediaStreamClient(self.grpc)

    def gateway_objects(self) -> list[str]:
        pbx = self.emulator.pbx
        channels = [
            c.name
            for c in pbx.channels.values()
            if not c.hung_up and c.name.startswith(GATEWAY_CHANNELS)
        ]
        bridges = [b.name for b in pbx.bridges.values() if b.name.startswith("mediastream-")]
        return channels + bridges

    async def leftovers(self, wait: float = 3.0) -> list[str]:
        for _ in range(int(wait / 0.05)):
            if not self.gateway_objects() and not self.gateway.streams.streams:
                break
            await asyncio.sleep(0.05)
        return self.gateway_objects() + list(self.gateway.streams.streams)


@pytest.fixture
async def proxied() -> AsyncIterator[Proxied]:
    emulator = Emulator(EmulatorConfig(port=0))
    await emulator.start()
    proxy = AriProxy(emulator.ari_url.removesuffix("/ari"))
    url = await proxy.start()
    gateway = Gateway(free_port_settings(ari_url=url, metrics_listen="", drain_timeout_s=0.5))
    try:
        endpoints = await gateway.start()
        yield Proxied(gateway, emulator, proxy, endpoints.grpc)
    finally:
        await gateway.stop(grace=0.5)
        await proxy.close()
        await emulator.stop()


EXTERNAL_MEDIA = r"POST /ari/channels/externalMedia"

# name: (rule, the status the stream being opened gets, its reason)
REST_CASES = {
    "HTML with 200": (
        Garble(EXTERNAL_MEDIA, 200, b"<html>maintenance</html>", content_type="text/html"),
        grpc.StatusCode.UNAVAILABLE,
        "ASTERISK_UNAVAILABLE",
    ),
    "JSON cut short, after Asterisk acted": (
        Garble(EXTERNAL_MEDIA, 200, b'{"id":"x","channelv', forward=True),
        grpc.StatusCode.UNAVAILABLE,
        "ASTERISK_UNAVAILABLE",
    ),
    "nesting past the recursion limit": (
        Garble(EXTERNAL_MEDIA, 200, b"[" * 5000, forward=True),
        grpc.StatusCode.UNAVAILABLE,
        "ASTERISK_UNAVAILABLE",
    ),
    "integer past the digit limit": (
        Garble(EXTERNAL_MEDIA, 200, b"9" * 5000, forward=True),
        grpc.StatusCode.UNAVAILABLE,
        "ASTERISK_UNAVAILABLE",
    ),
    "not UTF-8": (
        Garble(EXTERNAL_MEDIA, 500, b"\xff\xfe\x00garbage", forward=True),
        grpc.StatusCode.UNAVAILABLE,
        "ASTERISK_UNAVAILABLE",
    ),
    "channelvars a list": (
        Garble(EXTERNAL_MEDIA, 200, b'{"id":"x","channelvars":["a"]}', forward=True),
        grpc.StatusCode.INTERNAL,
        "INTERNAL",
    ),
    "empty 200": (
        Garble(EXTERNAL_MEDIA, 200, b"", forward=True),
        grpc.StatusCode.INTERNAL,
        "INTERNAL",
    ),
    "HTML error page from a proxy": (
        Garble(EXTERNAL_MEDIA, 502, b"<html>Bad Gateway</html>", content_type="text/html"),
        grpc.StatusCode.UNAVAILABLE,
        "ASTERISK_UNAVAILABLE",
    ),
    "JSON error from Asterisk": (
        Garble(EXTERNAL_MEDIA, 500, b'{"message":"Internal Server Error"}'),
        grpc.StatusCode.INTERNAL,
        "ASTERISK_REFUSED",
    ),
    "bridge created, answer unreadable": (
        Garble(r"POST /ari/bridges", 200, b"\x00\x01", forward=True),
        grpc.StatusCode.UNAVAILABLE,
        "ASTERISK_UNAVAILABLE",
    ),
    "snoop created, answer unreadable": (
        Garble(r"POST /ari/channels/[^/]+/snoop", 200, b"[" * 5000, forward=True),
        grpc.StatusCode.UNAVAILABLE,
        "ASTERISK_UNAVAILABLE",
    ),
}


@pytest.mark.parametrize("case", sorted(REST_CASES))
async def test_an_unreadable_rest_answer_fails_the_open_cleanly(
    proxied: Proxied, case: str
) -> None:
    rule, code, reason = REST_CASES[case]
    victim_call = proxied.emulator.add_call("tone")
    other_call = proxied.emulator.add_call("tone")
    async with proxied.client() as client, listening(client, other_call) as bystander:
        proxied.proxy.garble(rule)
        with pytest.raises(RPCError) as err:
            async with client.listen(call_id=victim_call, transport=Transport.RTP):
                pass
        proxied.proxy.rules.clear()
        assert rule.hits == 1
        assert (err.value.code, err.value.reason) == (code, reason)
        await bystander.flowing(10)
        bystander.assert_unharmed()
        # Everything the failed open created is gone; only the bystander's remain.
        await asyncio.sleep(0.3)
        assert len(proxied.gateway.streams.streams) == 1
        assert len(proxied.gateway_objects()) == 3  # its snoop, externalMedia, bridge
    assert await proxied.leftovers() == []


async def test_junk_on_the_events_websocket_is_dropped(
    proxied: Proxied, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="mediastream.asterisk.ari")
    call_id = proxied.emulator.add_call("tone")
    async with proxied.client() as client, listening(client, call_id) as live:
        (stream,) = proxied.gateway.streams.streams.values()
        assert stream.leg is not None
        bridge_id = stream.leg.bridge_ids[0]
        junk = [
            "not json",
            "[" * 5000,  # nesting past the recursion limit
            "9" * 5000,  # an integer past the digit limit
            '"a string"',
            json.dumps({"type": "StasisStart", "channel": None, "bridge": {"id": bridge_id}}),
            json.dumps(
                {"type": "ChannelDestroyed", "channel": "oops", "bridge": {"id": bridge_id}}
            ),
            json.dumps(
                {
                    "type": "ChannelDtmfReceived",
                    "digit": "5",
                    "duration_ms": "x",
                    "channel": {"id": call_id},
                }
            ),
            json.dumps({"type": "ChannelDtmfReceived", "digit": 5, "channel": {"id": call_id}}),
        ]
        for text in junk:
            await proxied.proxy.inject(text)
        await live.flowing(15)
        live.assert_unharmed()
        assert proxied.proxy.events_connections == 1  # never dropped and reconnected
        assert "not JSON" in caplog.text
        # Events still flow to the stream: its call's hangup ends it.
        proxied.emulator.hangup(call_id)
        assert live.task is not None
        async with asyncio.timeout(3):
            await asyncio.shield(live.task)
        assert live.error is None
    assert await proxied.leftovers() == []
