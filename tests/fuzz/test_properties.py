"""Hypothesis over structured inputs, through the same targets the corpus and atheris use.

Where `test_corpus.py` replays fixed bytes, these generate inputs shaped like the real thing
(RTP headers with every flag, AudioSocket message streams, JSON of every type where a string
was expected, text with lone surrogates, out-of-range enum numbers) so that the contracts are
checked well past the recordings. `FUZZ_EXAMPLES` (default 120) sets the examples per property.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediastream._proto import mediastream_pb2 as pb
from mediastream.core import audiosocket
from tests.fuzz import targets
from tests.fuzz.targets import SETTINGS, UPLINK_SPECS, WATCHED

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "120")),
    deadline=2000,  # ms: an input that takes longer is a hang
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("CI") == "true",
)

# Text as a peer may send it: any code point, lone surrogates included.
chars = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))
texts = st.lists(chars, max_size=60).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- RTP ---------------------------------------------------------------------------


@st.composite
def rtp_datagrams(draw: st.DrawFn) -> bytes:
    """A header with any version, flags, CSRC count and extension length, then any tail."""
    b0 = draw(st.integers(0, 255))
    b1 = draw(st.integers(0, 255))
    header = struct.pack("!BBHII", b0, b1, draw(st.integers(0, 0xFFFF)), 0, 0)
    body = draw(st.binary(max_size=80))
    if b0 & 0x10 and draw(st.booleans()):
        body = b"\xbe\xde" + struct.pack("!H", draw(st.integers(0, 40))) + body
    if b0 & 0x20 and draw(st.booleans()):
        body += bytes([draw(st.integers(0, 255))])
    return header[: draw(st.integers(0, 12))] if draw(st.booleans()) and not body else header + body


@FUZZ
@given(st.one_of(rtp_datagrams(), st.binary(max_size=200)))
def test_rtp_only_raises_rtp_error(data: bytes) -> None:
    targets.rtp(data)


# --- AudioSocket ----------------------------------------------------------------------

messages = st.builds(
    lambda kind, payload: audiosocket.encode(kind, payload),
    st.one_of(st.sampled_from(list(audiosocket.Kind)), st.integers(0, 255)),
    st.binary(max_size=400),
)


@FUZZ
@given(
    st.integers(0, 255),
    st.lists(st.one_of(messages, st.binary(max_size=8)), max_size=12).map(b"".join),
)
def test_audiosocket_any_bytes_any_split(seed: int, stream: bytes) -> None:
    targets.audiosocket_stream(bytes([seed]) + stream)


# --- WebSocket channel ------------------------------------------------------------------

event_names = st.sampled_from(
    ["MEDIA_START", "DTMF_END", "STATUS", "ERROR", "MEDIA_XON", "MEDIA_MARK_PROCESSED", "X"]
)


@FUZZ
@given(
    st.one_of(
        texts,
        st.builds(lambda n, rest: f"{n} {rest}", event_names, texts),
        st.builds(
            lambda name, fields: json.dumps({"event": name, **fields}, ensure_ascii=False),
            st.one_of(event_names, json_values),
            st.dictionaries(texts, json_values, max_size=6),
        ),
        st.integers(900, 5000).map(lambda d: '{"event":' + nested(d) + "}"),
    )
)
def test_wschannel_event_only_raises_wschannel_error(text: str) -> None:
    targets.wschannel_event(encode(text))


@FUZZ
@given(
    st.booleans(),
    st.one_of(
        texts,
        st.builds(
            lambda name, fields: json.dumps({"command": name, **fields}, ensure_ascii=False),
            st.one_of(
                st.sampled_from(["MARK_MEDIA", "SET_MEDIA_DIRECTION", "HANGUP"]), json_values
            ),
            st.dictionaries(st.sampled_from(["correlation_id", "direction", "x"]), json_values),
        ),
    ),
)
def test_wschannel_command_only_raises_wschannel_error(json_format: bool, text: str) -> None:
    targets.wschannel_command(bytes([json_format]) + encode(text))


# --- Uplink -----------------------------------------------------------------------------


@st.composite
def client_messages(draw: st.DrawFn) -> bytes:
    """Bare samples, RTP packets or AudioSocket messages of any size, or junk."""
    payload = draw(st.binary(max_size=3300))
    form = draw(st.integers(0, 3))
    if form == 0:
        return payload
    if form == 1:
        pt = draw(st.integers(0, 127))
        return struct.pack("!BBHII", 0x80, pt, 1, 0, 0) + payload
    if form == 2:
        kind = draw(st.sampled_from([0x10, 0x10, 0x11, 0x01, 0x00, 0xFF]))
        return audiosocket.encode(kind, payload[:0xFFFF])
    return payload[: draw(st.integers(0, 4))]


@FUZZ
@given(st.integers(0, len(UPLINK_SPECS) - 1), client_messages())
def test_uplink_decode_only_raises_invalid_argument(spec: int, data: bytes) -> None:
    targets.uplink(bytes([spec]) + data)


# --- gRPC StreamConfig ------------------------------------------------------------------

enum_numbers = st.one_of(st.integers(0, 4), st.integers(-(2**31), 2**31 - 1))


@st.composite
def stream_configs(draw: st.DrawFn) -> pb.StreamConfig:
    config = pb.StreamConfig(
        chunk_ms=draw(st.one_of(st.integers(0, 220), st.integers(0, 2**32 - 1))),
        resumable=draw(st.booleans()),
    )
    # Open enums: any int32 is carried, known to the contract or not.
    for field in ("format", "direction", "encapsulation", "transport"):
        setattr(config, field, draw(enum_numbers))
    which = draw(st.sampled_from(["call_id", "conference_id", None]))
    if which is not None:
        value = draw(st.one_of(texts, st.just("00000000-0000-4000-8000-000000000440")))
        setattr(config, which, value.encode("utf-8", "replace").decode("utf-8"))
    if draw(st.booleans()):
        config.resume.token = draw(texts).encode("utf-8", "replace").decode("utf-8")
    return config


@FUZZ
@given(stream_configs(), st.booleans())
def test_stream_config_only_raises_invalid_argument(config: pb.StreamConfig, bidi: bool) -> None:
    targets.check_stream_config(config, bidirectional=bidi)
    # The same message through the byte-level target (what the servicer receives).
    targets.stream_config(bytes([bidi]) + config.SerializeToString())


# --- WebSocket shim ---------------------------------------------------------------------

query_values = st.one_of(
    texts, st.sampled_from(["rtp", "sln", "audiosocket", "json", "ulaw", "slin", "slin16", ""])
)
query_keys = st.one_of(
    texts, st.sampled_from(["encapsulation", "events", "format", "token", "accesskey"])
)


@FUZZ
@given(
    st.sampled_from(["calls", "conferences"]),
    st.one_of(texts, st.uuids().map(str)),
    st.dictionaries(query_keys, query_values, max_size=5),
    st.dictionaries(st.sampled_from(["token", "accesskey", "x"]), texts, max_size=3),
    st.one_of(st.none(), texts, texts.map(lambda t: "Bearer " + t)),
)
def test_shim_request_parsers(
    kind: str,
    target_id: str,
    query: dict[str, str],
    cookies: dict[str, str],
    authorization: str | None,
) -> None:
    targets.check_shim_request(kind, target_id, query, cookies, authorization)


twilio_events = st.sampled_from(["media", "mark", "clear", "start", "stop", "dtmf"])


@FUZZ
@given(
    st.one_of(
        texts,
        st.builds(
            lambda event, fields: json.dumps({"event": event, **fields}, ensure_ascii=False),
            st.one_of(twilio_events, json_values),
            st.dictionaries(
                st.sampled_from(["media", "mark", "streamSid", "sequenceNumber"]), json_values
            ),
        ),
        st.builds(
            lambda payload: json.dumps({"event": "media", "media": {"payload": payload}}),
            st.one_of(st.binary(max_size=2000).map(lambda b: base64.b64encode(b).decode()), texts),
        ),
        st.integers(900, 20000).map(nested),
    )
)
def test_twilio_inbound_json_only_raises_media_stream_error(text: str) -> None:
    targets.twilio_message(encode(text))


@FUZZ
@given(
    st.booleans(),
    st.one_of(
        texts,
        st.builds(
            lambda kind, fields: json.dumps({"type": kind, **fields}, ensure_ascii=False),
            st.one_of(st.sampled_from(["mark", "clear", "dtmf", "hangup", "done"]), json_values),
            st.dictionaries(st.sampled_from(["name", "digits", "duration_ms"]), json_values),
        ),
    ),
)
def test_voipbin_control_only_raises_media_stream_error(conference: bool, text: str) -> None:
    targets.voipbin_control(bytes([conference]) + encode(text))


# --- Settings --------------------------------------------------------------------------

setting_values = st.one_of(
    texts,
    st.sampled_from(["nan", "inf", "-inf", "1e400", "0", "-1", "²", "٣", "1_000", "2147484"]),
    st.floats().map(str),
    st.integers().map(str),
    st.builds(lambda h, p: f"{h}:{p}", texts, texts),
)


@FUZZ
@given(st.integers(0, len(SETTINGS) - 1), st.booleans(), setting_values)
def test_every_setting_raises_only_config_error(index: int, env: bool, value: str) -> None:
    targets.settings(bytes([index | (0x80 if env else 0)]) + encode(value))


# --- ARI --------------------------------------------------------------------------------

ids = st.one_of(st.sampled_from(WATCHED), texts, json_values)


@st.composite
def ari_events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": draw(
            st.one_of(
                st.sampled_from(
                    [
                        "StasisStart",
                        "StasisEnd",
                        "ChannelDestroyed",
                        "ChannelHangupRequest",
                        "BridgeDestroyed",
                        "ChannelDtmfReceived",
                    ]
                ),
                json_values,
            )
        )
    }
    for key in ("channel", "bridge", "peer", "replace_channel"):
        if draw(st.booleans()):
            event[key] = draw(st.one_of(st.builds(lambda i: {"id": i}, ids), json_values))
    for key in ("digit", "duration_ms", "cause", "cause_txt", "asterisk_id"):
        if draw(st.booleans()):
            event[key] = draw(json_values)
    return event


@FUZZ
@given(
    st.one_of(
        ari_events().map(lambda e: json.dumps(e, ensure_ascii=False)),
        texts,
        json_values.map(json.dumps),
        st.integers(900, 5000).map(nested),
    )
)
def test_ari_event_dispatch_and_monitor_survive_junk(text: str) -> None:
    targets.ari_event(encode(text))


@FUZZ
@given(
    st.one_of(
        json_values,
        st.lists(st.dictionaries(st.sampled_from(["id", "name", "dialplan"]), json_values)),
        st.dictionaries(st.sampled_from(["id", "channelvars"]), json_values),
    )
)
def test_ari_answers_of_any_shape(answer: Any) -> None:
    targets.ari_answer(json.dumps(answer).encode())
