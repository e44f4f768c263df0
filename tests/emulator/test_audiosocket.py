"""AudioSocket externalMedia and the conference mix, against the recordings."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import numpy as np

from mediastream.core import audiosocket
from mediastream.emulator import CONFERENCE_ID, Emulator
from tests.asterisk_fixtures import case, records
from tests.emulator.conftest import APP, Ari, AudioSocketPeer, level, pcm, rms, ulaw
from tests.timing import LOADED_SLACK


async def leg(
    ari: Ari, fmt: str, exten: str | None = "tone"
) -> tuple[Any, Any, AudioSocketPeer, float]:
    call = await ari.originate(exten) if exten else None
    bridge = await ari.ok("POST", "/bridges", type="mixing")
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
    # Asterisk connected during the POST and the UUID is the first message.
    assert peer.connected.is_set()
    start = await ari.stasis_start(em["id"])
    assert start["args"] == [data]
    members = f"{call['id']},{em['id']}" if call else em["id"]
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=members)
    return em, bridge, peer, time.monotonic()


async def wait_audio(
    peer: AudioSocketPeer, n: int, timeout: float = 3.0
) -> list[tuple[float, bytes]]:
    deadline = time.monotonic() + timeout
    while len(peer.audio()) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return peer.audio()


async def test_slin_stream_matches_recording(emulator: Emulator, ari: Ari) -> None:
    recorded = case("audiosocket_slin.json")
    observed = recorded["observed"]
    want = next(s for s in recorded["steps"] if s["request"].endswith("externalMedia"))["response"]
    em, _, peer, joined = await leg(ari, "slin")
    data = em["channelvars"]["AUDIOSOCKET_UUID"]
    assert list(em) == list(want) and list(em["channelvars"]) == list(want["channelvars"])
    assert em["name"] == f"AudioSocket/{peer.address}-{data}"
    assert em["channelvars"]["AUDIOSOCKET_SERVICE"] == peer.address
    first = peer.messages[0][1]
    assert first.encode() == b"\x01\x00\x10" + uuid.UUID(data).bytes
    assert len(first.encode()) == len(bytes.fromhex(observed["first_message_hex"]))
    audio = await wait_audio(peer, 30)
    assert {m.kind for _, m in peer.messages} == {0x01, 0x10}
    assert {len(p) for _, p in audio} == set(observed["kinds"]["0x10"]["payload_lens"])
    # Never sooner than recorded (less 80 ms); later only by a loaded loop's slack.
    assert -0.08 < (audio[0][0] - joined) - observed["first_audio_t"] < 0.08 + LOADED_SLACK
    gaps = np.diff([t for t, _ in audio[:30]]) * 1000
    assert 17 < float(np.median(gaps)) < 23
    mid = level(pcm(audio[15][1]), 440, 8000)
    assert abs(mid - observed["mid_frame_440hz_level"]) < 300
    # Hangup: the TCP connection is closed, no 00 00 00 is sent.
    await ari.ok("DELETE", f"/channels/{em['id']}")
    await asyncio.wait_for(peer.closed.wait(), 1)
    assert all(m.kind != audiosocket.Kind.HANGUP for _, m in peer.messages)


async def test_ulaw_sends_ulaw_bytes_as_kind_0x10(emulator: Emulator, ari: Ari) -> None:
    observed = case("audiosocket_ulaw.json")["observed"]
    _, _, peer, _ = await leg(ari, "ulaw")
    audio = await wait_audio(peer, 20)
    assert {len(p) for _, p in audio} == set(observed["kinds"]["0x10"]["payload_lens"]) == {160}
    assert abs(level(ulaw(audio[15][1]), 440, 8000) - observed["mid_frame_440hz_level"]) < 300


async def _roundtrip(
    ari: Ari, fmt: str, name: str, paced: bool
) -> tuple[list[tuple[float, bytes]], list[float]]:
    sent = [d for _, d in records(f"{name}_to_asterisk.bin")]
    _, _, peer, _ = await leg(ari, fmt, exten="echo")
    times = []
    for message in sent:
        times.append(time.monotonic())
        peer.send(message)
        if paced:
            await asyncio.sleep(0.02)
    return await wait_audio(peer, len(sent), timeout=2), times


async def test_echo_of_ulaw_bytes_is_garbage_as_recorded(emulator: Emulator, ari: Ari) -> None:
    name = "roundtrip_audiosocket_ulaw_send_ulaw"
    observed = case(f"{name}.json")["observed"]
    back, _ = await _roundtrip(ari, "ulaw", name, paced=True)
    assert {len(p) for _, p in back} == set(observed["received"]["kinds"]["0x10"]["payload_lens"])
    recorded_rms = [r for r in observed["returned_rms_per_frame"] if r]
    ours = [rms(ulaw(p)) for _, p in back][10:]
    assert abs(np.median(ours) - np.median(recorded_rms)) < 1500  # noise, ~17500


async def test_echo_of_slin_into_ulaw_channel_is_clean(emulator: Emulator, ari: Ari) -> None:
    name = "roundtrip_audiosocket_ulaw_send_slin"
    back, times = await _roundtrip(ari, "ulaw", name, paced=True)
    assert len(back) == 50 and {len(p) for _, p in back} == {160}
    assert abs(np.median([rms(ulaw(p)) for _, p in back][10:]) - 5650) < 200
    assert np.median([t - s for (t, _), s in zip(back, times, strict=True)]) < 0.005


async def test_burst_in_comes_out_as_a_burst(emulator: Emulator, ari: Ari) -> None:
    name = "roundtrip_audiosocket_slin_send_slin_burst"
    observed = case(f"{name}.json")["observed"]
    back, times = await _roundtrip(ari, "slin", name, paced=False)
    assert len(back) == observed["received"]["kinds"]["0x10"]["count"]
    assert back[-1][0] - back[0][0] < 0.05  # not re-paced
    assert back[-1][0] - times[0] < 0.1
    sent = [d[3:] for _, d in records(f"{name}_to_asterisk.bin")]
    identical = sum(p == s for (_, p), s in zip(back, sent, strict=True))
    assert identical == observed["latency"]["identical_payloads"]  # the silent ones


async def test_app_hangup_message_and_close_end_the_call(emulator: Emulator, ari: Ari) -> None:
    for ending in (audiosocket.HANGUP, b""):
        em, _, peer, _ = await leg(ari, "slin", exten=None)
        await asyncio.sleep(0.02)
        if ending:
            peer.send(ending)
        else:
            assert peer.writer is not None
            peer.writer.close()
        destroyed = await ari.wait_event(
            lambda e, i=em["id"]: e["type"] == "ChannelDestroyed" and e["channel"]["id"] == i
        )
        request = next(e for e in ari.of(em["id"]) if e["type"] == "ChannelHangupRequest")
        assert request["cause"] == 16 and "soft" not in request
        assert destroyed["cause_txt"] == "Normal Clearing"
        await peer.close()


async def test_conference_mix_matches_recording(emulator: Emulator, ari: Ari) -> None:
    recorded = case("conference_audiosocket_ulaw.json")
    bridge = await ari.ok("POST", "/bridges", type="mixing", name="conference")
    a = await ari.originate("tone")
    b = await ari.originate("tone880")
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=f"{a['id']},{b['id']}")
    peer = await AudioSocketPeer.open()
    em = await ari.audiosocket_media(peer, "ulaw")
    joined = time.monotonic()
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=em["id"])
    audio = await wait_audio(peer, 25)
    # Softmix sends at once, silence included (not after the first tone frame).
    assert audio[0][0] - joined < 0.05 + LOADED_SLACK
    assert {len(p) for _, p in audio} == {160}
    got = [(level(ulaw(p), 440, 8000), level(ulaw(p), 880, 8000)) for _, p in audio]
    want = recorded["observed"]["levels_per_frame_440_880"]
    assert got[0] == (0.0, 0.0) and want[0] == [0, 0]
    tail = np.array(got[5:])
    assert tail.min() > 6500 and tail.max() < 8000  # both at full level, not halved
    snapshot = await ari.ok("GET", f"/bridges/{bridge['id']}")
    want_get = next(s for s in recorded["steps"] if s["request"].startswith("GET /ari/bridges"))
    assert snapshot["technology"] == want_get["response"]["technology"] == "softmix"
    entered = next(e for e in ari.of(em["id"]) if e["type"] == "ChannelEnteredBridge")
    assert entered["bridge"]["technology"] == "simple_bridge"  # the snapshot before the switch
    peers = [
        e for _, e in ari.events if e["type"] == "ChannelVarset" and e["variable"] == "BRIDGEPEER"
    ]
    assert [e["channel"]["id"] for e in peers[-3:]] == [em["id"], a["id"], b["id"]]
    assert peers[-3]["value"] == ",".join(sorted([a["name"], b["name"]]))
    await ari.ok("DELETE", f"/channels/{em['id']}")
    left = await ari.wait_event(lambda e: e["type"] == "ChannelLeftBridge")
    assert left["bridge"]["technology"] == "softmix"
    assert (await ari.ok("GET", f"/bridges/{bridge['id']}"))["technology"] == "simple_bridge"


async def test_demo_conference_mixes_both_participants(emulator: Emulator, ari: Ari) -> None:
    await ari.ok("POST", f"/applications/{APP}/subscription", eventSource=f"bridge:{CONFERENCE_ID}")
    conference = await ari.ok("GET", f"/bridges/{CONFERENCE_ID}")
    assert len(conference["channels"]) == 2
    em, _, peer, _ = await leg(ari, "slin", exten=None)
    await ari.ok("POST", f"/bridges/{CONFERENCE_ID}/addChannel", channel=em["id"])
    audio = await wait_audio(peer, 15)
    tail = np.array([(level(pcm(p), 440, 8000), level(pcm(p), 880, 8000)) for _, p in audio[5:]])
    assert tail.min() > 6500
    emulator.end_conference(CONFERENCE_ID)
    destroyed = await ari.wait_event(lambda e: e["type"] == "BridgeDestroyed")
    assert destroyed["bridge"]["id"] == CONFERENCE_ID
