"""The Python runner of the conformance suite: runs one scenario of scenarios.json
with the Python SDK (format: tests/conformance/README.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mediastream_client import (
    AudioChunk,
    AudioFormat,
    Cleared,
    ConfigError,
    Direction,
    DtmfReceived,
    DuplexStream,
    Encapsulation,
    ExternalEncapsulation,
    ExternalMedia,
    FlowControl,
    ListenStream,
    MarkPlayed,
    MediaStreamClient,
    RPCError,
    Stopped,
    StopReason,
    StreamInfo,
    Transport,
)
from tests.audio_checks import dominant_hz, tone_level

RUNNER = "python"
SCENARIOS = Path(__file__).with_name("scenarios.json")

FORMATS = {"ulaw": AudioFormat.ULAW, "slin": AudioFormat.SLIN, "slin16": AudioFormat.SLIN16}
DIRECTIONS = {"both": Direction.BOTH, "in": Direction.IN, "out": Direction.OUT}
ENCAPSULATIONS = {
    "sln": Encapsulation.SLN,
    "rtp": Encapsulation.RTP,
    "audiosocket": Encapsulation.AUDIOSOCKET,
}
TRANSPORTS = {
    "rtp": Transport.RTP,
    "audiosocket": Transport.AUDIOSOCKET,
    "websocket": Transport.WEBSOCKET,
}
EVENT_TYPES = {"dtmf": DtmfReceived, "mark": MarkPlayed, "cleared": Cleared, "flow": FlowControl}


class StepError(AssertionError):
    """A step's expectation did not hold."""


def cuts_connection(scenario: dict[str, Any]) -> bool:
    """Whether a scenario has a cut_connection step (and so needs a client behind a proxy)."""
    return any("cut_connection" in step for step in scenario["steps"])


def load_suite() -> dict[str, Any]:
    """The parsed scenarios.json."""
    suite: dict[str, Any] = json.loads(SCENARIOS.read_text())
    if suite.get("format") != 1:
        raise StepError(f"scenarios.json has format {suite.get('format')}; this runner reads 1")
    return suite


def skip_reason(scenario: dict[str, Any]) -> str | None:
    """Why this runner skips the scenario, if it does."""
    skip: dict[str, str] = scenario.get("skip", {})
    return skip.get(RUNNER, skip.get("all"))


