"""chan_websocket server mode against websocket_*.json and roundtrip_websocket_slin16."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import aiohttp
import numpy as np

from mediastream.emulator import Emulator
from tests.asterisk_fixtures import case, records
from tests.emulator.conftest import APP, Ari, level, pcm, sine
from tests.timing import LOADED_SLACK


class MediaClient:
    """The app side of a WebSocket externalMedia channel."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.texts: list[tuple[float, str]] = []
        self.binary: list[tuple[float, bytes]] = []
        self.closed: asyncio.Event = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.texts.append((time.monotonic(), msg.data))
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self.binary.append((time.monotonic(), msg.data))
        self.closed.set()

    async def text(self, since: int, timeout: float = 2.0) -> str:
        deadline = time.monotonic() + timeout
        while len(self.texts) <= since:
            if time.monotonic() > deadline:
                raise TimeoutError("no text message")
            await asyncio.sleep(0.002)
        return self.texts[since][1]

    async def command(self, text: str) -> str:
        """Send a command and return the reply."""
        n = len(self.texts)
        await self.ws.send_str(text)
        return await self.text(n)


async def ws_channel(
    ari: Ari, session: aiohttp.ClientSession, json_format: bool, exten: str | None = "tone"
) -> tuple[dict[str, Any], MediaClient, dict[str, Any]]:
    call = await ari.originate(exten) if exten else None
    bridge = await ari.ok("POST", "/bridges", type="mixing")
    params = {
        "app": APP,
        "external_host": "INCOMING",
        "encapsulation": "none",
        "transport": "websocket",
        "connection_type": "server",
        "format": "slin16",
    }
    if json_format:
        params["transport_data"] = "f(json)"
    em = await ari.ok("POST", "/channels/externalMedia", **params)
    # Not in Stasis until the websocket connects.
    r = await ari.request("POST", f"/bridges/{bridge['id']}/addChannel", channel=em["id"])
    assert (r.status, r.json) == (422, {"message": "Channel not in Stasis application"})
    conn = em["channelvars"]["MEDIA_WEBSOCKET_CONNECTION_ID"]
    url = ari.url.removesuffix("/ari").replace("http://", "ws://") + f"/media/{conn}"
    ws = await session.ws_connect(url, protocols=("media",))
    client = MediaClient(ws)
    first = await client.text(0)
    await ari.stasis_start(em["id"])
    members = f"{call['id']},{em['id']}" if call else em["id"]
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=members)
    return em, client, {"first": first, "bridge": bridge}


def _norm(text: str, channel_id: str) -> str:
    return text.replace(channel_id, "<id>")


