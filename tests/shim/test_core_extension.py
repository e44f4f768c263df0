"""The core's VoIPBIN extension: a separate uplink format and VoIPBIN's RTP framing."""

from __future__ import annotations

import pytest

from mediastream.core.formats import AudioFormat
from mediastream.core.pcm import Transcoder, swap16
from mediastream.core.rtp import RtpPacket, parse_rtp
from mediastream.core.stream import (
    Downlink,
    Encapsulation,
    StreamSpec,
    Target,
    TargetKind,
    Transport,
    Uplink,
)
from mediastream.errors import InvalidArgument

CALL = Target(TargetKind.CALL, "c1")
SLIN_FRAME = bytes(range(256)) + bytes(range(64))


def spec(**kw: object) -> StreamSpec:
    return StreamSpec(target=CALL, **kw)  # type: ignore[arg-type]


def test_input_format_defaults_to_the_format() -> None:
    assert spec(format=AudioFormat.SLIN16).input_format is AudioFormat.SLIN16
    assert spec(uplink_format=AudioFormat.SLIN).input_format is AudioFormat.SLIN


def test_voipbin_default_is_ulaw_down_and_slin_up() -> None:
    s = spec(format=AudioFormat.ULAW, uplink_format=AudioFormat.SLIN)
    assert s.asterisk_format is AudioFormat.ULAW
    assert len(Downlink(s).push(b"\x7f" * 160)[0].data) == 160
    up = Uplink(s)
    # 320 bytes of slin are 20 ms; the leg gets them as mu-law.
    assert up.decode(SLIN_FRAME) == Transcoder(AudioFormat.SLIN, AudioFormat.ULAW).convert(
        SLIN_FRAME
    )
    with pytest.raises(InvalidArgument) as err:
        up.decode(b"\x00" * 161)
    assert err.value.reason == "PARTIAL_SAMPLE"
    # The cap on one message counts the client's format (slin), not the leg's.
    with pytest.raises(InvalidArgument, match=r"3200 bytes \(0.2 s of slin\)"):
        Uplink(s, max_ms=200).decode(b"\x00" * 3202)


def test_uplink_format_over_audiosocket_transport_goes_to_slin() -> None:
    s = spec(uplink_format=AudioFormat.SLIN, transport=Transport.AUDIOSOCKET)
    assert Uplink(s).decode(SLIN_FRAME) == SLIN_FRAME


@pytest.mark.parametrize("fmt", [AudioFormat.ULAW, AudioFormat.SLIN, AudioFormat.SLIN16])
def test_voipbin_rtp_is_pt_96_and_little_endian(fmt: AudioFormat) -> None:
    # Over the WebSocket transport the leg carries the client's format: no transcoding.
    s = spec(
        format=fmt, encapsulation=Encapsulation.RTP, transport=Transport.WEBSOCKET, voipbin_rtp=True
    )
    frame = (SLIN_FRAME * 2)[: fmt.frame_bytes]
    packet = parse_rtp(Downlink(s).push(frame)[0].data)
    assert packet.payload_type == 96 and packet.sequence_number == 1
    assert packet.payload == frame
    up = RtpPacket(96, 1, 0, 5, frame).serialize()
    assert Uplink(s).decode(up) == frame


def test_without_voipbin_rtp_linear_rtp_stays_big_endian() -> None:
    s = spec(format=AudioFormat.SLIN, encapsulation=Encapsulation.RTP)
    packet = parse_rtp(Downlink(s).push(SLIN_FRAME)[0].data)
    assert packet.payload_type == AudioFormat.SLIN.rtp_payload_type
    assert packet.payload == swap16(SLIN_FRAME)
    up = RtpPacket(10, 1, 0, 5, swap16(SLIN_FRAME)).serialize()
    assert Uplink(s).decode(up) == SLIN_FRAME
