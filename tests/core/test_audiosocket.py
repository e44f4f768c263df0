"""AudioSocket framing: encoders, the incremental decoder, and recorded Asterisk streams."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediastream.core.audiosocket import (
    HANGUP,
    AudioSocketDecoder,
    AudioSocketError,
    Kind,
    Message,
    audio_kind_for_rate,
    encode,
    encode_audio,
    encode_dtmf,
    encode_uuid,
    is_audio_kind,
    sample_rate_of,
)
from tests.asterisk_fixtures import case, records


def em_data(name: str) -> str:
    steps = case(f"{name}.json")["steps"]
    (em,) = [s for s in steps if "externalMedia" in s.get("request", "")]
    return str(em["params"]["data"])


@pytest.mark.parametrize(("name", "size"), [("audiosocket_slin", 320), ("audiosocket_ulaw", 160)])
def test_recorded_stream_decodes(name: str, size: int) -> None:
    recs = [d for _, d in records(f"{name}_from_asterisk.bin")]
    dec = AudioSocketDecoder()
    msgs = dec.feed(b"".join(recs))
    assert dec.pending == 0
    assert len(msgs) == len(recs) > 50
    first = msgs[0]
    assert first.kind == Kind.UUID
    assert first.uuid == uuid.UUID(em_data(name))
    assert first.payload == uuid.UUID(em_data(name)).bytes
    assert recs[0] == encode_uuid(first.uuid) == b"\x01\x00\x10" + first.payload
    # Kind is 0x10 even for format=ulaw; the payload size tells the codec apart.
    assert {(m.kind, len(m.payload)) for m in msgs[1:]} == {(Kind.AUDIO, size)}
    assert all(m.encode() == r for m, r in zip(msgs, recs, strict=True))
    assert HANGUP not in recs  # Asterisk just closes the connection


def test_recorded_slin_is_little_endian_440hz() -> None:
    msgs = AudioSocketDecoder().feed(
        b"".join(d for _, d in records("audiosocket_slin_from_asterisk.bin"))
    )
    x = np.frombuffer(b"".join(m.payload for m in msgs[20:30]), "<i2").astype(float)
    t = np.arange(len(x)) / 8000
    lvl = 2 * np.hypot(x @ np.cos(2 * np.pi * 440 * t), x @ np.sin(2 * np.pi * 440 * t)) / len(x)
    assert 6800 < lvl < 7600
    assert msgs[1].sample_rate == 8000


def test_recorded_dtmf_digits() -> None:
    stream = b"".join(d for _, d in records("dtmf_audiosocket_slin_from_asterisk.bin"))
    msgs = AudioSocketDecoder().feed(stream)
    assert msgs[0].uuid == uuid.UUID(em_data("dtmf_audiosocket_slin"))
    digits = [m for m in msgs if m.kind == Kind.DTMF]
    assert [m.digit for m in digits] == ["1", "2", "#"]
    assert [m.encode() for m in digits] == [b"\x03\x00\x011", b"\x03\x00\x012", b"\x03\x00\x01#"]
    assert [encode_dtmf(m.digit) for m in digits] == [m.encode() for m in digits]


def test_app_side_of_roundtrip_matches_encode_audio() -> None:
    for _, data in records("roundtrip_audiosocket_slin_send_slin_to_asterisk.bin"):
        if data[0] == Kind.AUDIO:
            assert encode_audio(data[3:]) == data
            assert len(data) == 3 + 320


MESSAGES = st.lists(
    st.one_of(
        st.builds(
            Message, st.sampled_from([0x10, 0x12, 0x16]), st.binary(min_size=1, max_size=700)
        ),
        st.builds(Message, st.just(0x01), st.binary(min_size=16, max_size=16)),
        st.builds(Message, st.just(0x03), st.sampled_from([b"1", b"#", b"D"])),
        st.builds(Message, st.sampled_from([0x00, 0x02, 0x7F, 0xFF]), st.binary(max_size=5)),
    ),
    max_size=12,
)


@given(MESSAGES, st.lists(st.integers(0, 10_000), max_size=20))
def test_any_split_gives_the_same_messages(msgs: list[Message], cuts: list[int]) -> None:
    stream = b"".join(encode(m.kind, m.payload) for m in msgs)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    dec = AudioSocketDecoder()
    out: list[Message] = []
    prev = 0
    for p in [*points, len(stream)]:
        out += dec.feed(stream[prev:p])
        prev = p
    assert out == msgs
    assert dec.pending == 0


@given(MESSAGES, st.integers(1, 2))
def test_partial_tail_is_pending(msgs: list[Message], drop: int) -> None:
    stream = b"".join(encode(m.kind, m.payload) for m in msgs)
    if not stream:
        return
    dec = AudioSocketDecoder()
    out = dec.feed(stream[:-drop])
    assert out == msgs[: len(out)]
    assert len(out) == len(msgs) - 1
    last = encode(msgs[-1].kind, msgs[-1].payload)
    assert dec.pending == len(last) - drop
    assert dec.feed(stream[-drop:]) == msgs[-1:]


def test_byte_at_a_time_big_message() -> None:
    payload = bytes(range(256)) * 255
    stream = encode(0x16, payload)
    dec = AudioSocketDecoder()
    out = [m for i in range(len(stream)) for m in dec.feed(stream[i : i + 1])]
    assert out == [Message(0x16, payload)]


def test_unknown_kind_survives_as_int() -> None:
    (m,) = AudioSocketDecoder().feed(b"\x02\x00\x01\x07")
    assert m.kind == 0x02 and m.payload == b"\x07"
    assert not m.is_audio
    with pytest.raises(ValueError, match="not a UUID"):
        _ = m.uuid
    with pytest.raises(ValueError, match="not a DTMF"):
        _ = m.digit


def test_error_over_max_payload_keeps_earlier_messages_and_fails() -> None:
    dec = AudioSocketDecoder(max_payload=1000)
    good = encode_audio(bytes(320))
    bad = b"\x10\x03\xe9" + bytes(10)  # declares 1001
    with pytest.raises(AudioSocketError) as info:
        dec.feed(good + good + bad)
    assert info.value.reason == "message kind 0x10 declares 1001 bytes, over 1000"
    assert info.value.messages == [Message(0x10, bytes(320))] * 2
    assert dec.failed
    assert dec.pending == len(bad)
    with pytest.raises(AudioSocketError) as again:
        dec.feed(good)
    assert again.value.reason == info.value.reason
    assert again.value.messages == []
    assert dec.pending == len(bad) + len(good)


def test_error_zero_length_audio() -> None:
    dec = AudioSocketDecoder()
    assert dec.feed(HANGUP) == [Message(0, b"")]  # zero-length hangup is fine
    with pytest.raises(AudioSocketError, match="audio message kind 0x12 with zero length"):
        dec.feed(b"\x12\x00\x00")


def test_error_detected_in_split_header() -> None:
    dec = AudioSocketDecoder(max_payload=320)
    assert dec.feed(b"\x10\x01") == []
    with pytest.raises(AudioSocketError, match="declares 321"):
        dec.feed(b"\x41")


def test_encode_limits() -> None:
    assert encode(Kind.AUDIO, bytes(65535))[:3] == b"\x10\xff\xff"
    with pytest.raises(AudioSocketError, match="65536 bytes does not fit"):
        encode(Kind.AUDIO, bytes(65536))
    with pytest.raises(AudioSocketError, match="not a byte"):
        encode(256)
    with pytest.raises(AudioSocketError, match="empty audio"):
        encode_audio(b"")
    with pytest.raises(AudioSocketError, match="whole 16-bit samples"):
        encode_audio(b"\x00")
    with pytest.raises(AudioSocketError, match="does not fit"):
        encode_audio(bytes(65536))
    with pytest.raises(AudioSocketError, match="not an audio kind"):
        encode_audio(b"\x00\x00", kind=Kind.DTMF)
    with pytest.raises(AudioSocketError, match="not a DTMF digit"):
        encode_dtmf("x")
    assert encode_audio(b"\x01\x02", kind=Kind.SLIN16) == b"\x12\x00\x02\x01\x02"
    assert HANGUP == encode(Kind.HANGUP) == b"\x00\x00\x00"


def test_sample_rates() -> None:
    expected = {
        0x10: 8000,
        0x11: 12000,
        0x12: 16000,
        0x13: 24000,
        0x14: 32000,
        0x15: 44100,
        0x16: 48000,
        0x17: 96000,
        0x18: 192000,
    }
    assert {k: sample_rate_of(k) for k in expected} == expected
    assert all(audio_kind_for_rate(r) == k for k, r in expected.items())
    assert [k for k in range(256) if is_audio_kind(k)] == list(expected)
    for kind in (0x00, 0x01, 0x03, 0x19, 0xFF):
        with pytest.raises(ValueError, match="does not carry audio"):
            sample_rate_of(kind)
    with pytest.raises(ValueError, match="no AudioSocket kind"):
        audio_kind_for_rate(22050)