async def test_plain_channel_matches_recording(emulator: Emulator, ari: Ari) -> None:
    recorded = case("websocket_slin16.json")
    want_em = next(s for s in recorded["steps"] if s["request"].endswith("externalMedia"))[
        "response"
    ]
    async with aiohttp.ClientSession() as session:
        em, client, info = await ws_channel(ari, session, json_format=False)
        conn = em["channelvars"]["MEDIA_WEBSOCKET_CONNECTION_ID"]
        assert re.fullmatch(r"WebSocket/INCOMING/0x[0-9a-f]+", em["name"])
        assert list(em["channelvars"]) == list(want_em["channelvars"])
        assert em["channelvars"]["MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE"] == "640"
        assert client.ws.protocol == "media"
        want_start = recorded["observed"]["texts"][0]
        rec_id = want_em["id"]
        rec_conn = want_em["channelvars"]["MEDIA_WEBSOCKET_CONNECTION_ID"]
        expected = want_start.replace(rec_conn, conn).replace(rec_id, em["id"])
        expected = expected.replace(want_em["name"], em["name"])
        assert info["first"] == expected
        # MEDIA_START came before the channel went Up and entered Stasis.
        types = [e["type"] for e in ari.of(em["id"])]
        assert (
            types
            == [
                "Dial",
                "ChannelStateChange",
                "Dial",
                "ChannelVarset",
                "StasisStart",
                "ChannelEnteredBridge",
            ][: len(types)]
        )
        dial = ari.of(em["id"])[0]
        assert dial["dialstring"] == "INCOMING"
        await asyncio.sleep(0.8)
        frames = client.binary
        assert len(frames) >= 10 and {len(f) for _, f in frames} == {640}
        gaps = np.diff([t for t, _ in frames]) * 1000
        assert 17 < float(np.median(gaps)) < 23
        assert abs(level(pcm(frames[len(frames) // 2][1]), 440, 16000) - 7100) < 500
        status = await client.command("GET_STATUS")
        assert _norm(status, em["id"]) == _norm(recorded["observed"]["texts"][1], rec_id)
        await client.ws.close(code=1000)
        assert client.ws.close_code == 1001  # Asterisk answers 1000 with 1001
        destroyed = await ari.wait_event(
            lambda e: e["type"] == "ChannelDestroyed" and e["channel"]["id"] == em["id"]
        )
        request = next(e for e in ari.of(em["id"]) if e["type"] == "ChannelHangupRequest")
        assert (request["cause"], request["tech_cause"]) == (16, 1001) and "soft" not in request
        assert (destroyed["cause"], destroyed["tech_cause"]) == (16, 1001)
        assert list(destroyed) == list(
            next(
                e["event"]
                for e in recorded["events"]
                if e["event"]["type"] == "ChannelDestroyed"
                and e["event"]["channel"]["name"].startswith("WebSocket/")
            )
        )
        r = await ari.request("DELETE", f"/channels/{em['id']}")
        assert r.status == 404  # gone already, as recorded


async def test_json_control_matches_recording(emulator: Emulator, ari: Ari) -> None:
    recorded = case("websocket_json_control.json")
    rec_em = next(s for s in recorded["steps"] if s["request"].endswith("externalMedia"))[
        "response"
    ]
    rec_id = rec_em["id"]
    rec_texts = [t for _, t in recorded["observed"]["texts"]]

    def want(i: int, cid: str) -> str:
        return rec_texts[i].replace(rec_id, cid)

    async with aiohttp.ClientSession() as session:
        em, c, info = await ws_channel(ari, session, json_format=True)
        cid = em["id"]
        start = json.loads(info["first"])
        rec_start = json.loads(rec_texts[0])
        assert list(start) == list(rec_start) and start["optimal_frame_size"] == 640
        assert start["channel_variables"] == em["channelvars"]
        assert await c.command('{"command":"GET_STATUS"}') == want(1, cid)
        second = sine(1000, 16000, 16000)
        # 50 frames + MARK_MEDIA: STATUS at once with 50 queued, the mark after ~1 s.
        await c.ws.send_bytes(second)
        t0 = time.monotonic()
        await c.ws.send_str('{"command":"MARK_MEDIA","correlation_id":"mark-1"}')
        assert await c.command('{"command":"GET_STATUS"}') == want(2, cid)
        mark = await c.text(len(c.texts), timeout=2)
        assert mark == want(3, cid)
        # After its second of audio, never before; late by at most a loaded loop's
        # slack (the media clock is drift-free: one late tick, not an accumulation).
        assert 0.96 < time.monotonic() - t0 < 1.0 + LOADED_SLACK
        # REPORT_QUEUE_DRAINED after 10 frames: ~0.22 s.
        await c.ws.send_bytes(second[:6400])
        t0 = time.monotonic()
        assert await c.command('{"command":"REPORT_QUEUE_DRAINED"}') == want(4, cid)
        assert 0.18 < time.monotonic() - t0 < 0.2 + LOADED_SLACK
        # FLUSH_MEDIA drops the queue and the pending mark, silently.
        await c.ws.send_bytes(second)
        await c.ws.send_str('{"command":"MARK_MEDIA","correlation_id":"mark-2"}')
        await c.ws.send_str('{"command":"FLUSH_MEDIA"}')
        assert await c.command('{"command":"GET_STATUS"}') == want(5, cid)
        # Overfill: 11 x 100 frames; XOFF, the 11th message dropped whole.
        n = len(c.texts)
        for _ in range(11):
            await c.ws.send_bytes(bytes(64000))
        await c.ws.send_str('{"command":"GET_STATUS"}')
        assert [await c.text(n), await c.text(n + 1)] == [want(6, cid), want(7, cid)]
        # Draining below 800 gives XON: fast-forward the media clock until it comes.
        n = len(c.texts)
        for _ in range(190):
            emulator.clock.tick()
        for _ in range(30):
            emulator.clock.tick()
            await asyncio.sleep(0.001)
            if len(c.texts) > n:
                break
        assert await c.text(n) == want(8, cid)  # MEDIA_XON
        status = await c.command('{"command":"GET_STATUS"}')
        assert json.loads(status)["queue_length"] in (798, 799)  # recorded: 798
        assert re.sub(r'"queue_length":\d+', "", status) == re.sub(
            r'"queue_length":\d+', "", want(9, cid)
        )
        # Refill, then FLUSH_MEDIA while XOFF: XON on the next tick.
        n = len(c.texts)
        for _ in range(10):
            await c.ws.send_bytes(bytes(64000))
        assert await c.text(n) == want(10, cid)  # MEDIA_XOFF
        await c.ws.send_str('{"command":"FLUSH_MEDIA"}')
        t0 = time.monotonic()
        assert await c.text(n + 1) == want(11, cid)  # MEDIA_XON
        # The next tick (20 ms), not after draining the queue (seconds).
        assert time.monotonic() - t0 < 0.02 + LOADED_SLACK
        assert await c.command('{"command":"GET_STATUS"}') == want(12, cid)
        # Partial frames and buffering.
        await c.ws.send_str('{"command":"PAUSE_MEDIA"}')
        await c.ws.send_bytes(bytes(1000))
        assert await c.command('{"command":"GET_STATUS"}') == want(13, cid)
        await c.ws.send_str('{"command":"START_MEDIA_BUFFERING"}')
        await c.ws.send_bytes(bytes(1000))
        await c.ws.send_bytes(bytes(300))
        assert await c.command('{"command":"GET_STATUS"}') == want(14, cid)
        await c.ws.send_str('{"command":"STOP_MEDIA_BUFFERING","correlation_id":"buf-1"}')
        assert await c.command('{"command":"GET_STATUS"}') == want(15, cid)
        t0 = time.monotonic()
        assert await c.command('{"command":"CONTINUE_MEDIA"}') == want(16, cid)
        assert 0.07 < time.monotonic() - t0 < 0.1 + LOADED_SLACK
        assert await c.command('{"command":"GET_STATUS"}') == want(17, cid)
        # Bad input.
        assert await c.command("GET_STATUS") == want(18, cid)
        n = len(c.texts)
        await c.ws.send_str('{"command":"NO_SUCH_COMMAND"}')
        await c.ws.send_str('{"command":"GET_STATUS","pad":"' + "x" * 120 + '"}')
        await asyncio.sleep(0.1)
        assert len(c.texts) == n  # unknown and over-long commands: no reply at all
        reply = await c.command('{"command":"SET_MEDIA_DIRECTION","direction":"sideways"}')
        assert reply == want(19, cid) and json.loads(reply)["error_text"].endswith("\n")
        assert len(rec_texts) == 20
        # Media kept flowing to the app at 640 bytes every 20 ms all along.
        assert {len(f) for _, f in c.binary} == {640}
        # HANGUP: Asterisk closes with 1000.
        await c.ws.send_str('{"command":"HANGUP"}')
        await asyncio.wait_for(c.closed.wait(), 2)
        assert c.ws.close_code == 1000
        destroyed = await ari.wait_event(
            lambda e: e["type"] == "ChannelDestroyed" and e["channel"]["id"] == cid
        )
        assert destroyed["tech_cause"] == 1000


async def test_one_big_message_is_repaced_through_echo(emulator: Emulator, ari: Ari) -> None:
    observed = case("roundtrip_websocket_slin16.json")["observed"]
    (payload,) = [d for _, d in records("roundtrip_websocket_slin16_to_asterisk.bin")]
    assert len(payload) == 32000
    async with aiohttp.ClientSession() as session:
        _, client, _ = await ws_channel(ari, session, json_format=False, exten="echo")
        sent = time.monotonic()
        await client.ws.send_bytes(payload)
        # Wait for the 50 frames (1 s of audio) rather than a fixed time: a loaded
        # loop may deliver the last one late.
        async with asyncio.timeout(5):
            while len([t for t, _ in client.binary if t > sent]) < 50:
                await asyncio.sleep(0.02)
        back = [(t, f) for t, f in client.binary if t > sent]
        assert observed["received_frames"] == 50
        assert len(back) == 50
        gaps = np.diff([t for t, _ in back]) * 1000
        # Re-paced, not a burst: the typical gap is one frame; a late wake-up on a
        # busy machine makes a few gaps long and the next ones short, not most.
        assert 19 < float(np.median(gaps)) < 21
        assert np.percentile(np.abs(gaps - 20), 75) < 5
        assert back[0][0] - sent < 0.06 + LOADED_SLACK
        assert 0.9 < back[-1][0] - sent < 1.0 + LOADED_SLACK
        # The 10 silent frames come back silent (Asterisk: byte-identical zeros; the
        # emulator's resampler leaves at most 1 LSB of noise).
        assert all(np.abs(pcm(f)).max() <= 1 for _, f in back[:10])
        loud = [np.sqrt(np.mean(pcm(f).astype(float) ** 2)) for _, f in back[12:]]
        assert abs(np.median(loud) - 5657) < 300


async def test_unknown_connection_id_and_second_connection(emulator: Emulator, ari: Ari) -> None:
    em = await ari.ok(
        "POST",
        "/channels/externalMedia",
        app=APP,
        encapsulation="none",
        transport="websocket",
        connection_type="server",
        format="ulaw",
    )
    assert em["channelvars"]["MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE"] == "160"
    url = ari.url.removesuffix("/ari").replace("http://", "ws://") + "/media/"
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url + em["channelvars"]["MEDIA_WEBSOCKET_CONNECTION_ID"])
        try:
            await session.ws_connect(url + em["channelvars"]["MEDIA_WEBSOCKET_CONNECTION_ID"])
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 409
        else:
            raise AssertionError("a second connection must be refused")
        await ws.close()


async def test_ari_delete_closes_the_websocket_with_1000(emulator: Emulator, ari: Ari) -> None:
    async with aiohttp.ClientSession() as session:
        em, client, _ = await ws_channel(ari, session, json_format=False, exten=None)
        await ari.ok("DELETE", f"/channels/{em['id']}")
        await asyncio.wait_for(client.closed.wait(), 2)
        assert client.ws.close_code == 1000
        request = next(e for e in ari.of(em["id"]) if e["type"] == "ChannelHangupRequest")
        assert (request["cause"], request.get("soft")) == (32, True)