def _ulaw_decode(data: bytes) -> npt.NDArray[np.float64]:
    u = ~np.frombuffer(data, np.uint8).astype(np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    s = ((((u & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -s, s).astype(np.float64)


def _ulaw_encode(samples: npt.NDArray[np.float64]) -> bytes:
    s = np.clip(np.round(samples), -32768, 32767).astype(np.int32)
    sign = np.where(s < 0, 0x80, 0)
    s = np.minimum(np.abs(s), 32635) + 0x84
    exponent = np.clip(np.floor(np.log2(s)).astype(np.int32) - 7, 0, 7)
    mantissa = (s >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def _sine(hz: float, ms: int, rate: int, amplitude: float) -> npt.NDArray[np.float64]:
    t = np.arange(ms * rate // 1000) / rate
    return amplitude * np.sin(2 * np.pi * hz * t)


@dataclass
class _Stream:
    """One open stream and everything received on it."""

    stream: ListenStream | DuplexStream | None = None
    info: StreamInfo | None = None
    audio: list[AudioChunk] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    stopped: Stopped | None = None
    done: bool = False
    error: BaseException | None = None
    mark: int = 0
    capture: list[AudioChunk] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    sends: int = 0
    sent_while_paused: int = 0

    async def receive(self) -> None:
        assert self.stream is not None
        try:
            async for event in self.stream.events():
                if isinstance(event, AudioChunk):
                    self.audio.append(event)
                elif isinstance(event, Stopped):
                    self.stopped = event
                else:
                    self.events.append(event)
        except RPCError as exc:
            self.error = exc
        except asyncio.CancelledError:
            pass
        finally:
            self.done = True


class CuttableProxy:
    """A TCP relay whose connections can be cut, as a network drop would."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.upstream.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self.writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    def cut(self) -> None:
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


class Runner:
    """Runs the steps of one scenario against a gateway."""

    def __init__(
        self,
        client: MediaStreamClient,
        demo: dict[str, str],
        timeout_s: float,
        proxy: CuttableProxy | None = None,
    ) -> None:
        self.client = client
        self.proxy = proxy  # under `client`, when the scenario cuts its connection
        self.vars = dict(demo)
        self.deadline = time.monotonic() + timeout_s
        self.streams: dict[str, _Stream] = {}

    async def run(self, scenario: dict[str, Any]) -> None:
        """Run every step; raise StepError naming the first that fails."""
        try:
            for i, step in enumerate(scenario["steps"], 1):
                if len(step) != 1:
                    raise StepError(f"step {i}: a step has exactly one kind")
                ((kind, args),) = step.items()
                handler = getattr(self, f"step_{kind}", None)
                if handler is None:
                    raise StepError(f"step {i}: unknown step kind {kind!r}")
                try:
                    await handler(args)
                except (StepError, AssertionError) as exc:
                    raise StepError(f"step {i} ({kind}): {exc}") from exc
        finally:
            for s in self.streams.values():
                if s.stream is not None:
                    await s.stream.cancel()
                if s.task is not None:
                    s.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await s.task

    # -- helpers ---------------------------------------------------------------------

    def _subst(self, value: str | None) -> str | None:
        if value is not None and value.startswith("$"):
            if value[1:] not in self.vars:
                raise StepError(f"unknown variable {value}")
            return self.vars[value[1:]]
        return value

    async def _wait_for(self, what: str, cond: Callable[[], bool]) -> None:
        while not cond():
            if time.monotonic() > self.deadline:
                raise StepError(f"timed out waiting for {what}")
            await asyncio.sleep(0.005)

    def _stream(self, args: dict[str, Any]) -> _Stream:
        name = args.get("stream", "main")
        if name not in self.streams:
            raise StepError(f"no stream {name!r} was opened")
        return self.streams[name]

    def _stream_ok(self, args: dict[str, Any]) -> _Stream:
        s = self._stream(args)
        if s.error is not None:
            raise StepError(f"unexpected error: {s.error}")
        return s

    def _duplex(self, args: dict[str, Any]) -> DuplexStream:
        s = self._stream_ok(args)
        if not isinstance(s.stream, DuplexStream):
            raise StepError("sending needs a stream opened with rpc stream")
        return s.stream

    @staticmethod
    def _enum(table: dict[str, Any], value: Any, what: str) -> Any:
        if value is None or value == "unspecified":
            return None
        if not isinstance(value, str) or value not in table:
            raise StepError(f"the Python SDK cannot send {what} {value!r}")
        return table[value]

    # -- steps -----------------------------------------------------------------------

    async def step_open(self, args: dict[str, Any]) -> None:
        c: dict[str, Any] = args.get("config", {})
        kwargs: dict[str, Any] = {
            "timeout": args["deadline_ms"] / 1000 if "deadline_ms" in args else None,
            "call_id": self._subst(c.get("call_id")),
            "conference_id": self._subst(c.get("conference_id")),
            "chunk_ms": c.get("chunk_ms", 20),
            "auto_resume": bool(c.get("resumable", False) or c.get("auto_resume", False)),
        }
        resume: dict[str, Any] = c.get("resume", {})
        if "from" in resume:
            earlier = self._stream({"stream": resume["from"]})
            assert earlier.info is not None, f"stream {resume['from']} never started"
            kwargs["resume_token"] = earlier.info.resume_token
            if earlier.audio:
                kwargs["last_sequence_number"] = earlier.audio[-1].sequence_number
        elif "token" in resume:
            kwargs["resume_token"] = resume["token"]
        for key, table in (
            ("format", FORMATS),
            ("direction", DIRECTIONS),
            ("encapsulation", ENCAPSULATIONS),
            ("transport", TRANSPORTS),
        ):
            value = self._enum(table, c.get(key), key)
            if value is not None:
                kwargs[key] = value
        s = _Stream()
        self.streams[args.get("stream", "main")] = s
        if args["rpc"] not in ("listen", "stream"):
            raise StepError(f"rpc must be listen or stream, not {args['rpc']!r}")
        try:
            opening: ListenStream | DuplexStream = (
                self.client.listen(**kwargs)
                if args["rpc"] == "listen"
                else self.client.stream(**kwargs)
            )
            s.stream = await opening.__aenter__()
        except (RPCError, ConfigError) as exc:
            s.error, s.done = exc, True
            return  # expect_error checks it; any other step fails on it
        s.info = s.stream.info
        s.task = asyncio.create_task(s.receive())

    async def step_expect_started(self, args: dict[str, Any]) -> None:
        info = self._stream_ok(args).info
        assert info is not None
        want: dict[str, Any] = {}
        got: dict[str, Any] = {}
        for key, value, table in (
            ("format", info.format, FORMATS),
            ("sample_rate_hz", info.sample_rate, None),
            ("frame_bytes", info.frame_bytes, None),
            ("chunk_ms", info.chunk_ms, None),
            ("encapsulation", info.encapsulation, ENCAPSULATIONS),
            ("transport", info.transport, TRANSPORTS),
            ("resumed", info.resumed, None),
        ):
            if key in args:
                want[key] = table[args[key]] if table else args[key]
                got[key] = value
        if got != want:
            raise StepError(f"started {got}, want {want}")

    async def step_expect_error(self, args: dict[str, Any]) -> None:
        s = self._stream(args)
        await self._wait_for("the stream to fail", lambda: s.done)
        check_error(args, s.error)

    async def step_expect_config_error(self, args: dict[str, Any]) -> None:
        s = self._stream(args)
        if not isinstance(s.error, ConfigError):
            raise StepError(f"error {s.error!r} is not the SDK's ConfigError")
        got = {"reason": s.error.reason, "field": s.error.field}
        want = {"reason": args["reason"], "field": args["field"]}
        if got != want:
            raise StepError(f"config error {got}, want {want}")

    async def step_send_tone(self, args: dict[str, Any]) -> None:
        await self._send_tone(args, args["hz"], args.get("amplitude", 8000))

    async def step_send_silence(self, args: dict[str, Any]) -> None:
        await self._send_tone(args, 0, 0)

    async def _send_tone(self, args: dict[str, Any], hz: float, amplitude: float) -> None:
        stream = self._duplex(args)
        info = stream.info
        assert info is not None
        if info.encapsulation is not Encapsulation.SLN:
            raise StepError("the runners send bare samples only")
        tone = _sine(hz, args["ms"], info.sample_rate, amplitude)
        if info.format is AudioFormat.ULAW:
            data = _ulaw_encode(tone)
        else:
            data = np.clip(np.round(tone), -32768, 32767).astype("<i2").tobytes()
        size = info.frame_bytes * info.chunk_ms // 20
        s = self._stream(args)
        for at in range(0, len(data), size):
            await stream.send(data[at : at + size])
            s.sends += 1
            s.sent_while_paused += stream.paused

    async def step_expect_sends_not_paused(self, args: dict[str, Any]) -> None:
        s = self._stream(args)
        assert s.sends > 0, "nothing was sent"
        assert s.sent_while_paused <= 1, (
            f"{s.sent_while_paused} of {s.sends} sends returned while the stream was paused"
        )

    async def step_expect_send_fails(self, args: dict[str, Any]) -> None:
        stream = self._stream(args).stream
        if not isinstance(stream, DuplexStream) or stream.info is None:
            raise StepError("expect_send_fails needs a stream opened with rpc stream")
        try:
            await stream.send(bytes(stream.info.frame_bytes))
        except RPCError as exc:
            if exc.code.name != "FAILED_PRECONDITION":
                raise StepError(f"the send failed with {exc}, want FAILED_PRECONDITION") from exc
            return
        raise StepError("a send after the stream ended succeeded")

    async def step_send_dtmf(self, args: dict[str, Any]) -> None:
        await self._duplex(args).send_dtmf(args["digits"], args.get("duration_ms", 0))

    async def step_send_mark(self, args: dict[str, Any]) -> None:
        await self._duplex(args).mark(args["name"])

    async def step_send_clear(self, args: dict[str, Any]) -> None:
        await self._duplex(args).clear()

    async def step_send_hangup(self, args: dict[str, Any]) -> None:
        await self._duplex(args).hangup()

    async def step_close_send(self, args: dict[str, Any]) -> None:
        await self._duplex(args).done_sending()

    async def step_receive_audio(self, args: dict[str, Any]) -> None:
        s = self._stream_ok(args)
        assert s.info is not None
        chunk_ms = s.info.chunk_ms
        ms = args.get("ms", 0)
        if args.get("until") == "stopped":
            await self._wait_for("the stream to stop", lambda: s.done)
        elif ms > 0:
            await self._wait_for(
                f"{ms} ms of audio", lambda: (len(s.audio) - s.mark) * chunk_ms >= ms or s.done
            )
        else:
            raise StepError('receive_audio needs ms or until: "stopped"')
        if s.error is not None:
            raise StepError(f"unexpected error: {s.error}")
        s.capture, s.mark = s.audio[s.mark :], len(s.audio)
        if ms > 0 and len(s.capture) * chunk_ms < ms:
            raise StepError(f"the stream ended after {len(s.capture) * chunk_ms} ms of audio")

    async def step_expect_chunks(self, args: dict[str, Any]) -> None:
        s = self._stream(args)
        chunks = s.capture
        if "count" in args:
            assert len(chunks) >= args["count"], f"captured {len(chunks)} chunks"
            chunks = chunks[: args["count"]]
        assert chunks, "no audio was captured"
        first = chunks[0]
        for i, c in enumerate(chunks):
            if "bytes" in args:
                assert len(c.data) == args["bytes"], f"chunk {i} has {len(c.data)} bytes"
            assert c.sequence_number == first.sequence_number + i, f"chunk {i} sequence number"
            if "timestamp_step" in args:
                want = first.timestamp + i * args["timestamp_step"]
                assert c.timestamp == want, f"chunk {i} timestamp {c.timestamp}, want {want}"
        if "first_sequence_number" in args:
            assert first.sequence_number == args["first_sequence_number"], "first sequence number"
        if "first_timestamp" in args:
            assert first.timestamp == args["first_timestamp"], "first timestamp"
        if "continues" in args:
            before = self._stream({"stream": args["continues"]}).audio
            assert before, f"stream {args['continues']} received no audio"
            assert first.sequence_number == before[-1].sequence_number + 1, "continues"

    async def step_expect_tone(self, args: dict[str, Any]) -> None:
        s = self._stream(args)
        info = s.info
        assert info is not None
        rate = info.sample_rate
        header = {Encapsulation.RTP: 12, Encapsulation.AUDIOSOCKET: 3}.get(info.encapsulation, 0)
        parts = [c.data[header:] for c in s.capture]
        if info.format is AudioFormat.ULAW:
            x = _ulaw_decode(b"".join(parts))
        else:
            x = np.frombuffer(b"".join(parts), "<i2").astype(np.float64)
        hz = float(args["hz"])
        if args.get("window_ms"):
            size, step = args["window_ms"] * rate // 1000, 20 * rate // 1000
            assert len(x) >= size, f"captured {1000 * len(x) // rate} ms, less than the window"
            starts = range(0, len(x) - size + 1, step)
            best = max(starts, key=lambda at: tone_level(x[at : at + size], rate, hz))
            x = x[best : best + size]
        assert len(x), "no audio was captured"
        got = dominant_hz(x, rate)
        level = tone_level(x, rate, hz)
        tolerance = args.get("tolerance_hz", 3)
        assert abs(got - hz) <= tolerance, f"dominant {got:.1f} Hz, want {hz} ± {tolerance}"
        assert level >= args.get("min_level", 0), f"level at {hz} Hz is {level:.0f}"

    async def step_expect_event(self, args: dict[str, Any]) -> None:
        s = self._stream(args)
        cls = EVENT_TYPES.get(args["type"])
        if cls is None:
            raise StepError(f"unknown event type {args['type']!r}")
        fields = {
            "digit": "digit",
            "duration_ms": "duration_ms",
            "name": "name",
            "position_ms": "position_ms",
            "dropped_marks": "dropped_marks",
        }

        def mismatch(event: Any) -> list[str]:
            problems = []
            for key, attr in fields.items():
                if key in args and hasattr(event, attr):
                    got = getattr(event, attr)
                    want = tuple(args[key]) if isinstance(got, tuple) else args[key]
                    if got != want:
                        problems.append(f"{key} = {got!r}, want {want!r}")
            paused = args.get("state") == "pause"
            if "state" in args and isinstance(event, FlowControl) and event.paused != paused:
                problems.append(f"paused = {event.paused}")
            return problems

        seen: list[str] = []
        found = False

        def cond() -> bool:
            nonlocal found
            while s.events:
                event = s.events.pop(0)
                if not isinstance(event, cls):
                    continue
                problems = mismatch(event)
                if not problems:
                    found = True
                    return True
                seen.append(f"{event} ({', '.join(problems)})")
            return s.done

        try:
            await self._wait_for(f"a matching {args['type']} event", cond)
            if not found:
                raise StepError(f"the stream ended ({s.error}) before a matching event")
        except StepError as exc:
            raise StepError(f"{exc}; non-matching events: {seen}" if seen else str(exc)) from None

    async def step_expect_stopped(self, args: dict[str, Any]) -> None:
        s = self._stream(args)
        await self._wait_for("the stream to stop", lambda: s.done)
        if s.error is not None:
            raise StepError(f"the stream failed: {s.error}")
        assert s.stopped is not None, "the stream ended without a stopped event"
        want = StopReason[args["reason"]]
        assert s.stopped.reason is want, f"stopped with {s.stopped}, want {want}"

    async def step_cancel(self, args: dict[str, Any]) -> None:
        s = self._stream(args)
        if s.stream is not None:
            await s.stream.cancel()
        await self._wait_for("the stream to end", lambda: s.done)

    async def step_close(self, args: dict[str, Any]) -> None:
        # Leaving `async with client.stream(...)` normally is exactly this call.
        s = self._stream(args)
        if s.stream is not None:
            await asyncio.wait_for(
                s.stream.__aexit__(None, None, None), max(0.0, self.deadline - time.monotonic())
            )

    async def step_cut_connection(self, args: dict[str, Any]) -> None:
        if self.proxy is None:
            raise StepError("the runner's client is not behind a proxy")
        self.proxy.cut()

    async def step_sleep(self, args: dict[str, Any]) -> None:
        await asyncio.sleep(args["ms"] / 1000)

    async def step_external_media(self, args: dict[str, Any]) -> None:
        api = self.client.external_media
        r: dict[str, Any] = {
            k: self._subst(v) if isinstance(v, str) else v
            for k, v in args.get("request", {}).items()
        }
        target = {k: r[k] for k in ("call_id", "conference_id") if k in r}
        try:
            op = args["op"]
            if op == "start":
                kw: dict[str, Any] = {"external_host": r["external_host"], **target}
                if "encapsulation" in r:
                    kw["encapsulation"] = ExternalEncapsulation(r["encapsulation"])
                if "format" in r:
                    kw["format"] = FORMATS[r["format"]]
                result: list[ExternalMedia] = [await api.start(**kw)]
            elif op == "get":
                result = [await api.get(r["id"])]
            elif op == "list":
                result = await api.list(**target)
            elif op == "stop":
                result = [await api.stop(r["id"])] if "id" in r else await api.stop_all(**target)
            else:
                raise StepError(f"unknown external media op {op!r}")
        except RPCError as exc:
            if "expect_error" not in args:
                raise StepError(f"external media {args['op']} failed: {exc}") from exc
            check_error(args["expect_error"], exc)
            return
        if "expect_error" in args:
            check_error(args["expect_error"], None)
        if "save_as" in args:
            self.vars[args["save_as"]] = result[0].id
        want: dict[str, Any] = args.get("expect", {})
        if "count" in want:
            assert len(result) == want["count"], f"{len(result)} external media"
        if "includes" in want:
            assert self.vars[want["includes"]] in [m.id for m in result], "not listed"
            result = [m for m in result if m.id == self.vars[want["includes"]]]
        for m in result:
            got = {
                "status": m.status.value,
                "call_id": m.call_id,
                "external_host": m.external_host,
                "encapsulation": m.encapsulation.value,
                "format": {v: k for k, v in FORMATS.items()}[m.format],
            }
            for key in ("status", "call_id", "external_host", "encapsulation", "format"):
                if key in want:
                    expected = self._subst(want[key]) if isinstance(want[key], str) else want[key]
                    assert got[key] == expected, f"{key} {got[key]!r}, want {expected!r}"
            if "same_id_as" in want:
                assert m.id == self.vars[want["same_id_as"]], "a different external media"


def check_error(args: dict[str, Any], error: BaseException | None) -> None:
    """Compare an RPCError with an expect_error step."""
    if error is None:
        raise StepError(f"the call succeeded, want {args['code']}")
    if not isinstance(error, RPCError):
        raise StepError(f"error {error!r} is not an RPCError")
    got: dict[str, Any] = {"code": error.code.name}
    want: dict[str, Any] = {"code": args["code"]}
    if "reason" in args:
        got["reason"], want["reason"] = error.reason, args["reason"]
    if "field" in args:
        got["fields"] = [v.field for v in error.field_violations]
        want["fields"] = [args["field"]]
    for key, value in args.get("metadata", {}).items():
        got[f"metadata.{key}"], want[f"metadata.{key}"] = error.metadata.get(key), value
    if got != want:
        raise StepError(f"error {got}, want {want} ({error})")
