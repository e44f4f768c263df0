"""UnicastRTP externalMedia against rtp_*.json and roundtrip_rtp_*.json."""

from __future__ import annotations

import asyncio
import time
from itertools import pairwise
from typing import Any

import numpy as np

from mediastream.emulator import Emulator
from tests.asterisk_fixtures import case, records
from tests.emulator.conftest import APP, Ari, UdpPeer, level, pcm, rtp_header, ulaw
from tests.timing import LOADED_SLACK


async def rtp_leg(
    ari: Ari, exten: str, fmt: str
) -> tuple[dict[str, Any], UdpPeer, tuple[str, int], float]:
    """The recorded setup: call, bridge, RTP externalMedia, addChannel."""
    call = await ari.originate(exten)
    bridge = await ari.ok("POST", "/bridges", type="mixing")
    peer = await UdpPeer.open()
    em = await ari.ok(
        "POST", "/channels/externalMedia", app=APP, external_host=peer.address, format=fmt
    )
    await ari.stasis_start(em["id"])
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=f"{call['id']},{em['id']}")
    joined = time.monotonic()
    local = (
        em["channelvars"]["UNICASTRTP_LOCAL_ADDRESS"],
        int(em["channelvars"]["UNICASTRTP_LOCAL_PORT"]),
    )
    return em, peer, local, joined


