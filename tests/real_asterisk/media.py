"""What a client hears and says on a stream, measured: shared by the real-Asterisk tests."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from mediastream_client import (
    AudioChunk,
    AudioFormat,
    Direction,
    DtmfReceived,
    MediaStreamClient,
    Stopped,
    Transport,
)
from tests.audio_checks import pcm16, sine

TALK_HZ = 1000.0
"""The tone a client speaks (distinct from the dialplan's 440/880 Hz and the 500 Hz prompt)."""

# Audio levels, in 16-bit sample units (amplitude of the tone). Playtones() was measured
# at 3574 on real Asterisk (the emulator plays it at 7200); a client speaks at 8000.
# "Heard" is well under either, well above "not heard" (silence, or a tone at another
# frequency leaking through the Goertzel window: measured under 50).
TONE_LEVEL = 1500.0
HEARD = 1000.0
"""The client's 1 kHz tone (amplitude 8000) came back from an echo at 1999 per frame on every
release (23.4.1, 20.20.1; rtp, audiosocket, websocket); a loaded machine slips frames (a 20 ms
window at 500 or 1499), which took a 2 s window down to 1428 on 20.20.1. Not heard is < 50."""
NOT_HEARD = 300.0

ULAW_BIAS = 0x84


def ulaw_to_pcm(data: bytes) -> bytes:
    """G.711 mu-law bytes as 16-bit little-endian samples."""
    u = ~np.frombuffer(data, np.uint8).astype(np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype("<i2").tobytes()


def samples_of(data: bytes, fmt: AudioFormat) -> npt.NDArray[np.float64]:
    """Received bytes of ``fmt`` as float samples."""
    return pcm16(ulaw_to_pcm(data) if fmt is AudioFormat.ULAW else data)


SETTLE_S = 0.6
"""Audio dropped at the start of a recording: a stream's first ~0.5 s is silence on real
Asterisk and on the emulator alike (snoop set-up, the media path's first frames)."""


async def record(
    client: MediaStreamClient,
    seconds: float,
    *,
    fmt: AudioFormat = AudioFormat.SLIN,
    settle: float = SETTLE_S,
    **kw: object,
) -> npt.NDArray[np.float64]:
    """Listen for ``settle + seconds`` of audio and return the last ``seconds`` of it.

    ``kw``: call_id or conference_id, direction, transport...
    """
    seconds += settle
    got = bytearray()
    async with client.listen(format=fmt, **kw) as stream:  # type: ignore[arg-type]
        assert stream.info is not None
        want = int(seconds * stream.info.sample_rate) * fmt.sample_width
        # Real time plus a margin for set-up on a loaded machine (measured < 1 s).
        async with asyncio.timeout(seconds + 10):
            async for chunk in stream.audio():
                got += chunk.data
                if len(got) >= want:
                    break
    return samples_of(bytes(got), fmt)[int(settle * fmt.sample_rate) :]


@dataclass
class Talk:
    """What came back while a client spoke on a two-way stream."""

    heard: npt.NDArray[np.float64]
    rate: int
    digits: list[str] = field(default_factory=list)
    stopped: Stopped | None = None


async def talk(
    client: MediaStreamClient,
    *,
    transport: Transport,
    seconds: float = 2.0,
    fmt: AudioFormat = AudioFormat.SLIN,
    hz: float = TALK_HZ,
    direction: Direction = Direction.IN,
    settle: float = 0.6,
    **target: str,
) -> Talk:
    """Speak a tone on a two-way stream for ``seconds`` and record what the call sends back.

    The client listens ``in`` (what the call reads): with an echo as the call's far end, its
    own voice comes back there exactly when the call heard it. The first ``settle`` seconds
    are dropped (set-up of the snoop and of the echo path).
    """
    rate = fmt.sample_rate
    frame = rate // 50 * 2
    tone = sine(hz, seconds, rate)
    got = bytearray()
    async with client.stream(
        format=AudioFormat.SLIN if fmt is AudioFormat.ULAW else fmt,
        direction=direction,
        transport=transport,
        **target,  # type: ignore[arg-type]
    ) as stream:

        async def speak() -> None:
            # Paced a little ahead of real time: the gateway plays at the call's own clock.
            for i in range(0, len(tone), frame):
                await stream.send(tone[i : i + frame])
                await asyncio.sleep(0.018)

        speaker = asyncio.create_task(speak())
        want = int(seconds * rate) * 2
        try:
            async with asyncio.timeout(seconds + 10):
                async for chunk in stream.audio():
                    got += chunk.data
                    if len(got) >= want:
                        break
        finally:
            speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await speaker
    samples = pcm16(bytes(got))
    return Talk(samples[int(settle * rate) :], rate)


async def collect_digits(stream: object, count: int, timeout: float = 10.0) -> list[str]:
    """The first ``count`` DTMF digits a stream reports."""
    digits: list[str] = []
    async with asyncio.timeout(timeout):
        async for event in stream:  # type: ignore[attr-defined]
            if isinstance(event, DtmfReceived):
                digits.append(event.digit)
                if len(digits) == count:
                    break
    return digits


async def until_stopped(stream: object, timeout: float = 15.0) -> Stopped:
    """Read a stream to its end and return its final event."""
    async with asyncio.timeout(timeout):
        async for event in stream:  # type: ignore[attr-defined]
            if isinstance(event, Stopped):
                return event
            if isinstance(event, AudioChunk):
                continue
    raise AssertionError("the stream ended without a Stopped event")
