"""Snoop channels against snoop_spy_*.json: shapes, events and direction semantics."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from mediastream.core import audiosocket
from mediastream.emulator import TONE_CALL_ID, Emulator
from tests.asterisk_fixtures import case
from tests.emulator.conftest import APP, Ari, AudioSocketPeer, level, pcm, sine, ulaw


async def audiosocket_leg(ari: Ari, fmt: str) -> tuple[dict[str, Any], AudioSocketPeer]:
    peer = await AudioSocketPeer.open()
    data = str(uuid.uuid4())
    em = await ari.ok(
        "POST",
        "/channels/externalMedia",
        app=APP,
        external_host=peer.address,
        encapsulation="audiosocket",
        transport="tcp",
        format=fmt,
        data=data,
    )
    await ari.stasis_start(em["id"])
    return em, peer


@contextlib.asynccontextmanager
async def sending(peer: AudioSocketPeer, frequency: float) -> AsyncIterator[None]:
    """Send slin 8 kHz ``frequency`` into an AudioSocket, paced at 20 ms."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while True:
            peer.send(audiosocket.encode(0x10, sine(frequency, 160, 8000, 8000, start=n)))
            n += 160
            await asyncio.sleep(max(0.0, start + n / 8000 - loop.time()))

    await peer.connected.wait()
    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()


def levels(frames: list[bytes], decode: Any, freqs: tuple[int, ...]) -> np.ndarray:
    return np.array([[level(decode(f), hz, 8000) for hz in freqs] for f in frames])


async def test_snoop_directions_and_whisper_match_recordings(emulator: Emulator, ari: Ari) -> None:
    # The recorded call: a 440 Hz caller bridged with a party that sends it 880 Hz.
    caller = await ari.originate("tone")
    call_bridge = await ari.ok("POST", "/bridges", type="mixing", name="call")
    party, party_peer = await audiosocket_leg(ari, "slin")
    await ari.ok(
        "POST", f"/bridges/{call_bridge['id']}/addChannel", channel=f"{caller['id']},{party['id']}"
    )
    results: dict[str, np.ndarray] = {}
    party_hears: dict[str, np.ndarray] = {}
    async with sending(party_peer, 880):
        await asyncio.sleep(0.1)  # the caller's tone is up once it hears the party
        for spy, whisper in (("in", "none"), ("out", "none"), ("both", "both")):
            snoop = await ari.ok(
                "POST",
                f"/channels/{caller['id']}/snoop",
                spy=spy,
                whisper=whisper,
                app=APP,
                appArgs=f"snoop,{spy},{whisper}",
            )
            recorded = case(f"snoop_spy_{spy}_whisper_{whisper}.json")
            want = next(s for s in recorded["steps"] if s.get("request", "").endswith("/snoop"))
            assert re.fullmatch(rf"Snoop/{re.escape(caller['id'])}-[0-9a-f]{{8}}", snoop["name"])
            assert list(snoop) == list(want["response"])  # no channelvars
            assert snoop["state"] == "Up"
            # Asterisk races between "" and "Stasis" here; the emulator is always in Stasis.
            assert snoop["dialplan"] == {
                "context": "default",
                "exten": "s",
                "priority": 1,
                "app_name": "Stasis",
                "app_data": f"{APP},snoop,{spy},{whisper}",
            }
            assert list(snoop["dialplan"]) == list(want["response"]["dialplan"])
            start = await ari.stasis_start(snoop["id"])
            assert start["args"] == ["snoop", spy, whisper]
            tap_bridge = await ari.ok("POST", "/bridges", type="mixing,proxy_media")
            assert tap_bridge["bridge_type"] == "mixing"
            tap, tap_peer = await audiosocket_leg(ari, "ulaw")
            heard_before = len(party_peer.audio())
            await ari.ok(
                "POST",
                f"/bridges/{tap_bridge['id']}/addChannel",
                channel=f"{snoop['id']},{tap['id']}",
            )
            if whisper == "both":
                async with sending(tap_peer, 2000):
                    await asyncio.sleep(0.5)
            else:
                await asyncio.sleep(0.5)
            frames = [p for _, p in tap_peer.audio()]
            assert {len(f) for f in frames} == {160}  # ulaw 20 ms, every 20 ms
            assert len(frames) >= 20  # the snoop streams all the time
            results[spy] = levels(frames[3:], ulaw, (440, 880, 2000))
            party_hears[spy] = levels(
                [p for _, p in party_peer.audio()[heard_before + 3 :]], pcm, (440, 2000)
            )
            mark = len(ari.events)
            await ari.ok("DELETE", f"/channels/{tap['id']}")
            await ari.ok("DELETE", f"/channels/{snoop['id']}")
            await ari.ok("DELETE", f"/bridges/{tap_bridge['id']}")
            await asyncio.sleep(0.05)
            gone = [
                e["type"]
                for _, e in ari.events[mark:]
                if e.get("channel", {}).get("id") == snoop["id"]
            ]
            rec_snoop = [
                e["event"]["type"]
                for e in recorded["events"]
                if e["event"].get("channel", {}).get("name", "").startswith("Snoop/")
                and e["event"]["type"]
                in ("ChannelHangupRequest", "ChannelLeftBridge", "StasisEnd", "ChannelDestroyed")
            ]
            assert [t for t in gone if t != "ChannelVarset"] == rec_snoop
            assert "ChannelDestroyed" not in gone
            await tap_peer.close()

    full, quiet = 6500, 600
    med = {k: np.median(v, axis=0) for k, v in results.items()}
    assert med["in"][0] > full and med["in"][1] < quiet  # in = what the caller sends
    assert med["out"][1] > full and med["out"][0] < quiet  # out = what the caller hears
    assert med["both"][0] > full and med["both"][1] > full  # both, each at full level
    assert med["both"][2] < quiet  # the client's own whisper is not on the spy side
    assert np.median(party_hears["in"], axis=0)[1] < quiet
    hears = np.median(party_hears["both"], axis=0)
    assert hears[0] > full and hears[1] > full  # the whisper reaches the other party


