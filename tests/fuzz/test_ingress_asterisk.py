"""Bad media from 'Asterisk', end to end: injected on Asterisk's own socket of a live stream.

The emulator is faithful and never sends junk, so each test writes the junk itself through
the emulator's endpoint of the stream's externalMedia channel: from Asterisk's RTP socket to
the gateway's, into Asterisk's AudioSocket connection, onto Asterisk's media WebSocket. The
stream must go on (junk dropped and counted in ``mediastream_malformed_input_total``), and a
bystander stream on another call must not notice.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mediastream.asterisk.transports import RtpTransport
from mediastream.core import audiosocket
from mediastream.core.rtp import RtpPacket
from mediastream.streams import Stream
from mediastream_client import AudioFormat, Transport
from tests.fuzz.bystander import external_media_channel, listening, malformed
from tests.harness import Harness


def only_stream(harness: Harness, call_id: str) -> Stream:
    streams = [s for s in harness.gateway.streams.streams.values() if s.spec.target.id == call_id]
    assert len(streams) == 1
    return streams[0]


def asterisk_side(harness: Harness, stream: Stream) -> Any:
    assert stream.leg is not None
    return external_media_channel(harness.emulator.pbx.channels, stream.leg.channel_ids).tech


async def test_rtp_with_another_payload_type_is_dropped_and_counted(harness: Harness) -> None:
    victim_call, other_call = harness.emulator.add_call("tone"), harness.emulator.add_call("tone")
    async with (
        harness.client() as client,
        listening(client, other_call) as bystander,
        listening(client, victim_call, fmt=AudioFormat.ULAW) as victim,
    ):
        stream = only_stream(harness, victim_call)
        assert stream.leg is not None and isinstance(stream.leg.transport, RtpTransport)
        rtp = stream.leg.transport
        tech = asterisk_side(harness, stream)
        before = malformed("rtp")
        t0 = time.monotonic()
        # From Asterisk's own address: A-law (8), telephone-event (101), comfort noise (13).
        for i, pt in enumerate([8, 101, 13] * 10):
            packet = RtpPacket(
                pt, (tech._seq + 1000 + i) & 0xFFFF, i * 160, tech.ssrc, b"\x55" * 160
            )
            tech._transport.sendto(packet.serialize(), tech.remote)
            await asyncio.sleep(0.002)
        await victim.flowing(25)
        assert rtp.wrong_payload_type == 30
        assert malformed("rtp") - before == 30
        # The stream went on at its pace: nothing was concealed or resynced for the junk.
        assert rtp.jitter.stats.resyncs == 0
        assert victim.received_since(t0) >= 25
        victim.assert_unharmed()
        bystander.assert_unharmed()


async def test_rtp_payload_of_a_partial_sample_is_dropped_and_counted(harness: Harness) -> None:
    victim_call, other_call = harness.emulator.add_call("tone"), harness.emulator.add_call("tone")
    async with (
        harness.client() as client,
        listening(client, other_call) as bystander,
        listening(client, victim_call, fmt=AudioFormat.SLIN, transport=Transport.RTP) as victim,
    ):
        stream = only_stream(harness, victim_call)
        assert stream.leg is not None and stream.leg.fmt.is_linear
        tech = asterisk_side(harness, stream)
        before = malformed("rtp")
        # The right payload type (slin, PT 10) but 3 bytes: not whole 16-bit samples.
        packet = RtpPacket(
            tech.payload_type, (tech._seq + 5) & 0xFFFF, 0, tech.ssrc, b"\x01\x02\x03"
        )
        tech._transport.sendto(packet.serialize(), tech.remote)
        await victim.flowing(25)
        assert malformed("rtp") - before == 1
        victim.assert_unharmed()
        bystander.assert_unharmed()


@pytest.mark.parametrize("transport", [Transport.AUDIOSOCKET, Transport.WEBSOCKET])
async def test_a_frame_of_partial_samples_is_dropped_and_counted(
    harness: Harness, transport: Transport
) -> None:
    """AudioSocket and the WebSocket channel carry slin here: 3 bytes is not whole samples."""
    victim_call, other_call = harness.emulator.add_call("tone"), harness.emulator.add_call("tone")
    async with (
        harness.client() as client,
        listening(client, other_call) as bystander,
        listening(client, victim_call, fmt=AudioFormat.SLIN, transport=transport) as victim,
    ):
        stream = only_stream(harness, victim_call)
        assert stream.leg is not None and stream.leg.fmt.is_linear
        tech = asterisk_side(harness, stream)
        before = malformed(transport.value)
        if transport is Transport.AUDIOSOCKET:
            tech._writer.write(audiosocket.encode(audiosocket.Kind.AUDIO, b"\x01\x02\x03"))
        else:
            await tech._ws.send_bytes(b"\x01\x02\x03")
        await victim.flowing(25)
        assert malformed(transport.value) - before == 1
        victim.assert_unharmed()
        bystander.assert_unharmed()


async def test_audiosocket_messages_of_unknown_kinds_are_ignored(harness: Harness) -> None:
    victim_call, other_call = harness.emulator.add_call("tone"), harness.emulator.add_call("tone")
    async with (
        harness.client() as client,
        listening(client, other_call) as bystander,
        listening(client, victim_call, transport=Transport.AUDIOSOCKET) as victim,
    ):
        stream = only_stream(harness, victim_call)
        tech = asterisk_side(harness, stream)
        before = malformed("audiosocket")
        junk = (
            audiosocket.encode(0x02, b"")  # unassigned kind
            + audiosocket.encode(0x7F, b"\x00" * 100)  # unassigned kind with a payload
            + audiosocket.encode(audiosocket.Kind.ERROR, b"\x04")  # Asterisk's error kind
            + audiosocket.encode(audiosocket.Kind.UUID, b"\x00" * 16)  # a second UUID
            + audiosocket.encode(0x19, b"\x00\x00")  # just past the audio kinds
        )
        # One write: Asterisk's own audio messages go on the same byte stream.
        tech._writer.write(junk)
        await victim.flowing(25)
        assert malformed("audiosocket") == before  # ignored, not malformed: framing held
        victim.assert_unharmed()
        bystander.assert_unharmed()


@pytest.mark.parametrize(
    "text",
    [
        "not json at all",
        '{"event":5}',
        '{"event":"MEDIA_XOFF"',  # cut short
        "[" * 5000,  # nested past the recursion limit
        '{"event":"DTMF_END","digit":' + "9" * 5000 + "}",  # integer past the digit limit
        '{"event":"NO_SUCH_EVENT","channel_id":null}',
        "DTMF_END digit",  # plain text without key:value
        '{"event":"ERROR","channel_id":"x","error_text":"Unable to parse JSON command\\n"}',
        '{"event":"DTMF_END","channel_id":"x","digit":null}',
    ],
)
async def test_junk_text_on_the_websocket_channel_is_logged_and_ignored(
    harness: Harness, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    victim_call, other_call = harness.emulator.add_call("tone"), harness.emulator.add_call("tone")
    async with (
        harness.client() as client,
        listening(client, other_call) as bystander,
        listening(client, victim_call, transport=Transport.WEBSOCKET) as victim,
    ):
        stream = only_stream(harness, victim_call)
        tech = asterisk_side(harness, stream)
        caplog.set_level("WARNING", logger="mediastream.asterisk.websocket_channel")
        await tech._ws.send_str(text)
        await tech._ws.send_bytes(b"")  # an empty binary frame: no samples, nothing to do
        await victim.flowing(25)
        victim.assert_unharmed()
        bystander.assert_unharmed()
    if not text.startswith('{"event":"DTMF_END","channel_id"') and "NO_SUCH_EVENT" not in text:
        assert "WebSocket channel" in caplog.text
