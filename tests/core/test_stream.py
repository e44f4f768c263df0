"""Stream framing: frames from Asterisk to client chunks, and client chunks back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediastream.core import audiosocket
from mediastream.core.formats import AudioFormat
from mediastream.core.pcm import swap16
from mediastream.core.rtp import PT_VOIPBIN, RtpPacket, parse_rtp
from mediastream.core.stream import (
    Chunk,
    Direction,
    Downlink,
    DownlinkBuffer,
    Dtmf,
    Encapsulation,
    StreamSpec,
    Target,
    TargetKind,
    Transport,
    Uplink,
    validate_chunk_ms,
    validate_target_id,
)
from mediastream.errors import InvalidArgument
from tests.audio_checks import sine

CALL = Target(TargetKind.CALL, "c1")


def spec(**kw: object) -> StreamSpec:
    return StreamSpec(target=CALL, **kw)  # type: ignore[arg-type]


def test_asterisk_side_format_follows_what_asterisk_accepts() -> None:
    assert spec(format=AudioFormat.ULAW).asterisk_format is AudioFormat.ULAW
    assert (
        spec(format=AudioFormat.SLIN16, bidirectional=False).asterisk_format is AudioFormat.SLIN16
    )
    # RTP drops PT 118 coming in: a two-way slin16 stream rides on 8 kHz slin.
    assert spec(format=AudioFormat.SLIN16).asterisk_format is AudioFormat.SLIN
    # AudioSocket input is always read as 8 kHz slin.
    assert spec(format=AudioFormat.ULAW, transport=Transport.AUDIOSOCKET).asterisk_format is (
        AudioFormat.SLIN
    )
    assert spec(format=AudioFormat.SLIN16, transport=Transport.WEBSOCKET).asterisk_format is (
        AudioFormat.SLIN16
    )


def test_whisper_goes_to_the_party_heard() -> None:
    assert [d.whisper for d in Direction] == ["both", "out", "in"]


@pytest.mark.parametrize("chunk_ms", [0, 20, 40, 100, 200])
def test_valid_chunk_ms(chunk_ms: int) -> None:
    assert validate_chunk_ms(chunk_ms) == (chunk_ms or 20)


@pytest.mark.parametrize("chunk_ms", [10, 30, 220, 1000])
def test_invalid_chunk_ms_names_field(chunk_ms: int) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_chunk_ms(chunk_ms)
    assert err.value.field == "config.chunk_ms"


@pytest.mark.parametrize("bad", ["", "a b", "../etc", "x" * 129, "é", "1795515126.1745\n", "-x"])
def test_invalid_ids(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_target_id("config.call_id", bad)


@pytest.mark.parametrize(
    "good", ["1795515126.1745", "00000000-0000-4000-8000-000000000440", "x" * 128, "a:b_c"]
)
def test_asterisk_and_uuid_ids_are_valid(good: str) -> None:
    assert validate_target_id("config.call_id", good) == good


def test_downlink_groups_frames_into_chunks_with_seq_and_timestamp() -> None:
    down = Downlink(spec(format=AudioFormat.ULAW, chunk_ms=60))
    chunks = [c for i in range(7) for c in down.push(bytes([i]) * 160)]
    assert [len(c.data) for c in chunks] == [480, 480]
    assert [(c.sequence_number, c.timestamp) for c in chunks] == [(0, 0), (1, 480)]
    assert chunks[1].data == bytes([3]) * 160 + bytes([4]) * 160 + bytes([5]) * 160


def test_downlink_rtp_is_voipbin_form() -> None:
    down = Downlink(spec(format=AudioFormat.ULAW, encapsulation=Encapsulation.RTP))
    first, second = (down.push(b"\x11" * 160)[0], down.push(b"\x22" * 160)[0])
    p1, p2 = parse_rtp(first.data), parse_rtp(second.data)
    assert (p1.payload_type, p1.sequence_number, p2.sequence_number) == (PT_VOIPBIN, 1, 2)
    assert p2.timestamp - p1.timestamp == 160 and p1.ssrc == p2.ssrc
    assert len(first.data) == 172 and p1.payload == b"\x11" * 160


def test_downlink_rtp_linear_is_big_endian() -> None:
    down = Downlink(spec(format=AudioFormat.SLIN, encapsulation=Encapsulation.RTP))
    frame = bytes(range(256)) + bytes(64)
    packet = parse_rtp(down.push(frame)[0].data)
    assert packet.payload == swap16(frame)


def test_downlink_audiosocket_is_one_message() -> None:
    down = Downlink(spec(format=AudioFormat.SLIN, encapsulation=Encapsulation.AUDIOSOCKET))
    data = down.push(b"\x01\x02" * 160)[0].data
    assert data[:3] == b"\x10\x01\x40" and data[3:] == b"\x01\x02" * 160


@given(st.binary(min_size=1, max_size=1600).filter(lambda b: len(b) % 2 == 0))
def test_uplink_sln_slin_is_identity(samples: bytes) -> None:
    assert Uplink(spec(format=AudioFormat.SLIN)).decode(samples) == samples


@given(st.binary(min_size=0, max_size=800))
def test_uplink_rtp_takes_payload_whatever_the_header(payload: bytes) -> None:
    up = Uplink(spec(format=AudioFormat.ULAW, encapsulation=Encapsulation.RTP))
    packet = RtpPacket(
        payload_type=96, sequence_number=7, timestamp=9, ssrc=1, payload=payload
    ).serialize()
    assert up.decode(packet) == payload


def test_uplink_audiosocket_must_be_audio() -> None:
    up = Uplink(spec(format=AudioFormat.SLIN, encapsulation=Encapsulation.AUDIOSOCKET))
    assert up.decode(audiosocket.encode(audiosocket.Kind.AUDIO, b"\x00\x01" * 160)) == (
        b"\x00\x01" * 160
    )
    with pytest.raises(InvalidArgument, match="kind 0x03 is not audio"):
        up.decode(audiosocket.encode(audiosocket.Kind.DTMF, b"1"))
    with pytest.raises(InvalidArgument, match="declares 320 bytes but 97 follow"):
        up.decode(audiosocket.encode(audiosocket.Kind.AUDIO, b"\x00" * 320)[:100])


AUDIOSOCKET_FIX = "AudioSocket messages start with a 3-byte header: kind 0x10 and a 16-bit length"


@pytest.mark.parametrize(
    "data",
    [
        bytes(320),  # silence: reads as a hang-up (kind 0x00) then a run of them
        sine(440, 0.02, 8000)[:320],  # a tone: its first bytes read as some header
        b"\x10\x01",  # shorter than a header
        b"\x10\x00\x00",  # an audio header with no samples
    ],
    ids=["silence", "tone", "short", "empty-audio"],
)
def test_uplink_audiosocket_refusal_says_how_a_message_is_built(data: bytes) -> None:
    up = Uplink(spec(format=AudioFormat.SLIN, encapsulation=Encapsulation.AUDIOSOCKET))
    with pytest.raises(InvalidArgument) as err:
        up.decode(data)
    assert err.value.reason == "MALFORMED_CHUNK" and err.value.field == "audio.data"
    assert err.value.message.startswith(AUDIOSOCKET_FIX)
    assert "encapsulation sln" in err.value.message


def test_uplink_takes_any_amount_up_to_its_cap_and_refuses_more_whole() -> None:
    up = Uplink(spec(format=AudioFormat.ULAW), max_ms=60_000)
    assert len(up.decode(b"\xff" * 480_000)) == 480_000  # 60 s in one message
    assert len(up.decode(b"\xff" * 8000)) == 8000  # 1 s
    with pytest.raises(InvalidArgument) as err:
        up.decode(b"\xff" * 480_001)
    assert err.value.reason == "CHUNK_TOO_LARGE" and err.value.field == "audio.data"
    assert err.value.message.startswith(
        "split the audio into messages of at most 480000 bytes (60 s of ulaw)"
    )


def test_uplink_default_cap_is_two_minutes() -> None:
    up = Uplink(spec(format=AudioFormat.SLIN))
    assert len(up.decode(bytes(16_000 * 120))) == 16_000 * 120
    with pytest.raises(InvalidArgument) as err:
        up.decode(bytes(16_000 * 120 + 2))
    assert err.value.reason == "CHUNK_TOO_LARGE"


def test_uplink_refuses_partial_sample() -> None:
    with pytest.raises(InvalidArgument) as err:
        Uplink(spec(format=AudioFormat.SLIN)).decode(b"\x00" * 321)
    assert err.value.reason == "PARTIAL_SAMPLE"
    assert "send an even number of bytes" in err.value.message


def test_uplink_rejects_garbage_rtp() -> None:
    up = Uplink(spec(format=AudioFormat.ULAW, encapsulation=Encapsulation.RTP))
    with pytest.raises(InvalidArgument, match="not an RTP packet") as err:
        up.decode(b"\x00" * 5)
    assert "12-byte header (first byte 0x80)" in err.value.message


# --- DownlinkBuffer: bounded replay for slow and reconnecting readers -------------


def chunk(seq: int) -> Chunk:
    return Chunk(bytes([seq & 0xFF]), seq, seq * 160)


def test_buffer_delivers_chunks_and_events_in_order() -> None:
    buf = DownlinkBuffer(capacity=8)
    buf.add_chunk(chunk(0))
    buf.add_event(Dtmf("1"))
    buf.add_chunk(chunk(1))
    assert buf.take() == [chunk(0), Dtmf("1"), chunk(1)]
    assert buf.take() == []


def test_slow_reader_skips_oldest_and_counts_them() -> None:
    buf = DownlinkBuffer(capacity=4)
    for i in range(10):
        buf.add_chunk(chunk(i))
    assert [c.sequence_number for c in buf.take()] == [6, 7, 8, 9]  # type: ignore[union-attr]
    assert buf.dropped == 6


def test_an_overtaken_reader_is_moved_on_and_counted_at_once() -> None:
    buf = DownlinkBuffer(capacity=4)
    for i in range(3):
        buf.add_chunk(chunk(i))
    assert buf.skip_lost() == 0
    for i in range(3, 10):
        buf.add_chunk(chunk(i))
    assert (buf.skip_lost(), buf.dropped, buf.cursor) == (6, 6, 6)
    assert buf.skip_lost() == 0
    assert [c.sequence_number for c in buf.take()] == [6, 7, 8, 9]  # type: ignore[union-attr]
    assert buf.dropped == 6


def test_take_at_most_n_chunks_keeps_events_in_place() -> None:
    buf = DownlinkBuffer(capacity=8)
    buf.add_event(Dtmf("1"))
    buf.add_chunk(chunk(0))
    buf.add_chunk(chunk(1))
    buf.add_event(Dtmf("2"))
    buf.add_chunk(chunk(2))
    assert buf.take(max_chunks=1) == [Dtmf("1"), chunk(0)]
    assert buf.take(max_chunks=1) == [chunk(1), Dtmf("2")]  # it came after chunk 1
    assert buf.take(max_chunks=1) == [chunk(2)]
    assert buf.take(max_chunks=1) == []
    buf.add_event(Dtmf("3"))
    assert buf.take(max_chunks=1) == [Dtmf("3")]


def test_a_reader_taking_one_chunk_at_a_time_gets_the_newest_after_falling_behind() -> None:
    buf = DownlinkBuffer(capacity=4)
    for i in range(3):
        buf.add_chunk(chunk(i))
    assert buf.take(max_chunks=1) == [chunk(0)]
    for i in range(3, 12):  # the reader is stuck writing chunk 0 meanwhile
        buf.add_chunk(chunk(i))
    assert buf.take(max_chunks=1) == [chunk(8)]
    assert buf.dropped == 7


def test_rewind_replays_what_is_still_held() -> None:
    buf = DownlinkBuffer(capacity=4)
    for i in range(6):
        buf.add_chunk(chunk(i))
    buf.take()
    assert buf.rewind(last_received=3) == 0
    assert [c.sequence_number for c in buf.take()] == [4, 5]  # type: ignore[union-attr]
    assert buf.rewind(last_received=0) == 1  # chunk 1 is gone; 2.. are replayed
    assert [c.sequence_number for c in buf.take()] == [2, 3, 4, 5]  # type: ignore[union-attr]
    assert buf.rewind(None) == 2


@given(
    st.lists(st.sampled_from(["chunk", "event", "take", "take1", "skip"]), max_size=300),
    st.integers(min_value=1, max_value=16),
)
def test_buffer_is_bounded_ordered_and_accounts_for_every_chunk(
    ops: list[str], capacity: int
) -> None:
    buf = DownlinkBuffer(capacity)
    seen: list[int] = []
    produced = 0
    for op in ops:
        if op == "chunk":
            buf.add_chunk(chunk(produced))
            produced += 1
        elif op == "event":
            buf.add_event(Dtmf("5"))
        elif op == "skip":
            buf.skip_lost()
        else:
            limit = 1 if op == "take1" else None
            seen += [c.sequence_number for c in buf.take(limit) if isinstance(c, Chunk)]
        assert sum(c is not None for c in buf._chunks) <= capacity
    seen += [c.sequence_number for c in buf.take() if isinstance(c, Chunk)]
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert len(seen) + buf.dropped == produced
