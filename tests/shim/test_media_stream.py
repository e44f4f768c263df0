"""VoIPBIN's media_stream wire forms, each encapsulation and format, both ways, on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct

import aiohttp
import numpy as np
import pytest

from mediastream.core import audiosocket
from mediastream.core.formats import AudioFormat
from mediastream.core.pcm import Transcoder
from mediastream.emulator import CONFERENCE_ID, ECHO_CALL_ID, TONE_CALL_ID
from tests.audio_checks import dominant_hz, sine
from tests.shim.conftest import Shim, pcm
from tests.timing import LOADED_SLACK

ENCAPSULATIONS = ["sln", "rtp", "audiosocket"]
# None: VoIPBIN's default, mu-law down and 16-bit 8 kHz slin up.
FORMATS: list[str | None] = [None, "ulaw", "slin", "slin16"]


def formats(name: str | None) -> tuple[AudioFormat, AudioFormat]:
    """(down, up) for a `format` query value."""
    if name is None:
        return AudioFormat.ULAW, AudioFormat.SLIN
    fmt = AudioFormat(name)
    return fmt, fmt


def unwrap_down(data: bytes, enc: str, fmt: AudioFormat, index: int, ssrc: list[int]) -> bytes:
    """The payload of downlink message `index`, after checking its exact layout."""
    frame = fmt.frame_bytes
    if enc == "sln":
        assert len(data) == frame
        return data
    if enc == "audiosocket":
        assert len(data) == 3 + frame
        assert data[0] == 0x10 and int.from_bytes(data[1:3], "big") == frame
        return data[3:]
    assert len(data) == 12 + frame
    b0, b1, seq, ts, this_ssrc = struct.unpack("!BBHII", data[:12])
    # V=2, no padding, no extension, no CSRC; M=0 and PT 96 whatever the format.
    assert (b0, b1) == (0x80, 96)
    assert seq == index + 1, "sequence numbers start at 1 and grow by 1"
    assert ts == index * fmt.samples_per_frame
    ssrc.append(this_ssrc)
    assert len(set(ssrc)) == 1
    return data[12:]


def wrap_up(samples: bytes, enc: str, seq: int, samples_per_frame: int) -> bytes:
    if enc == "sln":
        return samples
    if enc == "audiosocket":
        return audiosocket.encode(audiosocket.Kind.AUDIO, samples)
    # VoIPBIN reads the RTP payload as the little-endian samples it is.
    header = struct.pack("!BBHII", 0x80, 96, seq & 0xFFFF, seq * samples_per_frame, 0x1234)
    return header + samples


def query(enc: str, fmt: str | None) -> dict[str, str]:
    return {"encapsulation": enc, **({"format": fmt} if fmt else {})}


@pytest.mark.parametrize("fmt_name", FORMATS)
async def test_downlink_of_the_tone_call_is_440_hz(shim: Shim, fmt_name: str | None) -> None:
    down, _ = formats(fmt_name)
    payload = bytearray()
    async with shim.ws(shim.url(TONE_CALL_ID, **query("sln", fmt_name))) as ws:
        for _ in range(25):
            msg = await ws.receive(timeout=2)
            assert msg.type is aiohttp.WSMsgType.BINARY, "without events=json only binary is sent"
            assert len(msg.data) == down.frame_bytes
            payload += msg.data
    samples = pcm(bytes(payload), down)
    assert abs(dominant_hz(samples, down.sample_rate) - 440) < 10
    assert 5000 < np.abs(samples).max() < 9000


@pytest.mark.parametrize("fmt_name", FORMATS)
@pytest.mark.parametrize("enc", ENCAPSULATIONS)
async def test_each_form_both_ways_through_the_echo_call(
    shim: Shim, enc: str, fmt_name: str | None
) -> None:
    down, up = formats(fmt_name)
    tone = sine(1000, 0.3, up.sample_rate)
    if up is AudioFormat.ULAW:
        tone = Transcoder(AudioFormat.SLIN, AudioFormat.ULAW).convert(tone)
    ssrc: list[int] = []
    received = bytearray()
    async with shim.ws(shim.url(ECHO_CALL_ID, **query(enc, fmt_name))) as ws:
        step = up.frame_bytes
        # All at once: the gateway paces what it plays at one frame per 20 ms.
        for i in range(0, len(tone), step):
            await ws.send_bytes(wrap_up(tone[i : i + step], enc, i // step, up.samples_per_frame))
        for index in range(36):
            msg = await ws.receive(timeout=2)
            assert msg.type is aiohttp.WSMsgType.BINARY
            received += unwrap_down(msg.data, enc, down, index, ssrc)
    samples = pcm(bytes(received), down)
    loud = np.abs(samples) > 2000
    assert loud.sum() > 0.15 * down.sample_rate, "the echo of what was sent is missing"
    first = int(np.argmax(loud))
    echo = samples[first : first + int(0.15 * down.sample_rate)]
    assert abs(dominant_hz(echo, down.sample_rate) - 1000) < 15
    assert 6000 < np.abs(echo).max() < 10000, "sent at amplitude 8000, heard back at it"


@pytest.mark.parametrize("endpoint", ["media_stream", "twilio"])
async def test_a_call_with_an_asterisk_uniqueid_is_reached(shim: Shim, endpoint: str) -> None:
    # Asterisk names channels `<epoch>.<counter>` unless the platform sets an ID.
    call_id = shim.add_call("tone", asterisk_id=True)
    assert re.fullmatch(r"\d+\.\d+", call_id), call_id
    params = {"encapsulation": "sln"} if endpoint == "media_stream" else {}
    payload = bytearray()
    async with shim.ws(shim.url(call_id, endpoint, **params)) as ws:
        while len(payload) < 8000 // 2:
            msg = await ws.receive(timeout=2)
            if msg.type is aiohttp.WSMsgType.BINARY:
                payload += msg.data
            elif msg.type is aiohttp.WSMsgType.TEXT:
                event = json.loads(msg.data)
                if event.get("event") == "media":
                    payload += base64.b64decode(event["media"]["payload"])
            else:
                raise AssertionError(f"stream ended: {msg}")
    samples = pcm(bytes(payload), AudioFormat.ULAW)
    assert abs(dominant_hz(samples, 8000) - 440) < 10


async def test_conference_stream_hears_the_mix(shim: Shim) -> None:
    payload = bytearray()
    async with shim.ws(shim.url(CONFERENCE_ID, kind="conferences", encapsulation="sln")) as ws:
        for _ in range(25):
            payload += (await ws.receive(timeout=2)).data
    spectrum = np.abs(np.fft.rfft(pcm(bytes(payload), AudioFormat.ULAW)))
    freqs = np.fft.rfftfreq(len(payload), 1 / 8000)
    strongest = sorted(float(freqs[i]) for i in np.argsort(spectrum)[-2:])
    assert abs(strongest[0] - 440) < 10 and abs(strongest[1] - 880) < 10


async def test_uplink_is_paced_by_the_gateway(shim: Shim) -> None:
    # One second sent in one burst comes back over about a second, not at once.
    tone = sine(1000, 1.0, 8000)
    loud_at: list[float] = []
    loop = asyncio.get_running_loop()
    async with shim.ws(shim.url(ECHO_CALL_ID, encapsulation="sln", format="slin")) as ws:
        for i in range(0, len(tone), 320):
            await ws.send_bytes(tone[i : i + 320])
        for _ in range(70):
            msg = await ws.receive(timeout=2)
            if np.abs(pcm(msg.data, AudioFormat.SLIN)).max() > 2000:
                loud_at.append(loop.time())
    assert len(loud_at) >= 45
    # Paced: about a second (never much less); a burst would take a few ms. The
    # upper bound only allows for a loaded loop delivering the last frame late.
    assert 0.85 < loud_at[-1] - loud_at[0] < 1.0 + LOADED_SLACK
