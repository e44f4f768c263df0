"""Fuzz targets: one per parser, each taking raw bytes and checking the parser's contract.

The contract of every target: the parser returns, or raises its documented error type, and
nothing else; and it does so in bounded time (the corpus replay times every input). A target
raises `AssertionError` (or lets the unexpected exception through) when the contract breaks.

The same targets are driven three ways: `test_corpus.py` replays `corpus/<target>/` in CI,
`test_properties.py` runs hypothesis over structured inputs, and `atheris_<target>.py` runs
the coverage-guided fuzzer for as long as asked.

Byte layouts of the structured targets are chosen so that any bytes mean something (a fuzzer
should never waste its time on inputs the target throws away): see each target's docstring.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf.message import DecodeError

from mediastream import config
from mediastream._proto import mediastream_pb2 as pb
from mediastream.api.grpc_service import spec_from_config
from mediastream.asterisk import legs
from mediastream.asterisk.ari import AriClient, AriConfig, event_ids
from mediastream.core import audiosocket, wschannel
from mediastream.core.dtmf import DIGITS
from mediastream.core.formats import AudioFormat
from mediastream.core.rtp import RTP_HEADER_SIZE, RtpError, parse_rtp
from mediastream.core.stream import (
    Encapsulation,
    StreamSpec,
    Target,
    TargetKind,
    Transport,
    Uplink,
)
from mediastream.errors import InvalidArgument, MediaStreamError
from mediastream.shim import params, twilio, voipbin

Fuzz = Callable[[bytes], None]

WATCHED = ("watched-channel", "watched-bridge")
"""IDs the ARI target watches: events about them reach a leg's monitor."""


def text_of(data: bytes) -> str:
    """Bytes as text, lone surrogates included (what no UTF-8 frame can carry)."""
    return (
        data.decode("utf-8", "surrogatepass")
        if _valid(data)
        else data.decode("utf-8", "surrogateescape")
    )


def _valid(data: bytes) -> bool:
    try:
        data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return False
    return True


# --- RTP -----------------------------------------------------------------------------


def rtp(data: bytes) -> None:
    """`parse_rtp`: an RtpPacket whose payload lies inside the datagram, or RtpError."""
    try:
        packet = parse_rtp(data)
    except RtpError as exc:
        assert exc.reason
        return
    assert 0 <= packet.payload_type <= 127
    assert 0 <= packet.sequence_number < 1 << 16
    assert 0 <= packet.timestamp < 1 << 32 and 0 <= packet.ssrc < 1 << 32
    assert len(packet.csrc) <= 15
    assert len(packet.payload) <= len(data) - RTP_HEADER_SIZE - 4 * len(packet.csrc)
    assert packet.payload in data


# --- AudioSocket ---------------------------------------------------------------------


