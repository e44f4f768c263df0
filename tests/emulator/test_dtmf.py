"""DTMF on every transport, against dtmf_*.json: SendDTMF(12#,100,120) from the caller."""

from __future__ import annotations

import asyncio
import time
from itertools import pairwise

import aiohttp
import numpy as np

from mediastream.emulator import DTMF_CALL_ID, Emulator
from tests.asterisk_fixtures import case
from tests.emulator.conftest import APP, Ari, AudioSocketPeer, UdpPeer, level, rtp_header, ulaw
from tests.emulator.test_websocket_channel import MediaClient
from tests.timing import LOADED_SLACK


async def _add_dtmf_caller(ari: Ari, bridge_id: str) -> dict[str, str]:
    """As recorded: the transport is bridged first, then the dtmf call is added."""
    call = await ari.originate("dtmf")
    await ari.ok("POST", f"/bridges/{bridge_id}/addChannel", channel=call["id"])
    return call


async def _dtmf_events(ari: Ari, call_id: str) -> list[tuple[float, dict[str, object]]]:
    await ari.wait_event(
        lambda e: e["type"] == "ChannelDtmfReceived" and e["digit"] == "#", timeout=3
    )
    return [
        (t, e)
        for t, e in ari.events
        if e["type"] == "ChannelDtmfReceived" and e["channel"]["id"] == call_id
    ]


def _check_events(events: list[tuple[float, dict[str, object]]], name: str) -> None:
    recorded = [
        e["event"] for e in case(name)["events"] if e["event"]["type"] == "ChannelDtmfReceived"
    ]
    assert [(e["digit"], e["duration_ms"]) for _, e in events] == [
        (e["digit"], e["duration_ms"]) for e in recorded
    ]
    assert [list(e) for _, e in events] == [list(e) for e in recorded]
    spacing = np.diff([t for t, _ in events])
    # 100 ms quiet + 120 ms digit: never much sooner; later by a loaded loop's slack.
    assert np.all((spacing > 0.22 - 0.05) & (spacing < 0.22 + 0.05 + LOADED_SLACK))


async def test_rtp_gets_no_dtmf_but_gaps_with_marker(emulator: Emulator, ari: Ari) -> None:
    observed = case("dtmf_rtp_ulaw.json")["observed"]
    bridge = await ari.ok("POST", "/bridges", type="mixing")
    peer = await UdpPeer.open()
    em = await ari.ok(
        "POST", "/channels/externalMedia", app=APP, external_host=peer.address, format="ulaw"
    )
    await ari.stasis_start(em["id"])
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=em["id"])
    call = await _add_dtmf_caller(ari, bridge["id"])
    events = await _dtmf_events(ari, call["id"])
    _check_events(events, "dtmf_rtp_ulaw.json")
    await asyncio.sleep(0.05)
    headers = [rtp_header(d) for _, d, _ in peer.packets]
    assert {h["payload_type"] for h in headers} == {0}  # no RFC 2833 (PT 101)
    markers = [i for i, h in enumerate(headers) if h["marker"]]
    # Three marked packets five apart, as recorded. Where the first falls depends on
    # how long the caller took to join after the media leg (later on a busy machine).
    assert observed["markers"] == [25, 30, 35] and len(markers) == 3
    assert [m - markers[0] for m in markers] == [0, 5, 10]
    steps = {b["timestamp"] - a["timestamp"] for a, b in pairwise(headers)}
    assert steps == set(observed["timestamp_steps"]) == {160, 1120}
    assert {(b["seq"] - a["seq"]) % 65536 for a, b in pairwise(headers)} == {1}
    gaps = np.diff([t for t, _, _ in peer.packets]) * 1000
    # The audio really pauses (~140 ms) before each marked packet; the exact
    # amounts are in the timestamps above, receive times only add scheduling noise.
    assert all(gaps[i - 1] > 100 for i in markers)
    assert np.median(gaps) < 25
    # Nothing but the tone: no in-band DTMF either.
    for _, data, _ in peer.packets:
        samples = ulaw(data[12:])
        assert level(samples, 440, 8000) > 6500
        assert max(level(samples, hz, 8000) for hz in (697, 941, 1209, 1336, 1477)) < 400


