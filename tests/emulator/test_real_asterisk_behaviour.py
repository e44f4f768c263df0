"""What real Asterisk 23.4.1 does that the emulator follows (../shared/asterisk/README.md).

The silence generator (``POST/DELETE /channels/{id}/silence``), the soft hangups
of a shutdown, the 422 of an unsubscribe after the channel is gone, a snoop's whisper
heard only on frames that pass the call, and a deleted snoop that stays until one does.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mediastream.emulator import TONE_CALL_ID, Emulator
from tests.emulator.conftest import APP, Ari, UdpPeer, level, pcm, ulaw
from tests.emulator.test_rtp import wait_packets


async def rtp_channel(ari: Ari) -> tuple[dict[str, str], UdpPeer]:
    """An RTP externalMedia channel in APP, alone (nothing writes to it)."""
    peer = await UdpPeer.open()
    em = await ari.ok(
        "POST", "/channels/externalMedia", app=APP, external_host=peer.address, format="ulaw"
    )
    await ari.stasis_start(em["id"])
    return em, peer


async def test_silence_generator_writes_frames_until_stopped(emulator: Emulator, ari: Ari) -> None:
    em, peer = await rtp_channel(ari)
    await asyncio.sleep(0.2)
    assert peer.packets == [], "a channel nothing writes to sends nothing"
    r = await ari.request("POST", f"/channels/{em['id']}/silence")
    assert r.status == 204
    await wait_packets(peer, 10)
    assert len(peer.packets) >= 10
    assert abs(ulaw(b"".join(p[12:] for _, p, _ in peer.packets))).max() < 10  # silence
    assert (await ari.request("DELETE", f"/channels/{em['id']}/silence")).status == 204
    await asyncio.sleep(0.1)
    count = len(peer.packets)
    await asyncio.sleep(0.2)
    assert len(peer.packets) == count, "stopped: nothing more is written"
    peer.close()


async def test_play_suspends_the_silence_generator_for_good(emulator: Emulator, ari: Ari) -> None:
    em, peer = await rtp_channel(ari)
    await ari.ok("POST", f"/channels/{em['id']}/silence")
    await wait_packets(peer, 5)
    await ari.ok("POST", f"/channels/{em['id']}/play", media="sound:hello")
    await asyncio.sleep(0.1)
    count = len(peer.packets)
    await asyncio.sleep(0.3)
    assert len(peer.packets) == count, "ARI's /play stops the generator; it is not resumed"
    peer.close()


async def test_silence_needs_a_channel_in_stasis(emulator: Emulator, ari: Ari) -> None:
    # The demo calls run dialplan: no Stasis control, as for a real dialplan call.
    r = await ari.request("POST", f"/channels/{TONE_CALL_ID}/silence")
    assert (r.status, r.json["message"]) == (409, "Channel not in Stasis application")
    assert (await ari.request("POST", "/channels/nope/silence")).status == 404


async def test_shutdown_soft_hangs_every_channel_with_cause_4(emulator: Emulator, ari: Ari) -> None:
    await ari.ok("POST", f"/applications/{APP}/subscription", eventSource=f"channel:{TONE_CALL_ID}")
    await emulator.pbx.shutdown()
    request = await ari.wait_event(
        lambda e: e["type"] == "ChannelHangupRequest" and e["channel"]["id"] == TONE_CALL_ID
    )
    assert (request["cause"], request.get("soft")) == (4, True)  # AST_SOFTHANGUP_SHUTDOWN


async def test_unsubscribe_after_the_channel_is_gone_is_422(emulator: Emulator, ari: Ari) -> None:
    source = f"channel:{TONE_CALL_ID}"
    await ari.ok("POST", f"/applications/{APP}/subscription", eventSource=source)
    emulator.hangup(TONE_CALL_ID)
    await ari.wait_event(lambda e: e["type"] == "ChannelDestroyed")
    r = await ari.request("DELETE", f"/applications/{APP}/subscription", eventSource=source)
    assert (r.status, r.json["message"]) == (422, "Event source was not subscribed to")


async def test_unsubscribe_of_a_source_never_subscribed_is_422(
    emulator: Emulator, ari: Ari
) -> None:
    source = f"channel:{TONE_CALL_ID}"
    r = await ari.request("DELETE", f"/applications/{APP}/subscription", eventSource=source)
    assert (r.status, r.json["message"]) == (422, "Event source was not subscribed to")


# --- A snoop's whisper rides only on frames that pass the call (main/audiohook.c) -----------


async def _whisper_comes_back(ari: Ari, call_id: str) -> float:
    """Whisper 1 kHz into ``call_id`` (an echo) and measure what the call then sends.

    The snoop spies ``in`` (what the call reads: its echo) and whispers ``out`` (into what
    it hears), so the tone comes back only if the call heard it.
    """
    from tests.emulator.test_snoop import audiosocket_leg, sending

    bridge = await ari.ok("POST", "/bridges", type="mixing,proxy_media")
    snoop = await ari.ok("POST", f"/channels/{call_id}/snoop", spy="in", whisper="out", app=APP)
    await ari.stasis_start(snoop["id"])
    tap, peer = await audiosocket_leg(ari, "slin")
    await ari.ok(
        "POST", f"/bridges/{bridge['id']}/addChannel", channel=f"{snoop['id']},{tap['id']}"
    )
    async with sending(peer, 1000):
        await asyncio.sleep(0.5)
    frames = [p for _, p in peer.audio()][5:]
    await peer.close()
    return float(np.median([level(pcm(f), 1000, 8000) for f in frames]))


async def test_whisper_is_not_heard_when_nothing_is_written_to_the_call(
    emulator: Emulator, ari: Ari
) -> None:
    # An echo call alone in Stasis: nothing is written to it, so nothing carries the whisper.
    call = await ari.originate("echo")
    assert await _whisper_comes_back(ari, call["id"]) < 100


async def test_whisper_is_heard_with_the_silence_generator(emulator: Emulator, ari: Ari) -> None:
    call = await ari.originate("echo")
    await ari.ok("POST", f"/channels/{call['id']}/silence")
    assert await _whisper_comes_back(ari, call["id"]) > 6500


async def test_whisper_is_heard_over_a_talking_peer(emulator: Emulator, ari: Ari) -> None:
    call = await ari.originate("echo")
    peer = await ari.originate("tone880")
    await ari.ok("POST", "/bridges", type="mixing", bridgeId="talking")
    await ari.ok("POST", "/bridges/talking/addChannel", channel=f"{call['id']},{peer['id']}")
    await asyncio.sleep(0.8)  # Answer() of the peer's dialplan waits up to 500 ms
    assert await _whisper_comes_back(ari, call["id"]) > 6500


async def test_whisper_is_not_heard_over_a_silent_peer(emulator: Emulator, ari: Ari) -> None:
    call = await ari.originate("echo")
    peer = await ari.originate("silent")
    await ari.ok("POST", "/bridges", type="mixing", bridgeId="quiet")
    await ari.ok("POST", "/bridges/quiet/addChannel", channel=f"{call['id']},{peer['id']}")
    await asyncio.sleep(0.8)  # Answer() of the peer's dialplan waits up to 500 ms
    assert await _whisper_comes_back(ari, call["id"]) < 100


@pytest.mark.parametrize(("exten", "heard"), [("playback", True), ("wait", False)])
async def test_whisper_into_a_dialplan_call(
    emulator: Emulator, ari: Ari, exten: str, heard: bool
) -> None:
    # Originated into the dialplan: its ;1 half runs Playback (frames written) or Wait.
    call = await ari.ok(
        "POST", "/channels", endpoint="Local/echo@default", extension=exten, context="default"
    )
    await asyncio.sleep(0.3)
    channel = await ari.ok("GET", f"/channels/{call['id']}")
    assert channel["state"] == "Up"
    assert channel["dialplan"]["app_name"] == ("Playback" if heard else "Wait")
    r = await ari.request("POST", f"/channels/{call['id']}/silence")
    assert r.status == 409  # not in Stasis: ARI cannot keep frames flowing to it
    comes_back = await _whisper_comes_back(ari, call["id"])
    if heard:
        assert comes_back > 6500
    else:
        assert comes_back < 100


async def test_a_deleted_snoop_stays_until_a_frame_passes_its_call(
    emulator: Emulator, ari: Ari
) -> None:
    call = await ari.originate("echo")  # alone in Stasis: no frame passes it
    snoop = await ari.ok("POST", f"/channels/{call['id']}/snoop", spy="in", app=APP)
    await ari.stasis_start(snoop["id"])
    await ari.ok("DELETE", f"/channels/{snoop['id']}")
    await ari.wait_event(lambda e: e["type"] == "StasisEnd" and e["channel"]["id"] == snoop["id"])
    await asyncio.sleep(0.2)
    listed = {c["id"]: c for c in await ari.ok("GET", "/channels")}
    assert snoop["id"] in listed, "the snoop waits for a frame to detach its audiohook"
    assert listed[snoop["id"]]["dialplan"]["app_name"] == ""  # out of Stasis
    await ari.ok("POST", f"/channels/{call['id']}/silence")  # a frame passes the call
    await asyncio.sleep(0.1)
    assert (await ari.request("GET", f"/channels/{snoop['id']}")).status == 404


async def test_a_stuck_snoop_goes_when_its_call_hangs_up(emulator: Emulator, ari: Ari) -> None:
    call = await ari.originate("echo")
    snoop = await ari.ok("POST", f"/channels/{call['id']}/snoop", spy="in", app=APP)
    await ari.stasis_start(snoop["id"])
    await ari.ok("DELETE", f"/channels/{snoop['id']}")
    await asyncio.sleep(0.1)
    assert (await ari.request("GET", f"/channels/{snoop['id']}")).status == 200
    await ari.ok("DELETE", f"/channels/{call['id']}")
    await asyncio.sleep(0.05)
    assert (await ari.request("GET", f"/channels/{snoop['id']}")).status == 404