def audiosocket_stream(data: bytes) -> None:
    """`AudioSocketDecoder.feed` over any split of the stream.

    Layout: byte 0 seeds the split points, the rest is the stream. Contract: only
    AudioSocketError; the messages do not depend on how the stream was split; once failed
    the decoder keeps failing.
    """
    if not data:
        return
    seed, stream = data[0], data[1:]
    whole, whole_error = _decode([stream])
    rnd = random.Random(seed)
    cuts = sorted(rnd.randrange(len(stream) + 1) for _ in range(rnd.randrange(8)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    split, split_error = _decode(pieces)
    assert split == whole, "a different split gave different messages"
    assert (split_error is None) == (whole_error is None)


def _decode(pieces: list[bytes]) -> tuple[list[audiosocket.Message], str | None]:
    decoder = audiosocket.AudioSocketDecoder()
    out: list[audiosocket.Message] = []
    error: str | None = None
    for piece in pieces:
        try:
            out += decoder.feed(piece)
        except audiosocket.AudioSocketError as exc:
            out += exc.messages
            error = exc.reason
            break
    if error is not None:
        assert decoder.failed
        try:
            decoder.feed(b"\x10")
        except audiosocket.AudioSocketError:
            pass
        else:
            raise AssertionError("a failed decoder accepted more input")
    for m in out:
        assert 0 <= m.kind <= 0xFF and len(m.payload) <= audiosocket.MAX_PAYLOAD
        if m.is_audio:
            assert m.payload, "an empty audio message was decoded"
    return out, error


# --- WebSocket channel control messages ------------------------------------------------


def wschannel_event(data: bytes) -> None:
    """`parse_event` on any text: a ControlEvent, or WsChannelError."""
    try:
        event = wschannel.parse_event(text_of(data))
    except wschannel.WsChannelError:
        return
    # A JSON event's name may be any string, "" included (the gateway ignores what it
    # does not know); plain text names are upper-case words.
    assert isinstance(event.name, str)
    # What the gateway reads from an event must not raise either.
    _ = (event.channel_id, event.digit, event.error_text, event.format, event.ptime)
    _ = (event.optimal_frame_size, event.queue_length, event.queue_full)
    _ = event.channel_variables


def wschannel_command(data: bytes) -> None:
    """`parse_command`: byte 0 bit 0 picks the JSON format; a ControlCommand or WsChannelError."""
    if not data:
        return
    try:
        cmd = wschannel.parse_command(text_of(data[1:]), json_format=bool(data[0] & 1))
    except wschannel.WsChannelError:
        return
    assert isinstance(cmd.name, str)
    assert cmd.correlation_id is None or isinstance(cmd.correlation_id, str)


# --- Uplink (what a client sends) -------------------------------------------------------

UPLINK_SPECS = [
    StreamSpec(
        Target(TargetKind.CALL, "fuzz"),
        format=fmt,
        encapsulation=enc,
        transport=transport,
        uplink_format=uplink,
        voipbin_rtp=voipbin_rtp,
    )
    for enc in Encapsulation
    for fmt in (AudioFormat.ULAW, AudioFormat.SLIN, AudioFormat.SLIN16)
    for transport in Transport
    for uplink in (None, AudioFormat.SLIN)
    for voipbin_rtp in (False, True)
]
"""Every encapsulation x format x transport x VoIPBIN's uplink and RTP forms."""


def uplink(data: bytes) -> None:
    """`Uplink.decode`: byte 0 picks the stream spec, the rest is one client message.

    Contract: InvalidArgument only; what comes out is whole samples of the Asterisk-side
    format, at most 200 ms of it.
    """
    if not data:
        return
    spec = UPLINK_SPECS[data[0] % len(UPLINK_SPECS)]
    try:
        out = Uplink(spec).decode(data[1:])
    except InvalidArgument as exc:
        assert exc.field == "audio.data" and exc.reason
        return
    fmt = spec.asterisk_format
    assert len(out) % fmt.sample_width == 0
    assert len(out) <= fmt.bytes_for(200)


# --- gRPC StreamConfig ------------------------------------------------------------------


def stream_config(data: bytes) -> None:
    """`spec_from_config` on any StreamConfig the protobuf runtime accepts.

    Layout: byte 0 bit 0 picks bidirectional, the rest is a serialized StreamConfig (open
    enums take any number). Bytes protobuf itself refuses never reach the servicer (gRPC
    answers INTERNAL), so they are skipped. Contract: InvalidArgument naming a config field.
    """
    if not data:
        return
    try:
        message = pb.StreamConfig.FromString(data[1:])
    except DecodeError:
        return
    check_stream_config(message, bidirectional=bool(data[0] & 1))


def check_stream_config(message: pb.StreamConfig, *, bidirectional: bool) -> None:
    """The contract of `spec_from_config` for one message."""
    try:
        spec = spec_from_config(
            message, bidirectional=bidirectional, default_transport=Transport.RTP
        )
    except InvalidArgument as exc:
        assert exc.field.startswith("config."), exc.field
        return
    assert spec.chunk_ms % 20 == 0 and 20 <= spec.chunk_ms <= 200
    assert spec.bidirectional is bidirectional
    Uplink(spec)  # a valid spec builds both directions
    assert spec.chunk_bytes > 0


# --- WebSocket shim: path, query and credentials ------------------------------------------


def shim_request(data: bytes) -> None:
    """`parse_target`, `parse_media_stream` and `credentials` on one request.

    Layout: fields separated by NUL: path kind selector, id, query string, cookie string,
    Authorization header. Contract: InvalidArgument from the parsers; `credentials` never
    raises and returns one of the candidates or None.
    """
    fields = text_of(data).split("\x00")
    fields += [""] * (5 - len(fields))
    kind = "calls" if fields[0][:1] in ("", "c") else "conferences"
    query = dict(parse_qsl(fields[2], keep_blank_values=True))
    cookies = dict(parse_qsl(fields[3].replace("; ", "&"), keep_blank_values=True))
    check_shim_request(kind, fields[1], query, cookies, fields[4] or None)


def check_shim_request(
    kind: str,
    target_id: str,
    query: Mapping[str, str],
    cookies: Mapping[str, str],
    authorization: str | None,
) -> None:
    """The contract of the shim's request parsers for one request."""
    token = params.credentials(cookies, query, authorization)
    candidates = {*query.values(), *cookies.values()}
    if authorization:
        candidates.add(authorization.partition(" ")[2].strip())
    assert token is None or token in candidates
    try:
        target = params.parse_target(kind, target_id)
    except InvalidArgument as exc:
        assert exc.reason in ("INVALID_ID", "MISSING_TARGET"), exc.reason
        return
    for transport in Transport:
        try:
            request = params.parse_media_stream(target, query, transport)
        except InvalidArgument as exc:
            assert exc.reason.startswith(("MISSING_", "INVALID_")), exc.reason
            continue
        assert request.spec.target == target
        Uplink(request.spec)


# --- WebSocket shim: client messages (Twilio dialect, VoIPBIN control channel) -------------


class FakeStream:
    """Enough of `streams.Stream` for a dialect's `on_text` to run against."""

    def __init__(self, spec: StreamSpec) -> None:
        self.id = "00000000-0000-4000-8000-00000000f022"
        self.spec = spec
        self._uplink = Uplink(spec)
        self.played = 0
        self.marks: list[str] = []

    def play(self, data: bytes) -> None:
        self.played += len(self._uplink.decode(data))

    def mark(self, name: str) -> None:
        self.marks.append(name)

    def clear(self) -> None:
        pass

    def end_input(self) -> None:
        pass

    def send_dtmf(self, digits: str, duration_ms: int) -> None:
        # The same checks as Stream.send_dtmf; nothing is played.
        if not digits or any(d not in DIGITS for d in digits):
            raise InvalidArgument("dtmf.digits", "bad digits", reason="INVALID_DTMF")
        if not 40 <= (duration_ms or 100) <= 2000:
            raise InvalidArgument("dtmf.duration_ms", "bad duration", reason="INVALID_DTMF")


class FakeStreams:
    """Enough of `streams.StreamManager` for the VoIPBIN dialect's hang-up."""

    async def hangup(self, stream: FakeStream) -> None:
        if stream.spec.target.kind is not TargetKind.CALL:
            from mediastream.errors import FailedPrecondition

            raise FailedPrecondition("only a call can be hung up", reason="NOT_A_CALL")


_LOOP: asyncio.AbstractEventLoop | None = None


def run(coro: Any) -> Any:
    """Run `coro` on one event loop kept for the whole fuzzing session."""
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    return _LOOP.run_until_complete(coro)


def twilio_message(data: bytes) -> None:
    """`TwilioDialect.on_text` on any text: MediaStreamError only (it closes the stream)."""
    target = Target(TargetKind.CALL, "00000000-0000-4000-8000-000000000440")
    stream = FakeStream(twilio.twilio_spec(target, Transport.RTP))
    dialect = twilio.TwilioDialect(
        None,  # type: ignore[arg-type]  # on_text never writes to the socket
        stream,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        account="fuzz",
        parameters={},
    )
    try:
        run(dialect.on_text(text_of(data)))
    except MediaStreamError as exc:
        assert exc.reason
        return


def voipbin_control(data: bytes) -> None:
    """`VoipbinDialect.on_text` (the JSON control channel): MediaStreamError only.

    Layout: byte 0 bit 0 picks a conference (hang-up refused) over a call.
    """
    if not data:
        return
    kind = TargetKind.CONFERENCE if data[0] & 1 else TargetKind.CALL
    spec = params.parse_media_stream(
        Target(kind, "00000000-0000-4000-8000-000000000440"),
        {"encapsulation": "sln"},
        Transport.RTP,
    ).spec
    stream = FakeStream(spec)
    dialect = voipbin.VoipbinDialect(
        None,  # type: ignore[arg-type]
        stream,  # type: ignore[arg-type]
        FakeStreams(),  # type: ignore[arg-type]
        events=True,
    )
    try:
        run(dialect.on_text(text_of(data[1:])))
    except MediaStreamError as exc:
        assert exc.reason
        return


# --- Settings ------------------------------------------------------------------------

SETTINGS = [f.replace("_", "-") for f in config.Settings.__dataclass_fields__]


def settings(data: bytes) -> None:
    """`config.parse` with one setting set to any value, as a flag or from the environment.

    Layout: byte 0 picks the setting (and bit 7 the environment over the flag), the rest
    is the value. Contract: Settings or ConfigError, and a Settings that validates is one
    the gateway can start with (the keepalive options fit gRPC's 32-bit milliseconds).
    """
    if not data:
        return
    name = SETTINGS[(data[0] & 0x7F) % len(SETTINGS)]
    value = text_of(data[1:])
    try:
        if data[0] & 0x80:
            env = {config.ENV_PREFIX + name.replace("-", "_").upper(): value}
            result = config.parse([], env)
        else:
            result = config.parse([f"--{name}={value}"], {})
    except config.ConfigError:
        return
    for seconds in (result.keepalive_time_s, result.keepalive_timeout_s):
        assert 0 < int(seconds * 1000) <= 2**31 - 1 or 0 < seconds < 0.001
    assert 0 <= result.resume_grace_s < float("inf")
    assert 0 <= result.drain_timeout_s < float("inf")


# --- ARI events ----------------------------------------------------------------------


def ari_event(data: bytes) -> None:
    """`AriClient._dispatch` then a leg's monitor, on any text from the events WebSocket.

    Contract: `_dispatch` never raises (a junk event is logged and dropped, and the events
    task lives on); `event_ids` gives strings; a leg whose watch receives the event keeps
    running, and still ends when its call is destroyed.
    """
    text = text_of(data)
    run(_ari_event(text))


async def _ari_event(text: str) -> None:
    client = AriClient(AriConfig("http://127.0.0.1:1/ari", "u", "p"))
    watch = client.watch(*WATCHED)
    client._dispatch(text)
    events = []
    while not watch.queue.empty():
        events.append(watch.queue.get_nowait())
    for event in events:
        assert all(isinstance(i, str) for i in event_ids(event))
    await check_monitor(client, events)


class _LegSink:
    def __init__(self) -> None:
        self.ends: list[legs.LegEnd] = []
        self.digits: list[tuple[str, int]] = []

    def on_frame(self, frame: bytes) -> None:
        pass

    def on_dtmf(self, digit: str, duration_ms: int = 0) -> None:
        assert isinstance(duration_ms, int)
        self.digits.append((digit, duration_ms))

    def on_transport_closed(self, reason: str) -> None:
        pass

    def on_leg_end(self, end: legs.LegEnd) -> None:
        self.ends.append(end)


async def check_monitor(client: AriClient, events: list[dict[str, Any]]) -> None:
    """Feed `events` to a leg's monitor, then hang its call up: it must end, and only then."""
    call_id, bridge_id = WATCHED
    sink = _LegSink()
    loop = asyncio.get_running_loop()
    spec = StreamSpec(Target(TargetKind.CALL, call_id))
    leg = legs.Leg("fuzz", spec, AudioFormat.ULAW, sink, loop.create_future())
    leg.watch = client.watch(call_id, bridge_id)
    leg.channel_ids = ["fuzz-own-channel"]
    factory = legs.LegFactory(client, "127.0.0.1")
    for event in events:
        if event.get("type") == "_AriDisconnected":
            continue  # the reconnect path needs a live ARI; not what is fuzzed here
        leg.watch.queue.put_nowait(event)
    leg.watch.queue.put_nowait({"type": "ChannelDestroyed", "channel": {"id": call_id}})
    async with asyncio.timeout(2):
        await factory._monitor(leg)
    assert leg.ended.done() and sink.ends
    leg.watch.close()


def ari_answer(data: bytes) -> None:
    """What the gateway reads from ARI's REST answers: channel variables and list answers.

    `_create_external_media` and `sweep_orphans` must take any JSON (or none) without an
    exception other than the documented ones.
    """
    try:
        answer = json.loads(text_of(data))
    except (ValueError, RecursionError):
        return
    run(_ari_answer(answer))


async def _ari_answer(answer: Any) -> None:
    class Ari:
        config = AriConfig("http://127.0.0.1:1/ari", "u", "p")

        async def request(self, method: str, path: str, *a: Any, **k: Any) -> Any:
            return None if method == "DELETE" else answer

    factory = legs.LegFactory(Ari(), "127.0.0.1")  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    leg = legs.Leg(
        "fuzz",
        StreamSpec(Target(TargetKind.CALL, "c")),
        AudioFormat.ULAW,
        _LegSink(),
        loop.create_future(),
    )
    variables = await factory._create_external_media(leg, {"channelId": "x"})
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in variables.items())
    assert await factory.sweep_orphans() >= 0


TARGETS: dict[str, Fuzz] = {
    "rtp": rtp,
    "audiosocket": audiosocket_stream,
    "wschannel_event": wschannel_event,
    "wschannel_command": wschannel_command,
    "uplink": uplink,
    "stream_config": stream_config,
    "shim_request": shim_request,
    "twilio": twilio_message,
    "voipbin_control": voipbin_control,
    "settings": settings,
    "ari_event": ari_event,
    "ari_answer": ari_answer,
}
"""Every target by the name of its corpus folder and atheris script."""
