"""The safety net of issue 25: a stream that gets no frame from Asterisk is counted and logged."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from mediastream import metrics
from mediastream.emulator import TONE_CALL_ID
from mediastream.streams import STARVED_AFTER_S
from mediastream_client import AudioFormat, Transport
from tests.harness import Harness


def starved(transport: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "mediastream_streams_starved_total", {"transport": transport}
    )
    return value or 0.0


@pytest.mark.parametrize("transport", [Transport.AUDIOSOCKET, Transport.RTP])
async def test_a_stream_with_no_frames_is_counted_and_logged_once(
    harness: Harness, transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    manager = harness.gateway.streams
    before = starved(transport.value)
    async with (
        harness.client() as client,
        client.listen(call_id=TONE_CALL_ID, format=AudioFormat.SLIN, transport=transport) as st,
    ):
        assert st.info is not None
        stream = manager.streams[st.info.stream_id]
        # The leg that sends nothing: from here no frame reaches the stream.
        stream.on_frame = lambda frame: None  # type: ignore[method-assign]
        start = time.monotonic()
        # The clock is the test's: just under the limit nothing is reported...
        assert manager.check_starved(start + STARVED_AFTER_S - 0.1) == 0
        with caplog.at_level(logging.WARNING, logger="mediastream.streams"):
            # ...past it, once, however often it is looked at.
            assert manager.check_starved(start + STARVED_AFTER_S + 0.1) == 1
            assert manager.check_starved(start + STARVED_AFTER_S + 5) == 0
        assert stream.starved
        assert starved(transport.value) == before + 1
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert st.info.stream_id in warnings[0]
        assert TONE_CALL_ID in warnings[0]
        assert f"transport {transport.value}" in warnings[0]


async def test_a_stream_that_gets_frames_is_not_reported(harness: Harness) -> None:
    manager = harness.gateway.streams
    before = starved("audiosocket")
    async with (
        harness.client() as client,
        client.listen(
            call_id=TONE_CALL_ID, format=AudioFormat.SLIN, transport=Transport.AUDIOSOCKET
        ) as st,
    ):
        assert st.info is not None
        stream = manager.streams[st.info.stream_id]
        async for _ in st.audio():
            break  # frames flow
        # A frame has just arrived: however late the look, it measures from that frame.
        await asyncio.sleep(0.1)
        assert manager.check_starved() == 0
        assert not stream.starved
    assert starved("audiosocket") == before