async def wait_packets(peer: UdpPeer, n: int, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while len(peer.packets) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def test_ulaw_stream_matches_recording(emulator: Emulator, ari: Ari) -> None:
    observed = case("rtp_ulaw.json")["observed"]
    em, peer, local, joined = await rtp_leg(ari, "tone", "ulaw")
    assert em["state"] == "Down"
    assert em["name"].startswith(f"UnicastRTP/{peer.address}-0x")
    assert list(em["channelvars"]) == ["UNICASTRTP_LOCAL_PORT", "UNICASTRTP_LOCAL_ADDRESS"]
    assert 20000 <= local[1] <= 20999 and local[1] % 2 == 0
    await wait_packets(peer, 30)
    packets = peer.packets[:30]
    headers = [rtp_header(d) for _, d, _ in packets]
    first = headers[0]
    want = observed["first_header"]
    for key in (
        "version",
        "padding",
        "extension",
        "csrc_count",
        "marker",
        "payload_type",
        "timestamp",
        "payload_len",
    ):
        assert first[key] == want[key], key
    assert {h["payload_type"] for h in headers} == set(observed["payload_types"])
    assert {h["payload_len"] for h in headers} == set(observed["payload_lens"])
    assert {(b["seq"] - a["seq"]) % 65536 for a, b in pairwise(headers)} == {1}
    assert {b["timestamp"] - a["timestamp"] for a, b in pairwise(headers)} == {160}
    assert len({h["ssrc"] for h in headers}) == 1
    assert not any(h["marker"] for h in headers)
    assert {addr for _, _, addr in packets} == {local}
    # The tone starts ~0.5 s after answer (Answer() waits for media), as recorded.
    first_t = packets[0][0] - joined
    # Never sooner than recorded (less 80 ms); later only by a loaded loop's slack.
    assert -0.08 < first_t - observed["first_packet_t"] < 0.08 + LOADED_SLACK
    gaps = np.diff([t for t, _, _ in packets]) * 1000
    # Paced at 20 ms: the typical gap is one frame; a late wake-up on a busy
    # machine makes a few gaps long and the next ones short, not most.
    assert 19 < float(np.median(gaps)) < 21
    assert np.percentile(np.abs(gaps - 20), 75) < 5
    # Same tone as the recording: 440 Hz at Playtones level, nothing at 880 Hz.
    recorded = [d for _, d in records("rtp_ulaw_from_asterisk.bin")]
    for ours, theirs in ((packets[10][1], recorded[10]), (packets[20][1], recorded[20])):
        got, ref = ulaw(ours[12:]), ulaw(theirs[12:])
        assert abs(level(got, 440, 8000) - level(ref, 440, 8000)) < 400
        assert level(got, 880, 8000) < 300


async def test_slin16_is_pt118_big_endian(emulator: Emulator, ari: Ari) -> None:
    observed = case("rtp_slin16.json")["observed"]
    _, peer, _, _ = await rtp_leg(ari, "tone", "slin16")
    await wait_packets(peer, 20)
    headers = [rtp_header(d) for _, d, _ in peer.packets[:20]]
    assert {h["payload_type"] for h in headers} == {118} == set(observed["payload_types"])
    assert {h["payload_len"] for h in headers} == {640}
    assert headers[0]["timestamp"] == observed["first_header"]["timestamp"] == 320
    assert {b["timestamp"] - a["timestamp"] for a, b in pairwise(headers)} == {320}
    mid = peer.packets[15][1][12:]
    assert abs(level(pcm(mid, ">"), 440, 16000) - 7100) < 500  # big-endian: the tone
    assert level(pcm(mid, "<"), 440, 16000) < 2000  # little-endian: noise


async def test_echo_returns_our_payloads_byte_identical_with_our_timestamps(
    emulator: Emulator, ari: Ari
) -> None:
    sent = [d for _, d in records("roundtrip_rtp_ulaw_to_asterisk.bin")]
    observed = case("roundtrip_rtp_ulaw.json")["observed"]
    _, peer, local, _ = await rtp_leg(ari, "echo", "ulaw")
    send_times = []
    for packet in sent:
        send_times.append(time.monotonic())
        peer.send(packet, local)
        await asyncio.sleep(0.02)
    await wait_packets(peer, len(sent), timeout=1)
    back = peer.packets
    assert len(back) == len(sent) == observed["latency"]["identical_payloads"]
    delays = []
    for (t, data, _), ours, t_sent in zip(back, sent, send_times, strict=True):
        h, mine = rtp_header(data), rtp_header(ours)
        assert data[12:] == ours[12:]
        assert h["timestamp"] == mine["timestamp"]  # Asterisk copies our timestamps
        assert h["marker"] == 0 and h["ssrc"] != mine["ssrc"]
        delays.append(t - t_sent)
    # Relayed at once, no jitter buffer (which would hold every packet 40 ms or
    # more): the typical packet is back within 15 ms; a busy machine's late
    # wake-up delays a few, by at most its slack.
    assert float(np.median(delays)) < 0.015
    assert max(delays) < 0.015 + LOADED_SLACK
    seqs = [rtp_header(d)["seq"] for _, d, _ in back]
    assert {(b - a) % 65536 for a, b in pairwise(seqs)} == {1}


async def test_burst_comes_back_as_a_burst(emulator: Emulator, ari: Ari) -> None:
    sent = [d for _, d in records("roundtrip_rtp_ulaw_to_asterisk.bin")][:20]
    _, peer, local, _ = await rtp_leg(ari, "echo", "ulaw")
    start = time.monotonic()
    for packet in sent:
        peer.send(packet, local)
    await wait_packets(peer, len(sent), timeout=1)
    assert len(peer.packets) == 20
    # Not re-paced: 20 packets paced at 20 ms would take 19 x 20 ms to come back.
    assert peer.packets[-1][0] - start < 19 * 0.020


async def test_slin16_sent_to_asterisk_is_dropped(emulator: Emulator, ari: Ari) -> None:
    sent = [d for _, d in records("roundtrip_rtp_slin16_to_asterisk.bin")][:15]
    assert len(list(records("roundtrip_rtp_slin16_from_asterisk.bin"))) == 0
    _, peer, local, _ = await rtp_leg(ari, "echo", "slin16")
    for packet in sent:
        peer.send(packet, local)
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.2)
    assert peer.packets == []


async def test_strict_rtp_ignores_other_sources_until_learned(emulator: Emulator, ari: Ari) -> None:
    sent = [d for _, d in records("roundtrip_rtp_ulaw_to_asterisk.bin")]
    _, peer, local, _ = await rtp_leg(ari, "echo", "ulaw")
    stranger = await UdpPeer.open()
    for packet in sent[:3]:
        stranger.send(packet, local)
    await asyncio.sleep(0.1)
    assert peer.packets == []  # three packets are not enough to learn a new source
    for packet in sent[3:6]:
        stranger.send(packet, local)
    await wait_packets(peer, 3, timeout=1)
    assert len(peer.packets) == 3  # learned on the 4th consecutive one; echo goes to external_host
    stranger.close()
