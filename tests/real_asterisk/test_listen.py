"""Listening: each transport x format hears the call at the right level and frequency."""

from __future__ import annotations

import pytest

from mediastream_client import AudioFormat, Direction, Transport
from tests.audio_checks import dominant_hz, tone_level
from tests.real_asterisk.conftest import TRANSPORTS, Backend, RunningGateway
from tests.real_asterisk.media import NOT_HEARD, TONE_LEVEL, record
from tests.real_asterisk.platform import Platform

FORMATS = (AudioFormat.ULAW, AudioFormat.SLIN, AudioFormat.SLIN16)


def _needs(backend: Backend, transport: Transport) -> None:
    reason = backend.supports(transport)
    if reason:
        pytest.fail(reason)


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.value)
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.value)
async def test_listen_hears_the_call_tone(
    backend: Backend,
    gw: RunningGateway,
    platform: Platform,
    transport: Transport,
    fmt: AudioFormat,
) -> None:
    _needs(backend, transport)
    call = await platform.stasis_call("tone")
    async with gw.client() as client:
        samples = await record(client, 1.0, fmt=fmt, call_id=call, transport=transport)
    rate = fmt.sample_rate
    assert len(samples) == rate
    # The 1 s window resolves 1 Hz; Asterisk's tone generator is exact.
    assert abs(dominant_hz(samples, rate) - 440) < 3
    assert tone_level(samples, rate, 440) > TONE_LEVEL


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.value)
@pytest.mark.parametrize(
    ("direction", "hears_tone"),
    [(Direction.IN, True), (Direction.OUT, False), (Direction.BOTH, True)],
    ids=["in", "out", "both"],
)
async def test_direction_selects_whose_audio_is_heard(
    backend: Backend,
    gw: RunningGateway,
    platform: Platform,
    transport: Transport,
    direction: Direction,
    hears_tone: bool,
) -> None:
    # The tone comes from the call's far end: it is what the call reads (`in`); nothing
    # is written to the call (`out`), which is silent.
    _needs(backend, transport)
    call = await platform.stasis_call("tone")
    async with gw.client() as client:
        samples = await record(client, 0.8, call_id=call, direction=direction, transport=transport)
    level = tone_level(samples, 8000, 440)
    if hears_tone:
        assert level > TONE_LEVEL
    else:
        assert level < NOT_HEARD


async def test_listen_to_a_call_with_asterisk_style_ids(
    backend: Backend, gw: RunningGateway, platform: Platform
) -> None:
    # A call held by a platform by Asterisk's own uniqueid (`1795515126.1745`), not a UUID.
    call = await platform.stasis_call("tone880", channel_id=None)
    assert "." in call
    async with gw.client() as client:
        samples = await record(client, 0.8, call_id=call, transport=Transport.RTP)
    assert abs(dominant_hz(samples, 8000) - 880) < 3
    # Playtones(880) came through at 1151-2290 (0.8 s windows; 440 Hz at ~3500): lower than
    # 440 Hz on every release, not yet understood (gaps in the path?). Heard, not silent.
    assert tone_level(samples, 8000, 880) > 1000
