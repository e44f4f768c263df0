"""What real Asterisk 23.4.1 does that the emulator follows (../shared/asterisk/README.md).

The silence generator (``POST/DELETE /channels/{id}/silence``), the soft hangups
of a shutdown, and the 422 of an unsubscribe after the channel is gone.
"""

from __future__ import annotations

import asyncio

from mediastream.emulator import TONE_CALL_ID, Emulator
from tests.emulator.conftest import APP, Ari, UdpPeer, ulaw
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