async def test_snoop_on_demo_call_streams_silence_then_tone(emulator: Emulator, ari: Ari) -> None:
    bridge = await ari.ok("POST", "/bridges", type="mixing,proxy_media")
    spy_in = await ari.ok("POST", f"/channels/{TONE_CALL_ID}/snoop", spy="in", app=APP)
    spy_out = await ari.ok("POST", f"/channels/{TONE_CALL_ID}/snoop", spy="out", app=APP)
    await ari.stasis_start(spy_out["id"])
    tap, peer = await audiosocket_leg(ari, "slin")
    await ari.ok(
        "POST", f"/bridges/{bridge['id']}/addChannel", channel=f"{spy_in['id']},{tap['id']}"
    )
    await asyncio.sleep(0.3)
    frames = [p for _, p in peer.audio()]
    assert len(frames) >= 12 and {len(f) for f in frames} == {320}
    assert all(level(pcm(f), 440, 8000) > 6500 for f in frames[2:])
    # The demo call hears nothing, so an out-spy of it is pure silence.
    bridge2 = await ari.ok("POST", "/bridges", type="mixing")
    tap2, peer2 = await audiosocket_leg(ari, "slin")
    await ari.ok(
        "POST", f"/bridges/{bridge2['id']}/addChannel", channel=f"{spy_out['id']},{tap2['id']}"
    )
    await asyncio.sleep(0.2)
    silent = [p for _, p in peer2.audio()]
    assert len(silent) >= 7 and all(not any(f) for f in silent)


@pytest.mark.parametrize("spy,whisper", [("in", "out")])
async def test_whisper_into_echo_call_comes_back_on_the_spy(
    emulator: Emulator, ari: Ari, spy: str, whisper: str
) -> None:
    from mediastream.emulator import ECHO_CALL_ID

    bridge = await ari.ok("POST", "/bridges", type="mixing,proxy_media")
    snoop = await ari.ok(
        "POST", f"/channels/{ECHO_CALL_ID}/snoop", spy=spy, whisper=whisper, app=APP
    )
    await ari.stasis_start(snoop["id"])
    tap, peer = await audiosocket_leg(ari, "slin")
    await ari.ok(
        "POST", f"/bridges/{bridge['id']}/addChannel", channel=f"{snoop['id']},{tap['id']}"
    )
    async with sending(peer, 1000):
        await asyncio.sleep(0.4)
    frames = [p for _, p in peer.audio()][5:]
    assert np.median([level(pcm(f), 1000, 8000) for f in frames]) > 6500