async def test_audiosocket_gets_kind_3_at_digit_end(emulator: Emulator, ari: Ari) -> None:
    observed = case("dtmf_audiosocket_slin.json")["observed"]
    bridge = await ari.ok("POST", "/bridges", type="mixing")
    peer = await AudioSocketPeer.open()
    em = await ari.audiosocket_media(peer, "slin")
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=em["id"])
    call = await _add_dtmf_caller(ari, bridge["id"])
    events = await _dtmf_events(ari, call["id"])
    _check_events(events, "dtmf_audiosocket_slin.json")
    await asyncio.sleep(0.05)
    dtmf = [(t, m.encode().hex()) for t, m in peer.messages if m.kind == 0x03]
    assert [h for _, h in dtmf] == [d["hex"] for d in observed["dtmf"]]
    for (t_msg, _), (t_event, _) in zip(dtmf, events, strict=True):
        assert abs(t_msg - t_event) < 0.1  # the same moment (loose: shared machine)
    gaps = np.diff([t for t, _ in peer.audio()]) * 1000
    # The audio pauses (~140 ms) for each of the three digits. A busy machine may
    # add a late wake-up's gap of its own, so: at least three long gaps, the three
    # longest clearly pauses, none longer than a pause plus a loaded loop's slack.
    assert sum(g > 60 for g in gaps) >= 3 and min(sorted(gaps)[-3:]) > 100
    assert max(gaps) < 300 + 1000 * LOADED_SLACK


async def _websocket_dtmf(ari: Ari, json_format: bool) -> tuple[list[str], str, list[float]]:
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
    conn = em["channelvars"]["MEDIA_WEBSOCKET_CONNECTION_ID"]
    url = ari.url.removesuffix("/ari").replace("http://", "ws://") + f"/media/{conn}"
    async with aiohttp.ClientSession() as session:
        client = MediaClient(await session.ws_connect(url, protocols=("media",)))
        await ari.stasis_start(em["id"])
        await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=em["id"])
        call = await _add_dtmf_caller(ari, bridge["id"])
        events = await _dtmf_events(ari, call["id"])
        await asyncio.sleep(0.05)
        texts = [(t, x) for t, x in client.texts if "DTMF_END" in x]
        delays = [abs(t - te) for (t, _), (te, _) in zip(texts, events, strict=True)]
        await client.ws.close()
    return [x for _, x in texts], em["id"], delays


async def test_websocket_plain_gets_dtmf_end(emulator: Emulator, ari: Ari) -> None:
    texts, cid, delays = await _websocket_dtmf(ari, json_format=False)
    recorded = [t for _, t in case("dtmf_websocket_plain.json")["observed"]["texts"][1:]]
    rec_id = recorded[0].rsplit(":", 1)[1]
    assert texts == [t.replace(rec_id, cid) for t in recorded]
    assert texts[0] == f"DTMF_END digit:1 channel_id:{cid}"
    # DTMF_END at the moment of the ARI event: typically within 20 ms; a busy
    # machine's late wake-up delays one by at most its slack.
    assert float(np.median(delays)) < 0.02
    assert max(delays) < 0.02 + LOADED_SLACK


async def test_websocket_json_gets_dtmf_end(emulator: Emulator, ari: Ari) -> None:
    texts, cid, _ = await _websocket_dtmf(ari, json_format=True)
    recorded = [
        w["data"]
        for w in case("dtmf_websocket_json.json")["websocket"]
        if w.get("type") == "text" and "DTMF_END" in w.get("data", "")
    ]
    rec_id = recorded[0].split('"channel_id":"')[1].split('"')[0]
    assert texts == [t.replace(rec_id, cid) for t in recorded]
    assert texts[0] == f'{{"event":"DTMF_END","channel_id":"{cid}","digit":"1"}}'


async def test_demo_dtmf_call_and_ari_dtmf_to_a_channel(emulator: Emulator, ari: Ari) -> None:
    await ari.ok("POST", f"/applications/{APP}/subscription", eventSource=f"channel:{DTMF_CALL_ID}")
    t0 = time.monotonic()
    digits = []
    for _ in range(3):
        e = await ari.wait_event(
            lambda e: e["type"] == "ChannelDtmfReceived" and e not in digits, timeout=3
        )
        digits.append(e)
    assert [(e["digit"], e["duration_ms"]) for e in digits] == [("1", 120), ("2", 120), ("#", 120)]
    assert time.monotonic() - t0 < 2.8
    # POST /channels/{id}/dtmf plays digits to the channel's endpoint: 0x03 to the app.
    peer = await AudioSocketPeer.open()
    em = await ari.audiosocket_media(peer, "slin")
    await ari.ok("POST", f"/channels/{em['id']}/dtmf", dtmf="5*", duration="40", between="20")
    await asyncio.sleep(0.2)
    assert [m.payload for _, m in peer.messages if m.kind == 0x03] == [b"5", b"*"]
    r = await ari.request("POST", f"/channels/{DTMF_CALL_ID}/dtmf", dtmf="1")
    assert (r.status, r.json) == (409, {"message": "Channel not in Stasis application"})
