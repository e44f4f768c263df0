"""Demo calls, fault injection, the remaining REST resources, and the standalone runner."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import aiohttp
import pytest

from mediastream.emulator import (
    CONFERENCE_ID,
    DTMF_CALL_ID,
    ECHO_CALL_ID,
    TONE_CALL_ID,
    Emulator,
)
from tests.emulator.conftest import APP, Ari, AudioSocketPeer, level, pcm


async def test_demo_calls_are_up_and_outside_stasis(emulator: Emulator, ari: Ari) -> None:
    channels = {c["id"]: c for c in await ari.ok("GET", "/channels")}
    for cid, name in (
        (TONE_CALL_ID, "PJSIP/demo-tone-00000001"),
        (ECHO_CALL_ID, "PJSIP/demo-echo-00000002"),
        (DTMF_CALL_ID, "PJSIP/demo-dtmf-00000003"),
    ):
        assert channels[cid]["name"] == name
        assert channels[cid]["state"] == "Up"
        assert channels[cid]["dialplan"]["app_name"] != "Stasis"
    conference = await ari.ok("GET", f"/bridges/{CONFERENCE_ID}")
    assert conference["technology"] == "simple_bridge" and len(conference["channels"]) == 2
    assert all(c in channels for c in conference["channels"])
    bridge = await ari.ok("POST", "/bridges")
    r = await ari.request("POST", f"/bridges/{bridge['id']}/addChannel", channel=TONE_CALL_ID)
    assert (r.status, r.json) == (422, {"message": "Channel not in Stasis application"})


async def test_remote_hangup_of_a_snooped_call(emulator: Emulator, ari: Ari) -> None:
    await ari.ok("POST", f"/applications/{APP}/subscription", eventSource=f"channel:{TONE_CALL_ID}")
    snoop = await ari.ok("POST", f"/channels/{TONE_CALL_ID}/snoop", spy="in", app=APP)
    await ari.stasis_start(snoop["id"])
    emulator.hangup(TONE_CALL_ID)
    destroyed = await ari.wait_event(
        lambda e: e["type"] == "ChannelDestroyed" and e["channel"]["id"] == TONE_CALL_ID
    )
    assert (destroyed["cause"], destroyed["cause_txt"]) == (16, "Normal Clearing")
    request = next(e for e in ari.of(TONE_CALL_ID) if e["type"] == "ChannelHangupRequest")
    assert request["cause"] == 16 and "soft" not in request  # a remote hangup
    end = await ari.wait_event(lambda e: e["type"] == "StasisEnd")
    assert end["channel"]["id"] == snoop["id"]  # the snoop dies with its call ...
    await asyncio.sleep(0.05)
    assert "ChannelDestroyed" not in [e["type"] for e in ari.of(snoop["id"])]  # ... silently
    r = await ari.request("GET", f"/channels/{TONE_CALL_ID}")
    assert r.status == 404
    with pytest.raises(KeyError):
        emulator.hangup(TONE_CALL_ID)


async def test_channel_entering_stasis_of_an_unregistered_app_is_hung_up(
    emulator: Emulator, ari: Ari
) -> None:
    call = await ari.ok("POST", "/channels", endpoint="Local/tone@default", app="nobody")
    await asyncio.sleep(0.05)
    assert (await ari.request("GET", f"/channels/{call['id']}")).status == 404


async def test_remove_channel_and_holding_bridge(emulator: Emulator, ari: Ari) -> None:
    call = await ari.originate("tone")
    bridge = await ari.ok("POST", "/bridges", type="mixing", name="b1", bridgeId="my-bridge")
    assert (bridge["id"], bridge["name"]) == ("my-bridge", "b1")
    assert [b["id"] for b in await ari.ok("GET", "/bridges")].count("my-bridge") == 1
    r = await ari.request("POST", "/bridges", bridgeId="my-bridge")
    assert r.status == 500
    await ari.ok("POST", "/bridges/my-bridge/addChannel", channel=call["id"])
    r = await ari.request("POST", "/bridges/my-bridge/removeChannel", channel="nope")
    assert (r.status, r.json) == (400, {"message": "Channel not found"})
    await ari.ok("POST", "/bridges/my-bridge/removeChannel", channel=call["id"])
    left = await ari.wait_event(lambda e: e["type"] == "ChannelLeftBridge")
    assert left["bridge"]["channels"] == []
    holding = await ari.ok("POST", "/bridges", type="holding")
    assert holding["bridge_type"] == "holding"
    r = await ari.request("POST", "/bridges", type="mixing,holding")
    assert r.status == 500


async def test_holding_bridge_passes_no_audio(emulator: Emulator, ari: Ari) -> None:
    call = await ari.originate("tone")
    holding = await ari.ok("POST", "/bridges", type="holding")
    peer = await AudioSocketPeer.open()
    em = await ari.audiosocket_media(peer, "slin")
    await ari.ok("POST", f"/bridges/{holding['id']}/addChannel", channel=f"{call['id']},{em['id']}")
    await asyncio.sleep(0.7)
    assert peer.audio() == []


async def test_subscription_and_applications(emulator: Emulator, ari: Ari) -> None:
    app = await ari.ok(
        "POST", f"/applications/{APP}/subscription", eventSource=f"bridge:{CONFERENCE_ID}"
    )
    assert app["name"] == APP and CONFERENCE_ID in app["bridge_ids"]
    assert [a["name"] for a in await ari.ok("GET", "/applications")] == [APP]
    r = await ari.request("POST", f"/applications/{APP}/subscription", eventSource="channel:nope")
    assert r.status == 422
    r = await ari.request("POST", "/applications/nobody/subscription", eventSource="bridge:x")
    assert r.status == 404
    app = await ari.ok(
        "DELETE", f"/applications/{APP}/subscription", eventSource=f"bridge:{CONFERENCE_ID}"
    )
    assert app["bridge_ids"] == []
    emulator.end_conference(CONFERENCE_ID)
    await asyncio.sleep(0.05)
    assert not [e for _, e in ari.events if e["type"] == "BridgeDestroyed"]  # unsubscribed


async def test_fault_injected_dtmf_pauses_audio(emulator: Emulator, ari: Ari) -> None:
    await ari.ok("POST", f"/applications/{APP}/subscription", eventSource=f"channel:{TONE_CALL_ID}")
    emulator.send_dtmf(TONE_CALL_ID, "9", duration_ms=60)
    event = await ari.wait_event(lambda e: e["type"] == "ChannelDtmfReceived")
    assert (event["digit"], event["duration_ms"], event["channel"]["id"]) == ("9", 60, TONE_CALL_ID)


async def test_api_key_and_json_body_parameters(emulator: Emulator) -> None:
    peer = await AudioSocketPeer.open()
    url = emulator.ari_url
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            url.replace("http://", "ws://") + f"/events?app={APP}&api_key=asterisk:asterisk"
        ) as ws:
            body = {
                "app": APP,
                "external_host": peer.address,
                "encapsulation": "audiosocket",
                "transport": "tcp",
                "format": "slin",
                "data": str(uuid.uuid4()),
                "variables": {"X": "1"},
            }
            async with session.post(
                url + "/channels/externalMedia?api_key=asterisk:asterisk", json=body
            ) as r:
                assert r.status == 200
                channel = await r.json()
            assert channel["channelvars"] == {
                "AUDIOSOCKET_SERVICE": peer.address,
                "AUDIOSOCKET_UUID": body["data"],
                "X": "1",
            }
            start = None
            while start is None or start["type"] != "StasisStart":
                start = await ws.receive_json(timeout=2)
            assert start["channel"]["id"] == channel["id"]
        async with session.get(url + "/asterisk/ping?api_key=asterisk:") as r:
            assert r.status == 401  # an empty password is refused


def test_standalone_runner_prints_url_and_demo_ids() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "mediastream.emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(6)]
        url = lines[0].split()[1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/ari")
        text = "".join(lines)
        for demo_id in (TONE_CALL_ID, ECHO_CALL_ID, DTMF_CALL_ID, CONFERENCE_ID):
            assert demo_id in text

        async def ping() -> int:
            auth = aiohttp.encode_basic_auth("asterisk", "asterisk")
            async with (
                aiohttp.ClientSession(headers={"Authorization": auth}) as session,
                session.get(url + "/asterisk/ping") as r,
            ):
                return r.status

        assert asyncio.run(ping()) == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0


async def test_stop_hangs_up_everything(emulator: Emulator, ari: Ari) -> None:
    await ari.originate("echo")
    peer = await AudioSocketPeer.open()
    await ari.ok(
        "POST",
        "/channels/externalMedia",
        app=APP,
        external_host=peer.address,
        encapsulation="audiosocket",
        transport="tcp",
        format="slin",
        data=str(uuid.uuid4()),
    )
    await emulator.stop()
    assert emulator.pbx.channels == {} and emulator.pbx.bridges == {}
    await asyncio.wait_for(peer.closed.wait(), 1)


async def test_demo_echo_call_echoes_whisper(emulator: Emulator, ari: Ari) -> None:
    from tests.emulator.test_snoop import audiosocket_leg, sending

    bridge = await ari.ok("POST", "/bridges", type="mixing")
    snoop = await ari.ok(
        "POST", f"/channels/{ECHO_CALL_ID}/snoop", spy="both", whisper="out", app=APP
    )
    await ari.stasis_start(snoop["id"])
    tap, peer = await audiosocket_leg(ari, "slin")
    await ari.ok(
        "POST", f"/bridges/{bridge['id']}/addChannel", channel=f"{snoop['id']},{tap['id']}"
    )
    async with sending(peer, 600):
        await asyncio.sleep(0.4)
    frames = [p for _, p in peer.audio()][5:]
    # The call hears the whisper (out, not spied back ...) and echoes it (in, spied).
    levels = [level(pcm(f), 600, 8000) for f in frames]
    assert sorted(levels)[len(levels) // 5] > 6500  # an unclocked sender may miss a tick
